"""Statistics of annosim.report on fixed, hand-checkable data: carry-forward, per-object
summaries, SEM and bootstrap intervals (against numpy/scipy), NoC, curves; reading rounds.csv;
table rendering; the packaged Table 1 and the name mapping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from annosim.errors import InputError
from annosim.report import stats, table1, tables
from annosim.report.results_io import ROUND_COLUMNS, read_run, read_runs

NAN = float("nan")


def _rows(case, label, name, setting, dices, hd95s=None, protocol="he2024", fps=None):
    hd95s = hd95s or [1.0] * len(dices)
    fps = fps or [0] * len(dices)
    return [dict(case=case, label=label, label_name=name, setting=setting, protocol=protocol, round=r + 1,
                 annotated_slices=r + 1, clicks=3 * r + 5, dice=d, nsd=0.5, hd95=h, fp_slices=f, gt_slices=10,
                 model_seconds=0.25)
            for r, (d, h, f) in enumerate(zip(dices, hd95s, fps))]


@pytest.fixture
def two_objects() -> pd.DataFrame:
    """Object A: 3 rounds (Dice .5 .7 .6, HD95 1 2 nan), object B: 2 rounds (.2 .9, HD95 3 nan)."""
    rows = _rows("a", 1, "spleen", "full", [0.5, 0.7, 0.6], [1.0, 2.0, NAN], fps=[0, 1, 2])
    rows += _rows("b", 1, "spleen", "full", [0.2, 0.9], [3.0, NAN])
    return pd.DataFrame(rows, columns=list(ROUND_COLUMNS))


# -- carry-forward -----------------------------------------------------------------------------

def test_carry_forward_repeats_last_round_and_flags_it(two_objects):
    full = stats.carry_forward(two_objects, 4)
    assert len(full) == 8
    a = full[full["case"] == "a"].sort_values("round")
    b = full[full["case"] == "b"].sort_values("round")
    assert a["round"].tolist() == [1, 2, 3, 4]
    assert a["dice"].tolist() == [0.5, 0.7, 0.6, 0.6]
    assert a["carried"].tolist() == [False, False, False, True]
    # the carried row repeats round 3 as a whole: its NaN HD95 stays NaN (not round 2's 2.0)
    assert math.isnan(a["hd95"].iloc[3]) and a["fp_slices"].iloc[3] == 2
    assert b["dice"].tolist() == [0.2, 0.9, 0.9, 0.9]
    assert b["carried"].tolist() == [False, False, True, True]
    assert b["model_seconds"].tolist() == [0.25, 0.25, 0.0, 0.0]
    assert list(full.columns) == list(ROUND_COLUMNS) + ["carried"]


def test_carry_forward_default_and_per_protocol_max(two_objects):
    assert len(stats.carry_forward(two_objects)) == 6  # up to the most rounds seen: 3
    other = pd.DataFrame(_rows("a", 1, "spleen", "full", [0.4], protocol="box"), columns=list(ROUND_COLUMNS))
    both = pd.concat([two_objects, other], ignore_index=True)
    full = stats.carry_forward(both, {"he2024": 5, "box": 1})
    assert (full["protocol"] == "he2024").sum() == 10 and (full["protocol"] == "box").sum() == 1


# -- per object and summary ----------------------------------------------------------------------

def test_object_table_values(two_objects):
    objs = stats.object_table(stats.carry_forward(two_objects, 4)).set_index("case")
    a, b = objs.loc["a"], objs.loc["b"]
    assert (a["first_dice"], a["final_dice"], a["best_dice"], a["best_round"]) == (0.5, 0.6, 0.7, 2)
    assert a["auc_dice"] == pytest.approx((0.5 + 0.7 + 0.6 + 0.6) / 4)
    assert (a["rounds"], a["max_rounds"], bool(a["early_stopped"])) == (3, 4, True)
    assert (a["noc80"], bool(a["noc80_reached"])) == (4, False)
    assert (b["noc80"], bool(b["noc80_reached"]), b["noc90"], bool(b["noc90_reached"])) == (2, True, 2, True)
    assert a["final_fp_slices"] == 2 and a["clicks"] == 11 and a["model_seconds"] == 0.75
    assert math.isnan(a["final_hd95"]) and math.isnan(b["final_hd95"])  # the last row's NaN, not an earlier value


def test_object_table_against_direct_loop():
    rng = np.random.default_rng(42)
    rows, dices = [], {}
    for i in range(30):
        n = int(rng.integers(1, 9))
        d = rng.uniform(0.5, 1.0, n).round(3).tolist()
        dices[f"c{i:02d}"] = d
        rows += _rows(f"c{i:02d}", 3, "liver", "fg-only", d)
    objs = stats.object_table(stats.carry_forward(pd.DataFrame(rows), 8)).set_index("case")
    for case, d in dices.items():
        full = np.array(d + [d[-1]] * (8 - len(d)))
        o = objs.loc[case]
        assert (o["first_dice"], o["final_dice"], o["best_dice"]) == (full[0], full[-1], full.max())
        assert o["best_round"] == int(np.argmax(full)) + 1 and o["auc_dice"] == pytest.approx(full.mean())
        assert (o["rounds"], bool(o["early_stopped"])) == (len(d), len(d) < 8)
        for tau, tag in ((0.8, "noc80"), (0.9, "noc90")):
            hits = np.flatnonzero(full >= tau)
            assert (o[tag], bool(o[f"{tag}_reached"])) == ((hits[0] + 1, True) if hits.size else (8, False))


def test_noc_hand_cases():
    assert stats.noc(np.array([0.5, 0.85, 0.95]), 0.8) == (2, True)
    assert stats.noc(np.array([0.5, 0.85, 0.95]), 0.9) == (3, True)
    assert stats.noc(np.array([0.9]), 0.9) == (1, True)
    assert stats.noc(np.array([0.1, 0.2]), 0.8) == (2, False)


def test_summary_against_direct_computation(two_objects):
    cfg = stats.StatsConfig(n_boot=2000, seed=7)
    objs = stats.object_table(stats.carry_forward(two_objects, 4))
    s = stats.summarize(objs, cfg).iloc[0]
    best = np.array([0.7, 0.9])
    assert s["n"] == 2 and s["early_stopped"] == 2
    assert s["best_dice"] == pytest.approx(0.8)
    assert s["best_sem"] == pytest.approx(sps.sem(best))
    assert s["best_sem"] == pytest.approx(0.1)
    assert (s["best_ci_lo"], s["best_ci_hi"]) == pytest.approx((0.8 - 0.196, 0.8 + 0.196))
    assert (s["best_boot_lo"], s["best_boot_hi"]) == stats.bootstrap_ci(best, 2000, 7)
    assert s["first_dice"] == pytest.approx(0.35) and s["final_dice"] == pytest.approx(0.75)
    assert s["auc_dice"] == pytest.approx(((0.5 + 0.7 + 0.6 + 0.6) / 4 + (0.2 + 0.9 + 0.9 + 0.9) / 4) / 2)
    assert (s["noc80"], s["noc80_failed"], s["noc90"], s["noc90_failed"]) == (3.0, 1, 3.0, 1)
    assert s["fp_slices"] == 1.0 and s["hd95_undefined"] == 2 and math.isnan(s["hd95"])
    assert s["structure"] == "spleen"


def test_mean_sem_ci_matches_scipy():
    x = np.array([0.91, 0.42, 0.77, 0.63, 0.85, 0.12, 0.58])
    mean, sem, lo, hi = stats.mean_sem_ci(x)
    assert mean == pytest.approx(np.mean(x))
    assert sem == pytest.approx(sps.sem(x))
    assert (lo, hi) == pytest.approx((np.mean(x) - 1.96 * sps.sem(x), np.mean(x) + 1.96 * sps.sem(x)))
    # hand case: [0, 1] -> mean .5, sd sqrt(.5), sem .5
    assert stats.mean_sem_ci(np.array([0.0, 1.0])) == pytest.approx((0.5, 0.5, 0.5 - 0.98, 0.5 + 0.98))
    m1 = stats.mean_sem_ci(np.array([0.3, NAN]))
    assert m1[0] == 0.3 and all(math.isnan(v) for v in m1[1:])


def test_bootstrap_reproducible_and_matches_numpy_and_scipy():
    x = np.array([0.91, 0.42, 0.77, 0.63, 0.85, 0.12, 0.58, 0.70, 0.66, 0.49])
    ci = stats.bootstrap_ci(x, 5000, seed=3)
    assert ci == stats.bootstrap_ci(x, 5000, seed=3)
    assert ci != stats.bootstrap_ci(x, 5000, seed=4)
    rng = np.random.default_rng(3)
    means = x[rng.integers(0, x.size, size=(5000, x.size))].mean(axis=1)
    assert ci == tuple(np.quantile(means, [0.025, 0.975]))
    ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=np.random.default_rng(0))
    big = stats.bootstrap_ci(x, 20000, seed=0)
    assert big[0] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert big[1] == pytest.approx(ref.confidence_interval.high, abs=0.01)
    assert stats.bootstrap_ci(np.array([0.4]), 100) == (0.4, 0.4)
    assert all(math.isnan(v) for v in stats.bootstrap_ci(np.array([]), 100))


def test_curves_per_round(two_objects):
    c = stats.curves(stats.carry_forward(two_objects, 4)).set_index("round")
    assert c.loc[1, "mean"] == pytest.approx(0.35) and c.loc[4, "mean"] == pytest.approx(0.75)
    assert c.loc[4, "sem"] == pytest.approx(sps.sem([0.6, 0.9]))
    assert c.loc[4, "lo"] == pytest.approx(0.75 - 1.96 * sps.sem([0.6, 0.9]))
    assert c["carried"].tolist() == [0, 0, 1, 2] and c["n"].tolist() == [2, 2, 2, 2]


# -- reading results folders ---------------------------------------------------------------------

def _write_run(folder: Path, rows: list[dict], model: dict | None = None, data_name: str = "BTCV",
               columns=ROUND_COLUMNS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"protocols": [{"name": "he2024", "variant": "paper", "max_rounds": 8, "params": {"rounds": 8}}],
            "model": model or {"name": "classical", "args": {}}, "data": {"spec": "nowhere", "name": data_name},
            "settings": ["full"], "seed": 0}
    (folder / "run.json").write_text(json.dumps(meta))
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join(repr(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns))
    (folder / "rounds.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_read_run_exact_floats_and_metadata(tmp_path, two_objects):
    rows = two_objects.to_dict("records")
    rows[0]["dice"] = 0.1 + 0.2  # 0.30000000000000004 survives the round trip
    run = read_run(_write_run(tmp_path / "r", rows))
    assert run.rounds["dice"].iloc[0] == 0.1 + 0.2
    assert math.isnan(run.rounds.loc[run.rounds["case"] == "a", "hd95"].iloc[2])
    assert run.rounds["dataset"].unique().tolist() == ["BTCV"]
    assert run.rounds["variant"].unique().tolist() == ["paper"]
    assert run.max_rounds("he2024") == 8  # run.json max_rounds, not the rounds seen (3)
    assert read_run(tmp_path / "r", dataset="mine").dataset == "mine"


def test_read_run_fills_protocol_from_run_json(tmp_path, two_objects):
    cols = tuple(c for c in ROUND_COLUMNS if c != "protocol")
    run = read_run(_write_run(tmp_path / "r", two_objects.to_dict("records"), columns=cols))
    assert run.rounds["protocol"].unique().tolist() == ["he2024"]
    assert list(run.rounds.columns[:14]) == list(ROUND_COLUMNS)


def test_read_run_rejects_bad_folders(tmp_path, two_objects):
    with pytest.raises(InputError, match="no run.json"):
        read_run(tmp_path)
    rows = two_objects.to_dict("records")
    bad = _write_run(tmp_path / "dup", rows + rows[:1])
    with pytest.raises(InputError, match="duplicate row for case a label 1 setting full round 1"):
        read_run(bad)
    cols = tuple(c for c in ROUND_COLUMNS if c != "dice")
    with pytest.raises(InputError, match="missing column"):
        read_run(_write_run(tmp_path / "nodice", rows, columns=cols))
    (tmp_path / "nodice" / "rounds.csv").unlink()
    with pytest.raises(InputError, match="rounds.csv: missing"):
        read_run(tmp_path / "nodice")


def test_read_runs_keeps_same_named_models_apart(tmp_path, two_objects):
    rows = two_objects.to_dict("records")
    a = _write_run(tmp_path / "a", rows, {"name": "classical", "args": {"x": 1}})
    b = _write_run(tmp_path / "b", rows, {"name": "classical", "args": {"x": 2}})
    runs = read_runs([a, b])
    assert [r.rounds["model"].iloc[0] for r in runs] == ["classical (a)", "classical (b)"]
    same = read_runs([a, _write_run(tmp_path / "c", rows, {"name": "classical", "args": {"x": 1}})])
    assert [r.rounds["model"].iloc[0] for r in same] == ["classical", "classical"]


# -- tables ----------------------------------------------------------------------------------------

def test_formatting_and_escaping():
    assert tables.fmt(0.12345) == "0.123" and tables.fmt(NAN) == "-" and tables.fmt(np.int64(4)) == "4"
    assert tables.fmt_ci(0.1, 0.25) == "[0.100, 0.250]" and tables.fmt_ci(NAN, 1.0) == "-"
    assert tables.fmt_pair(0.926, 0.897) == "0.926/0.897"
    df = pd.DataFrame({"a|b": ["x|y"], "c": ["10% of a_b & c"]})
    md = tables.to_markdown(df, ["note"])
    assert md.splitlines()[0] == "| a\\|b | c |" and "| x\\|y |" in md and md.endswith("- note\n")
    tex = tables.to_latex(df, "cap_1")
    assert r"10\% of a\_b \& c \\" in tex and r"\caption{cap\_1}" in tex and r"\toprule" in tex
    assert "&lt;" in tables.to_html(pd.DataFrame({"x": ["<b>"]}))


def test_write_table_csv_keeps_full_precision(tmp_path):
    raw = pd.DataFrame({"v": [0.1 + 0.2, 1 / 3]})
    paths = tables.write_table(raw, pd.DataFrame({"v": ["0.300", "0.333"]}), tmp_path, "t", "cap")
    back = pd.read_csv(paths["csv"])
    assert back["v"].tolist() == [0.1 + 0.2, 1 / 3]
    assert paths["md"].read_text().startswith("**cap**") and paths["tex"].exists()


# -- Table 1 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("kidney_right", "right kidney"),
    ("kidney_left", "left kidney"),
    ("inferior_vena_cava", "inferior vena cava"),
    ("portal_vein_and_splenic_vein", "portal vein and splenic vein"),
    ("adrenal_gland_right", "right adrenal gland"),
    ("Liver", "liver"),
    ("liver_tumor", "hepatic tumor"),
    ("right kidney", "right kidney"),
])
def test_paper_structure_names(name, expected):
    assert table1.paper_structure(name) == expected


def test_paper_dataset_names():
    assert table1.paper_dataset("btcv") == "BTCV"
    assert table1.paper_dataset("BTCV-Abdomen") == "BTCV"
    assert table1.paper_dataset("Task09_Spleen") == "MSD09"
    assert table1.paper_dataset("AbdomenCT-1K") == "AbdomenCT-1K"
    assert table1.paper_dataset("totalseg-abdomen") is None


def test_packaged_table1_values():
    t = table1.load_paper_table()
    assert t.shape == (25, 10)
    rk = t[(t["dataset"] == "BTCV") & (t["structure"] == "right kidney")].iloc[0]
    assert (rk["sam2_fg_only"], rk["sam2_full"], rk["nnunet"]) == (0.926, 0.897, 0.951)
    assert math.isnan(t[(t["dataset"] == "MSD03") & (t["structure"] == "hepatic tumor")]["totalsegmentator"].iloc[0])
    ref = Path(__file__).resolve().parents[2] / "shared" / "reference" / "he2024-table1.csv"
    if ref.exists():  # the typed numbers agree with the shared reference copy
        pd.testing.assert_frame_equal(t, pd.read_csv(ref))


def test_table1_view_matches_by_dataset_and_structure(two_objects):
    rows = two_objects.assign(label_name="kidney_right").to_dict("records")
    rows += [dict(r, setting="fg-only", dice=r["dice"] + 0.05) for r in rows]
    df = pd.DataFrame(rows).assign(dataset="btcv", model="m", variant="paper", run="r")
    summ = stats.summarize(stats.object_table(stats.carry_forward(df, 4)), stats.StatsConfig(n_boot=200))
    v = table1.table1_view(summ)
    assert len(v) == 1
    r = v.iloc[0]
    assert (r["structure"], r["paper_dataset"], r["n"]) == ("right kidney", "BTCV", 2)
    assert r["run_full"] == pytest.approx(0.8) and r["run_fg_only"] == pytest.approx(0.85)
    assert (r["sam2_fg_only"], r["sam2_full"]) == (0.926, 0.897)
    # an unknown dataset: every published dataset reporting the structure
    v2 = table1.table1_view(summ.assign(dataset="mine", structure="spleen"))
    assert v2["paper_dataset"].tolist() == ["AbdomenCT-1K", "BTCV", "MSD09"]
    v3 = table1.table1_view(summ.assign(dataset="mine", structure="spleen"), ["MSD09"])
    assert v3["paper_dataset"].tolist() == ["MSD09"] and v3["sam2_fg_only"].iloc[0] == 0.898


def test_report_of_a_run_without_rounds(tmp_path):
    from annosim.report.build import build_report

    run = _write_run(tmp_path / "r", [])
    with pytest.raises(InputError, match="no rounds recorded in any results folder"):
        build_report([run], tmp_path / "out")
