"""GPU check of the SAM2 path (issue 17): run as it is on a machine with one GPU, under 10 minutes.

What it prints, in order:

1. ``env``: python, torch, CUDA, the GPU's name and memory, sam2's version and whether sam2's
   CUDA extension (``sam2._C``) is built.
2. Per model (``--models``, default tiny and large) and per cache device (the compute device and
   ``cpu``): ``features``: the cached ``backbone_fpn`` / ``vision_pos_enc`` of a few slices are
   bitwise equal (``torch.equal``, same dtype) to a fresh ``forward_image`` of the same frame
   under the model's autocast (bf16 on CUDA), first from the cache and again on a cache hit;
   ``dtypes``: the levels' dtypes and the MiB a slice and of the encodings held by the cache
   against :mod:`annosim.memory` (``sam2_slice_bytes``, ``sam2_encoding_bytes``), the stored
   device and, for host storage on CUDA, pinning; ``timing``: ms a cache hit vs ms a fresh
   encode (reported, not judged).
3. ``benchmark``: ``benchmarks/sam2_cache.py`` per model; its masks must be identical in N/N
   rounds (its speed-up and peak memory are printed as it prints them).

Every check prints ``PASS name: detail`` or ``FAIL name: detail``; the last line is
``gpu check: K/N checks passed`` and the exit status is 0 only when all passed (1 otherwise, 2
for a usage error, before any work).

``--smoke`` runs the same checks on the CPU at 256 px with a random-weight Hiera-tiny made here
(torch seed 0), on the case given (CI: a small synthetic one), with 2 slices compared and 1 round of 1 label benchmarked.
Weights are random unless ``--checkpoint-dir`` holds the official files (``sam2.1_hiera_tiny.pt``
...): equality and memory do not depend on the weights.

``--deps DIR`` puts a folder of pure-Python packages first on ``sys.path`` (for a GPU machine
that has torch, numpy, scipy and Pillow but not sam2); ``--make-deps DIR`` builds that folder from
the running interpreter's packages (:data:`DEPS`) and exits.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "totalseg-abdomen"
#: Import names copied by ``--make-deps``: what the SAM2 path needs beyond a PyTorch image's
#: packages (torch, numpy, scipy, Pillow, tqdm, pyyaml).
DEPS: tuple[str, ...] = ("sam2", "hydra", "omegaconf", "antlr4", "iopath", "nibabel")
#: ``--models`` short names -> annosim registry names.
MODELS: dict[str, str] = {"tiny": "sam2.1-hiera-tiny", "large": "sam2.1-hiera-large"}
_MIB = float(1 << 20)


@dataclass(frozen=True)
class Check:
    """One judged result: ``name`` (``features``, ``dtypes``, ``benchmark``), pass or fail."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


class UsageError(Exception):
    """A command-line mistake: one line, exit 2, before any work."""


# -- command line -----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, 256 px, tiny, random weights")
    ap.add_argument("--deps", help="folder of pure-Python packages put first on sys.path")
    ap.add_argument("--make-deps", metavar="DIR", help="copy the packages the check needs into DIR, exit")
    ap.add_argument("--models", help="comma-separated: tiny, large (default tiny,large; smoke tiny)")
    ap.add_argument("--device", help="compute device (default cuda; smoke cpu)")
    ap.add_argument("--image-size", type=int, help="model input size (default 1024; smoke 256)")
    ap.add_argument("--image", default=str(DEFAULT_DATA / "ct.nii.gz"), help="sample case image")
    ap.add_argument("--label-map", default=str(DEFAULT_DATA / "seg.nii.gz"), help="its label map")
    ap.add_argument("--labels", help="benchmark labels (default 2,3,52; smoke: the first label present)")
    ap.add_argument("--rounds", type=int, help="benchmark rounds (default 8; smoke 2)")
    ap.add_argument("--slices", type=int, help="slices compared per cache device (default 3; smoke 2)")
    ap.add_argument("--checkpoint-dir", help="folder with the official sam2.1_hiera_*.pt (default: random weights)")
    ap.add_argument("--no-benchmark", action="store_true", help="skip benchmarks/sam2_cache.py")
    args = ap.parse_args(argv)
    if args.make_deps:
        return args
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    args.image_size = args.image_size or (256 if args.smoke else 1024)
    args.rounds = args.rounds or (1 if args.smoke else 8)
    args.slices = 2 if args.smoke and args.slices is None else (args.slices or 3)
    names = (args.models or ("tiny" if args.smoke else "tiny,large")).split(",")
    unknown = [n for n in names if n.strip() not in MODELS]
    if unknown:
        raise UsageError(f"--models: unknown {', '.join(unknown)} (use {', '.join(MODELS)})")
    args.models = [n.strip() for n in names]
    if args.deps:
        if not Path(args.deps).is_dir():
            raise UsageError(f"--deps {args.deps}: no such folder (build one with --make-deps DIR)")
        args.deps = str(Path(args.deps).resolve())
    for flag, path in (("--image", args.image), ("--label-map", args.label_map)):
        if not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if args.checkpoint_dir and not Path(args.checkpoint_dir).is_dir():
        raise UsageError(f"--checkpoint-dir {args.checkpoint_dir}: no such folder")
    if args.slices < 1 or args.image_size % 16:
        raise UsageError("--slices must be >= 1 and --image-size a multiple of 16")
    return args


def make_deps(folder: Path, names: Sequence[str] = DEPS) -> list[str]:
    """Copy the packages ``names`` (and their ``*.dist-info``) of this interpreter into
    ``folder``, without ``__pycache__`` and compiled extensions; returns what was copied."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "csrc", "tests")
    copied = []
    for name in names:
        mod = importlib.import_module(name)
        src = Path(mod.__file__).parent  # type: ignore[arg-type]
        shutil.copytree(src, folder / src.name, ignore=skip, dirs_exist_ok=True)
        copied.append(name)
        for dist in src.parent.glob("*.dist-info"):
            top = dist / "top_level.txt"
            tops = top.read_text().split() if top.is_file() else []
            if name in tops or dist.name.lower().startswith(name.lower().replace("_", "-") + "-") \
                    or dist.name.lower().startswith(name.lower() + "-"):
                shutil.copytree(dist, folder / dist.name, dirs_exist_ok=True)
    return copied


# -- environment ----------------------------------------------------------------------------------
def env_lines(device: str) -> list[str]:
    """Versions and the accelerator, one ``env`` line each."""
    import platform

    import torch

    lines = [f"env python {platform.python_version()}, torch {torch.__version__}, "
             f"CUDA {torch.version.cuda or 'none'}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"env GPU {i}: {p.name}, {p.total_memory / (1 << 30):.1f} GiB")
    else:
        lines.append("env GPU: none (torch sees no CUDA device)")
    try:
        from importlib.metadata import version

        sam2_version = version("sam2")
    except Exception:  # no dist-info in a copied folder
        sam2_version = "unknown"
    try:
        from sam2 import _C  # noqa: F401

        ext = "built"
    except ImportError:
        ext = "not built (hole filling skipped, as the official predictor does)"
    import sam2

    lines.append(f"env sam2 {sam2_version} at {Path(sam2.__file__).parent}, CUDA extension {ext}")
    lines.append(f"env compute device {device}")
    return lines


# -- the feature checks ---------------------------------------------------------------------------
def random_checkpoint(model: str, image_size: int, folder: Path) -> Path:
    """A random-weight checkpoint (torch seed 0) of registry model ``model``, as the tests make."""
    import torch

    from annosim.models.sam2_checkpoints import build_video_predictor, get_variant

    torch.manual_seed(0)
    predictor = build_video_predictor(get_variant(model).config, image_size)
    path = folder / f"{model}-random.pt"
    torch.save({"model": predictor.state_dict()}, path)
    return path


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fresh_features(model: Any, frames: Any, z: int) -> dict[str, list[Any]]:
    """``forward_image`` of slice ``z``'s frame, outside the cache, under the model's autocast."""
    import torch

    image = frames.tensor(z).to(model.device).float().unsqueeze(0)
    with torch.inference_mode(), model._autocast():
        out = model.predictor.forward_image(image)
    return {"backbone_fpn": list(out["backbone_fpn"]), "vision_pos_enc": list(out["vision_pos_enc"])}


def _diff(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> str | None:
    """Where two ``backbone_out`` dicts differ (``None``: bitwise equal, same dtypes)."""
    import torch

    for key in ("backbone_fpn", "vision_pos_enc"):
        if len(a[key]) != len(b[key]):
            return f"{key}: {len(a[key])} vs {len(b[key])} levels"
        for i, (x, y) in enumerate(zip(a[key], b[key])):
            if x.dtype != y.dtype or x.shape != y.shape:
                return f"{key}[{i}]: {x.dtype} {tuple(x.shape)} vs {y.dtype} {tuple(y.shape)}"
            if not torch.equal(x, y):
                n = int((x != y).sum())
                return f"{key}[{i}]: {n} of {x.numel()} values differ"
    return None


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "").replace("bfloat16", "bf16").replace("float32", "f32")


def feature_checks(model_name: str, checkpoint: Path, case: Any, args: argparse.Namespace,
                   cache_device: str) -> tuple[list[Check], list[str]]:
    """The ``features`` and ``dtypes`` checks and the ``timing`` lines of one model and cache device."""
    import numpy as np
    import torch

    from annosim.memory import sam2_encoding_bytes, sam2_itemsizes, sam2_slice_bytes
    from annosim.models.sam2_frames import SliceFrames, hu_to_uint8
    from annosim.models.sam2_model import SAM2Model

    model = SAM2Model(model_name, checkpoint=str(checkpoint), image_size=str(args.image_size),
                      device=args.device, cache_device=cache_device)
    tag = f"{model_name} cache_device={cache_device}"
    model.set_volume(case.image, case.spacing)
    cache = model._cache
    frames = SliceFrames(hu_to_uint8(case.image, model.options.window), model.image_size, "raw")
    n = case.image.shape[0]
    zs = sorted({int(z) for z in np.linspace(0, n - 1, min(args.slices, n))})
    checks: list[Check] = []
    bad = []
    enc_s = 0.0
    for z in zs:
        first = cache.get(z)  # encodes, stores, loads
        hit = cache.get(z)  # loads what is stored
        _sync(model.device)
        t0 = time.perf_counter()
        fresh = fresh_features(model, frames, z)
        _sync(model.device)
        enc_s += time.perf_counter() - t0
        for what, got in (("first use", first), ("cache hit", hit)):
            why = _diff(got, fresh)
            if why:
                bad.append(f"slice {z} {what}: {why}")
    checks.append(Check("features", not bad, f"{tag}: slices {zs} "
                        + ("bitwise equal to a fresh forward_image (first use and cache hit)"
                           if not bad else "; ".join(bad))))

    # dtypes and bytes against annosim/memory.py
    sizes = sam2_itemsizes(model.device.type, cache_bfloat16=model.cache_dtype is not None)
    stored = cache.stored(zs[0])
    got_sizes = tuple(t.element_size() for t in stored)
    want_slice = sam2_slice_bytes(model.image_size, sizes)
    want_enc = sam2_encoding_bytes(model.image_size, sizes)
    devices = {str(t.device) for t in stored}
    want_device = str(torch.device(cache_device)) if torch.device(cache_device).type == "cpu" else None
    problems = []
    if got_sizes != tuple(sizes.features):
        problems.append(f"bytes a value {got_sizes} vs memory.py {tuple(sizes.features)}")
    if cache.slice_nbytes != want_slice:
        problems.append(f"slice {cache.slice_nbytes} B vs memory.py {want_slice} B")
    if cache.encoding_nbytes != want_enc:
        problems.append(f"encodings {cache.encoding_nbytes} B vs memory.py {want_enc} B")
    if want_device is not None and devices != {want_device}:
        problems.append(f"stored on {sorted(devices)}, expected {want_device}")
    pinned = all(t.is_pinned() for t in stored) if cache.pin else None
    if cache.pin and not pinned:
        problems.append("host-stored levels are not pinned")
    detail = (f"{tag}: levels {','.join(_dtype_name(t.dtype) for t in stored)} on {','.join(sorted(devices))}"
              f"{', pinned' if pinned else ''}; {cache.slice_nbytes / _MIB:.2f} MiB a slice "
              f"(memory.py {want_slice / _MIB:.2f}), encodings {cache.encoding_nbytes / _MIB:.2f} MiB "
              f"(memory.py {want_enc / _MIB:.2f})")
    checks.append(Check("dtypes", not problems, detail + ("; " + "; ".join(problems) if problems else "")))

    # cache-hit time vs a fresh encode (the fresh encodes timed above; the first use was a warm-up)
    reps = 20
    _sync(model.device)
    t0 = time.perf_counter()
    for i in range(reps):
        cache.get(zs[i % len(zs)])
    _sync(model.device)
    hit_ms = (time.perf_counter() - t0) / reps * 1e3
    enc_ms = enc_s / len(zs) * 1e3
    timing = [f"timing {tag}: cache hit {hit_ms:.2f} ms, fresh forward_image {enc_ms:.2f} ms "
              f"({enc_ms / max(hit_ms, 1e-9):.0f}x)"]
    del model, cache
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return checks, timing


# -- benchmark ------------------------------------------------------------------------------------
IDENTICAL = re.compile(r"masks identical in (\d+)/(\d+) rounds")


def benchmark_check(model_name: str, checkpoint: Path | None, args: argparse.Namespace,
                    labels: str) -> tuple[Check, list[str]]:
    """Run ``benchmarks/sam2_cache.py`` in a child interpreter; pass when N/N rounds are identical."""
    cmd = [sys.executable, *(["-S"] if sys.flags.no_site else []),
           str(ROOT / "benchmarks" / "sam2_cache.py"), "--model", model_name,
           "--device", args.device, "--image-size", str(args.image_size), "--image", args.image,
           "--label-map", args.label_map, "--labels", labels, "--rounds", str(args.rounds)]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (args.deps, str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = [f"  {line}" for line in proc.stdout.splitlines()]
    m = IDENTICAL.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("benchmark", False, f"{model_name}: sam2_cache.py exit {proc.returncode}: {tail}"), out
    same, total = int(m.group(1)), int(m.group(2))
    ok = total > 0 and same == total
    return Check("benchmark", ok, f"{model_name}: masks identical in {same}/{total} rounds"), out


def _first_label(label_map: str) -> str:
    import nibabel as nib
    import numpy as np

    values = np.unique(np.asarray(nib.load(label_map).dataobj))
    return str(int(values[values > 0][0]))


# -- main -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """All checks; prints them and returns the exit status (0: all passed)."""
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA device (use --smoke on a CPU)", file=sys.stderr)
        return 2
    import warnings

    warnings.simplefilter("ignore")  # the official predictor warns per frame without sam2._C
    from annosim.data.layouts import open_dataset

    for line in env_lines(args.device):
        print(line, flush=True)
    case = open_dataset(f"{args.image} {args.label_map}").cases[0].load()
    print(f"case {Path(args.image).name}: {'x'.join(map(str, case.image.shape))} (Z, Y, X); "
          f"image size {args.image_size}", flush=True)
    labels = args.labels or (_first_label(args.label_map) if args.smoke else "2,3,52")
    checks: list[Check] = []
    cache_devices = [args.device] if torch.device(args.device).type == "cpu" else [args.device, "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        for short in args.models:
            name = MODELS[short]
            from annosim.models.sam2_checkpoints import get_variant

            official = Path(args.checkpoint_dir or "") / get_variant(name).filename
            ckpt = official if args.checkpoint_dir and official.is_file() else None
            weights = str(ckpt) if ckpt else "random weights (seed 0)"
            print(f"model {name}: {weights}", flush=True)
            use = ckpt or random_checkpoint(name, args.image_size, Path(tmp))
            for cache_device in cache_devices:
                found, timing = feature_checks(name, use, case, args, cache_device)
                for c in found:
                    print(c.line(), flush=True)
                for line in timing:
                    print(line, flush=True)
                checks += found
            if not args.no_benchmark:
                check, out = benchmark_check(name, ckpt, args, labels)
                print("\n".join(out), flush=True)
                print(check.line(), flush=True)
                checks.append(check)
    passed = sum(c.ok for c in checks)
    print(f"gpu check: {passed}/{len(checks)} checks passed")
    return 0 if checks and passed == len(checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    if args.make_deps:
        copied = make_deps(Path(args.make_deps))
        size = sum(f.stat().st_size for f in Path(args.make_deps).rglob("*") if f.is_file())
        print(f"gpu_check: copied {', '.join(copied)} into {args.make_deps} ({size / _MIB:.1f} MiB)")
        return 0
    if args.deps:
        sys.path.insert(0, str(Path(args.deps).resolve()))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
