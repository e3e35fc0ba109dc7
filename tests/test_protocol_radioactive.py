"""RadioActive's 2D prompters and refinement loop (MIC-DKFZ/radioactive @1796386;
../shared/reference/protocol-sources.md section 8: PU = prompts/prompt_utils.py, IP =
prompts/interactive_prompter.py, IA = utils/interactivity.py, P3 = prompts/prompt_3d.py), each rule
on a hand-built volume whose answer is worked out by hand in the test. Rules run in the source's
SAR space (``to_sar``: canonical axes 1 and 2 reversed); protocol-level tests read canonical
coordinates back."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from annosim.cli import main
from annosim.models.base import SliceModelBase
from annosim.protocols import radioactive_rules as rr
from annosim.protocols.registry import get_protocol
from results_helpers import manifest_run_args

NAMES = ("radioactive-point-interpolation", "radioactive-box-interpolation",
         "radioactive-point-propagation", "radioactive-one-point")


class SliceOracle(SliceModelBase):
    """One-shot 2D model for protocol tests: records every call; a slice's answer is
    ``answer(z, points, labels, box, mask)`` (default: the truth of the slice, i.e. perfect)."""

    name = "slice-oracle"

    def __init__(self, gt: np.ndarray, answer=None) -> None:
        super().__init__()
        self.gt = gt
        self.answer = answer
        self.calls: list[tuple] = []

    def add_clicks(self, z, points, labels, replace=False):
        raise AssertionError("RadioActive infers slices one-shot only")

    def propagate(self):
        raise AssertionError("RadioActive never propagates")

    def _out(self, kind, z, points, labels, box, mask):
        pts = None if points is None else [tuple(int(v) for v in p) for p in np.asarray(points)]
        labs = None if labels is None else [int(v) for v in np.asarray(labels)]
        self.calls.append((kind, int(z), pts, labs, box, None if mask is None else mask.copy()))
        if self.answer is None:
            return self.gt[z].copy()
        return np.asarray(self.answer(z, points, labels, box, mask), dtype=bool)

    def predict_slice(self, z, points=None, labels=None, box=None):
        return self._out("slice", z, points, labels, box, None)

    def predict_slice_masked(self, z, mask, points=None, labels=None):
        return self._out("masked", z, points, labels, None, mask)


def run(name, model, gt, frames=None, **params):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(get_protocol(name, **params).run_object(model, gt, frames, np.random.default_rng(0)))


def sar(a):
    return rr.to_sar(a)


# -- initial prompts ------------------------------------------------------------------------------

def test_seed_slices_are_linspace_snapped_to_truth_slices_lower_on_a_tie():
    """PU L39-52, L339-342: linspace(z_min, z_max, n, dtype=int), each snapped to the nearest
    truth slice (first argmin: the lower on a tie); duplicates kept."""
    g = np.zeros((12, 3, 3), bool)
    g[[0, 1, 2, 10, 11], 1, 1] = True
    # linspace(0, 11, 5) = 0, 2.75, 5.5, 8.25, 11 -> int 0, 2, 5, 8, 11; 5 -> 2 (|3| < |5|), 8 -> 10
    assert rr.seed_slices(g, 5) == [0, 2, 2, 10, 11]
    h = np.zeros((5, 3, 3), bool)
    h[[0, 4], 1, 1] = True
    # linspace(0, 4, 3) = 0, 2, 4: 2 is as near to 0 as to 4 -> the lower, 0
    assert rr.seed_slices(h, 3) == [0, 0, 4]


def test_centre_point_is_the_largest_component_bbox_centre_rounded_half_to_even():
    """PU L346-351: the largest component's inclusive box, mean of its corners, np.round (half to
    even), nearest foreground pixel."""
    m = np.zeros((8, 8), bool)
    m[1:5, 1:5] = True            # 16 px, box rows/cols 1..4: centre 2.5 -> 2 (half-up would be 3)
    m[6, 6:8] = True              # a smaller component elsewhere
    assert rr.bbox_centre_point(m) == (2, 2)
    c = np.zeros((7, 7), bool)    # a C opening right: box centre (3, 3) is a hole -> nearest pixel
    c[1:6, 1] = True
    c[1, 1:6] = True
    c[5, 1:6] = True
    c[3, 1:3] = True              # (3, 2) is the unique nearest foreground pixel to (3, 3)
    assert rr.bbox_centre_point(c) == (3, 2)


def test_point_interpolation_interpolates_between_seed_slices_and_rounds_half_to_even():
    """PU L357-384, L405-421: y, x linearly interpolated on every integer z between the first and
    last seed (gap slices included), rounded half-to-even, all positive."""
    g = np.zeros((5, 12, 12), bool)
    g[0, 1:4, 1:4] = True         # centre (2, 2)
    g[4, 4:7, 8:11] = True        # centre (5, 9); slices 1..3 hold no truth
    # n = min(5, 2 truth slices) = 2 seeds; z=1: (2.75, 3.75) -> (3, 4); z=2: (3.5, 5.5) -> (4, 6)
    # (half to even: 3.5 -> 4, 5.5 -> 6); z=3: (4.25, 7.25) -> (4, 7)
    expect = [[0, 2, 2], [1, 3, 4], [2, 4, 6], [3, 4, 7], [4, 5, 9]]
    assert rr.interpolation_points(g, 2).tolist() == expect
    # the protocol: one positive click per slice, in canonical coordinates (y -> 11 - y, x -> 11 - x)
    model = SliceOracle(sar(g))
    out = run("radioactive-point-interpolation", model, sar(g), refinements=0)
    assert [(c[1], c[2], c[3]) for c in model.calls] == [
        (z, [(11 - y, 11 - x)], [1]) for z, y, x in expect]
    assert out[0].clicks == 5 and out[0].annotated_slices == 5


def test_box_interpolation_interpolates_min_and_exclusive_max_corners():
    """PU L226-238, L468-506: 3 seed boxes (x_min, y_min, x_max + 1, y_max + 1) on the linspace
    slices; min and max corners interpolated separately and rounded half to even."""
    g = np.zeros((5, 16, 16), bool)
    g[0, 2:5, 1:4] = True          # box (1, 2, 4, 5)
    g[1:4, 3:9, 2:7] = True
    g[2, 3:9, 2:9] = True          # box on slice 2: x 2..8, y 3..8 -> (2, 3, 9, 9)
    g[4, 6:12, 5:14] = True        # box (5, 6, 14, 12)
    seeds = rr.seed_boxes(g, 3)
    assert seeds == {0: (1, 2, 4, 5), 2: (2, 3, 9, 9), 4: (5, 6, 14, 12)}
    boxes = rr.interpolate_boxes(seeds)
    # z=1: mins (1.5, 2.5) -> (2, 2); maxs (6.5, 7) -> (6, 7); z=3: mins (3.5, 4.5) -> (4, 4),
    # maxs (11.5, 10.5) -> (12, 10)
    assert boxes == {0: (1, 2, 4, 5), 1: (2, 2, 6, 7), 2: (2, 3, 9, 9), 3: (4, 4, 12, 10), 4: (5, 6, 14, 12)}
    # to annosim's inclusive canonical (y0, x0, y1, x1): SAR rows y0..y1-1 -> 15 - (y1 - 1) .. 15 - y0
    assert rr.box_from_sar((2, 2, 6, 7), g.shape) == (9, 10, 13, 13)
    model = SliceOracle(sar(g))
    run("radioactive-box-interpolation", model, sar(g), refinements=0)
    assert [(c[0], c[1], c[4]) for c in model.calls] == [
        ("slice", z, rr.box_from_sar(b, g.shape)) for z, b in boxes.items()]


def test_one_point_per_slice_draws_with_numpy_reseeded_to_1():
    """PU L80-120: np.random.seed(1), then per truth slice choice(n_fg, 1, replace=False)."""
    g = np.zeros((3, 6, 6), bool)
    g[0, 1:3, 1:4] = True
    g[2, 2:5, 2:4] = True
    rs = np.random.RandomState(1)
    expect = []
    for z in (0, 2):
        fg = np.array(np.where(g[z])).T
        expect.append([z, *fg[rs.choice(len(fg), 1, replace=False)[0]]])
    assert rr.one_point_per_slice(g, rr.SourceRandom()).tolist() == expect


def test_point_propagation_moves_the_predictions_centre_one_slice_and_stops_at_empty():
    """PU L509-573: 5 random points on the median truth slice (numpy reseeded to 1); predict; the
    prediction's bbox centre -> nearest pixel, moved one slice up (down); stop at an empty
    prediction or at the truth's max (min) slice, exclusive."""
    g = np.zeros((7, 10, 10), bool)
    g[1:6, 2:7, 2:7] = True                 # truth slices 1..5, median 3
    pred = np.zeros_like(g)                 # in SAR: what the model answers on each slice
    pred[3, 2:7, 2:7] = True                # seed slice: centre (4, 4)
    pred[4, 5:8, 1:4] = True                # slice 4 (prompted at (4, 4)): centre (6, 2)
    pred[2, 1:4, 6:9] = True                # slice 2: centre (2, 7); slice 1 gets (2, 7)
    # slice 5 is prompted at (6, 2) from slice 4 and never predicted during propagation (max, exclusive)
    answer = lambda z, p, l, b, m: rr.to_sar(pred)[z]
    model = SliceOracle(sar(g), answer)
    out = run("radioactive-point-propagation", model, sar(g), refinements=0)
    rs = np.random.RandomState(1)
    fg = np.array(np.where(g[3])).T
    seeds = fg[rs.choice(len(fg), 5, replace=False)]
    can = lambda y, x: (9 - y, 9 - x)
    final = {c[1]: c[2] for c in model.calls[-5:]}
    assert final == {3: [can(*p) for p in seeds], 4: [can(4, 4)], 5: [can(6, 2)],
                     2: [can(4, 4)], 1: [can(2, 7)]}
    # propagation calls: up from 3 (seed) to 4; down from 3 (seed) to 2; then the final call
    assert [c[1] for c in model.calls] == [3, 4, 3, 2, 1, 2, 3, 4, 5]
    assert out[0].clicks == 9


def test_point_propagation_stops_at_the_first_empty_prediction():
    g = np.zeros((7, 10, 10), bool)
    g[1:6, 2:7, 2:7] = True
    answer = lambda z, p, l, b, m: np.zeros((10, 10), bool) if z != 3 else rr.to_sar(g)[3]
    model = SliceOracle(sar(g), answer)
    run("radioactive-point-propagation", model, sar(g), refinements=0)
    # from 3: slice 4 is prompted, predicts empty -> stop; downwards the same with slice 2
    assert sorted({c[1] for c in model.calls[-3:]}) == [2, 3, 4]


# -- refinement -------------------------------------------------------------------------------------

def test_step_choice_follows_the_fp_fn_ratio():
    """IP L190-203: negative when FN = 0 and positive when FP = 0 (no draw); else one
    binomial(1, FP / (FN + FP)) from the numpy state."""
    fn, fp = np.zeros(10, bool), np.zeros(10, bool)
    fp[:3] = True
    rs = np.random.RandomState(1)
    assert rr.negative_flag(fn, fp, rs) is True
    assert rr.negative_flag(fp, fn, rs) is False
    assert rs.random_sample() == np.random.RandomState(1).random_sample()  # nothing drawn
    fn[5] = True  # p = 3 / 4
    draws = [rr.negative_flag(fn, fp, np.random.RandomState(s)) for s in range(20)]
    assert draws == [bool(np.random.RandomState(s).binomial(1, 0.75)) for s in range(20)]
    assert 0 < sum(draws) < 20


def scribble_case():
    """A plane (z, x) with a 5x5 truth square and a prediction 4 px wider on every side."""
    gt = np.zeros((20, 20), bool)
    gt[7:12, 7:12] = True
    pred = np.zeros_like(gt)
    pred[3:16, 3:16] = True
    return gt, pred


def test_scribble_runs_along_the_truth_dilated_by_disk_2():
    """IA L15-64: contour of the truth dilated by disk(2); 0.6 of its points, one piece, centred
    on a predicted contour point (Python random reseeded to 1, so the same every call)."""
    gt, pred = scribble_case()
    s = rr.contour_scribble(gt, pred)
    assert s is not None and s.any()
    assert np.array_equal(s, rr.contour_scribble(gt, pred))  # reseeded on every call
    from scipy import ndimage
    from skimage.measure import find_contours, label
    from skimage.morphology import disk
    dil = ndimage.binary_dilation(gt, structure=disk(2).astype(bool))
    # every scribble pixel is one of the two pixels across an edge of the dilated truth
    band = (dil & ~ndimage.binary_erosion(dil)) | (~dil & ndimage.binary_dilation(dil))
    assert not (s & ~band).any()
    assert not (s & gt).any()                      # 2 px off the truth, never on it
    d = ndimage.distance_transform_edt(~gt)[s]
    assert d.min() > 1 and d.max() <= 3 + 1e-9     # the disk(2) contour; the truth's own is <= 1 away
    assert label(s, connectivity=2).max() == 1     # one 8-connected piece
    n = len(np.concatenate(find_contours(dil)))
    assert s.sum() <= round(0.6 * n) and s.sum() >= round(0.6 * n) // 2


def test_negative_step_on_the_plane_with_most_fp():
    """IP L226-231, L256-294: the axis-1 plane with the most FP (first argmax); negatives are the
    scribble's predicted pixels, at (z, plane, x), label 0."""
    gt2, pred2 = scribble_case()
    gt = np.zeros((20, 6, 20), bool)
    pred = np.zeros_like(gt)
    gt[:, 2], pred[:, 2] = gt2, pred2
    gt[:, 4], pred[:, 4] = gt2, pred2
    pred[0, 3, 0:5] = True                         # 5 FP on plane 3, fewer than 144 on 2 and 4
    coords, labels = rr.negative_step(gt, pred, pred & ~gt, rr.SourceRandom())
    assert set(coords[:, 1]) == {2} and set(labels) == {0}
    expect = rr.contour_scribble(gt2, pred2) & pred2
    assert sorted(map(tuple, coords[:, [0, 2]])) == sorted(map(tuple, np.argwhere(expect)))


def test_negative_step_without_truth_on_the_plane_draws_a_full_height_line():
    """IP L236-242: no truth on the plane -> the column with the most predicted pixels; its
    predicted pixels are the negatives."""
    gt = np.zeros((6, 3, 8), bool)
    gt[2:4, 0, 2:4] = True
    pred = gt.copy()
    pred[1:5, 2, 5] = True                         # 4 FP in column 5 of plane 2
    pred[2, 2, 6] = True                           # 1 FP in column 6
    coords, labels = rr.negative_step(gt, pred, pred & ~gt, rr.SourceRandom())
    assert coords.tolist() == [[1, 2, 5], [2, 2, 5], [3, 2, 5], [4, 2, 5]] and set(labels) == {0}


def test_negative_fallback_draws_3_fp_voxels_reseeded_and_labelled_1():
    """IP L266-286 -> P3 L26-47: the prediction misses the dilated contour everywhere -> 3 FP
    voxels by choice(replace=False) after np.random.seed(1), labelled 1 as get_pos_clicks3D labels
    them (protocol-sources.md says 0; the code gives 1)."""
    gt = np.zeros((20, 3, 20), bool)
    gt[5:15, 1, 5:15] = True
    pred = gt.copy()
    pred[9, 1, 9:11] = False
    pred[0:2, 1, 0:2] = True                       # 4 FP far from the contour ring
    fp = pred & ~gt
    rng = rr.SourceRandom()
    rng.state.random_sample(7)                     # whatever state came before: reseeded
    coords, labels = rr.negative_step(gt, pred, fp, rng)
    vox = np.array(np.where(fp)).T
    assert coords.tolist() == vox[np.random.RandomState(1).choice(4, 3, replace=False)].tolist()
    assert labels.tolist() == [1, 1, 1]


def test_positive_step_one_centroid_per_slice_of_the_largest_3d_fn_component():
    """IP L205-224, PU L319-331: largest 3D FN component (26-connected); on each of its slices the
    centroid of that slice's largest 2D component, rounded half to even, to the nearest pixel."""
    fn = np.zeros((5, 10, 10), bool)
    fn[1:4, 1:5, 1:5] = True                       # 48 voxels: centroid rows/cols 2.5 -> 2
    fn[2, 1, 1:8] = True                           # slice 2 gains a bar: its centroid moves
    fn[4, 8, 8] = True                             # a separate 1-voxel component: ignored
    coords, labels = rr.positive_step(fn)
    # slice 2: 16 + 3 px; mean row (2.5*16 + 1*3)/19 = 2.26 -> 2, col (2.5*16 + 6*3)/19 = 3.05 -> 3
    assert coords.tolist() == [[1, 2, 2], [2, 2, 3], [3, 2, 2]] and labels.tolist() == [1, 1, 1]


def test_stop_on_a_perfect_prediction():
    """IP L132-157, L302-303: a prediction equal to the truth ends the object (no more rounds)."""
    g = np.zeros((4, 8, 8), bool)
    g[1:3, 2:6, 2:6] = True
    assert len(run("radioactive-point-interpolation", SliceOracle(g), g)) == 1
    # imperfect first (the truth minus one pixel on slice 1), perfect after the first refinement
    def answer(z, p, l, b, m):
        out = g[z].copy()
        if m is None and b is None and z == 1 and len(model.calls) <= 2:
            out[2, 2] = False
        return out
    model = SliceOracle(g, answer)
    out = run("radioactive-point-interpolation", model, g)
    assert len(out) == 2 and np.array_equal(out[-1].prediction, g)


def test_only_prompted_slices_are_inferred_and_previous_outputs_are_mask_prompts():
    """IP L327, SAM L247-288, inferer.py L93-104: a step re-infers only the slices it prompts,
    each with the previous prediction of that slice as a mask prompt when that slice was inferred
    in the previous call; other slices keep their prediction."""
    g = np.zeros((6, 10, 10), bool)
    g[1:5, 2:8, 2:8] = True

    def answer(z, p, l, b, m):
        out = g[z].copy()
        out[2:8, 6:8] = False if m is None else out[2:8, 6:8]  # first answers miss two columns
        return out
    model = SliceOracle(g, answer)
    out = run("radioactive-point-interpolation", model, g)
    first = [c for c in model.calls if c[0] == "slice"]
    assert sorted(c[1] for c in first) == [1, 2, 3, 4]          # only the prompted slices
    masked = [c for c in model.calls if c[0] == "masked"]
    assert masked and all(np.array_equal(c[5], out[0].prediction[c[1]]) for c in masked)
    assert all(set(c[3]) == {1} for c in masked)                  # FN only: a positive step
    assert np.array_equal(out[-1].prediction, g) and len(out) == 2


def test_refinement_records_rounds_clicks_and_max_rounds():
    g = np.zeros((6, 10, 10), bool)
    g[1:5, 2:8, 2:8] = True
    model = SliceOracle(g, lambda z, p, l, b, m: np.zeros((10, 10), bool))
    out = run("radioactive-one-point", model, g)
    assert [o.round for o in out] == [1, 2, 3, 4, 5, 6]           # 5 refinements, never perfect
    assert get_protocol("radioactive-one-point").max_rounds == 6
    assert out[0].clicks == 4 and all(b.clicks > a.clicks for a, b in zip(out, out[1:]))


def test_mask_prompts_need_the_hook_and_can_be_switched_off():
    assert "predict_slice_masked" in get_protocol("radioactive-point-interpolation").requires
    assert "predict_slice_masked" not in get_protocol("radioactive-point-interpolation",
                                                      mask_prompts="false").requires


# -- end to end ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classical_run(synthetic_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("radioactive") / "run"
    assert main(manifest_run_args(synthetic_manifest, out, "--protocol", ",".join(NAMES),
                                  "--no-surface-metrics", model="classical")) == 0
    return out


def test_classical_runs_every_radioactive_protocol_end_to_end(classical_run):
    with open(classical_run / "rounds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["protocol"] for r in rows} == set(NAMES)
    for name in NAMES:
        mine = [r for r in rows if r["protocol"] == name]
        assert {(r["case"], r["label"]) for r in mine} == {(f"syn{n}", lab) for n in (6, 7, 8, 9) for lab in "12"}
        assert max(int(r["round"]) for r in mine) <= 6 and all(0 <= float(r["dice"]) <= 1 for r in mine)
    run_json = json.loads((classical_run / "run.json").read_text())
    assert {p["name"]: p["max_rounds"] for p in run_json["protocols"]} == dict.fromkeys(NAMES, 6)
    assert not (classical_run / "errors.jsonl").exists() or not (classical_run / "errors.jsonl").read_text()


def test_radioactive_in_the_sensitivity_table_and_the_protocol_list(classical_run, tmp_path, capsys):
    rep = tmp_path / "rep"
    assert main(["report", str(classical_run), "--out", str(rep), "--n-boot", "100", "--no-qc"]) == 0
    with open(rep / "sensitivity.csv", newline="") as fh:
        sens = list(csv.DictReader(fh))
    with open(classical_run / "rounds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["structure"] for r in sens} == {"label_1", "label_2"}
    for r in sens:  # each protocol's column: the mean over the 4 cases of each object's best round
        lab = r["structure"].split("_")[1]
        for name in NAMES:
            best: dict[str, float] = {}
            for row in rows:
                if row["label"] == lab and row["protocol"] == name:
                    best[row["case"]] = max(best.get(row["case"], 0.0), float(row["dice"]))
            assert float(r[name]) == pytest.approx(sum(best.values()) / 4)
    capsys.readouterr()
    assert main(["protocols"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in NAMES)


def test_with_prev_points_resends_new_then_old_points_on_every_prompted_slice():
    """IP L137-142 and prompt.py merge_sparse_prompt_steps([new, previous]): WithPrevPoint
    re-infers every slice prompted so far, with the step's new points first, then the older."""
    from annosim.protocols.radioactive import merge_prompts
    one = lambda *pts: (np.array(pts, dtype=np.int64).reshape(-1, 2), np.ones(len(pts), np.int64), None)
    merged = merge_prompts({2: one((5, 5)), 3: one((1, 1))}, {2: one((0, 0)), 4: one((7, 7))})
    assert {z: v[0].tolist() for z, v in merged.items()} == {2: [[5, 5], [0, 0]], 3: [[1, 1]], 4: [[7, 7]]}
    g = np.zeros((6, 10, 10), bool)
    g[1:5, 2:8, 2:8] = True
    model = SliceOracle(g, lambda z, p, l, b, m: np.zeros((10, 10), bool))   # never right
    out = run("radioactive-point-interpolation", model, g, prev_prompts="true", refinements=2)
    per_call = [c for c in model.calls]
    # round 1 infers 4 slices; each refinement re-infers all 4 (each still has its first point last)
    assert [c[1] for c in per_call] == [1, 2, 3, 4] * 3
    first = {c[1]: c[2][0] for c in per_call[:4]}
    assert all(c[2][-1] == first[c[1]] and len(c[2]) == 1 + (i // 4) for i, c in enumerate(per_call))
    assert all(c[0] == "masked" for c in per_call[4:]) and len(out) == 3
    with pytest.raises(Exception, match="prev_prompts"):
        get_protocol("radioactive-box-interpolation", prev_prompts="true")


def test_a_model_without_the_one_shot_hooks_is_refused_before_any_case(synthetic_manifest, tmp_path, capsys):
    """The plugin ThresholdGrow has neither predict_slice nor predict_slice_masked: exit 2, one
    line, no results folder."""
    out = tmp_path / "r"
    assert main(manifest_run_args(synthetic_manifest, out, "--protocol", "radioactive-one-point",
                                  "--protocol-arg", "mask_prompts=false")) == 2
    assert "predict_slice()" in capsys.readouterr().err and not out.exists()
    assert main(manifest_run_args(synthetic_manifest, out, "--protocol", "radioactive-one-point")) == 2
    assert "predict_slice" in capsys.readouterr().err and not out.exists()


def test_2d_prompters_run_random_weight_sam2_on_the_sample_ct(shared_data, tmp_path, one_torch_thread):
    """The four 2D prompters with a random-weight SAM2.1 Hiera-tiny (image size 64, saved as an
    official checkpoint) through ``annosim run`` on the sample CT's spleen, 1 refinement each:
    one-shot slices (``predict_slice``, IP L296-329's mask prompts through
    ``predict_slice_masked``), 1-2 rows per protocol in round order, Dice in [0, 1], no error."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from annosim.models.sam2_checkpoints import build_video_predictor

    torch.manual_seed(0)
    ckpt = tmp_path / "sam21_tiny_random.pt"
    torch.save({"model": build_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", 64).state_dict()}, ckpt)
    names = ("radioactive-point-interpolation", "radioactive-box-interpolation", "radioactive-point-propagation",
             "radioactive-one-point")
    d = shared_data / "totalseg-abdomen"
    out = tmp_path / "run"
    args = ["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--labels", "spleen",
            "--model", "sam2.1-hiera-tiny", "--checkpoint", str(ckpt), "--model-arg", "image_size=64",
            "--model-arg", "device=cpu", "--protocol", ",".join(names), "--settings", "full",
            "--out", str(out), "--quiet"]
    for n in names:
        args += ["--protocol-arg", f"{n}.refinements=1"]
    assert main(args) == 0
    errors = out / "errors.jsonl"
    assert not errors.exists() or errors.read_text().strip() == ""
    with open(out / "rounds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for n in names:
        got = [int(r["round"]) for r in rows if r["protocol"] == n]
        assert got in ([1], [1, 2]), (n, got)
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
