"""SAM2 feature cache: annosim's adapter against the plain official loop, side by side.

Runs protocol ``he2024`` (or ``--protocol he2024-vista``) on one case with annosim's
:class:`~annosim.models.sam2_model.SAM2Model`, records the prompts of every round, then replays
them with the official ``SAM2VideoPredictor`` the way the reference script drives it (frames
read from a folder by ``init_state``, one inference state per video, ``reset_state`` per object,
``propagate_in_video`` forward then reverse each round, no feature cache). Both use the same
weights on the same device. Prints wall seconds, the speed-up, image-encoder calls, peak
accelerator memory on CUDA, and whether every round's mask is identical.

Default model: SAM2.1 Hiera-tiny built from its config with random weights (torch seed 0) at
``--image-size 256`` (no download needed); ``--checkpoint`` uses real weights.

    python benchmarks/sam2_cache.py                       # CPU, 3 labels, both settings
    python benchmarks/sam2_cache.py --device cuda --image-size 1024 --checkpoint sam2.1_hiera_tiny.pt

The plain loop's time includes ``init_state`` (reading and normalising the frame folder) but
not writing the folder; annosim's includes windowing and resizing its frames in memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "totalseg-abdomen"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny", help="registry name (config)")
    ap.add_argument("--checkpoint", help="weights file (default: random weights from the config)")
    ap.add_argument("--config", help="config override (fine-tunes)")
    ap.add_argument("--image-size", type=int, default=256, help="model input size (default 256)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--protocol", default="he2024", choices=("he2024", "he2024-vista"))
    ap.add_argument("--rounds", type=int, default=8, help="protocol rounds (default 8)")
    ap.add_argument("--labels", default="2,3,52", help="label values (default kidneys + aorta)")
    ap.add_argument("--image", default=str(DEFAULT_DATA / "ct.nii.gz"))
    ap.add_argument("--label-map", default=str(DEFAULT_DATA / "seg.nii.gz"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument(
        "--order", choices=("interleaved", "sequential"),
        help="interleaved: each object's plain replay right after annosim's (robust to a shared "
        "CPU's changing load); sequential: all of annosim, then the plain loop (separate peak GPU "
        "memory). Default: interleaved on CPU, sequential on CUDA",
    )
    return ap.parse_args(argv)


def random_checkpoint(config: str, image_size: int, folder: Path) -> Path:
    import torch

    from annosim.models.sam2_checkpoints import build_video_predictor

    torch.manual_seed(0)
    model = build_video_predictor(config, image_size)
    path = folder / "random_weights.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def write_frames(folder: Path, gray: np.ndarray, jpeg: bool) -> str:
    """Frames as the reference wrote them (JPEG) or lossless PNG data under .jpg names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, g in enumerate(gray):
        path = folder / f"{i + 1:04d}.jpg"
        if jpeg:
            Image.fromarray(g).save(path)
        else:
            Image.fromarray(np.repeat(g[..., None], 3, axis=2)).save(path, format="PNG")
    return str(folder)


class PlainLoop:
    """The official predictor without annosim's cache, counting image-encoder calls."""

    def __init__(self, config: str, checkpoint: str, image_size: int, device: str) -> None:
        from sam2.build_sam import build_sam2_video_predictor

        self.predictor = build_sam2_video_predictor(
            config, checkpoint, device=device, hydra_overrides_extra=[f"++model.image_size={image_size}"]
        )
        self.device = device
        self.encoder_calls = 0
        _warm_up(self.predictor, image_size, device)
        official = self.predictor.forward_image

        def counted(img):
            self.encoder_calls += 1
            return official(img)

        self.predictor.forward_image = counted

    def _propagate(self, state, frames: np.ndarray, shape) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        for reverse in (False, True):
            for idx, _, logits in self.predictor.propagate_in_video(state, reverse=reverse):
                out[frames[idx]] = (logits[0, 0] > 0.0).cpu().numpy()
        return out

    def _add(self, state, frames: np.ndarray, z: int, clicks: list) -> None:
        pts = np.array([[x, y] for y, x, _ in clicks], dtype=np.float32)
        lbs = np.array([int(p) for _, _, p in clicks], dtype=np.int32)
        i = int(np.searchsorted(frames, z))
        self.predictor.add_new_points_or_box(state, frame_idx=i, obj_id=1, points=pts, labels=lbs)

    def run_object(self, state, frames: np.ndarray, shape, outcomes, vista: bool) -> list[np.ndarray]:
        """Replay recorded rounds (see tests/test_sam2_model.py::plain_loop)."""
        self.predictor.reset_state(state)
        clicks: dict[int, list] = {}
        preds = []
        for rnd, outcome in enumerate(outcomes, start=1):
            pts = [(p.z, p.y, p.x, p.positive) for p in outcome.prompts]
            z = pts[0][0]
            if rnd == 1:
                for k in range(1, len(pts) + 1):
                    if vista:
                        self.predictor.reset_state(state)
                        clicks[z] = [p[1:] for p in pts[:k]]
                    else:
                        clicks.setdefault(z, []).append(pts[k - 1][1:])
                    self._add(state, frames, z, clicks[z])
            else:
                new = [p[1:] for p in pts]
                clicks[z] = new if vista else clicks.get(z, []) + new
                self._add(state, frames, z, clicks[z])
            preds.append(self._propagate(state, frames, shape))
        return preds


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _autocast(cuda: bool):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)


def _warm_up(predictor, image_size: int, device: str) -> None:
    """One untimed, uncounted encoder run (library loading, CUDA kernels)."""
    import torch

    with torch.inference_mode(), _autocast(device.startswith("cuda")):
        predictor.forward_image(torch.zeros(1, 3, image_size, image_size, device=device))
    _sync(device.startswith("cuda"))


def _silence_sam2_progress_bars() -> None:
    """This script only: sam2's per-pass tqdm bars would flood the output (and cost time)."""
    import sam2.sam2_video_predictor as svp
    import sam2.utils.misc as misc

    svp.tqdm = misc.tqdm = lambda iterable, *a, **k: iterable


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from annosim.data.layouts import open_dataset
    from annosim.models.sam2_checkpoints import get_variant
    from annosim.models.sam2_frames import hu_to_uint8
    from annosim.models.sam2_model import SAM2Model
    from annosim.protocols.registry import get_protocol
    from annosim.engine.unit import UnitContext, run_unit, setting_frames

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the official predictor warns per frame without sam2._C
    _silence_sam2_progress_bars()
    cuda = args.device.startswith("cuda")
    args.order = args.order or ("sequential" if cuda else "interleaved")
    config = args.config or get_variant(args.model).config
    labels = [int(v) for v in args.labels.split(",")]
    protocol = get_protocol(args.protocol, rounds=args.rounds)
    vista = args.protocol == "he2024-vista"
    case = open_dataset(f"{args.image} {args.label_map}").cases[0].load(
        orientation=protocol.orientation or "canonical"
    )
    settings = ("full", "fg-only")

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
        else:
            ckpt = random_checkpoint(config, args.image_size, tmpdir)
        weights = args.checkpoint or "random weights (seed 0)"
        print(
            f"case {case.case_id} {case.image.shape[0]}x{case.image.shape[1]}x{case.image.shape[2]} "
            f"(Z, Y, X); labels {labels}; settings {'+'.join(settings)}; protocol {args.protocol} "
            f"(<= {args.rounds} rounds)\nmodel {args.model} ({config}), {weights}, image_size "
            f"{args.image_size}, device {args.device}, torch threads {torch.get_num_threads()}"
        )

        # -- both sides -------------------------------------------------------------------------
        model = SAM2Model(args.model, checkpoint=str(ckpt), config=args.config,
                          image_size=str(args.image_size), device=args.device)
        _warm_up(model.predictor, args.image_size, args.device)
        gray = hu_to_uint8(case.image)
        folders: dict[tuple[int, ...], str] = {}
        recorded: dict[tuple[int, str], list] = {}
        def each_unit():
            # the engine's order: set_volume once per case, then protocol x label x setting
            model.set_volume(case.image, case.spacing)
            model.configure_protocol(**protocol.model_options)
            for lab in labels:
                for s in settings:
                    yield run_unit(case, model, protocol, lab, s, UnitContext(surface_metrics=False),
                                   on_round=lambda lab_, s_, o: recorded.setdefault((lab_, s_), []).append(o))

        units = each_unit()
        plain: PlainLoop | None = None
        states: dict[str, dict] = {}
        t_annosim = t_plain = model_seconds = 0.0
        identical = n_rounds = 0
        annosim_peak = plain_peak = None
        pending = []  # sequential order: plain units wait until annosim has finished
        while True:
            _sync(cuda)
            t0 = time.perf_counter()
            unit = next(units, None)
            _sync(cuda)
            t_annosim += time.perf_counter() - t0
            if unit is not None:
                if unit.error:
                    print(f"annosim unit failed: {unit.error}", file=sys.stderr)
                    return 1
                model_seconds += sum(r["model_seconds"] for r in unit.rows)
                pending.append((unit.key.label, unit.key.setting))
                if args.order == "sequential":
                    continue
            else:
                annosim_calls, annosim_peak = model.encoder_calls, model.peak_memory_bytes
                if args.order == "sequential":
                    del model, units
                    if cuda:
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
            if plain is None:
                plain = PlainLoop(config, str(ckpt), args.image_size, args.device)
            for label, setting in pending:
                frames = setting_frames(case.label == label, setting)
                frames = np.arange(case.image.shape[0]) if frames is None else frames
                key = tuple(frames.tolist())
                if key not in folders:  # written outside the timed part, as the reference's JPEGs
                    folders[key] = write_frames(tmpdir / f"v{len(folders)}", gray[frames], vista)
                outcomes = recorded[(label, setting)]
                _sync(cuda)
                t0 = time.perf_counter()
                with _autocast(cuda):
                    if folders[key] not in states:  # one init_state per video, as the reference
                        states[folders[key]] = plain.predictor.init_state(video_path=folders[key])
                    state = states[folders[key]]
                    preds = plain.run_object(state, frames, case.image.shape, outcomes, vista)
                _sync(cuda)
                t_plain += time.perf_counter() - t0
                identical += sum(np.array_equal(p, o.prediction) for p, o in zip(preds, outcomes))
                n_rounds += len(outcomes)
            pending = []
            if unit is None:
                break
        if cuda:
            plain_peak = int(torch.cuda.max_memory_allocated())

    print(f"rounds run: {n_rounds} ({len(recorded)} objects x settings), order {args.order}")
    print(f"plain loop (official, no cache): {t_plain:9.2f} s   encoder calls {plain.encoder_calls}")
    print(f"annosim (feature cache):         {t_annosim:9.2f} s   encoder calls {annosim_calls}"
          f"   (model_seconds {model_seconds:.2f})")
    print(f"speed-up: {t_plain / t_annosim:.2f}x   "
          f"seconds per case: plain {t_plain:.2f}, annosim {t_annosim:.2f}")
    if cuda:
        gib = 1024 ** 3
        print(f"peak GPU memory: plain {plain_peak / gib:.2f} GiB, annosim {annosim_peak / gib:.2f} GiB"
              + ("" if args.order == "sequential" else " (interleaved: both models resident)"))
    print(f"masks identical in {identical}/{n_rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
