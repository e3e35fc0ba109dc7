"""Reading results folders in tests: rows without timing columns, and common run arguments."""

from __future__ import annotations

import csv
from pathlib import Path

from annosim.schema import TIMING_COLUMNS

TESTS = Path(__file__).resolve().parent
#: The deterministic plugin model of tests/plugin_models.py, as ``--model`` takes it.
PLUGIN = f"{TESTS / 'plugin_models.py'}:ThresholdGrow"


def rows_without_timing(out: Path, *, sort: bool = False) -> list[list[str]]:
    """rounds.csv rows of a results folder minus the timing columns (sorted if asked: runs on
    several workers append units in the order they finish)."""
    with open(Path(out) / "rounds.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        keep = [i for i, c in enumerate(header) if c not in TIMING_COLUMNS]
        rows = [[r[i] for i in keep] for r in reader]
    return sorted(rows) if sort else rows


def manifest_run_args(manifest: Path, out: Path, *extra: str, model: str = PLUGIN) -> list[str]:
    """``annosim run`` arguments over a CSV manifest of absolute paths, fg-only setting."""
    return ["run", "--data", str(manifest), "--data-root", "/", "--model", model, "--settings", "fg-only",
            "--out", str(out), "--quiet", *extra]
