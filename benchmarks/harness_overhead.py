"""Harness time per round, model time excluded, on a 512 x 512 x 200 volume.

The model is instantaneous (it answers every prompt with a fixed, slightly wrong prediction),
so what is measured is annosim itself: slice choice, click rules, the per-round metrics and the
bookkeeping of one he2024 unit (8 rounds). Targets on a 2-core CPU: Dice-only at most 0.2 s a
round, with NSD and HD95 at most 1 s a round.

    python benchmarks/harness_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from annosim.data.case import Case
from annosim.models.base import SliceModelBase
from annosim.protocols.registry import get_protocol
from annosim.engine.unit import UnitContext, run_unit


class FixedAnswer(SliceModelBase):
    """Answers every prompt with the same prediction (truth shifted by a few voxels)."""

    name = "fixed"

    def __init__(self, prediction: np.ndarray) -> None:
        super().__init__()
        self.prediction = prediction

    def add_clicks(self, z, points, labels, replace=False):
        return self.prediction[z]

    def propagate(self):
        return self.prediction.copy()


def ellipsoid(shape, center, radii) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((zz - center[0]) / radii[0]) ** 2
        + ((yy - center[1]) / radii[1]) ** 2
        + ((xx - center[2]) / radii[2]) ** 2
    ) <= 1.0


def measure(case: Case, model: FixedAnswer, label: int, surface: bool, repeats: int) -> tuple[float, int]:
    best = float("inf")
    rounds = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        unit = run_unit(case, model, get_protocol("he2024"), label, "full", UnitContext(surface_metrics=surface))
        total = time.perf_counter() - t0
        model_s = sum(r["model_seconds"] for r in unit.rows)
        rounds = len(unit.rows)
        best = min(best, (total - model_s) / rounds)
    return best, rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    shape = (200, 512, 512)
    label = np.zeros(shape, np.uint8)
    label[ellipsoid(shape, (100, 256, 200), (60, 110, 90))] = 1  # liver-sized
    label[ellipsoid(shape, (90, 300, 380), (25, 30, 25))] = 2  # kidney-sized
    image = np.zeros(shape, np.float32)
    case = Case("synthetic", image, label, (1.5, 0.8, 0.8), {1: "large", 2: "small"})
    print(f"volume {shape[2]} x {shape[1]} x {shape[0]} (X x Y x Z), he2024, setting full, 8 rounds")
    print(f"{'object':<8}{'voxels':>10}{'dice-only s/round':>20}{'target':>8}{'+NSD,HD95 s/round':>20}{'target':>8}")
    for value, name in ((2, "small"), (1, "large")):
        gt = label == value
        pred = np.roll(gt, shift=(2, 3, -3), axis=(0, 1, 2))  # a consistently wrong answer
        model = FixedAnswer(pred)
        model.set_volume(image, case.spacing)
        t_dice, n = measure(case, model, value, False, args.repeats)
        t_all, _ = measure(case, model, value, True, args.repeats)
        print(f"{name:<8}{int(gt.sum()):>10}{t_dice:>20.3f}{t_dice / 0.2:>7.2f}x{t_all:>20.3f}{t_all / 1.0:>7.2f}x")
    print("ratio = measured / target (at most 1.00x meets the target)")


if __name__ == "__main__":
    main()
