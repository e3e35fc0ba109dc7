"""Scale-out: ``--workers 2`` and ``--executor ray`` give the rows of a sequential run; a killed Ray
worker is retried; a case over ``--case-timeout`` is stopped and recorded; option refusals; the
memory estimate (formulas by hand) and its refusal line.

Data: a CSV manifest of three real cases from ../shared/data — totalseg-abdomen reduced to three
labels (spleen, kidney_right, aorta; written to tmp) and the two ibsi-sts tumours — run in the
``fg-only`` setting with the plugin model ``tests/plugin_models.py:ThresholdGrow``: 5 units.
Rows of a parallel run are compared with the sequential ones sorted, timing columns excluded.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annosim.cli import main
from annosim.config import make_spec, validate
from annosim.executors import CaseWorker, accepts_device, make_executor, InProcess, ProcessPool
from annosim.memory import (
    MASK_COPIES,
    available_host_memory,
    default_model_bytes,
    estimate_case,
    memory_refusal,
    peek_image,
    refusal,
)
from annosim.results import read_jsonl
from results_helpers import PLUGIN, manifest_run_args, rows_without_timing

TESTS = Path(__file__).resolve().parent

PLUGIN_EXTRA = f'''
import os, sys, time
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from plugin_models import ThresholdGrow


class Recording(ThresholdGrow):
    """ThresholdGrow that leaves a file "<pid>-<slices>" in pid_dir when a case starts and sleeps
    `slow` seconds there for volumes of `slow_slices` slices."""

    def __init__(self, pid_dir="", slow_slices=-1, slow=0, **kwargs):
        super().__init__(**kwargs)
        self.pid_dir, self.slow_slices, self.slow = pid_dir, int(slow_slices), float(slow)

    def set_volume(self, volume, spacing):
        super().set_volume(volume, spacing)
        if self.pid_dir:
            Path(self.pid_dir, f"{{os.getpid()}}-{{volume.shape[0]}}").touch()
        if volume.shape[0] == self.slow_slices:
            time.sleep(self.slow)


class WithDevice(ThresholdGrow):
    """Takes a `device` argument and keeps it."""

    def __init__(self, device="none", **kwargs):
        super().__init__(**kwargs)
        self.device = device


class DiesOnLoad(ThresholdGrow):
    """Its process is killed while the model loads."""

    def __init__(self, **kwargs):
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


class Huge(ThresholdGrow):
    """Says it needs 2**60 bytes (1 EiB) for any case."""

    def estimate_memory(self, shape):
        return 2**60
'''


def write_plugin(folder: Path) -> Path:
    path = folder / "extra_models.py"
    path.write_text(PLUGIN_EXTRA)
    return path


def build_manifest(shared_data: Path, root: Path) -> Path:
    """cases.csv: totalseg-abdomen with 3 labels kept, STS_002, STS_019 (absolute paths)."""
    root.mkdir(parents=True, exist_ok=True)
    ts = shared_data / "totalseg-abdomen"
    seg = nib.load(ts / "seg.nii.gz")
    data = np.asarray(seg.dataobj)
    kept = np.where(np.isin(data, [1, 2, 52]), data, 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(kept, seg.affine, seg.header), root / "seg3.nii.gz")
    (root / "labels.json").write_text((ts / "labels.json").read_text())
    lines = ["image,label,case", f"{ts / 'ct.nii.gz'},{root / 'seg3.nii.gz'},abdomen"]
    for c in ("STS_002", "STS_019"):
        d = shared_data / "ibsi-sts" / c
        lines.append(f"{d / 'CT_image.nii.gz'},{d / 'CT_mask.nii.gz'},{c}")
    path = root / "cases.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def sorted_prompts(out: Path) -> list[str]:
    return sorted((out / "prompts.jsonl").read_text().splitlines())


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    return build_manifest(shared_data, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def sequential(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "run"
    assert main(manifest_run_args(manifest, out)) == 0
    return out


# ---------------------------------------------------------------------------------------------
def test_reference_has_every_unit(sequential):
    units = {(r[0], r[1]) for r in rows_without_timing(sequential, sort=True)}
    assert units == {("abdomen", "1"), ("abdomen", "2"), ("abdomen", "52"), ("STS_002", "1"), ("STS_019", "1")}


def test_two_workers_give_the_sequential_rows(manifest, sequential, tmp_path):
    out = tmp_path / "workers"
    assert main(manifest_run_args(manifest, out, "--workers", "2")) == 0
    assert rows_without_timing(out, sort=True) == rows_without_timing(sequential, sort=True)
    assert sorted_prompts(out) == sorted_prompts(sequential)
    assert len(read_jsonl(out / "units.jsonl")) == 5
    assert (out / "errors.jsonl").read_text() == ""
    assert json.loads((out / "run.json").read_text())["execution"]["workers"] == 2


def test_ray_gives_the_sequential_rows(ray_session, manifest, sequential, tmp_path):
    out = tmp_path / "ray"
    assert main(manifest_run_args(manifest, out, "--executor", "ray")) == 0
    assert rows_without_timing(out, sort=True) == rows_without_timing(sequential, sort=True)
    assert sorted_prompts(out) == sorted_prompts(sequential)
    assert json.loads((out / "run.json").read_text())["execution"]["executor"] == "ray"


def test_a_ray_folder_resumes_locally(ray_session, manifest, tmp_path, capsys):
    out = tmp_path / "ray-then-local"
    assert main(manifest_run_args(manifest, out, "--executor", "ray", "--limit", "1", "--labels", "2")) == 0
    capsys.readouterr()
    # where cases ran is not part of the configuration: the same command run locally resumes
    assert main(manifest_run_args(manifest, out, "--limit", "1", "--labels", "2")) == 0
    assert "0 units written, 1 resumed" in capsys.readouterr().out


def test_ray_worker_killed_mid_case_is_retried(ray_session, manifest, sequential, tmp_path, capsys):
    pids = tmp_path / "pids"
    pids.mkdir()
    plugin = write_plugin(tmp_path)
    out = tmp_path / "ray-killed"
    args = manifest_run_args(manifest, out, "--executor", "ray", "--retries", "1", "--model-arg", f"pid_dir={pids}",
                    "--model-arg", "delay=0.2", model=f"{plugin}:Recording")
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(code=main(args)))
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not any(pids.iterdir()):
        time.sleep(0.02)
    victim = int(next(pids.iterdir()).name.split("-")[0])
    os.kill(victim, signal.SIGKILL)  # a Ray worker process, in the middle of its first case
    thread.join(timeout=300)
    assert result["code"] == 0
    assert rows_without_timing(out, sort=True) == rows_without_timing(sequential, sort=True)
    assert (out / "errors.jsonl").read_text() == ""
    err = capsys.readouterr().err
    assert f"(pid {victim}) died (ActorDiedError); retrying (1/1)" in err


def test_case_over_the_timeout_is_stopped_and_recorded(manifest, sequential, tmp_path, capsys):
    plugin = write_plugin(tmp_path)
    out = tmp_path / "timeout"
    # STS_019 has 47 slices: its worker sleeps 600 s in set_volume and is stopped after 10 s
    code = main(manifest_run_args(manifest, out, "--case-timeout", "10", "--model-arg", "slow_slices=47",
                         "--model-arg", "slow=600", model=f"{plugin}:Recording"))
    assert code == 1
    errors = read_jsonl(out / "errors.jsonl")
    assert [(e["case"], e["stage"]) for e in errors] == [("STS_019", "timeout")]
    assert "STS_019/CT_image.nii.gz" in errors[0]["error"] and "--case-timeout of 10 s" in errors[0]["error"]
    assert rows_without_timing(out, sort=True) == [r for r in rows_without_timing(sequential, sort=True) if r[0] != "STS_019"]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--executor", "ray", "--devices", "cuda:0"], "--devices is for --executor local"),
        (["--address", "ray://x:10001"], "--address is for --executor ray"),
        (["--gpus-per-case", "1"], "--gpus-per-case is a Ray resource"),
        (["--devices", "cpu", "--model-arg", "device=cpu"], "either with --devices or with --model-arg"),
    ],
)
def test_inconsistent_options_are_refused(manifest, tmp_path, capsys, extra, message):
    out = tmp_path / "refused"
    assert main(manifest_run_args(manifest, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert not out.exists()


def test_workers_that_cannot_load_the_model_stop_the_run_before_the_folder(manifest, tmp_path, capsys):
    out = tmp_path / "bad-arg"
    assert main(manifest_run_args(manifest, out, "--workers", "2", "--model-arg", "bogus=1")) == 2
    err = capsys.readouterr().err
    assert "could not load the model" in err and "bogus" in err and "Traceback" not in err
    assert not out.exists()


def test_device_goes_to_the_model_or_to_cuda_visible_devices(tmp_path, monkeypatch):
    plugin = write_plugin(tmp_path)
    worker = CaseWorker(make_spec("", tmp_path, model=f"{plugin}:WithDevice"), device="cuda:1")
    assert worker.model.device == "cuda:1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unset")  # restored after the test
    worker = CaseWorker(make_spec("", tmp_path, model=PLUGIN), device="cuda:3")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and not hasattr(worker.model, "device")


def test_accepts_device():
    class Named:
        def __init__(self, tolerance=1, device=None): ...

    class Keywords:
        def __init__(self, **kwargs): ...

    class Neither:
        def __init__(self, tolerance=1): ...

    assert accepts_device(Named) and accepts_device(Keywords) and not accepts_device(Neither)


def test_executor_choice(tmp_path):
    assert isinstance(make_executor(validate(make_spec("", tmp_path)), 10), InProcess)
    assert isinstance(make_executor(validate(make_spec("", tmp_path, case_timeout=5.0)), 10), ProcessPool)
    pool = make_executor(validate(make_spec("", tmp_path, devices=("cuda:0", "cuda:1"), workers=3)), 10)
    assert [s.device for s in pool.slots] == ["cuda:0", "cuda:1", "cuda:0"]
    assert len(make_executor(validate(make_spec("", tmp_path, workers=8)), 2).slots) == 2  # no idle workers


def test_worker_killed_while_loading_is_a_one_line_refusal(manifest, tmp_path, capsys):
    plugin = write_plugin(tmp_path)
    out = tmp_path / "dies"
    assert main(manifest_run_args(manifest, out, "--workers", "2", model=f"{plugin}:DiesOnLoad")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("annosim: error: a worker (pid ") and err.count("\n") == 0
    assert err.endswith("could not load the model: the process was killed by SIGKILL")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# memory estimate
class _Sized:
    def estimate_memory(self, shape):
        return 12345


def test_estimate_parts_by_hand():
    est = estimate_case((10, 20, 30), _Sized(), image_itemsize=2, label_itemsize=1, kept_predictions=8)
    n = 6000
    assert (est.volume, est.labels, est.masks, est.model) == (n * 10, n, n * (MASK_COPIES + 8), 12345)
    assert est.host == est.total == n * 10 + n + n * 12 + 12345 and not est.on_accelerator
    loaded = estimate_case((10, 20, 30), object(), loaded=True)
    assert (loaded.volume, loaded.labels, loaded.model) == (0, 0, default_model_bytes((10, 20, 30)))
    assert default_model_bytes((10, 20, 30)) == 2 * 4 * n


# The SAM2 formula and the adapter's estimate by hand: tests/test_gpu_path.py (issue 17 item 5).


def test_meminfo_parsing(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16000 kB\nMemFree:         100 kB\nMemAvailable:    2048 kB\n")
    assert available_host_memory(info) == 2048 * 1024
    assert available_host_memory("/proc/meminfo") > 0


def test_refusal_line():
    est = estimate_case((100, 512, 512), _Sized())
    assert refusal(est, host_available=None) is None  # nothing known: no refusal
    assert refusal(est, host_available=est.host) is None
    # n = 26_214_400 voxels: volume 12n (float32 stored + 2 float32 copies), labels n, masks 4n
    assert est.host == 17 * 26_214_400 + 12345
    why = memory_refusal("ct.nii.gz", est, _Sized(), host_available=est.host - 1)
    assert why == (
        "ct.nii.gz: needs about 0.42 GiB of host memory (volume 0.29 GiB, labels 0.02 GiB, masks 0.10 GiB, "
        "model 0.00 GiB) but 0.42 GiB is available; not run; free memory or run fewer --workers "
        "(each worker holds one case)"
    )
    gpu = estimate_case((100, 512, 512), type("M", (), {"cache_device": "cuda:0", "estimate_memory":
                                                          lambda self, s: 3 << 30})())
    why = refusal(gpu, host_available=1 << 40, device_available=1 << 30, hint="h")
    assert why == "the model needs about 3.00 GiB on cuda:0 but 1.00 GiB is free there; not run; h"


def test_peek_reads_the_header_only(shared_data):
    shape, itemsize = peek_image(shared_data / "totalseg-abdomen" / "ct.nii.gz")
    assert shape == (122, 101, 30) and itemsize == 2  # int16 HU, README: 122 x 101 x 30
    assert peek_image(shared_data / "dcmqi-ct-3slice" / "ct") is None  # DICOM folder: unknown


def test_case_over_the_memory_estimate_is_one_line(manifest, tmp_path, capsys):
    plugin = write_plugin(tmp_path)
    out = tmp_path / "huge"
    code = main(manifest_run_args(manifest, out, "--labels", "1", "--limit", "1", model=f"{plugin}:Huge"))
    assert code == 1
    errors = read_jsonl(out / "errors.jsonl")
    assert len(errors) == 1 and errors[0]["stage"] == "memory" and errors[0]["case"] == "abdomen"
    # 2**60 bytes for the model plus 15 bytes a voxel (int16 stored + 2 float32 copies, uint8 labels,
    # 4 masks) x 122 x 101 x 30 voxels = 5_544_900 bytes
    assert errors[0]["error"].endswith(
        "totalseg-abdomen/ct.nii.gz: needs about 1073741824.01 GiB of host memory (volume 0.00 GiB, labels 0.00 GiB, "
        f"masks 0.00 GiB, model 1073741824.00 GiB) but {errors[0]['error'].split(' but ')[1].split(' GiB')[0]} GiB "
        "is available; not run; free memory or run fewer --workers (each worker holds one case)"
    )
    assert "Traceback" not in capsys.readouterr().err
    # --no-memory-check runs it anyway
    out2 = tmp_path / "huge-unchecked"
    assert main(manifest_run_args(manifest, out2, "--labels", "1", "--limit", "1", "--no-memory-check",
                         model=f"{plugin}:Huge")) == 0
    assert [r[0] for r in rows_without_timing(out2, sort=True)][:1] == ["abdomen"]
