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
           model: dict | None = None) -> Path:
    """A results folder whose objects (case, structure, setting) have the given Dice per round."""
    folder.mkdir(parents=True)
    values = {"liver": 5, "spleen": 1}
    lines = [",".join(COLUMNS)]
    for (case, name, setting), dices in best.items():
        for k, d in enumerate(dices, 1):
            lines.append(f"{case},{values[name]},{name},{setting},{protocol},{k},{k},{3 * k},{d!r},0.5,2.0,0,9,0.1")
    (folder / "rounds.csv").write_text("\n".join(lines) + "\n")
    (folder / "run.json").write_text(json.dumps({"protocols": [{"name": protocol}],
                                                 "model": model or {"name": "m"}, "data": {"name": "d"}}))
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
    assert "| all | all | he2024 | 6 |" in printed and "click_tolerance_hu" in printed
    pairs = pd.read_csv(tmp_path / "cmp" / "pairs.csv")
    best = {}
    for key, run in (("a", a), ("b", b)):
        r = pd.read_csv(run / "rounds.csv")
        best[key] = r.groupby(["case", "label", "setting"])["dice"].max()
    direct = (best["b"] - best["a"]).sort_index()
    got = pairs.set_index(["case", "label", "setting"])["diff"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), direct.to_numpy(), rtol=0, atol=1e-15)
    assert len(pairs) == 6 and np.any(got.to_numpy() != 0)  # the parameter changes the result
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    overall = table[(table["structure"] == "all") & (table["setting"] == "all")].iloc[0]
    assert overall["wilcoxon_p"] == pytest.approx(sps.wilcoxon(direct.to_numpy()).pvalue)
    # the bootstrap resamples the pairs in the order of pairs.csv (structure, setting, protocol, case)
    assert (overall["boot_lo"], overall["boot_hi"]) == pytest.approx(stats.bootstrap_ci(pairs["diff"].to_numpy(), 2000, 0))
    assert overall["mean_diff"] == pytest.approx(direct.mean())
