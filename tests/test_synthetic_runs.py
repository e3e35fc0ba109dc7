"""Whole runs on the synthetic NIfTI cases that conftest writes (no ../shared needed): parallel
executors give the sequential rows, kill -9 then rerun gives the uninterrupted rows, and report
and compare work on the folders. The model is tests/plugin_models.py:ThresholdGrow."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annosim.cli import main
from results_helpers import manifest_run_args, rows_without_timing

TESTS = Path(__file__).resolve().parent
RUN = ("--protocol", "he2024", "--protocol-arg", "rounds=3")


@pytest.fixture(scope="module")
def sequential(synthetic_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn-seq") / "run"
    assert main(manifest_run_args(synthetic_manifest, out, *RUN)) == 0
    return out


def test_sequential_run_has_every_unit(sequential):
    rows = rows_without_timing(sequential)
    units = {(r[0], r[1]) for r in rows}
    assert units == {(f"syn{n}", lab) for n in (6, 7, 8, 9) for lab in ("1", "2")}


def test_two_workers_give_the_sequential_rows(synthetic_manifest, sequential, tmp_path):
    out = tmp_path / "run"
    assert main(manifest_run_args(synthetic_manifest, out, *RUN, "--workers", "2")) == 0
    assert rows_without_timing(out, sort=True) == rows_without_timing(sequential, sort=True)
    assert sorted((out / "prompts.jsonl").read_text().splitlines()) == \
        sorted((sequential / "prompts.jsonl").read_text().splitlines())


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_rows(synthetic_manifest, sequential, tmp_path):
    out = tmp_path / "run"
    args = manifest_run_args(synthetic_manifest, out, *RUN, "--model-arg", "delay=0.05")
    proc = subprocess.Popen([sys.executable, "-m", "annosim", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    journal = out / "units.jsonl"
    deadline = time.time() + 120
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 2):
        assert time.time() < deadline and proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = journal.read_bytes().count(b"\n")
    assert 2 <= done < 8
    assert main(args) == 0
    assert rows_without_timing(out, sort=True) == rows_without_timing(sequential, sort=True)


def test_report_on_a_synthetic_run(sequential, tmp_path):
    rep = tmp_path / "report"
    assert main(["report", str(sequential), "--out", str(rep)]) == 0
    with open(rep / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["structure"] for r in summary} == {"label_1", "label_2"}
    assert all(int(r["n"]) == 4 for r in summary)
    # best-of-rounds in the summary is the mean over the four cases of each object's best round
    with open(sequential / "rounds.csv", newline="") as fh:
        rounds = list(csv.DictReader(fh))
    for r in summary:
        lab = r["structure"].split("_")[1]
        best = {}
        for row in rounds:
            if row["label"] == lab:
                best[row["case"]] = max(best.get(row["case"], 0.0), float(row["dice"]))
        assert float(r["best_dice"]) == pytest.approx(sum(best.values()) / 4)
    assert (rep / "report.html").stat().st_size > 0


def test_compare_a_run_with_itself_gives_zero_differences(sequential, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(sequential), str(sequential), "--out", str(out), "--n-boot", "200"]) == 0
    with open(out / "pairs.csv", newline="") as fh:
        pairs = list(csv.DictReader(fh))
    assert len(pairs) == 8
    diff_col = next(c for c in pairs[0] if "diff" in c)
    assert all(float(p[diff_col]) == 0.0 for p in pairs)
