"""Figures (DESIGN section 7, issue 13): the x axis is the round (pass) by default, or distinct
annotated slices or clicks (``annosim report --x``); early-stopped objects are carried forward up to
the protocol's ``max_rounds`` from run.json and counted as no longer active; no band and no
"95% CI" with one object. Hand-built results folders with known stopping rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from annosim.cli import main
from annosim.report import figures, stats
from annosim.report.results_io import read_run

COLUMNS = ("case", "label", "label_name", "setting", "protocol", "round", "annotated_slices", "clicks", "dice",
           "nsd", "hd95", "fp_slices", "gt_slices", "model_seconds")


def _folder(path: Path, objects: dict[str, list[tuple[int, int, float]]], max_rounds: int = 4) -> Path:
    """A results folder of structure ``liver`` (label 1), setting full, protocol he2024: per case
    a list of (annotated_slices, clicks, dice) for rounds 1, 2, ..."""
    path.mkdir(parents=True)
    lines = [",".join(COLUMNS)]
    for case, rounds in objects.items():
        for k, (sl, cl, d) in enumerate(rounds, 1):
            lines.append(f"{case},1,liver,full,he2024,{k},{sl},{cl},{d!r},0.5,2.0,0,9,0.1")
    (path / "rounds.csv").write_text("\n".join(lines) + "\n")
    (path / "run.json").write_text(json.dumps({"protocols": [{"name": "he2024", "max_rounds": max_rounds}],
                                               "model": {"name": "m"}, "data": {"name": "d"}}))
    return path


#: c0 runs 4 rounds, c1 stops after round 2, c2 after round 1 (max_rounds 4 from run.json).
OBJECTS = {
    "c0": [(1, 5, 0.5), (2, 8, 0.6), (2, 11, 0.7), (3, 14, 0.8)],
    "c1": [(1, 3, 0.4), (2, 6, 0.5)],
    "c2": [(1, 5, 0.9)],
}


def _full(run_dir: Path) -> pd.DataFrame:
    run = read_run(run_dir)
    return stats.carry_forward(run.rounds, {"he2024": run.max_rounds("he2024")})


def test_round_axis_active_counts(tmp_path):
    """Rule: objects are carried to max_rounds (run.json) and 'active' counts those still annotating."""
    c = figures.figure_curves(_full(_folder(tmp_path / "r", OBJECTS)), "round")
    assert c["round"].tolist() == [1, 2, 3, 4]
    assert c["n"].tolist() == [3, 3, 3, 3]
    assert c["active"].tolist() == [3, 2, 1, 1]
    assert c["mean"].tolist() == pytest.approx([(0.5 + 0.4 + 0.9) / 3, (0.6 + 0.5 + 0.9) / 3,
                                                (0.7 + 0.5 + 0.9) / 3, (0.8 + 0.5 + 0.9) / 3])
    # max_rounds 6 in run.json: carried two rounds further than any object ran
    c6 = figures.figure_curves(_full(_folder(tmp_path / "r6", OBJECTS, max_rounds=6)), "round")
    assert c6["round"].tolist() == [1, 2, 3, 4, 5, 6] and c6["active"].tolist() == [3, 2, 1, 1, 0, 0]


def test_clicks_axis_binned_with_last_value_carried(tmp_path):
    """Rule: at integer x each object gives the Dice of its last round with clicks <= x; x starts at
    the largest first-round effort (5) so every point has all objects, and ends at the largest (14)."""
    c = figures.figure_curves(_full(_folder(tmp_path / "r", OBJECTS)), "clicks")
    assert c["clicks"].tolist() == list(range(5, 15))
    by_x = {  # x: (c0, c1, c2)
        5: (0.5, 0.4, 0.9), 6: (0.5, 0.5, 0.9), 7: (0.5, 0.5, 0.9), 8: (0.6, 0.5, 0.9), 9: (0.6, 0.5, 0.9),
        10: (0.6, 0.5, 0.9), 11: (0.7, 0.5, 0.9), 12: (0.7, 0.5, 0.9), 13: (0.7, 0.5, 0.9), 14: (0.8, 0.5, 0.9)}
    assert c["mean"].tolist() == pytest.approx([sum(v) / 3 for v in by_x.values()])
    # active: c0 until 14 clicks, c1 until 6, c2 until 5
    assert c["active"].tolist() == [3, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert (c["n"] == 3).all()


def test_slices_axis(tmp_path):
    """Rule: a slice annotated twice counts once (c0 rounds 2 and 3 both at 2 slices: round 3's Dice)."""
    c = figures.figure_curves(_full(_folder(tmp_path / "r", OBJECTS)), "slices")
    assert c["annotated_slices"].tolist() == [1, 2, 3]
    assert c["mean"].tolist() == pytest.approx([(0.5 + 0.4 + 0.9) / 3, (0.7 + 0.5 + 0.9) / 3, (0.8 + 0.5 + 0.9) / 3])
    assert c["active"].tolist() == [3, 2, 1]


def test_plot_labels_and_single_object(tmp_path):
    """Rule: the default axis says round (pass), tick labels carry the active count; n = 1 has no
    band and no '95% CI'."""
    curves = figures.figure_curves(_full(_folder(tmp_path / "r", OBJECTS)), "round")
    fig = figures.plot_curves(curves, "t", "round")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("round (pass; the paper's \"number of annotated frames\")")
    assert "(of 3)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n3", "2\n2", "3\n1", "4\n1"]
    assert "95% CI" in ax.get_ylabel() and len(ax.collections) == 1  # one band
    one = figures.figure_curves(_full(_folder(tmp_path / "one", {"c0": OBJECTS["c0"]})), "round")
    assert one["lo"].isna().all()
    fig1 = figures.plot_curves(one, "t", "round")
    assert "95% CI" not in fig1.axes[0].get_ylabel() and not fig1.axes[0].collections
    assert "no interval" in figures.caption(one) and "95% CI" not in figures.caption(one)


def test_report_x_option(tmp_path):
    """Rule: ``annosim report --x clicks`` writes curves.csv over clicks and names the figure so."""
    run = _folder(tmp_path / "r", OBJECTS)
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out), "--no-qc", "--n-boot", "200", "--x", "clicks"]) == 0
    curves = pd.read_csv(out / "curves.csv")
    assert curves["clicks"].tolist() == list(range(5, 15)) and curves["active"].iloc[1] == 2
    assert [p.name for p in (out / "figures").glob("*.png")] == ["dice_vs_clicks_d_m_he2024.png"]
    assert "Mean Dice per click" in (out / "report.html").read_text()
    assert main(["report", str(run), "--out", str(out), "--no-qc", "--x", "frames"]) == 2
