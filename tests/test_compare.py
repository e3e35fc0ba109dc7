"""``annosim compare``: pairing, Wilcoxon p-values and bootstrap CIs against scipy/numpy on fixed
data, and two real runs of the classical model on ../shared/data/totalseg-abdomen that differ by
one model parameter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from annosim.cli import main
from annosim.errors import ConfigError
from annosim.report import stats
from annosim.report.compare import compare_runs, paired_comparison, wilcoxon_p

COLUMNS = ("case", "label", "label_name", "setting", "protocol", "round", "annotated_slices", "clicks", "dice",
           "nsd", "hd95", "fp_slices", "gt_slices", "model_seconds")
LABELS = "kidney_right,gallbladder,aorta"


def _write(folder: Path, best: dict[tuple[str, str, str], list[float]], protocol: str = "he2024",
           model: dict | None = None, values: dict[str, int] | None = None, data: dict | None = None) -> Path:
    """A results folder whose objects (case, structure, setting) have the given Dice per round;
    ``values``: label value of each structure name."""
    folder.mkdir(parents=True)
    values = values or {"liver": 5, "spleen": 1}
    lines = [",".join(COLUMNS)]
    for (case, name, setting), dices in best.items():
        for k, d in enumerate(dices, 1):
            lines.append(f"{case},{values[name]},{name},{setting},{protocol},{k},{k},{3 * k},{d!r},0.5,2.0,0,9,0.1")
    (folder / "rounds.csv").write_text("\n".join(lines) + "\n")
    (folder / "run.json").write_text(json.dumps({"protocols": [{"name": protocol}],
                                                 "model": model or {"name": "m"}, "data": data or {"name": "d"}}))
    return folder


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(5)
    a, b = {}, {}
    for i in range(12):
        for name in ("liver", "spleen"):
            base = rng.uniform(0.4, 0.8)
            a[(f"c{i}", name, "full")] = [base, base + 0.05]
            b[(f"c{i}", name, "full")] = [base + rng.normal(0.03, 0.05)]
    b[("c99", "liver", "full")] = [0.5]  # only in B
    return _write(tmp_path / "A", a), _write(tmp_path / "B", b), a, b


def test_pairs_and_statistics_against_scipy(runs, tmp_path):
    ra, rb, a, b = runs
    res = compare_runs(ra, rb, tmp_path / "cmp", n_boot=3000, seed=11)
    assert res.counts == {"only_a": 0, "only_b": 1}
    assert len(res.pairs) == 24
    t = res.table.set_index(["structure", "setting"])
    for name in ("liver", "spleen"):
        cases = sorted(f"c{i}" for i in range(12))  # pairs are ordered by case id, as the bootstrap sees them
        diff = np.array([max(b[(c, name, "full")]) - max(a[(c, name, "full")]) for c in cases])
        np.testing.assert_array_equal(res.pairs.loc[res.pairs["structure"] == name, "diff"].to_numpy(), diff)
        row = t.loc[(name, "full")]
        assert row["n"] == 12
        assert row["mean_diff"] == pytest.approx(diff.mean())
        assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(diff).pvalue)
        assert (row["boot_lo"], row["boot_hi"]) == stats.bootstrap_ci(diff, 3000, 11)
        assert row["n_better"] + row["n_worse"] + row["n_tied"] == 12
    overall = t.loc[("all", "all")]
    all_diff = res.pairs["diff"].to_numpy()
    assert overall["n"] == 24 and overall["wilcoxon_p"] == pytest.approx(sps.wilcoxon(all_diff).pvalue)
    assert res.files["csv"].exists() and res.files["md"].exists() and res.files["tex"].exists()
    again = compare_runs(ra, rb, None, n_boot=3000, seed=11)
    pd.testing.assert_frame_equal(again.table, res.table)  # reproducible with its seed


def test_wilcoxon_edge_cases():
    assert wilcoxon_p(np.zeros(5)) == 1.0
    assert np.isnan(wilcoxon_p(np.array([])))
    d = np.array([0.1, -0.02, 0.05, 0.07, 0.0, 0.03])
    assert wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d).pvalue)


def test_identical_runs_tie(runs):
    ra, _, _, _ = runs
    res = compare_runs(ra, ra, n_boot=200)
    assert (res.table["mean_diff"] == 0).all() and (res.table["wilcoxon_p"] == 1.0).all()
    assert (res.table["boot_lo"] == 0).all()


def test_protocol_pairing_rules(tmp_path):
    objs = {("c1", "liver", "full"): [0.5], ("c2", "liver", "full"): [0.6]}
    a = _write(tmp_path / "a", objs, protocol="he2024")
    b = _write(tmp_path / "b", objs, protocol="automatic")
    res = compare_runs(a, b, n_boot=200)
    assert set(res.table["protocol"]) == {"he2024 vs automatic"} and res.table["n"].iloc[-1] == 2
    pairs = res.pairs.assign(protocol="x")
    assert paired_comparison(pairs, 200).iloc[-1]["protocol"] == "x"
    c = tmp_path / "c"
    _write(c, objs, protocol="p1")
    extra = pd.read_csv(c / "rounds.csv").assign(protocol="p2")
    pd.concat([pd.read_csv(c / "rounds.csv"), extra]).to_csv(c / "rounds.csv", index=False)
    with pytest.raises(ConfigError, match="cannot pair runs"):
        compare_runs(a, c)


def test_pair_by_name_where_label_values_differ(tmp_path):
    """Rule: objects pair by case and structure name; liver is 5 in A and 7 in B."""
    a = _write(tmp_path / "a", {("c1", "liver", "full"): [0.5], ("c2", "liver", "full"): [0.6],
                                ("c1", "spleen", "full"): [0.7]})
    b = _write(tmp_path / "b", {("c1", "liver", "full"): [0.55], ("c2", "liver", "full"): [0.8],
                                ("c1", "spleen", "full"): [0.6]}, values={"liver": 7, "spleen": 1})
    res = compare_runs(a, b, n_boot=200)
    liver = res.pairs[res.pairs["structure"] == "liver"]
    assert liver[["case", "label_a", "label_b"]].values.tolist() == [["c1", 5, 7], ["c2", 5, 7]]
    assert liver["diff"].tolist() == pytest.approx([0.05, 0.2])
    assert res.counts == {"only_a": 0, "only_b": 0}
    by_value = compare_runs(a, b, n_boot=200, pair_by="value")  # the old pairing: only spleen (1) pairs
    assert by_value.pairs["structure"].tolist() == ["spleen"] and by_value.counts == {"only_a": 2, "only_b": 2}


def test_name_clash_refused(tmp_path, capsys):
    """Rule: label 3 = kidney_left in A but heart in B is refused: exit 2, one line, no traceback."""
    a = _write(tmp_path / "a", {("c1", "kidney_left", "full"): [0.5]}, values={"kidney_left": 3})
    b = _write(tmp_path / "b", {("c1", "heart", "full"): [0.5]}, values={"heart": 3})
    for extra in ([], ["--pair-by", "value"]):
        assert main(["compare", str(a), str(b), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "label 3 is 'kidney_left'" in err and "'heart'" in err
    # one name on two values within a run cannot pair by name
    c = _write(tmp_path / "c", {("c1", "liver", "full"): [0.5], ("c2", "liver2", "full"): [0.5]},
               values={"liver": 5, "liver2": 6})
    rows = pd.read_csv(c / "rounds.csv").assign(label_name="liver")
    rows.to_csv(c / "rounds.csv", index=False)
    assert main(["compare", str(c), str(c)]) == 2
    assert "labels 5, 6 are all named 'liver'" in capsys.readouterr().err


def test_all_settings_row_averages_each_object(tmp_path):
    """Rule: the all/all row never pools full and fg-only of one object: n = objects, each object's
    difference the mean over its settings."""
    a = _write(tmp_path / "a", {("c1", "liver", "full"): [0.5], ("c1", "liver", "fg-only"): [0.6],
                                ("c2", "liver", "full"): [0.4], ("c2", "liver", "fg-only"): [0.4]})
    b = _write(tmp_path / "b", {("c1", "liver", "full"): [0.7], ("c1", "liver", "fg-only"): [0.6],
                                ("c2", "liver", "full"): [0.5], ("c2", "liver", "fg-only"): [0.7]})
    t = compare_runs(a, b, n_boot=200).table.set_index(["structure", "setting"])
    assert t.loc[("all", "full"), "n"] == 2 and t.loc[("all", "fg-only"), "n"] == 2
    overall = t.loc[("all", "all")]
    assert overall["n"] == 2  # objects c1/liver and c2/liver
    per_object = np.array([(0.2 + 0.0) / 2, (0.1 + 0.3) / 2])
    assert overall["mean_diff"] == pytest.approx(per_object.mean())
    assert overall["mean_a"] == pytest.approx((0.55 + 0.4) / 2)
    assert (overall["boot_lo"], overall["boot_hi"]) == pytest.approx(stats.bootstrap_ci(per_object, 200, 0))


def _pair_folder(tmp_path: Path, name: str, content: bytes) -> tuple[Path, dict]:
    d = tmp_path / name
    d.mkdir()
    (d / "ct.nii.gz").write_bytes(content)
    (d / "seg.nii.gz").write_bytes(b"seg")
    return d, {"spec": f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "layout": "pair", "root": str(d), "name": "ct"}


def test_ambiguous_case_ids_noted(tmp_path):
    """Rule: two pair-layout runs whose cases are both 'ct' are flagged when the images differ,
    not when the two files are identical copies."""
    objs = {("ct", "liver", "full"): [0.5]}
    _, d1 = _pair_folder(tmp_path, "d1", b"image one")
    _, d2 = _pair_folder(tmp_path, "d2", b"image two")
    _, d3 = _pair_folder(tmp_path, "d3", b"image one")
    a = _write(tmp_path / "a", objs, data=d1)
    b = _write(tmp_path / "b", objs, data=d2)
    c = _write(tmp_path / "c", objs, data=d3)
    notes = compare_runs(a, b, n_boot=200).notes
    amb = [n for n in notes if n.startswith("Ambiguous case ids")]
    assert len(amb) == 1 and "1 case id(s)" in amb[0] and "(different files)" in amb[0]
    assert "d1/ct.nii.gz" in amb[0] and "d2/ct.nii.gz" in amb[0]
    assert not [n for n in compare_runs(a, c, n_boot=200).notes if n.startswith("Ambiguous")]  # same bytes
    assert not [n for n in compare_runs(a, a, n_boot=200).notes if n.startswith("Ambiguous")]  # same dataset
    gone = _write(tmp_path / "gone", objs, data={"spec": "/nowhere/ct.nii.gz /nowhere/seg.nii.gz", "layout": "pair"})
    amb = [n for n in compare_runs(a, gone, n_boot=200).notes if n.startswith("Ambiguous")]
    assert len(amb) == 1 and "/nowhere/ct.nii.gz (not readable here to check)" in amb[0]
    msd = _write(tmp_path / "msd", objs, data={"spec": "/nowhere/Task09_Spleen", "layout": "msd"})
    amb = [n for n in compare_runs(a, msd, n_boot=200).notes if n.startswith("Ambiguous")]
    assert len(amb) == 1 and "cannot both be opened here" in amb[0]


# -- real runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_runs(shared_data, tmp_path_factory):
    d = shared_data / "totalseg-abdomen"
    base = tmp_path_factory.mktemp("compare")
    out = []
    for name, extra in (("default", []), ("tolerance60", ["--model-arg", "click_tolerance_hu=60"])):
        run = base / name
        assert main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", "classical",
                     "--labels", LABELS, "--out", str(run), "--quiet", *extra]) == 0
        out.append(run)
    return out


def test_compare_real_runs(real_runs, tmp_path, capsys):
    a, b = real_runs
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp"), "--n-boot", "2000"]) == 0
    printed = capsys.readouterr().out
    assert "| all | all | he2024 | 3 |" in printed and "click_tolerance_hu" in printed  # 3 objects x 2 settings
    pairs = pd.read_csv(tmp_path / "cmp" / "pairs.csv")
    best = {}
    for key, run in (("a", a), ("b", b)):
        r = pd.read_csv(run / "rounds.csv")
        best[key] = r.groupby(["case", "label", "setting"])["dice"].max()
    direct = (best["b"] - best["a"]).sort_index()
    got = pairs.rename(columns={"label_a": "label"}).set_index(["case", "label", "setting"])["diff"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), direct.to_numpy(), rtol=0, atol=1e-15)
    assert len(pairs) == 6 and np.any(got.to_numpy() != 0)  # the parameter changes the result
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    overall = table[(table["structure"] == "all") & (table["setting"] == "all")].iloc[0]
    per_object = direct.groupby(level=["case", "label"]).mean()  # each object's two settings averaged
    assert overall["n"] == 3
    assert overall["wilcoxon_p"] == pytest.approx(sps.wilcoxon(per_object.to_numpy()).pvalue)
    assert overall["mean_diff"] == pytest.approx(per_object.mean())
