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
from annosim.protocols.vista_rules import (
    monai_largest_component,
    reference_center,
    reference_first_click,
    reference_slice_scores,
)
from annosim.metrics import dice_per_slice
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


def test_first_click_two_components_paper_whole_foreground_vs_largest():
    # DESIGN 5 rule 1: "the foreground geometric center" is the centroid of all of G
    gt = np.zeros((10, 20, 20), bool)
    gt[0:3, 0:3, 0:3] = True  # 27 voxels, centroid (1, 1, 1)
    gt[5:9, 10:14, 10:14] = True  # 64 voxels, centroid (6.5, 11.5, 11.5)
    # whole centroid: ((27 + 64 * 6.5) / 91, (27 + 64 * 11.5) / 91, same) = (4.868, 8.385, 8.385);
    # nearest voxel of G: the big cube's corner (5, 10, 10) (d2 = 5.24; the small one's (2,2,2): 90)
    assert first_click(gt) == (5, 10, 10)
    assert get_protocol("he2024").params.first_click == "centroid"
    # the earlier reading (first_click=largest-component): the big cube's own centre, ties lowest
    assert first_click(gt, "largest") == (6, 11, 11)
    model = ScriptedModel()
    run(get_protocol("he2024", first_click="largest-component", rounds=1, initial_clicks=1), model, gt)
    assert model.click_calls()[0][1:3] == (6, [(11, 11, 1)])
    model = ScriptedModel()
    run(get_protocol("he2024", rounds=1, initial_clicks=1), model, gt)
    assert model.click_calls()[0][1:3] == (5, [(10, 10, 1)])


def test_first_click_equal_components_first_in_raster_order():
    gt = np.zeros((2, 12, 12), bool)
    gt[0:2, 5:7, 5:7] = True
    gt[0:2, 0:2, 10:12] = True  # first voxel (0,0,10) precedes (0,5,5) in (z,y,x) order
    comp = largest_component(gt)
    assert comp[0, 0, 10] and not comp[0, 5, 5]
    assert first_click(gt, "largest") == (0, 0, 10)


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


def test_start_slice_tie_goes_positive_in_the_paper_and_negative_in_the_reference():
    # DESIGN 5 rule 2: "if false positive region is larger ... a negative point, or else a
    # positive point" (tie positive); the reference: FN strictly larger -> positive (tie negative)
    gt = square_object(shape=(5, 50, 40))
    # FN rows 10-14 and FP rows 30-34, both erode to 3 x 18 = 54 pixels
    model = ScriptedModel(slice_fn=lambda m, z: _fn_fp_slice(gt[z], (10, 15), (30, 35)))
    run(get_protocol("he2024", initial_clicks=2), model, gt)
    # centre of FN' rows 11-13, cols 11-28: centroid (12, 19.5), tie -> lowest x
    assert model.click_calls()[1] == ("add_clicks", 2, [(12, 19, 1)], False)
    model = ScriptedModel(slice_fn=lambda m, z: _fn_fp_slice(gt[z], (10, 15), (30, 35)))
    run(get_protocol("he2024", initial_clicks=2, start_tie="negative"), model, gt)
    assert model.click_calls()[1] == ("add_clicks", 2, [(32, 19, 0)], False)
    # he2024-vista: negative, at get_center_points of FP' rows 31-33, cols 11-28: scalar mean
    # (32 + 19.5) / 2 = 25.75 -> nearest pixel (31, 26), unique
    model = ScriptedModel(slice_fn=lambda m, z: _fn_fp_slice(gt[z], (10, 15), (30, 35)))
    run(get_protocol("he2024-vista", initial_clicks=2), model, gt)
    first, second = model.click_calls()[1][2]
    # the first click: 4 voxels at equal float32 distance from the mean (2, 19.5, 19.5); the
    # reference takes torch.sort's index 0, not the lowest index
    assert first[:2] in {(19, 19), (19, 20), (20, 19), (20, 20)} and first[2] == 1
    assert second == (31, 26, 0)


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
    # DESIGN 5 rule 4 ("calculated for every slice"): the paper's default clicks there
    out_gt = run(get_protocol("he2024", select_from="gt"), ScriptedModel(lambda m, z: gt[z], vol), gt)
    assert len(out_gt) == 1  # slices 1-3 perfect: nothing to click
    model = ScriptedModel(lambda m, z: gt[z], vol)
    run(get_protocol("he2024"), model, gt)
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


def test_object_rng_is_stable_and_common_to_both_settings():
    # DESIGN 5: one generator per (seed, case, label), shared by full and fg-only
    a = object_rng(0, "case1", 5).integers(1 << 30, size=3)
    b = object_rng(0, "case1", 5).integers(1 << 30, size=3)
    c = object_rng(0, "case1", 6).integers(1 << 30, size=3)
    d = object_rng(1, "case1", 5).integers(1 << 30, size=3)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist() and a.tolist() != d.tolist()


# --- he2024-vista: the reference's computations (DESIGN 5, variant) ----------------------------
def _wrap_tie_volume():
    """Slices 1 and 3 tie at Dice 2/3: slice 1 misses 100 pixels, slice 3 adds 400."""
    gt = np.zeros((5, 50, 50), bool)
    pred = np.zeros_like(gt)
    gt[1, 10:20, 10:30] = True          # 200 px
    pred[1, 10:20, 10:20] = True        # keeps 100: FN 100, Dice 200/300
    gt[3, 5:25, 5:25] = True            # 400 px
    pred[3, 5:25, 5:45] = True          # adds 400: FP 400, Dice 800/1200
    for z in (0, 2, 4):                 # perfect slices
        gt[z, 30:40, 30:40] = pred[z, 30:40, 30:40] = True
    return gt, pred


def test_reference_slice_scores_uint8_wrap_around():
    gt, pred = _wrap_tie_volume()
    dice, errors = reference_slice_scores(pred, gt)
    assert dice.dtype == np.float32 and dice[1] == dice[3] == np.float32(2 / 3)
    assert errors.tolist() == [0, 255 * 100, 0, 400, 0]   # torch.abs(pred - label).sum() on uint8
    d64, e64 = dice_per_slice(pred, gt)
    assert e64.tolist() == [0, 100, 0, 400, 0]


@pytest.mark.parametrize("name, worst", [("he2024", 3), ("he2024-vista", 1)])
def test_worst_slice_tie_missed_pixels_win_in_the_reference(name, worst):
    # he2024: ties -> most |FN| + |FP| (slice 3: 400 > 100); he2024-vista: the uint8 wrap makes
    # a missed pixel weigh 255 (slice 1: 25500 > 400)
    gt, pred = _wrap_tie_volume()
    model = ScriptedModel(slice_fn=lambda m, z: gt[z], volume_fn=lambda m: pred)
    run(get_protocol(name, rounds=2), model, gt)
    assert model.click_calls()[-1][1] == worst


def _gapped_object():
    """A (z 0-1) and B (z 4-6) share an 11x11 footprint with a 2-slice gap; C (z 4-6, 13x13)
    stands apart. Full volume: C (507) is the largest component; with the gap removed A and B
    touch (242 + 363 = 605 > 507)."""
    gt = np.zeros((10, 50, 50), bool)
    gt[0:2, 10:21, 10:21] = True
    gt[4:7, 10:21, 10:21] = True
    gt[4:7, 30:43, 30:43] = True
    return gt


def test_reference_first_click_fg_only_is_computed_on_the_stacked_slices():
    gt = _gapped_object()
    assert reference_first_click(gt) == (5, 36, 36)          # C's centre, unique
    frames = np.flatnonzero(gt.any(axis=(1, 2)))              # [0, 1, 4, 5, 6]
    # stacked A+B: z 0..4, mean z (242 * 0.5 + 363 * 3) / 605 = 2 -> stacked (2, 15, 15)
    assert reference_first_click(gt[frames]) == (2, 15, 15)
    model = ScriptedModel()
    run(get_protocol("he2024-vista", rounds=1, initial_clicks=1), model, gt, frames=frames)
    assert model.click_calls()[0][1:3] == (4, [(15, 15, 1)])  # frames[2] = slice 4
    model = ScriptedModel()
    run(get_protocol("he2024-vista", rounds=1, initial_clicks=1), model, gt)
    assert model.click_calls()[0][1:3] == (5, [(36, 36, 1)])


def test_monai_largest_component_matches_monai():
    monai_utils = pytest.importorskip("monai.transforms.utils")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((12, 10, 9)) > 0.7
        ours = monai_largest_component(mask)
        theirs = monai_utils.get_largest_connected_component_mask(torch.from_numpy(mask))
        assert np.array_equal(ours, theirs.numpy().astype(bool))


def test_reference_center_matches_the_torch_computation_on_ties():
    # a 10x10 block: scalar mean 14.5 is equidistant from its 4 central pixels; whichever
    # torch.sort puts first is the reference's click, and annosim gives the same
    torch = pytest.importorskip("torch")
    block = np.zeros((30, 30), bool)
    block[10:20, 10:20] = True
    pts = torch.nonzero(torch.from_numpy(block))
    d = ((pts - pts.float().mean()) ** 2).sum(-1)
    expected = tuple(int(v) for v in pts[torch.sort(d)[1][0]])
    assert reference_center(block) == expected and expected in {(14, 14), (14, 15), (15, 14), (15, 15)}


def test_full_and_fg_only_draw_the_same_random_clicks_where_they_see_the_same_slices():
    # DESIGN 5: common random numbers per (seed, case, label): an object on every slice has the
    # same video in both settings, so both runs must give the same clicks, random ones included
    gt = np.zeros((4, 40, 40), bool)
    gt[:, 8:32, 8:32] = True
    def vol(model):
        pred = np.zeros(model.shape, bool)
        pred[:, 8:32, 8:20] = True              # FN 24 x 12 on every slice: random clicks drawn
        pred[:, 2:6, 8:32] = True               # and a 4-px FP band: three clicks per round
        return pred
    case = Case("c1", np.zeros(gt.shape, np.float32), gt.astype(np.uint8), (1.0, 1.0, 1.0), {1: "obj"})
    prompts = {}
    for setting in ("full", "fg-only"):
        model = ScriptedModel(volume_fn=vol)
        model.set_volume(case.image, case.spacing)
        unit = run_unit(case, model, get_protocol("he2024", rounds=4), 1, setting)
        prompts[setting] = [{k: v for k, v in p.items() if k != "setting"} for p in unit.prompts]
    randoms = [p for p in prompts["full"] if p["round"] > 1]
    assert len(randoms) == 9 and prompts["full"] == prompts["fg-only"]
