"""Rules of the he2024 protocol (DESIGN section 5) on synthetic masks where the right click is
known by hand, driven through a scripted model whose predictions are fixed."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.protocols.clicks import (
    eroded_errors,
    first_click,
    largest_component,
    region_center,
    worst_slice,
)
from annosim.protocols.registry import get_protocol
from annosim.engine.unit import UnitContext, object_rng, run_unit
from annosim.data.case import Case
from scripted import ScriptedModel


def run(protocol, model, gt, frames=None, rng=None):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(protocol.run_object(model, gt, frames, rng or np.random.default_rng(0)))


def square_object(shape=(5, 40, 40), zs=range(1, 4), rows=(10, 30), cols=(10, 30)):
    gt = np.zeros(shape, bool)
    for z in zs:
        gt[z, rows[0]:rows[1], cols[0]:cols[1]] = True
    return gt


# --- rule 1: the first click ------------------------------------------------------------------
def test_first_click_at_centre_of_cube():
    gt = np.zeros((6, 20, 30), bool)
    gt[2:5, 10:15, 20:25] = True
    assert first_click(gt) == (3, 12, 22)


def test_first_click_centroid_outside_object_takes_nearest_voxel_lowest_index():
    gt = np.zeros((1, 32, 32), bool)
    gt[0, 10:21, 10:21] = True
    gt[0, 11:20, 11:20] = False  # a 1-px square ring; centroid (0, 15, 15) is in the hole
    # four ring voxels at distance 5: (0,10,15) (0,15,10) (0,15,20) (0,20,15) -> lowest
    assert first_click(gt) == (0, 10, 15)


def test_first_click_two_components_takes_the_largest():
    gt = np.zeros((10, 20, 20), bool)
    gt[0:3, 0:3, 0:3] = True  # 27 voxels
    gt[5:9, 10:14, 10:14] = True  # 64 voxels, centroid (6.5, 11.5, 11.5)
    assert first_click(gt) == (6, 11, 11)


def test_first_click_equal_components_first_in_raster_order():
    gt = np.zeros((2, 12, 12), bool)
    gt[0:2, 5:7, 5:7] = True
    gt[0:2, 0:2, 10:12] = True  # first voxel (0,0,10) precedes (0,5,5) in (z,y,x) order
    comp = largest_component(gt)
    assert comp[0, 0, 10] and not comp[0, 5, 5]
    assert first_click(gt) == (0, 0, 10)


def test_first_click_is_26_connected():
    gt = np.zeros((3, 5, 5), bool)
    gt[0, 0, 0] = gt[1, 1, 1] = gt[2, 2, 2] = True  # diagonal chain: one 26-component
    gt[0, 4, 4] = True
    assert largest_component(gt).sum() == 3


# --- rule 2: the initial slice ------------------------------------------------------------------
def test_erosion_removes_errors_thinner_than_3px_and_ends_clicks():
    gt = square_object()
    def minus_strip(model, z):
        pred = gt[z].copy()
        pred[:, 10:12] = False  # 2-px false-negative strip: gone after 3x3 erosion
        return pred
    model = ScriptedModel(slice_fn=minus_strip, volume_fn=lambda m: gt)
    out = run(get_protocol("he2024"), model, gt)
    assert model.click_calls() == [("add_clicks", 2, [(19, 19, 1)], False)]
    assert out[0].clicks == 1


def test_three_px_error_survives_erosion_and_is_clicked_at_its_centre():
    gt = square_object()
    def minus_strip(model, z):
        pred = gt[z].copy()
        if len(model.clicks.get(z, [])) < 2:
            pred[:, 10:13] = False  # 3-px strip: erodes to column 11, rows 11..28
        return pred
    model = ScriptedModel(slice_fn=minus_strip, volume_fn=lambda m: gt)
    run(get_protocol("he2024"), model, gt)
    calls = model.click_calls()
    assert calls[1] == ("add_clicks", 2, [(19, 11, 1)], False)  # centroid (19.5, 11): tie -> y 19
    assert len(calls) == 2  # the slice is then perfect: no more clicks


def test_eroded_errors_outside_counts_as_background():
    pred = np.zeros((5, 5), bool)
    gt = np.ones((5, 5), bool)
    fn, fp = eroded_errors(pred, gt, 3)
    assert fn.sum() == 9 and fn[1:4, 1:4].all() and not fp.any()


def _fn_fp_slice(gt2d, fn_rows, fp_rows):
    pred = gt2d.copy()
    pred[fn_rows[0]:fn_rows[1], 10:30] = False
    pred[fp_rows[0]:fp_rows[1], 10:30] = True
    return pred


def test_fp_wins_a_tie_with_fn():
    gt = square_object(shape=(5, 50, 40))
    # FN rows 10-14 and FP rows 30-34, both erode to 3 x 18 = 54 pixels
    model = ScriptedModel(slice_fn=lambda m, z: _fn_fp_slice(gt[z], (10, 15), (30, 35)))
    run(get_protocol("he2024", initial_clicks=2), model, gt)
    assert model.click_calls()[1] == ("add_clicks", 2, [(32, 19, 0)], False)


def test_larger_fn_gives_positive_click():
    gt = square_object(shape=(5, 50, 40))
    # FN rows 10-15 erode to 4 x 18 = 72 > 54
    model = ScriptedModel(slice_fn=lambda m, z: _fn_fp_slice(gt[z], (10, 16), (30, 35)))
    run(get_protocol("he2024", initial_clicks=2), model, gt)
    assert model.click_calls()[1] == ("add_clicks", 2, [(12, 19, 1)], False)


def test_initial_slice_accumulates_up_to_five_clicks():
    gt = square_object()
    model = ScriptedModel()  # always predicts nothing
    out = run(get_protocol("he2024", rounds=1), model, gt)
    calls = model.click_calls()
    assert len(calls) == 5 and all(len(c[2]) == 1 and c[3] is False for c in calls)
    assert [c[0] for c in model.calls].count("start_object") == 1
    assert out[0].clicks == 5 and len(out[0].prompts) == 5 and len(out) == 1


# --- rules 3-4: rounds ------------------------------------------------------------------------
def test_worst_slice_ties_by_error_pixels_then_z():
    dice = np.array([0.5, 0.2, 0.2, 0.2, 0.9])
    errors = np.array([10, 5, 8, 8, 1])
    cand = np.ones(5, bool)
    assert worst_slice(dice, errors, cand) == 2
    cand[2] = False
    assert worst_slice(dice, errors, cand) == 3
    assert worst_slice(dice, errors, np.zeros(5, bool)) is None


def test_round_picks_worst_slice_and_gives_three_clicks():
    gt = square_object(shape=(5, 50, 40), zs=range(0, 5))
    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            # slice 3: FN rows 10-15 (72 px eroded) and FP rows 30-34 (54 px eroded)
            pred[3] = _fn_fp_slice(gt[3], (10, 16), (30, 35))
            pred[1, 10:13, 10:30] = False  # slice 1: better Dice, 3-px FN band
        return pred
    model = ScriptedModel(slice_fn=lambda m, z: gt[z], volume_fn=vol)
    rng_expected = np.random.default_rng(7)
    out = run(get_protocol("he2024"), model, gt, rng=np.random.default_rng(7))
    fn, _ = eroded_errors(vol.__call__(type("M", (), {"n_propagate": 1})())[3], gt[3], 3)
    coords = np.argwhere(fn)
    ry, rx = coords[int(rng_expected.integers(coords.shape[0]))]
    last = model.click_calls()[-1]
    assert last == ("add_clicks", 3, [(12, 19, 1), (32, 19, 0), (int(ry), int(rx), 1)], False)
    assert [o.round for o in out] == [1, 2]  # round 2 is perfect -> no click -> stop
    assert out[1].annotated_slices == 2 and out[1].clicks == 1 + 3


def test_random_click_comes_from_fp_on_a_tie():
    gt = square_object(shape=(5, 50, 40), zs=range(0, 5))
    def vol(model):
        pred = gt.copy()
        if model.n_propagate == 1:
            pred[3] = _fn_fp_slice(gt[3], (10, 15), (30, 35))  # 54 vs 54
        return pred
    model = ScriptedModel(slice_fn=lambda m, z: gt[z], volume_fn=vol)
    run(get_protocol("he2024"), model, gt, rng=np.random.default_rng(3))
    y, x, lab = model.click_calls()[-1][2][2]
    assert lab == 0 and 31 <= y <= 33 and 11 <= x <= 28


def test_stop_when_no_click_is_possible():
    gt = square_object(zs=range(0, 5))
    def vol(model):
        pred = gt.copy()
        pred[:, 10:30, 10:12] = False  # 2-px FN on every slice: nothing survives erosion
        return pred
    model = ScriptedModel(slice_fn=lambda m, z: gt[z], volume_fn=vol)
    out = run(get_protocol("he2024"), model, gt)
    assert [o.round for o in out] == [1]


def test_eight_round_cap_and_annotated_slices_count_distinct():
    gt = np.zeros((5, 40, 40), bool)
    gt[0:4, 10:20, 10:20] = True
    gt[4, 10:24, 10:24] = True  # the biggest slice: always the worst under an empty prediction
    model = ScriptedModel()
    out = run(get_protocol("he2024"), model, gt)
    assert [o.round for o in out] == list(range(1, 9))
    assert {c[1] for c in model.click_calls()[5:]} == {4}
    assert [o.annotated_slices for o in out] == [1] + [2] * 7
    assert [o.clicks for o in out] == [5, 7, 9, 11, 13, 15, 17, 19]  # FN only: centre + random


def test_select_from_all_includes_prediction_only_slices():
    gt = square_object(zs=range(1, 4))
    def vol(model):
        pred = gt.copy()
        pred[4, 10:30, 10:30] = True  # over-tracking on slice 4 (no truth there): Dice 0
        return pred
    out_gt = run(get_protocol("he2024"), ScriptedModel(lambda m, z: gt[z], vol), gt)
    assert len(out_gt) == 1  # slices 1-3 perfect: nothing to click
    model = ScriptedModel(lambda m, z: gt[z], vol)
    run(get_protocol("he2024", select_from="all"), model, gt)
    assert model.click_calls()[-1][1] == 4 and model.click_calls()[-1][2][0] == (19, 19, 0)


def test_fg_only_non_contiguous_frames():
    gt = np.zeros((10, 30, 30), bool)
    gt[[2, 3, 7, 8], 5:15, 5:15] = True
    model = ScriptedModel(volume_fn=lambda m: np.ones(m.shape, bool))
    case = Case("c1", np.zeros(gt.shape, np.float32), gt.astype(np.uint8), (2.0, 1.0, 1.0), {1: "obj"})
    model.set_volume(case.image, case.spacing)
    seen = []
    unit = run_unit(case, model, get_protocol("he2024", rounds=1), 1, "fg-only",
                    on_round=lambda label, setting, o: seen.append(o.prediction))
    assert ("start_object", (2, 3, 7, 8)) in model.calls
    assert seen[0].any(axis=(1, 2)).nonzero()[0].tolist() == [2, 3, 7, 8]
    row = unit.rows[0]
    assert row["fp_slices"] == 0 and row["gt_slices"] == 4
    assert row["dice"] == pytest.approx(2 * 400 / (4 * 900 + 400))
    full = run_unit(case, model, get_protocol("he2024", rounds=1), 1, "full")
    assert full.rows[0]["fp_slices"] == 6


# --- variant he2024-vista -----------------------------------------------------------------------
def test_vista_centre_rule_on_an_11x11_block():
    block = np.zeros((128, 64), bool)
    block[100:111, 10:21] = True
    assert region_center(block, "scalar-mean") == (100, 20)
    assert region_center(block, "centroid") == (105, 15)


@pytest.mark.parametrize("name, expected", [("he2024-vista", (100, 20)), ("he2024", (105, 15))])
def test_vista_and_paper_clicks_on_an_error_block(name, expected):
    gt = np.zeros((1, 128, 64), bool)
    gt[0, 99:112, 9:22] = True  # 13x13 error block erodes to the 11x11 block above
    model = ScriptedModel()
    run(get_protocol(name, initial_clicks=2, rounds=1), model, gt)
    assert model.click_calls()[0][2] == [(105, 15, 1)]  # first click: centroid rule in both
    assert model.click_calls()[1][2][-1] == (*expected, 1)


def test_vista_sends_four_clicks_with_reset_and_resend():
    gt = square_object()
    model = ScriptedModel()
    out = run(get_protocol("he2024-vista", rounds=1), model, gt)
    kinds = [c[0] for c in model.calls]
    assert kinds == ["start_object", "add_clicks"] * 4 + ["propagate"]
    sizes = [len(c[2]) for c in model.click_calls()]
    assert sizes == [1, 2, 3, 4]
    assert out[0].clicks == 4 and len(out[0].prompts) == 4


def test_vista_replaces_clicks_in_later_rounds():
    gt = np.zeros((5, 40, 40), bool)
    gt[0:4, 10:20, 10:20] = True
    gt[4, 10:24, 10:24] = True
    for name, replace in (("he2024-vista", True), ("he2024", False)):
        model = ScriptedModel()
        run(get_protocol(name, rounds=3), model, gt)
        later = model.click_calls()[-2:]
        assert [c[3] for c in later] == [replace, replace]
        assert len(model.clicks[4]) == (2 if replace else 4)


def test_vista_variant_declares_its_frames():
    p = get_protocol("he2024-vista")
    assert p.orientation == "as-stored" and p.model_options == {"frame_codec": "jpeg"}
    assert get_protocol("he2024").orientation is None


def test_object_rng_is_stable():
    a = object_rng(0, "case1", 5, "full").integers(1 << 30, size=3)
    b = object_rng(0, "case1", 5, "full").integers(1 << 30, size=3)
    c = object_rng(0, "case1", 5, "fg-only").integers(1 << 30, size=3)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
