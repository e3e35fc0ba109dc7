"""Object-level native metrics (annosim.metrics.native_object): the CVPR 2025 challenge's DSC/NSD
AUC and final values (CVPR25_iter_eval.py @748e862 L495-533) and RITM's NoC@80/85/90 and mIoU@k
(isegm/inference/utils.py L79-96, scripts/evaluate_model.py L195-209 @b9b4460), on hand-built
results tables whose values are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annosim.metrics.native_object import RITM_THRESHOLDS, ritm_noc, trapezoid_auc
from annosim.report.stats import StatsConfig, carry_forward, object_table, summarize


def _rows(protocol, case, label, column_values):
    n = len(next(iter(column_values.values())))
    rows = []
    for r in range(n):
        row = dict(dataset="d", model="m", run="r", case=case, label=label, label_name=f"s{label}",
                   setting="full", protocol=protocol, round=r + 1, annotated_slices=1, clicks=r,
                   model_seconds=0.0, dice=0.5, nsd=0.5, iou=0.5)
        row.update({c: v[r] for c, v in column_values.items()})
        rows.append(row)
    return rows


def _objects(rows, max_rounds):
    full = carry_forward(pd.DataFrame(rows), max_rounds)
    return object_table(full).set_index(["case", "label"])


def test_trapezoid_is_the_sources_cumulative_trapezoid_on_unit_spacing():
    """I L530: cumulative_trapezoid(dscs[-5:], np.arange(5))[-1] = 0.5 d2 + d3 + d4 + d5 + 0.5 d6."""
    integrate = pytest.importorskip("scipy.integrate")
    d = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    assert trapezoid_auc(d) == pytest.approx(0.25 + 0.6 + 0.7 + 0.8 + 0.45)
    assert trapezoid_auc(d) == pytest.approx(integrate.cumulative_trapezoid(d, np.arange(5))[-1])


def test_cvpr25_auc_over_the_five_click_rounds_and_nsd_zero_at_case_mean_dsc_0_2():
    """I L495-505, L530-533: AUC over runs 2-6 only (the box run excluded); NSD is 0 in a run whose
    case-mean DSC is not > 0.2 (strict; the mean over the case's classes); final = run 6."""
    a = _rows("cvpr25", "c1", 1, {"dice": [0.1, 0.3, 0.6, 0.7, 0.8, 0.9],
                                  "cvpr25_nsd": [0.2, 0.4, 0.5, 0.6, 0.7, 0.8]})
    b = _rows("cvpr25", "c1", 2, {"dice": [0.1, 0.1, 0.1, 0.1, 0.1, 0.3], "cvpr25_nsd": [0.1] * 6})
    obj = _objects(a + b, {"cvpr25": 6})
    # case-mean DSC per run: 0.1, 0.2 (gated: not > 0.2), 0.35, 0.4, 0.45, 0.6
    assert obj.loc[("c1", 1), "cvpr25_dsc_auc"] == pytest.approx(0.15 + 0.6 + 0.7 + 0.8 + 0.45)
    assert obj.loc[("c1", 1), "cvpr25_nsd_auc"] == pytest.approx(0.0 + 0.5 + 0.6 + 0.7 + 0.4)
    assert obj.loc[("c1", 1), "cvpr25_dsc_final"] == 0.9 and obj.loc[("c1", 1), "cvpr25_nsd_final"] == 0.8
    assert obj.loc[("c1", 2), "cvpr25_dsc_auc"] == pytest.approx(0.05 + 0.1 + 0.1 + 0.1 + 0.15)
    assert obj.loc[("c1", 2), "cvpr25_nsd_auc"] == pytest.approx(0.0 + 0.1 + 0.1 + 0.1 + 0.05)
    assert "ritm_noc90" not in obj.columns  # only the entries the table's protocols list
    both = _objects(a + _rows("ritm-noc", "c1", 1, {"iou": [0.95]}), {"cvpr25": 6, "ritm-noc": 20})
    assert np.isnan(both.loc[("c1", 1)].set_index("protocol").loc["cvpr25", "ritm_noc90"])
    assert both.loc[("c1", 1)].set_index("protocol").loc["ritm-noc", "ritm_noc90"] == 1


def test_cvpr25_gate_uses_the_case_not_the_object():
    """The gate is the case's multi-class mean: another case's objects do not enter it."""
    a = _rows("cvpr25", "c1", 1, {"dice": [0.1] * 6, "cvpr25_nsd": [0.3] * 6})
    b = _rows("cvpr25", "c2", 1, {"dice": [0.9] * 6, "cvpr25_nsd": [0.3] * 6})
    obj = _objects(a + b, {"cvpr25": 6})
    assert obj.loc[("c1", 1), "cvpr25_nsd_auc"] == 0.0
    assert obj.loc[("c2", 1), "cvpr25_nsd_auc"] == pytest.approx(4 * 0.3)


def test_ritm_noc_with_failure_twenty_and_float32_comparison():
    """utils.py L79-96: NoC@t = first click with IoU >= t, else max_clicks (20); thresholds
    np.arange(0.8, 0.9 + 0.001, 0.05); IoUs stored as float32 and compared in float32."""
    assert RITM_THRESHOLDS == (0.8, 0.8500000000000001, 0.9000000000000001)
    assert ritm_noc(np.array([0.5, 0.82, 0.86, 0.91]), RITM_THRESHOLDS[2]) == 4
    assert ritm_noc(np.array([0.5, 0.9]), RITM_THRESHOLDS[2]) == 2           # float32(0.9) reaches it
    assert ritm_noc(np.array([0.5, 0.8999999999]), RITM_THRESHOLDS[2]) == 2  # so does this
    assert ritm_noc(np.array([0.5, 0.8999, 0.8999]), RITM_THRESHOLDS[2]) == 3  # not reached: the length
    assert ritm_noc(np.full(20, 0.89), RITM_THRESHOLDS[2]) == 20


def test_ritm_object_metrics_from_carried_forward_rows():
    """NoC@80/85/90 in IoU with failure = 20 (the click budget, max_rounds); >=20@85/90 counts
    objects at NoC 20 (evaluate_model.py's table); mIoU@k = IoU after click k, carried forward."""
    one = _rows("ritm-noc", "c1", 1, {"iou": [0.5, 0.82, 0.86, 0.91]})  # stopped at 0.91
    two = _rows("ritm-noc", "c1", 2, {"iou": [0.1 + 0.01 * k for k in range(20)]})  # never 0.8
    three = _rows("ritm-noc", "c2", 1, {"iou": [0.3, 0.8]})  # stopped early without a target: no
    obj = _objects(one + two + three, {"ritm-noc": 20})
    assert obj.loc[("c1", 1), ["ritm_noc80", "ritm_noc85", "ritm_noc90"]].tolist() == [2, 3, 4]
    assert obj.loc[("c1", 2), ["ritm_noc80", "ritm_noc85", "ritm_noc90"]].tolist() == [20, 20, 20]
    assert obj.loc[("c2", 1), ["ritm_noc80", "ritm_noc85", "ritm_noc90"]].tolist() == [2, 20, 20]
    assert obj.loc[("c1", 1), ["ritm_miou1", "ritm_miou3", "ritm_miou5", "ritm_miou20"]].tolist() == \
        [0.5, 0.86, 0.91, 0.91]
    assert obj.loc[("c1", 2), "ritm_miou10"] == pytest.approx(0.19)
    assert obj.loc[("c1", 2), "ritm_over_max90"] == 1 and obj.loc[("c1", 1), "ritm_over_max90"] == 0
    assert "cvpr25_dsc_auc" not in obj.columns

    summary = summarize(object_table(carry_forward(pd.DataFrame(one + two + three), {"ritm-noc": 20})),
                        StatsConfig(n_boot=10))
    s1 = summary[summary["structure"] == "s1"].iloc[0]  # objects c1/1 and c2/1
    assert s1["ritm_noc90"] == pytest.approx((4 + 20) / 2) and s1["ritm_over_max90"] == 1
    assert s1["ritm_miou1"] == pytest.approx((0.5 + 0.3) / 2)
    assert "cvpr25_dsc_auc" not in summary.columns
