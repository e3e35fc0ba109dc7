"""``kill -9`` at any moment loses at most the units in flight, and rerunning the same command
gives exactly the rows of an uninterrupted run.

- The driver is SIGKILLed (run as ``python -m annosim``) before any unit, right after a unit is
  written and in the middle of a unit; torn lines are then appended as a crash mid-write leaves
  them. Under ``--workers 2`` its workers die with it.
- Every crash state of the append sequence (prompts, rows, journal line of a unit, each torn at
  several bytes) is rebuilt from a finished folder and reopened: exactly the committed units stay.
- A worker process is SIGKILLed under ``--workers 2``: the other cases complete, the lost one is one
  ``worker`` line in errors.jsonl, and a rerun completes it.

The kill moments are placed by polling the results folder (no test hooks in annosim); the plugin
model's ``delay`` (seconds a propagation) makes units last long enough to land in between.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annosim.cli import main
from annosim.results import ResultsFolder, read_jsonl
from annosim.schema import IDENTITY_KEYS, UnitKey
from results_helpers import PLUGIN, manifest_run_args, rows_without_timing

TESTS = Path(__file__).resolve().parent

RECORDING = f'''
import os, sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from plugin_models import ThresholdGrow


class Recording(ThresholdGrow):
    """ThresholdGrow that leaves a file "<pid>-<slices>" in pid_dir when a case starts."""

    def __init__(self, pid_dir="", **kwargs):
        super().__init__(**kwargs)
        self.pid_dir = pid_dir

    def set_volume(self, volume, spacing):
        super().set_volume(volume, spacing)
        Path(self.pid_dir, f"{{os.getpid()}}-{{volume.shape[0]}}").touch()
'''


def one_case_args(shared_data: Path, out: Path, *extra: str) -> list[str]:
    d = shared_data / "totalseg-abdomen"
    return ["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", PLUGIN,
            "--labels", "spleen,aorta", "--out", str(out), "--quiet", *extra]


def journal_lines(out: Path) -> int:
    path = out / "units.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "annosim", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(TESTS.parent)})


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.fixture(scope="module")
def one_case_reference(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref1") / "run"
    assert main(one_case_args(shared_data, out)) == 0
    assert journal_lines(out) == 4  # spleen, aorta x full, fg-only
    return out


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    """totalseg-abdomen reduced to spleen, kidney_right, aorta; STS_002; STS_019 (5 fg-only units)."""
    root = tmp_path_factory.mktemp("data")
    ts = shared_data / "totalseg-abdomen"
    seg = nib.load(ts / "seg.nii.gz")
    data = np.asarray(seg.dataobj)
    nib.save(nib.Nifti1Image(np.where(np.isin(data, [1, 2, 52]), data, 0).astype(np.uint8), seg.affine, seg.header),
             root / "seg3.nii.gz")
    (root / "labels.json").write_text((ts / "labels.json").read_text())
    lines = ["image,label,case", f"{ts / 'ct.nii.gz'},{root / 'seg3.nii.gz'},abdomen"]
    for c in ("STS_002", "STS_019"):
        d = shared_data / "ibsi-sts" / c
        lines.append(f"{d / 'CT_image.nii.gz'},{d / 'CT_mask.nii.gz'},{c}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"


@pytest.fixture(scope="module")
def manifest_reference(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref3") / "run"
    assert main(manifest_run_args(manifest, out)) == 0
    return out


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("moment", ["before-any-unit", "right-after-a-unit", "during-a-unit"])
def test_driver_killed_then_rerun_equals_uninterrupted(shared_data, one_case_reference, tmp_path, moment):
    out = tmp_path / "killed"
    args = one_case_args(shared_data, out, "--model-arg", "delay=0.05")  # >= 0.4 s a unit
    proc = spawn(args)
    if moment == "before-any-unit":
        wait_for(lambda: (out / "run.json").exists() and (out / "errors.jsonl").exists(), "the folder")
    elif moment == "right-after-a-unit":
        wait_for(lambda: journal_lines(out) >= 1, "the first unit")
    else:
        wait_for(lambda: journal_lines(out) >= 2, "the second unit")
        time.sleep(0.2)  # half way through the third unit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = journal_lines(out)
    expected = {"before-any-unit": (0, 0), "right-after-a-unit": (1, 3), "during-a-unit": (2, 3)}[moment]
    assert expected[0] <= done <= expected[1], f"killed at the wrong moment ({done} units)"
    if moment != "before-any-unit":
        # a crash while writing the next unit leaves torn lines behind: prompts, rows, journal
        with open(out / "prompts.jsonl", "a") as fh:
            fh.write('{"case": "ct", "label": 52, "setting": "fu')
        with open(out / "rounds.csv", "a") as fh:
            fh.write("ct,52,aorta,full,he2024,1,1,5,0.12")
        with open(out / "units.jsonl", "a") as fh:
            fh.write('{"case": "ct", "label": 52, "sett')
    assert main(args) == 0  # the same command resumes
    assert rows_without_timing(out) == rows_without_timing(one_case_reference)
    assert (out / "prompts.jsonl").read_bytes() == (one_case_reference / "prompts.jsonl").read_bytes()
    assert journal_lines(out) == 4 and (out / "units.jsonl").read_bytes().endswith(b"\n")


def _chunks(lines: list[bytes], counts: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in counts:
        out.append(b"".join(lines[pos : pos + n]))
        pos += n
    return out


def test_every_torn_write_reopens_to_the_committed_units(one_case_reference, tmp_path):
    ref = one_case_reference
    units = read_jsonl(ref / "units.jsonl")
    journal = (ref / "units.jsonl").read_bytes().splitlines(keepends=True)
    header, *row_lines = (ref / "rounds.csv").read_bytes().splitlines(keepends=True)
    prompt_chunks = _chunks((ref / "prompts.jsonl").read_bytes().splitlines(keepends=True), [u["prompts"] for u in units])
    row_chunks = _chunks(row_lines, [u["rows"] for u in units])
    run = json.loads((ref / "run.json").read_text())
    identity = {k: run[k] for k in IDENTITY_KEYS}
    states = 0
    for k in range(len(units)):
        for part in ("prompts", "rows", "journal"):
            for frac in (0.0, 0.01, 0.5, 0.99):
                folder = tmp_path / f"u{k}-{part}-{frac}"
                folder.mkdir()
                (folder / "run.json").write_bytes((ref / "run.json").read_bytes())
                prompts = b"".join(prompt_chunks[:k])
                rows_ = header + b"".join(row_chunks[:k])
                log = b"".join(journal[:k])
                cut = lambda b: b[: int(len(b) * frac)]  # noqa: E731
                if part == "prompts":
                    prompts += cut(prompt_chunks[k])
                elif part == "rows":
                    prompts, rows_ = prompts + prompt_chunks[k], rows_ + cut(row_chunks[k])
                else:
                    prompts, rows_, log = prompts + prompt_chunks[k], rows_ + row_chunks[k], log + cut(journal[k])
                (folder / "prompts.jsonl").write_bytes(prompts)
                (folder / "rounds.csv").write_bytes(rows_)
                (folder / "units.jsonl").write_bytes(log)
                with ResultsFolder(folder).open(identity, {"started": "now"}) as store:
                    assert store.done_units == {
                        UnitKey(u["case"], u["label"], u["setting"], u["protocol"]) for u in units[:k]
                    }
                assert (folder / "prompts.jsonl").read_bytes() == b"".join(prompt_chunks[:k])
                assert (folder / "rounds.csv").read_bytes() == header + b"".join(row_chunks[:k])
                assert (folder / "units.jsonl").read_bytes() == b"".join(journal[:k])
                states += 1
    assert states == 4 * 3 * 4


# ---------------------------------------------------------------------------------------------
def test_driver_killed_under_two_workers_takes_them_down_and_resumes(manifest, manifest_reference, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    plugin = tmp_path / "recording.py"
    plugin.write_text(RECORDING)
    out = tmp_path / "killed"
    args = manifest_run_args(manifest, out, "--workers", "2", "--model-arg", f"pid_dir={pids}",
                         "--model-arg", "delay=0.05", model=f"{plugin}:Recording")
    proc = spawn(args)
    wait_for(lambda: journal_lines(out) >= 1, "the first unit")
    workers = {int(p.name.split("-")[0]) for p in pids.iterdir()}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal_lines(out) < 5, "the run ended before the kill"
    assert workers and all(pid != proc.pid for pid in workers)
    wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to die with the driver", timeout=10)
    with open(out / "rounds.csv", "a") as fh:
        fh.write("STS_0")  # torn row
    assert main(args) == 0
    assert sorted(rows_without_timing(out)) == sorted(rows_without_timing(manifest_reference))
    assert journal_lines(out) == 5


def test_worker_killed_loses_only_its_case_and_a_rerun_completes_it(manifest, manifest_reference, tmp_path, capsys):
    pids = tmp_path / "pids"
    pids.mkdir()
    plugin = tmp_path / "recording.py"
    plugin.write_text(RECORDING)
    out = tmp_path / "worker-killed"
    args = manifest_run_args(manifest, out, "--workers", "2", "--retries", "0", "--model-arg", f"pid_dir={pids}",
                         "--model-arg", "delay=0.05", model=f"{plugin}:Recording")
    proc = spawn(args)
    wait_for(lambda: any(pids.iterdir()), "a worker to start a case")
    victim = next(pids.iterdir())
    os.kill(int(victim.name.split("-")[0]), signal.SIGKILL)  # in the middle of its first case
    assert proc.wait(timeout=300) == 1
    errors = read_jsonl(out / "errors.jsonl")
    assert len(errors) == 1 and errors[0]["stage"] == "worker"
    lost = errors[0]["case"]
    slices = {"abdomen": 30, "STS_002": 48, "STS_019": 47}
    assert slices[lost] == int(victim.name.split("-")[1])  # the case the victim was running
    assert "was killed by SIGKILL; case not completed" in errors[0]["error"]
    reference = rows_without_timing(manifest_reference)
    assert sorted(r for r in rows_without_timing(out) if r[0] != lost) == sorted(r for r in reference if r[0] != lost)
    assert all(r in reference for r in rows_without_timing(out))  # units of the lost case finished before the kill are kept
    capsys.readouterr()
    assert main(args) == 0  # the rerun completes the lost case
    assert sorted(rows_without_timing(out)) == sorted(reference)
    assert "resumed" in capsys.readouterr().out


def test_worker_killed_is_retried_by_default(manifest, manifest_reference, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    plugin = tmp_path / "recording.py"
    plugin.write_text(RECORDING)
    out = tmp_path / "retried"
    args = manifest_run_args(manifest, out, "--workers", "2", "--model-arg", f"pid_dir={pids}",
                         "--model-arg", "delay=0.05", model=f"{plugin}:Recording")
    proc = spawn(args)
    wait_for(lambda: any(pids.iterdir()), "a worker to start a case")
    os.kill(int(next(pids.iterdir()).name.split("-")[0]), signal.SIGKILL)
    assert proc.wait(timeout=300) == 0
    assert sorted(rows_without_timing(out)) == sorted(rows_without_timing(manifest_reference))
    assert (out / "errors.jsonl").read_text() == ""
