"""Whole runs on the real CT in ../shared/data with a plugin model from the tests folder:
results folder contract, determinism, resume, refusal of other configurations, locking,
``kill -9`` in the middle, bad labels."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from annosim.cli import main
from annosim.results import ROUND_COLUMNS
from annosim.schema import LOCK
from results_helpers import PLUGIN, rows_without_timing

TESTS = Path(__file__).resolve().parent
LABELS = "spleen,kidney_right,aorta,liver"


def spec(shared_data: Path) -> str:
    d = shared_data / "totalseg-abdomen"
    return f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}"


def args(shared_data, out, *extra):
    return ["run", "--data", spec(shared_data), "--model", PLUGIN, "--labels", LABELS,
            "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def reference_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(args(shared_data, out)) == 0
    return out


def test_results_folder_contract(reference_run):
    out = reference_run
    with open(out / "rounds.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == ROUND_COLUMNS
        rows = list(reader)
    units = {(r["case"], r["label_name"], r["setting"]) for r in rows}
    assert len(units) == 8  # 4 labels x 2 settings, one case
    assert {r["setting"] for r in rows} == {"full", "fg-only"}
    for r in rows:
        assert 1 <= int(r["round"]) <= 8 and 0.0 <= float(r["dice"]) <= 1.0
        if r["setting"] == "fg-only":
            assert r["fp_slices"] == "0"
    # rounds count from 1 and are consecutive within a unit
    by_unit: dict = {}
    for r in rows:
        by_unit.setdefault((r["label"], r["setting"]), []).append(int(r["round"]))
    assert all(v == list(range(1, len(v) + 1)) for v in by_unit.values())
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert prompts[0]["kind"] == "point" and prompts[0]["round"] == 1 and prompts[0]["positive"] is True
    assert set(prompts[0]) == {"case", "label", "setting", "protocol", "round", "kind", "z", "y", "x", "positive"}
    # the cumulative click count of each unit's last row equals its number of point prompts
    for (label, setting), rounds in by_unit.items():
        n = sum(1 for p in prompts if str(p["label"]) == label and p["setting"] == setting)
        last = [r for r in rows if r["label"] == label and r["setting"] == setting][-1]
        assert int(last["clicks"]) == n
    run = json.loads((out / "run.json").read_text())
    for key in ("protocols", "model", "data", "settings", "seed", "versions", "started", "host"):
        assert key in run
    assert run["protocols"][0]["name"] == "he2024" and run["protocols"][0]["params"]["rounds"] == 8
    assert (out / "errors.jsonl").read_text() == ""


def test_same_command_twice_is_byte_identical(shared_data, reference_run, tmp_path):
    out = tmp_path / "again"
    assert main(args(shared_data, out)) == 0
    assert rows_without_timing(out) == rows_without_timing(reference_run)
    assert (out / "prompts.jsonl").read_bytes() == (reference_run / "prompts.jsonl").read_bytes()


def test_rerun_resumes_without_duplicates(shared_data, reference_run, tmp_path, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("run.json", "rounds.csv", "prompts.jsonl", "units.jsonl", "errors.jsonl"):
        (out / name).write_bytes((reference_run / name).read_bytes())
    capsys.readouterr()
    assert main(args(shared_data, out)) == 0
    assert "0 units written, 8 resumed" in capsys.readouterr().out
    assert rows_without_timing(out) == rows_without_timing(reference_run)


def test_other_configuration_is_refused(shared_data, reference_run, capsys):
    before = (reference_run / "rounds.csv").read_bytes()
    assert main(args(shared_data, reference_run, "--seed", "1")) == 2
    err = capsys.readouterr().err.strip()
    lines = err.strip().splitlines()  # one line, then only the keys that differ, then what to do
    assert "different configuration" in lines[0] and lines[1].strip() == "seed: 0 -> 1" and len(lines) == 3
    assert (reference_run / "rounds.csv").read_bytes() == before


def test_second_concurrent_run_is_refused(shared_data, reference_run, capsys):
    with FileLock(str(reference_run / LOCK)).acquire(timeout=1):
        assert main(args(shared_data, reference_run)) == 2
    assert "in use by another annosim run" in capsys.readouterr().err


def test_absent_label_is_an_error_line_and_others_complete(shared_data, tmp_path, capsys):
    """A label value absent from a case is a data error of that case (a name no case has is a
    command error: tests/test_newcomer.py)."""
    out = tmp_path / "bad-label"
    code = main(["run", "--data", spec(shared_data), "--model", PLUGIN, "--labels", "aorta,200",
                 "--settings", "fg-only", "--out", str(out), "--quiet"])
    assert code == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and "'200' (value 200) is absent" in errors[0]["error"]
    assert "seg.nii.gz" in errors[0]["error"]
    assert {r[2] for r in rows_without_timing(out)} == {"aorta"}


def test_kill_9_in_the_middle_then_resume_equals_uninterrupted(shared_data, reference_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "annosim", *args(shared_data, out, "--model-arg", "delay=0.15")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    journal = out / "units.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_units = len(journal.read_text().splitlines())
    assert 3 <= n_units < 8, "the run was not interrupted in the middle"
    # a crash in the middle of writing a unit leaves partial lines behind: simulate one
    with open(out / "prompts.jsonl", "a") as fh:
        fh.write('{"case": "ct", "label": 52, "setting": "fu')
    with open(out / "rounds.csv", "a") as fh:
        fh.write("ct,52,aorta,full,he2024,1,1,5,0.12")
    assert main(args(shared_data, out, "--model-arg", "delay=0.15")) == 0  # the same command
    assert rows_without_timing(out) == rows_without_timing(reference_run)
    assert (out / "prompts.jsonl").read_bytes() == (reference_run / "prompts.jsonl").read_bytes()
    assert len(journal.read_text().splitlines()) == 8
