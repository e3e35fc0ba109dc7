"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The sample CT folder ../shared/data (never copied into the repo); skips the test if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: sample CT needed for this test")
    return SHARED_DATA


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance on 2 CPUs for a module's tests (skips when ray is not installed)."""
    import logging

    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'annosim[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch code on one intra-op thread (restored afterwards)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_synthetic_case(folder: Path, name: str, slices: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """A small CT-like NIfTI case (``slices`` x 32 x 32 voxels, 1.5 x 1 x 1 mm, RAS): soft tissue
    (40 HU) around two bright objects, label 1 (a 200 HU box on slices 2..slices-3) and label 2
    (a 120 HU box on slices 1..3); returns (image, label) paths."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.full((32, 32, slices), 40.0, np.float32) + rng.normal(0, 5, (32, 32, slices)).astype(np.float32)
    img[:4], img[-4:] = -1000.0, -1000.0
    lab = np.zeros((32, 32, slices), np.uint8)
    lab[8:20, 8:18, 2:slices - 2] = 1
    lab[22:28, 20:28, 1:4] = 2
    img[lab == 1] += 160.0
    img[lab == 2] += 80.0
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    image, label = folder / f"{name}_ct.nii.gz", folder / f"{name}_seg.nii.gz"
    nib.save(nib.Nifti1Image(img, affine), image)
    nib.save(nib.Nifti1Image(lab, affine), label)
    return image, label


@pytest.fixture(scope="session")
def synthetic_manifest(tmp_path_factory) -> Path:
    """cases.csv of four synthetic cases ``syn6`` .. ``syn9`` (6 to 9 slices) with absolute
    paths: written by the tests, so suites run where ../shared is absent."""
    root = tmp_path_factory.mktemp("synthetic")
    lines = ["image,label,case"]
    for i, n in enumerate((6, 7, 8, 9)):
        image, label = write_synthetic_case(root, f"syn{n}", n, seed=i)
        lines.append(f"{image},{label},syn{n}")
    path = root / "cases.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (skips only if that fails)."""
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if exe:
        return exe
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is missing and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=True, capture_output=True,
                       timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"chromium missing and `apt-get install -y chromium` failed: {exc} "
                    f"{detail.decode(errors='replace')[-300:]}")
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("`apt-get install -y chromium` ran but no chromium executable was found")
    return exe
