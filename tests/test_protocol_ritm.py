"""ritm-noc: the rules of RITM's clicker and evaluation loop (SamsungLabs/ritm_interactive_segmentation
@b9b4460; ../shared/reference/protocol-sources.md section 6: K = isegm/inference/clicker.py,
Ev = isegm/inference/evaluation.py, Ut = isegm/inference/utils.py) on hand-built masks, and
annosim's slice choice (its own 3D adaptation)."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.data.case import Case
from annosim.engine.unit import UnitContext, run_unit
from annosim.errors import ConfigError
from annosim.metrics.registry import MetricSet
from annosim.protocols.registry import get_protocol
from annosim.protocols.ritm import ritm_click
from scripted_boxes import ScriptedBoxModel


def run(protocol, model, gt, frames=None):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(protocol.run_object(model, gt, frames, np.random.default_rng(0)))


def test_larger_depth_wins_and_a_tie_goes_negative():
    """K L50-56: positive iff max FN depth > max FP depth; a tie gives a negative click."""
    gt = np.zeros((30, 30), bool)
    gt[10:15, 10:15] = True  # FN 5x5: depth 3 at (12, 12)
    pred = np.zeros_like(gt)
    pred[20:23, 20:23] = True  # FP 3x3: depth 2 at (21, 21)
    assert ritm_click(pred, gt) == (12, 12, True)
    clicked = np.zeros_like(gt)
    clicked[12, 12] = True  # K L45-46: clicked pixels count 0; FN's best left: 2 = FP's -> negative
    assert ritm_click(pred, gt, clicked) == (21, 21, False)


def test_both_maxima_zero_is_a_negative_click_at_the_first_pixel():
    """K L50-56: with no error left on the slice both maxima are 0: a tie, negative, at the first
    raster-order pixel where the (all-zero) map is at its maximum, (0, 0)."""
    gt = np.zeros((8, 8), bool)
    gt[2:5, 2:5] = True
    assert ritm_click(gt, gt) == (0, 0, False)


def test_location_is_the_first_raster_order_pixel_of_the_maximum():
    """K L52-56: np.where(dt == max)[0]: the first pixel in raster (row-major) order."""
    gt = np.zeros((12, 12), bool)
    gt[3:8, 2:8] = True  # 5 rows x 6 columns: depth 3 at row 5, columns 4 and 5
    assert ritm_click(np.zeros_like(gt), gt) == (5, 4, True)
    gt2 = np.zeros((6, 6), bool)
    gt2[0:2, 0:6] = True  # slice edge counts as background (1 px zero padding): all depth 1
    assert ritm_click(np.zeros_like(gt2), gt2) == (0, 0, True)


def _gt():
    return np.pad(np.ones((5, 10, 10), bool), ((0, 0), (10, 10), (10, 10)))  # 5 slices of 10x10


def test_stops_on_iou_not_dice():
    """Ev L42-54: stop once IoU >= target (0.90). Round 1 has IoU 425/500 = 0.85 but Dice
    850/925 = 0.919: a Dice rule would stop, the source's IoU rule clicks again."""
    gt = _gt()

    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            pred[4, 10:20, 10:17] = False  # 70 voxels missed ...
            pred[4, 10:15, 17] = False     # ... and 5 more: 75
        return pred

    model = ScriptedBoxModel(volume_fn=vol)
    out = run(get_protocol("ritm-noc"), model, gt)
    assert len(out) == 2 and model.n_propagate == 2
    # click 1: empty start, all slices Dice 0 and 100 errors -> slice 0, deepest pixel (14, 14);
    # click 2: slice 4 (2D Dice 50/125, the worst), on its false negatives: positive
    assert model.click_calls()[0] == ("add_clicks", 0, [(14, 14, 1)], False)
    assert model.click_calls()[1][1] == 4 and model.click_calls()[1][2][0][2] == 1


def test_target_at_least_one_click_and_the_sources_clamp():
    """Sc L78-80: target clamped to >= 0.8 (refused below here); 1.01 (--iou-analysis) never stops."""
    for bad in ("0.5", "0"):
        with pytest.raises(ConfigError):
            get_protocol("ritm-noc", target=bad)
    model = ScriptedBoxModel(volume_fn=lambda m: _gt())  # perfect from click 1
    assert len(run(get_protocol("ritm-noc"), model, _gt())) == 1
    model = ScriptedBoxModel(volume_fn=lambda m: _gt())
    assert len(run(get_protocol("ritm-noc", target="1.01", max_clicks="4"), model, _gt())) == 4


def test_twenty_click_budget_never_repeats_a_pixel_while_errors_remain():
    """Ev L40: at most 20 clicks; K L45-46: clicked pixels are excluded."""
    model = ScriptedBoxModel()  # never improves
    out = run(get_protocol("ritm-noc"), model, _gt())
    assert [o.clicks for o in out] == list(range(1, 21))
    pts = [(c[1], *c[2][0][:2]) for c in model.click_calls()]
    assert len(set(pts)) == 20 and {p[0] for p in pts} == {0}
    assert pts[:2] == [(0, 14, 14), (0, 14, 15)]  # depth 5 at rows/cols 14-15, first in raster order


def test_negative_click_on_overtracking_of_a_truth_slice():
    gt = _gt()

    def vol(model):
        pred = gt.copy()
        pred[2, 0:7, 0:30] = True  # FP band on slice 2: depth 4 at row 3, first column 3
        return pred

    model = ScriptedBoxModel(volume_fn=vol)
    run(get_protocol("ritm-noc", target=0.99), model, gt)
    assert model.click_calls()[1] == ("add_clicks", 2, [(3, 3, 0)], False)


def test_rows_carry_the_native_iou_through_run_unit():
    gt = _gt()
    case = Case("c1", np.zeros(gt.shape, np.float32), gt.astype(np.uint8), (1.0, 1.0, 1.0), {1: "obj"})

    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            pred[3:] = False  # IoU 300/500
        elif model.n_propagate == 2:
            pred[4] = False   # IoU 400/500
        return pred

    model = ScriptedBoxModel(volume_fn=vol)
    model.set_volume(case.image, case.spacing)
    ctx = UnitContext(metrics=MetricSet.with_user(native=["iou"]), surface_metrics=False)
    unit = run_unit(case, model, get_protocol("ritm-noc"), 1, "full", ctx)
    assert [(r["round"], r["clicks"], r["iou"]) for r in unit.rows] == [(1, 1, 0.6), (2, 2, 0.8), (3, 3, 1.0)]
