"""``annosim report --aggregate reference``: the reference script's Table-1 statistic (rank
columns among the labels present per case, unfilled entries 0 before the best-of-rounds max,
mean over cases) on a hand-built results folder whose numbers are computed by hand below; the
default per-object aggregation unchanged; the CLI option and its refusal of a bad value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annosim.cli import main
from annosim.errors import ConfigError
from annosim.report import aggregate
from annosim.report.build import ReportConfig, build_report
from annosim.report.results_io import read_run
from annosim.results import ResultsFolder
from annosim.schema import RoundRow, UnitKey

NAMES = {1: "spleen", 2: "kidney_right", 3: "liver"}
PROTOCOL = "he2024-vista"
# Dice per round of every object, setting "full". Case b has no spleen; two objects stop early
# (b/liver after round 2, c/spleen after round 1) of the protocol's 3 rounds.
FULL = {
    ("a", 1): [0.5, 0.75, 0.625],   # best 0.75
    ("a", 2): [0.25, 0.5, 0.5],     # best 0.5
    ("a", 3): [0.875, 0.75, 0.875],  # best 0.875
    ("b", 2): [0.5, 0.625, 0.75],   # best 0.75
    ("b", 3): [0.5, 0.25],          # best 0.5 (stopped)
    ("c", 1): [0.25],               # best 0.25 (stopped)
    ("c", 2): [0.75, 0.875, 0.625],  # best 0.875
    ("c", 3): [0.5, 0.625, 0.75],   # best 0.75
}
# fg-only: the same except c/spleen, which reaches 1.0 in round 2.
FG_ONLY = {**FULL, ("c", 1): [0.5, 1.0]}

# Hand computation, setting full. Ranks among the labels present per case:
#   a: spleen -> column 1, kidney -> 2, liver -> 3
#   b: kidney -> column 1, liver -> 2 (no spleen: both move one column left); column 3 never filled
#   c: spleen -> 1, kidney -> 2, liver -> 3
# best of rounds (never-run rounds and never-filled entries count 0), mean over the 3 cases:
#   column 1: a spleen 0.75, b kidney 0.75, c spleen 0.25      -> 1.75 / 3  (0.5833)
#   column 2: a kidney 0.5,  b liver 0.5,   c kidney 0.875     -> 1.875 / 3 = 0.625
#   column 3: a liver 0.875, b (none) 0,    c liver 0.75       -> 1.625 / 3 (0.5417)
#   "best avg": mean of the three column means
# per object (annosim's default): spleen (0.75 + 0.25) / 2 = 0.5; kidney (0.5 + 0.75 + 0.875) / 3
#   = 2.125 / 3; liver (0.875 + 0.5 + 0.75) / 3 = 2.125 / 3.
# fg-only column 1: a spleen 0.75, b kidney 0.75, c spleen 1.0 -> 2.5 / 3; per-object spleen 0.875.
REF_FULL = {1: 1.75 / 3, 2: 1.875 / 3, 3: 1.625 / 3}
PER_OBJECT_FULL = {1: 0.5, 2: 2.125 / 3, 3: 2.125 / 3}


def _write_folder(path: Path, dice: dict[str, dict[tuple[str, int], list[float]]], max_rounds: int = 3,
                  protocol: str = PROTOCOL) -> Path:
    """A results folder written by annosim's own writer (ResultsFolder), one unit per object."""
    config = {"protocols": [{"name": protocol, "max_rounds": max_rounds, "orientation": "as-stored"}],
              "model": {"name": "classical", "args": {}}, "data": {"name": "btcv"},
              "settings": list(dice), "labels": None, "seed": 0, "nsd_tolerance": 2.0,
              "surface_metrics": True, "orientation": "as-stored"}
    with ResultsFolder(path).open(config, {"started": "now"}) as store:
        for setting, objects in dice.items():
            for (case, label), values in objects.items():
                key = UnitKey(case, label, setting, protocol)
                rows = [RoundRow(case, label, NAMES[label], setting, protocol, r + 1, r + 1, 3 * r + 1,
                                 {"dice": d, "nsd": d, "hd95": 1.0, "fp_slices": 0, "gt_slices": 5}, 0.0).record()
                        for r, d in enumerate(values)]
                store.write_unit(key, rows, [])
    return path


@pytest.fixture()
def folder(tmp_path) -> Path:
    return _write_folder(tmp_path / "run", {"full": FULL, "fg-only": FG_ONLY})


def _table(folder: Path, max_rounds: dict[str, int] | None = None) -> pd.DataFrame:
    run = read_run(folder)
    return aggregate.reference_aggregate(run.rounds, max_rounds or {PROTOCOL: run.max_rounds(PROTOCOL)})


def test_rank_columns_shift_and_zero_fill_match_hand_computation(folder):
    """Rule: column = rank among the labels present in the case; unfilled -> 0; mean over cases."""
    t = _table(folder)
    full = t[t["setting"] == "full"].set_index("column")
    for col, expected in REF_FULL.items():
        assert full.loc[col, "reference_dice"] == expected
    assert full.loc[aggregate.ALL_COLUMNS, "reference_dice"] == (REF_FULL[1] + REF_FULL[2] + REF_FULL[3]) / 3
    assert full.loc[[1, 2, 3], "structure"].tolist() == ["spleen", "kidney_right", "liver"]  # nominal
    assert full.loc[[1, 2, 3], "placed"].tolist() == ["spleen x2, kidney_right x1", "kidney_right x2, liver x1",
                                                     "liver x2"]
    assert full.loc[[1, 2, 3], "n_other"].tolist() == [1, 1, 0]
    assert full.loc[[1, 2, 3], "n_zero"].tolist() == [0, 0, 1]  # case b never fills column 3
    assert full.loc[[1, 2, 3], "n_cases"].tolist() == [3, 3, 3]
    assert set(full["max_iters"]) == {3}
    fg = t[t["setting"] == "fg-only"].set_index("column")
    assert fg.loc[1, "reference_dice"] == 2.5 / 3
    assert fg.loc[2, "reference_dice"] == REF_FULL[2] and fg.loc[3, "reference_dice"] == REF_FULL[3]


def test_tensor_entries_and_early_stop(folder):
    """Rule: rounds never run stay NaN in the tensor and become 0 before the max (max unchanged)."""
    run = read_run(folder)
    sub = run.rounds[run.rounds["setting"] == "full"]
    tensor = aggregate.metric_tensor(sub, 3)
    assert tensor.cases == ("a", "b", "c") and tensor.labels == (1, 2, 3) and tensor.nominal == (1, 2, 3)
    np.testing.assert_array_equal(tensor.placed, [[1, 2, 3], [2, 3, 0], [1, 2, 3]])
    np.testing.assert_array_equal(tensor.metric[1, 1], [0.5, 0.25, np.nan])  # b/liver in column 2
    np.testing.assert_array_equal(tensor.metric[2, 0], [0.25, np.nan, np.nan])  # c/spleen stopped
    assert np.isnan(tensor.metric[1, 2]).all()
    best, kept = aggregate.best_of_rounds(tensor)
    assert kept.tolist() == [True, True, True]
    np.testing.assert_array_equal(best, [[0.75, 0.5, 0.875], [0.75, 0.5, 0.0], [0.25, 0.875, 0.75]])


def test_one_round_protocol_leaves_unfilled_entries_out(tmp_path):
    """Rule: with max_iters == 1 the script takes round 1 as it is, so the mean ignores NaN."""
    one = {k: v[:1] for k, v in FULL.items()}
    f = _write_folder(tmp_path / "one", {"full": one}, max_rounds=1, protocol="ma2024-box")
    t = aggregate.reference_aggregate(read_run(f).rounds, {"ma2024-box": 1}).set_index("column")
    # column 3: a liver 0.875, c liver 0.5; case b has nothing there and is left out
    assert t.loc[3, "reference_dice"] == (0.875 + 0.5) / 2 and t.loc[3, "n_cases"] == 2
    assert t.loc[3, "n_zero"] == 0
    # column 1: a spleen 0.5, b kidney 0.5, c spleen 0.25
    assert t.loc[1, "reference_dice"] == 1.25 / 3


def test_all_nan_cases_are_dropped():
    """Rule: cases whose entries are all NaN (no label in the case) are dropped before the mean."""
    tensor = aggregate.ReferenceTensor(("x", "y"), (1,), (1,), np.array([[1], [0]]),
                                       np.array([[[0.5, np.nan]], [[np.nan, np.nan]]]))
    best, kept = aggregate.best_of_rounds(tensor)
    assert kept.tolist() == [True, False] and best.tolist() == [[0.5]]


def test_set_order_of_large_label_values():
    """Rule: the script iterates a Python set, which is not ascending for values beyond the table."""
    assert aggregate.reference_label_order([2, 1], [1, 2, 3]) == [0, 1, 2]
    assert aggregate.reference_label_order([5, 9], [5, 9]) == [0, 9, 5]
    rows = pd.DataFrame({"case": ["a", "a"], "label": [5, 9], "round": [1, 1], "dice": [0.25, 0.5]})
    tensor = aggregate.metric_tensor(rows, 1)
    assert tensor.nominal == (9, 5)
    np.testing.assert_array_equal(tensor.metric[0, :, 0], [0.5, 0.25])  # label 9 in column 1


def test_table1_view_under_reference_aggregation(folder, tmp_path):
    """Rule: the Table-1 view names its aggregation and shows the shift from the per-object mean."""
    out = tmp_path / "rep"
    assert main(["report", str(folder), "--out", str(out), "--aggregate", "reference", "--no-qc",
                 "--n-boot", "100"]) == 0
    t1 = pd.read_csv(out / "table1.csv").set_index("label_name")
    assert set(t1["aggregation"]) == {"reference"}
    for label, name in NAMES.items():
        assert t1.loc[name, "run_full"] == REF_FULL[label]
        assert t1.loc[name, "per_object_full"] == PER_OBJECT_FULL[label]
        assert t1.loc[name, "shift_full"] == REF_FULL[label] - PER_OBJECT_FULL[label]
        assert t1.loc[name, "reference_column_full"] == label
    assert t1.loc["spleen", "run_fg_only"] == 2.5 / 3 and t1.loc["spleen", "per_object_fg_only"] == 0.875
    assert (t1.loc["spleen", "paper_dataset"], t1.loc["spleen", "sam2_full"]) == ("BTCV", 0.308)
    md = (out / "table1.md").read_text()
    assert "the reference script's statistic (annosim report --aggregate reference" in md
    assert "| btcv | spleen | BTCV | 2 | 0.833/0.583 | -0.042/+0.083 |" in md  # n objects, ref, shift
    assert "shift" in (out / "table1.tex").read_text()
    ref = pd.read_csv(out / "reference_aggregate.csv")
    assert len(ref) == 8  # 2 settings x (3 columns + best avg)
    ref_md = (out / "reference_aggregate.md").read_text()
    assert "Aggregation 'reference' (annosim report --aggregate reference)" in ref_md
    assert (out / "reference_aggregate.tex").exists()
    html = (out / "report.html").read_text()
    assert "Reference aggregation (--aggregate reference)" in html and "spleen x2, kidney_right x1" in html


def test_default_stays_per_object(folder, tmp_path):
    """Rule: without --aggregate the Table-1 view is annosim's per-object mean, no reference table."""
    out = tmp_path / "rep"
    assert main(["report", str(folder), "--out", str(out), "--no-qc", "--n-boot", "100"]) == 0
    t1 = pd.read_csv(out / "table1.csv").set_index("label_name")
    assert set(t1["aggregation"]) == {"per-object"}
    assert "shift_full" not in t1.columns
    for label, name in NAMES.items():
        assert t1.loc[name, "run_full"] == PER_OBJECT_FULL[label]
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[(summary["structure"] == "spleen") & (summary["setting"] == "full"), "best_dice"].item() == 0.5
    md = (out / "table1.md").read_text()
    assert "per-object aggregation" in md and "the reference script's statistic" not in md
    assert not list(out.glob("reference_aggregate.*"))
    # a reference report written into the same folder earlier is not left behind
    assert main(["report", str(folder), "--out", str(out), "--aggregate", "reference", "--no-qc",
                 "--n-boot", "100"]) == 0
    assert main(["report", str(folder), "--out", str(out), "--no-qc", "--n-boot", "100"]) == 0
    assert not list(out.glob("reference_aggregate.*"))


def test_bad_aggregate_value_exits_2_before_any_folder(folder, tmp_path, capsys):
    """Rule: a command mistake exits 2 before any folder is made (CLI and API alike)."""
    out = tmp_path / "never"
    assert main(["report", str(folder), "--out", str(out), "--aggregate", "mean"]) == 2
    assert not out.exists()
    assert "per-object" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="aggregate 'mean'"):
        build_report([folder], out, ReportConfig(aggregate="mean", qc=False))
    assert not out.exists()

