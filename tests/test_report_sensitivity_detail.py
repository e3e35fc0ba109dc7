"""Per-protocol sensitivity view (annosim.report.sensitivity.protocol_detail): each protocol's
native headline beside annosim's Dice, at budgets matched across protocols, with paired
differences; on a hand-built results table whose values are known by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from annosim.report import tables
from annosim.report.sensitivity import headline_column, protocol_detail
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
    shown = tables.sensitivity_detail_display(d.reset_index())
    assert shown.loc[0, "Diff best [95% CI]"] == "ref." and shown.loc[1, "Source's own"] == "DSC AUC 2.80"
