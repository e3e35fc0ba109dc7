"""Native metrics (DESIGN section 6): a protocol's source's own metric is one entry of
annosim.metrics.native, filled only on the rows of protocols that list it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annosim.config import make_spec, validate
from annosim.errors import ConfigError
from annosim.metrics.registry import MetricSet, column_info


def _masks():
    gt = np.zeros((3, 4, 4), bool)
    pred = np.zeros_like(gt)
    gt[0, :2, :2] = True      # 4 px
    pred[0, :2, :1] = True    # 2 px inside: |P∧G| 2, |P∨G| 4
    pred[2, 0, 0] = True      # 1 px on a frame with no truth
    return pred, gt


def test_native_metric_only_on_the_rows_of_protocols_that_list_it():
    pred, gt = _masks()
    metrics = MetricSet.with_user(native=["iou"])
    assert metrics.columns[-1] == "iou" and metrics.native_names == ["iou"]
    on = metrics.compute(pred, gt, (1.0, 1.0, 1.0), native=("iou",))
    assert on["iou"] == pytest.approx(2 / 5)            # union 4 + the extra pixel
    off = metrics.compute(pred, gt, (1.0, 1.0, 1.0))
    assert math.isnan(off["iou"]) and off["dice"] == on["dice"] == pytest.approx(4 / 7)


def test_native_metric_on_the_frames_the_source_scores():
    pred, gt = _masks()
    metrics = MetricSet.with_user(native=["iou"])
    scored = np.array([True, True, False])              # the source does not score frame 2
    assert metrics.compute(pred, gt, (1.0, 1.0, 1.0), native=("iou",), scored=scored)["iou"] == 0.5


def test_a_run_holds_the_native_metrics_of_its_protocols_and_run_json_names_them(tmp_path):
    spec = make_spec(data="unused", out=str(tmp_path / "o"), protocols=("he2024", "ritm-noc"))
    run = validate(spec, check_model=False)
    assert run.metrics.native_names == ["iou"]
    assert [m.column for m in column_info(run.metrics.describe())][-1] == "iou"
    assert validate(make_spec(data="unused", out=str(tmp_path / "o"), protocols=("he2024",)),
                    check_model=False).metrics.native_names == []


def test_unknown_native_metric_is_refused():
    with pytest.raises(ConfigError, match="unknown native metric"):
        MetricSet.with_user(native=["no-such"])
