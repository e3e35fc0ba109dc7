"""Protocol sensitivity table: hand-checked objects, then a real three-protocol run of the
classical model on ../shared/data/totalseg-abdomen, its report checked against rounds.csv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annosim.cli import main
from annosim.protocols.registry import list_protocols
from annosim.report import tables
from annosim.report.sensitivity import UNKNOWN_GT, protocol_sensitivity

PROTOCOLS = ("he2024", "ma2024-box", "shen2024-mask")
LABELS = ("liver", "spleen")  # both have a >256-pixel Shen video (shen2024 skips objects without)


def _objects(rows: list[tuple]) -> pd.DataFrame:
    """Object rows from (dataset, model, run, case, label_name, setting, protocol, best_dice)."""
    cols = ["dataset", "model", "run", "case", "label_name", "setting", "protocol", "best_dice"]
    df = pd.DataFrame(rows, columns=cols)
    df["label"] = df["label_name"].map({"spleen": 1, "liver": 5})
    df["variant"] = np.where(df["protocol"] == "he2024", "paper", "")
    return df


# -- hand-checked ----------------------------------------------------------------------------------

def test_common_objects_only_and_spread():
    objs = _objects([
        ("d", "m", "r1", "a", "spleen", "full", "he2024", 0.7),
        ("d", "m", "r1", "b", "spleen", "full", "he2024", 0.9),
        ("d", "m", "r1", "c", "spleen", "full", "he2024", 0.4),  # not under ma2024-box: excluded
        ("d", "m", "r1", "a", "spleen", "full", "ma2024-box", 0.5),
        ("d", "m", "r1", "b", "spleen", "full", "ma2024-box", 0.6),
        ("d", "m", "r1", "a", "liver", "full", "he2024", 0.8),  # one protocol only: no row
        ("d", "solo", "r2", "a", "spleen", "full", "he2024", 0.1),  # one protocol only: no row
    ])
    sens = protocol_sensitivity(objs)
    assert sens.columns == ["he2024", "ma2024-box"]
    assert sens.labels == {"he2024": "he2024 (paper)", "ma2024-box": "ma2024-box"}
    t = sens.table
    assert len(t) == 1
    r = t.iloc[0]
    assert (r["dataset"], r["structure"], r["setting"], r["model"], r["n"], r["excluded"]) == \
        ("d", "spleen", "full", "m", 2, 1)
    assert r["he2024"] == pytest.approx(0.8) and r["ma2024-box"] == pytest.approx(0.55)
    assert r["spread"] == pytest.approx(0.25)
    assert (r["highest"], r["lowest"]) == ("he2024 (paper)", "ma2024-box")
    assert list(t.columns) == ["dataset", "structure", "setting", "model", "n", "excluded", "he2024",
                               "ma2024-box", "spread", "highest", "lowest"]


def test_rows_use_the_protocols_that_ran_on_them_and_several_runs():
    objs = _objects([
        # model m: he2024 on spleen and liver (run r1), shen2024-mask and ma2024-box on spleen only (run r2)
        ("d", "m", "r1", "a", "spleen", "full", "he2024", 0.6),
        ("d", "m", "r1", "a", "liver", "full", "he2024", 0.9),
        ("d", "m", "r1", "a", "liver", "fg-only", "he2024", 0.95),
        ("d", "m", "r2", "a", "spleen", "full", "shen2024-mask", 0.7),
        ("d", "m", "r2", "a", "liver", "full", "ma2024-box", 0.3),
        # model k: the same protocol in two results folders -> two columns named by folder
        ("d", "k", "x", "a", "spleen", "full", "he2024", 0.2),
        ("d", "k", "y", "a", "spleen", "full", "he2024", 0.5),
    ])
    sens = protocol_sensitivity(objs)
    # registry order (he2024 before ma2024-box before shen2024-mask), run-suffixed columns after theirs
    assert sens.columns == ["he2024", "he2024 [x]", "he2024 [y]", "ma2024-box", "shen2024-mask"]
    assert sens.protocols["he2024 [y]"] == "he2024" and sens.labels["he2024 [x]"] == "he2024 (paper) [x]"
    t = sens.table.set_index(["model", "structure", "setting"])
    assert sorted(t.index) == [("k", "spleen", "full"), ("m", "liver", "full"), ("m", "spleen", "full")]
    liver = t.loc[("m", "liver", "full")]
    assert (liver["he2024"], liver["ma2024-box"], liver["spread"]) == (0.9, 0.3, pytest.approx(0.6))
    assert math.isnan(liver["shen2024-mask"]) and math.isnan(liver["he2024 [x]"])
    k = t.loc[("k", "spleen", "full")]
    assert (k["he2024 [x]"], k["he2024 [y]"], k["n"]) == (0.2, 0.5, 1)
    assert math.isnan(k["he2024"])
    disp = tables.sensitivity_display(sens)
    assert list(disp.columns[6:11]) == ["he2024 (paper)", "he2024 (paper) [x]", "he2024 (paper) [y]",
                                        "ma2024-box", "shen2024-mask"]
    liver_row = disp[(disp["Model"] == "m") & (disp["Structure"] == "liver")].iloc[0]
    assert (liver_row["he2024 (paper)"], liver_row["shen2024-mask"], liver_row["Spread (max-min)"]) == \
        ("0.900", "-", "0.600")


def test_no_common_object_gives_dashes_and_one_protocol_gives_no_table():
    objs = _objects([
        ("d", "m", "r", "a", "spleen", "full", "he2024", 0.6),
        ("d", "m", "r", "b", "spleen", "full", "ma2024-box", 0.7),
    ])
    r = protocol_sensitivity(objs).table.iloc[0]
    assert (r["n"], r["excluded"], r["highest"]) == (0, 2, "")
    assert math.isnan(r["he2024"]) and math.isnan(r["spread"])
    assert protocol_sensitivity(objs[objs["protocol"] == "he2024"]).empty


def test_notes_list_the_ground_truth_each_protocol_uses():
    objs = _objects([
        ("d", "m", "r", "a", "spleen", "full", "he2024", 0.6),
        ("d", "m", "r", "a", "spleen", "full", "my-plugin", 0.7),
    ])
    notes = tables.sensitivity_notes(protocol_sensitivity(objs))
    he = next(i for i in list_protocols() if i.name == "he2024")
    assert f"he2024: {he.uses_gt}" in notes
    assert f"my-plugin: {UNKNOWN_GT}" in notes
    assert any("present under every protocol of the row" in n for n in notes)


# -- a real run with three protocols ---------------------------------------------------------------

@pytest.fixture(scope="module")
def three_protocol_run(shared_data, tmp_path_factory) -> Path:
    d = shared_data / "totalseg-abdomen"
    out = tmp_path_factory.mktemp("sens") / "run"
    assert main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", "classical",
                 "--protocol", ",".join(PROTOCOLS), "--labels", ",".join(LABELS), "--out", str(out),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def sens_report(three_protocol_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sens_report") / "report"
    assert main(["report", str(three_protocol_run), "--out", str(out), "--n-boot", "200", "--no-qc"]) == 0
    return out


def test_sensitivity_of_a_real_run_equals_rounds_csv(three_protocol_run, sens_report):
    for ext in ("csv", "md", "tex"):
        assert (sens_report / f"sensitivity.{ext}").stat().st_size > 200
    sens = pd.read_csv(sens_report / "sensitivity.csv", keep_default_na=False, na_values=[""])
    assert list(sens.columns) == ["dataset", "structure", "setting", "model", "n", "excluded", *PROTOCOLS,
                                  "spread", "highest", "lowest"]
    assert len(sens) == 4  # 2 structures x 2 settings, one model
    assert set(zip(sens["structure"], sens["setting"])) == {(s, t) for s in LABELS for t in ("full", "fg-only")}
    assert set(sens["model"]) == {"classical"} and set(sens["dataset"]) == {"ct"}
    assert set(sens["n"]) == {1} and set(sens["excluded"]) == {0}
    # direct: best-of-rounds Dice of each object under each protocol, from rounds.csv
    rounds = pd.read_csv(three_protocol_run / "rounds.csv")
    best = rounds.groupby(["label_name", "setting", "protocol"])["dice"].max().unstack("protocol")
    assert set(best.columns) == set(PROTOCOLS)
    for _, r in sens.iterrows():
        direct = best.loc[(r["structure"], r["setting"]), list(PROTOCOLS)].to_numpy(np.float64)
        np.testing.assert_array_equal(r[list(PROTOCOLS)].to_numpy(np.float64), direct)
        assert r["spread"] == direct.max() - direct.min()
        labels = ["he2024 (paper)", "ma2024-box", "shen2024-mask"]
        assert r["highest"] == labels[int(np.argmax(direct))] and r["lowest"] == labels[int(np.argmin(direct))]
    md = (sens_report / "sensitivity.md").read_text()
    assert "| ct | spleen | full | classical | 1 | 0 |" in md
    tex = (sens_report / "sensitivity.tex").read_text()
    assert tex.count(r" \\") == 5  # header + 4 rows


def test_sensitivity_section_in_html(sens_report):
    html = (sens_report / "report.html").read_text()
    assert 'id="sensitivity">Protocol sensitivity</h2>' in html
    section = html.split('id="sensitivity"', 1)[1].split("<h2", 1)[0]
    assert section.count("<tr>") == 1 + 4
    for info in list_protocols():
        if info.name in PROTOCOLS:
            assert f"{info.name}: {info.uses_gt}" in section
    assert 'href="sensitivity.csv"' in section


def test_no_sensitivity_files_for_a_single_protocol(three_protocol_run, sens_report, tmp_path):
    import shutil

    one = tmp_path / "one"
    shutil.copytree(three_protocol_run, one, ignore=shutil.ignore_patterns(".annosim.lock"))
    rounds = pd.read_csv(one / "rounds.csv", dtype={"case": str})
    rounds[rounds["protocol"] == "he2024"].to_csv(one / "rounds.csv", index=False)
    out = tmp_path / "rep"
    shutil.copytree(sens_report, out)  # stale sensitivity files of an earlier report must go
    assert main(["report", str(one), "--out", str(out), "--n-boot", "200", "--no-qc"]) == 0
    assert not list(out.glob("sensitivity.*"))
    assert 'id="sensitivity"' not in (out / "report.html").read_text()
