"""Per-protocol sensitivity view (annosim.report.sensitivity.protocol_detail): each protocol's
native headline beside annosim's Dice, at budgets matched across protocols, with paired
differences; on a hand-built results table whose values are known by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from annosim.report.sensitivity_detail import detail_display, headline_column, protocol_detail
from annosim.report.stats import carry_forward, object_table


def _rows(protocol, case, slices, clicks, dice):
    return [dict(dataset="d", model="m", run="r", case=case, label=1, label_name="spleen", setting="full",
                 protocol=protocol, round=k + 1, annotated_slices=s, clicks=c, dice=v, nsd=0.5, model_seconds=0.0)
            for k, (s, c, v) in enumerate(zip(slices, clicks, dice))]


def _detail():
    rows = (_rows("he2024", "a", [1, 2, 3], [5, 8, 11], [0.5, 0.7, 0.6])
            + _rows("he2024", "b", [1, 2], [5, 8], [0.4, 0.8])  # stopped early: carried to round 3
            + _rows("cvpr25", "a", [1, 2, 2, 3, 3, 3], range(6), [0.6, 0.7, 0.7, 0.8, 0.8, 0.9])
            + _rows("cvpr25", "b", [1, 1, 2, 2, 2, 2], range(6), [0.3, 0.5, 0.6, 0.6, 0.7, 0.7]))
    full = carry_forward(pd.DataFrame(rows), {"he2024": 3, "cvpr25": 6})
    return protocol_detail(full, object_table(full), n_boot=200, seed=0).set_index("protocol")


def test_headline_of_each_protocol():
    assert headline_column("cvpr25") == ("cvpr25_dsc_auc", "DSC AUC")
    assert headline_column("ritm-noc") == ("ritm_noc90", "NoC@90 (IoU)")
    assert headline_column("no-such") == ("", "")


def test_native_beside_common_dice_best_final_and_auc():
    d = _detail()
    assert list(d.index) == ["he2024", "cvpr25"] and (d["n"] == 2).all() and (d["reference"] == "he2024").all()
    cv, he = d.loc["cvpr25"], d.loc["he2024"]
    # CVPR25 DSC AUC: a 0.35 + 0.7 + 0.8 + 0.8 + 0.45 = 3.1, b 0.25 + 0.6 + 0.6 + 0.7 + 0.35 = 2.5
    assert cv["native"] == "DSC AUC" and cv["native_value"] == pytest.approx(2.8)
    assert he["native"] == "" and pd.isna(he["native_value"])
    assert he["best_dice"] == pytest.approx(0.75) and he["final_dice"] == pytest.approx(0.7)
    assert he["auc_dice"] == pytest.approx((0.6 + 2.0 / 3.0) / 2)
    assert cv["best_dice"] == pytest.approx(0.8) and cv["clicks"] == 5 and he["clicks"] == pytest.approx(9.5)


def test_matched_budgets_and_paired_differences():
    """Budget per object = fewest final slices (clicks) of any protocol: a 3 slices / 5 clicks,
    b 2 / 5. Dice at it: he2024 a 0.6 / 0.5, b 0.8 / 0.4; cvpr25 a 0.9 / 0.9, b 0.7 / 0.7."""
    d = _detail()
    cv, he = d.loc["cvpr25"], d.loc["he2024"]
    assert he["dice_at_slices"] == pytest.approx(0.7) and cv["dice_at_slices"] == pytest.approx(0.8)
    assert he["dice_at_clicks"] == pytest.approx(0.45) and cv["dice_at_clicks"] == pytest.approx(0.8)
    assert cv["diff_best"] == pytest.approx(0.05) and cv["diff_slices"] == pytest.approx(0.1)
    assert cv["diff_clicks"] == pytest.approx(0.35)
    assert -0.1 - 1e-12 <= cv["diff_best_lo"] <= cv["diff_best_hi"] <= 0.2 + 1e-12
    assert 0.3 - 1e-12 <= cv["diff_clicks_lo"] <= cv["diff_clicks_hi"] <= 0.4 + 1e-12
    assert he["diff_best"] == 0.0
    shown = detail_display(d.reset_index())
    assert shown.loc[0, "Diff best [95% CI]"] == "ref." and shown.loc[1, "Source's own"] == "DSC AUC 2.80"


# -- a real run: cvpr25 and ritm-noc on the sample CT, the report checked against rounds.csv ------

@pytest.fixture(scope="module")
def cvpr_ritm_report(shared_data, tmp_path_factory):
    from annosim.cli import main

    d = shared_data / "totalseg-abdomen"
    if not d.is_dir():
        pytest.skip(f"{d} not found: sample CT needed for this test")
    base = tmp_path_factory.mktemp("cvpr_ritm")
    run, out = base / "run", base / "report"
    assert main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", "classical",
                 "--protocol", "cvpr25,ritm-noc", "--labels", "gallbladder,kidney_left", "--settings", "fg-only",
                 "--no-surface-metrics", "--out", str(run), "--quiet"]) == 0
    assert main(["report", str(run), "--out", str(out), "--n-boot", "200", "--no-qc"]) == 0
    return run, out


def test_native_metrics_of_a_real_run_equal_rounds_csv(cvpr_ritm_report):
    """CVPR25 DSC AUC = 0.5 d2 + d3 + d4 + d5 + 0.5 d6 and RITM NoC@90 (first click with IoU >= 0.9,
    else 20), recomputed by hand from rounds.csv, are what objects.csv and summary.csv hold."""
    import numpy as np

    run, out = cvpr_ritm_report
    rounds = pd.read_csv(run / "rounds.csv")
    objects = pd.read_csv(out / "objects.csv").set_index(["label", "protocol"])
    for label, grp in rounds[rounds["protocol"] == "cvpr25"].groupby("label"):
        d = grp.sort_values("round")["dice"].to_numpy()
        assert len(d) == 6
        auc = 0.5 * d[1] + d[2] + d[3] + d[4] + 0.5 * d[5]
        assert objects.loc[(label, "cvpr25"), "cvpr25_dsc_auc"] == pytest.approx(auc)
        assert objects.loc[(label, "cvpr25"), "cvpr25_dsc_final"] == pytest.approx(d[5])
    for label, grp in rounds[rounds["protocol"] == "ritm-noc"].groupby("label"):
        iou = grp.sort_values("round")["iou"].to_numpy()
        hit = np.flatnonzero(iou.astype(np.float32) >= np.float32(0.9))
        assert objects.loc[(label, "ritm-noc"), "ritm_noc90"] == (hit[0] + 1 if hit.size else 20)
        assert len(iou) == 20 or iou[-1] >= 0.9  # the protocol stops at the target IoU only
    detail = pd.read_csv(out / "sensitivity_detail.csv").set_index(["structure", "protocol"])
    assert set(detail.index.get_level_values("protocol")) == {"cvpr25", "ritm-noc"}
    for name in ("gallbladder", "kidney_left"):
        label = int(rounds.loc[rounds["label_name"] == name, "label"].iloc[0])
        assert detail.loc[(name, "cvpr25"), "native_value"] == pytest.approx(
            objects.loc[(label, "cvpr25"), "cvpr25_dsc_auc"])
        assert detail.loc[(name, "ritm-noc"), "native"] == "NoC@90 (IoU)"
    assert "Source's own" in (out / "summary.md").read_text()
    assert "sensitivity-detail" in (out / "report.html").read_text()
