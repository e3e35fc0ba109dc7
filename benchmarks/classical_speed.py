"""Seconds per he2024 round of the ``classical`` model on a 512 x 512 x 100 CT, on one core.

The sample abdomen CT (../shared/data/totalseg-abdomen, 122 x 101 x 30 at 3 mm) is resampled
(linear for HU, nearest for labels) to 100 slices of 512 x 512; he2024 then runs on the liver,
spleen and aorta in the ``full`` setting. A round is what the protocol times as
``model_seconds``: the clicks on one slice plus a propagation through all 100 slices.
Target: at most 2 s a round. ``set_volume`` (once per case) is reported separately.

Usage: ``python benchmarks/classical_speed.py [--data ../shared/data]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

TARGET_S = 2.0
SHAPE = (100, 512, 512)
OBJECTS = {5: "liver", 1: "spleen", 52: "aorta"}


def load_resampled(data: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Sample CT and labels resampled to :data:`SHAPE`; spacing (sz, sy, sx) in mm."""
    from annosim.data.layouts import open_dataset

    d = data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    factors = [n / s for n, s in zip(SHAPE, case.image.shape)]
    image = ndi.zoom(case.image.astype(np.float32), factors, order=1)
    label = ndi.zoom(case.label, factors, order=0)
    spacing = tuple(float(sp / f) for sp, f in zip(case.spacing, factors))
    return image, label, spacing  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap.add_argument("--data", type=Path, default=default, help="the shared sample-data folder")
    args = ap.parse_args(argv)
    if not (args.data / "totalseg-abdomen").is_dir():
        print(f"classical_speed: skipped, {args.data / 'totalseg-abdomen'} not found")
        return 0
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    from annosim.models.classical import ClassicalModel
    from annosim.protocols.registry import get_protocol

    image, label, spacing = load_resampled(args.data)
    model = ClassicalModel()
    t0 = time.perf_counter()
    model.set_volume(image, spacing)
    setup = time.perf_counter() - t0
    print(f"volume {image.shape} spacing {tuple(round(s, 3) for s in spacing)} mm; "
          f"set_volume {setup:.2f} s (once per case)")

    protocol = get_protocol("he2024")
    per_round: list[float] = []
    for value, name in OBJECTS.items():
        gt = label == value
        rng = np.random.default_rng(0)
        secs = [o.model_seconds for o in protocol.run_object(model, gt, None, rng)]
        per_round += secs
        print(f"{name:7s} {len(secs)} rounds: mean {np.mean(secs):.3f} s, max {np.max(secs):.3f} s")
    mean = float(np.mean(per_round))
    verdict = "within" if mean <= TARGET_S else "ABOVE"
    print(f"classical: {mean:.3f} s per round on one core (max {max(per_round):.3f} s; "
          f"target {TARGET_S:.1f} s: {verdict})")
    print(f"ratio measured / target: mean {mean / TARGET_S:.2f}x, slowest round "
          f"{max(per_round) / TARGET_S:.2f}x (at most 1.00x meets the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
