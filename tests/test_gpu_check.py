"""benchmarks/gpu_check.sh (issue 17): its smoke mode runs every check on the CPU at 256 px with a
random-weight Hiera-tiny, from a dependency folder made by ``--make-deps``; a broken equality is
reported as FAIL with a non-zero exit; usage mistakes exit 2 in one line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sam2")

from conftest import write_synthetic_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, Path]:
    """6 slices of 32 x 32; label 1 on slices 2-3 (conftest.write_synthetic_case)."""
    return write_synthetic_case(tmp_path_factory.mktemp("gpucheck"), "syn", slices=6)


def test_smoke_mode_passes_every_check_from_a_deps_folder(case, tmp_path: Path):
    deps = tmp_path / "deps"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    made = subprocess.run([str(SCRIPT), "--make-deps", str(deps)], capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr
    assert {"sam2", "hydra", "omegaconf", "antlr4", "iopath", "nibabel"} <= {p.name for p in deps.iterdir()}
    assert not list(deps.rglob("*.so")) and not list(deps.rglob("__pycache__"))
    image, labels = case
    proc = subprocess.run(
        [str(SCRIPT), "--smoke", "--deps", str(deps), "--image", str(image), "--label-map", str(labels)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = out.splitlines()
    assert any(line.startswith("env sam2 1.1.0 at ") and str(deps) in line for line in lines)
    assert "case syn_ct.nii.gz: 6x32x32 (Z, Y, X); image size 256" in lines
    assert ("PASS features: sam2.1-hiera-tiny cache_device=cpu: slices [0, 5] bitwise equal to a "
            "fresh forward_image (first use and cache hit)") in lines
    # memory.py on the CPU at S = 256, float32: 32*64^2*4 + 64*32^2*4 + 256*16^2*4 = 1048576 B
    # a slice; encodings 256*(64^2 + 32^2 + 16^2)*4 = 5505024 B = 5.25 MiB
    assert ("PASS dtypes: sam2.1-hiera-tiny cache_device=cpu: levels f32,f32,f32 on cpu; 1.00 MiB a "
            "slice (memory.py 1.00), encodings 5.25 MiB (memory.py 5.25)") in lines
    assert any(line.startswith("timing sam2.1-hiera-tiny cache_device=cpu: cache hit ") for line in lines)
    assert "  masks identical in 2/2 rounds" in lines  # 1 round x (full, fg-only) of label 1
    assert "PASS benchmark: sam2.1-hiera-tiny: masks identical in 2/2 rounds" in lines
    assert lines[-1] == "gpu check: 3/3 checks passed"


def test_a_broken_equality_is_a_failure(case, monkeypatch, capsys):
    """Cached features one ulp off a fresh forward_image: FAIL features, exit 1."""
    import torch

    from annosim.models.sam2_features import FeatureCache

    original = FeatureCache._load

    def off_by_one_ulp(self, z):
        levels = original(self, z)
        levels[0] = levels[0].clone()
        levels[0].view(-1)[0] = torch.nextafter(levels[0].view(-1)[0], torch.tensor(float("inf")))
        return levels

    monkeypatch.setattr(FeatureCache, "_load", off_by_one_ulp)
    image, labels = case
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rc = _module().main(["--smoke", "--no-benchmark", "--slices", "1", "--image", str(image),
                         "--label-map", str(labels)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 1
    fail = [line for line in lines if line.startswith("FAIL features: ")]
    assert fail and "slice 0 first use: backbone_fpn[0]: 1 of " in fail[0]
    assert "PASS dtypes: " in "\n".join(lines)
    assert lines[-1] == "gpu check: 1/2 checks passed"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--deps", "/no/such/deps"], "gpu_check: --deps /no/such/deps: no such folder (build one with --make-deps DIR)"),
        (["--models", "huge"], "gpu_check: --models: unknown huge (use tiny, large)"),
        (["--image", "/no/ct.nii.gz"], "gpu_check: --image /no/ct.nii.gz: no such file"),
    ],
)
def test_usage_mistakes_exit_2_in_one_line(argv, message, capsys):
    assert _module().main(["--smoke", *argv]) == 2
    err = capsys.readouterr().err
    assert err.strip() == message
