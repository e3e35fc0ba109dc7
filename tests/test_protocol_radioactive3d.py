"""radioactive-3d-point and radioactive-3d-center (MIC-DKFZ/radioactive @1796386: IP =
src/radioa/prompts/interactive_prompter.py, P3 = prompts/prompt_3d.py, IM = utils/image.py, S3 =
model/SAMMed3D.py, TR = utils/transforms.py, ND/NR = utils/nnunet/default_resampling.py and
resample_torch.py), rule by rule on hand-built volumes (../shared/reference/protocol-sources.md
section 8, "3D prompters"), with a scripted patch model that records what the protocol sends.

Volumes here are (10, 12, 14) canonical at 1.5 mm, so the model space is the case's RAS view
(no resampling) and a canonical voxel (z, y, x) is RAS (13 - x, 11 - y, z)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from annosim.models.base import PatchPrediction, PatchSpec, SliceModelBase
from annosim.protocols import radioactive3d_rules as r3
from annosim.protocols.patch import znorm_positive
from annosim.protocols.registry import get_protocol, list_protocols

SP = (1.5, 1.5, 1.5)
SHAPE = (10, 12, 14)


class ScriptedPatch(SliceModelBase):
    """A patch model (8^3) whose logits come from ``script(call_number, points)``; it records
    every patch and every ``predict_patch`` call."""

    name = "scripted-patch"

    def __init__(self, script, intensity="hu"):
        super().__init__()
        self.patch_spec = PatchSpec((8, 8, 8), SP, intensity)
        self.script = script
        self.patches, self.calls = [], []

    def set_patch(self, patch):
        self.patches.append(patch.copy())

    def predict_patch(self, points, labels, low_res=None):
        self.calls.append((np.asarray(points).tolist(), np.asarray(labels).tolist(), low_res))
        logits = np.asarray(self.script(len(self.calls), np.asarray(points)), np.float32)
        return PatchPrediction(logits, np.full((2, 2, 2), float(len(self.calls)), np.float32))


def run(name, model, volume, gt, frames=None, **params):
    model.set_volume(volume.astype(np.float32), SP)
    return list(get_protocol(name, **params).run_object(model, gt, frames, np.random.default_rng(0)))


def ct(seed=0):
    return np.random.default_rng(seed).normal(50, 20, SHAPE).astype(np.float32)


def truth(*voxels):
    g = np.zeros(SHAPE, bool)
    for v in voxels:
        g[v] = True
    return g


def empty(k, points):
    return -np.ones((8, 8, 8))


# -- rules --------------------------------------------------------------------------------------
def test_initial_point_is_a_reseeded_random_truth_voxel_of_the_sar_array():
    """P3 L26-47 (np.random.seed(1), choice over np.where order of the SAR truth) and IP L348-351
    (coordinates reversed to x, y, z). SAR voxels in raster order: (3,6,0), (3,6,6), (3,6,7),
    (4,6,7); RandomState(1).choice(4, 1) = 3 -> SAR (4, 6, 7) -> (7, 6, 4)."""
    sar = np.zeros((5, 8, 8), bool)
    sar[3, 6, [0, 6, 7]] = True
    sar[4, 6, 7] = True
    assert r3.random_fg_voxel(sar).tolist() == [[7, 6, 4]]
    assert r3.random_fg_voxel(sar).tolist() == [[7, 6, 4]]  # reseeded: the same draw again
    with pytest.raises(ValueError):
        r3.random_fg_voxel(np.zeros((2, 2, 2), bool))


def test_points_to_model_scales_by_the_resampled_shape_twice():
    """S3 L110-116 / TR L299-314: the current shape passed is the resampled one (244, 202, 60), so
    the factor is (488-1)/(244-1), not (244-1)/(122-1): the last case voxel (121, 100, 29) at 3 mm
    becomes (242.49, 200.50, 58.49) -> (242, 200, 58) (half to even), not (243, 201, 59)."""
    assert r3.model_shape((122, 101, 30), (3.0,) * 3, SP) == (244, 202, 60)
    assert r3.points_to_model(np.array([[121, 100, 29]]), (122, 101, 30), (3.0,) * 3, SP).tolist() == [[242, 200, 58]]


def test_resampling_is_torch_interpolate_with_nnunet_separate_axis():
    """NR L14-171, ND L15-71: trilinear (align_corners=False) below anisotropy 3; above it, the two
    fine axes bilinear and the coarse one nearest-exact; a label thresholded > 0.5 after each step."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a = np.random.default_rng(0).normal(size=(7, 9, 5)).astype(np.float32)
    assert r3.separate_axis((0.8, 0.8, 2.0), SP) is None and r3.separate_axis((1.0, 1.0, 5.0), SP) == 2
    assert r3.separate_axis((1.0, 5.0, 5.0), SP) is None  # two coarse axes: no separate axis (ND L62-66)
    t = torch.from_numpy(a)[None, None]
    ref = F.interpolate(t, (4, 5, 7), mode="trilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(r3.resample(a, (0.8, 0.8, 2.0), SP), ref, atol=1e-5)
    shape = r3.model_shape(a.shape, (1.0, 1.0, 5.0), SP)
    assert shape == (5, 6, 17)
    for seg in (False, True):
        x = torch.from_numpy((a > 0.3).astype(np.float32) if seg else a)
        d = x.permute(2, 0, 1)[None]  # (c z) x y
        d = F.interpolate(d, shape[:2], mode="bilinear", align_corners=False)[0]
        d = (d > 0.5).float() if seg else d
        d = F.interpolate(d.permute(1, 2, 0)[None, None], shape, mode="nearest-exact")[0, 0].numpy()
        got = r3.resample(a > 0.3 if seg else a, (1.0, 1.0, 5.0), SP, is_seg=seg)
        if seg:
            np.testing.assert_array_equal(got, d > 0.5)
        else:
            np.testing.assert_allclose(got, d, atol=1e-5)
    # (8, 7, 9) -> (15, 14, 7): 16 label voxels interpolate to within 1e-6 of 0.5; they fall as
    # torch's CPU kernel sums them (last axis innermost, fused multiply-adds)
    m = np.random.default_rng(0).random((8, 7, 9)) > 0.5
    ref = F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], (15, 14, 7), mode="trilinear",
                        align_corners=False)[0, 0].numpy()
    assert int((np.abs(ref - 0.5) < 1e-6).sum()) == 16
    np.testing.assert_array_equal(r3.resample(m, SP, SP, shape=(15, 14, 7), is_seg=True), ref > 0.5)


def test_isolate_keeps_p_minus_half_to_p_plus_half_clipped():
    """P3 L100-114: [max(p - 64, 0), min(p + 64, shape)) (here 8^3: p -+ 4)."""
    kept = r3.isolate(np.ones((10, 10, 10), bool), np.array([2, 5, 9]), (8, 8, 8))
    want = np.zeros((10, 10, 10), bool)
    want[0:6, 1:9, 5:10] = True
    np.testing.assert_array_equal(kept, want)


def test_misclassified_voxel_is_reseeded_randint_over_raster_order():
    """P3 L117-137: np.random.seed(1), randint(n) over np.where(pred != gt); label = truth there;
    RandomState(1).randint(4) = 1 -> the second error voxel; no error -> None (randint(0) raises)."""
    gt = np.zeros((3, 3, 3), bool)
    gt[0, 0, 1] = gt[1, 2, 0] = gt[2, 0, 0] = True
    pred = np.zeros_like(gt)
    pred[0, 2, 2] = True                                    # FP, raster order 2nd
    p, label = r3.misclassified_voxel(pred, gt)
    assert (p.tolist(), label) == ([0, 2, 2], 0)
    p, label = r3.misclassified_voxel(pred, gt)             # reseeded: the same voxel
    assert (p.tolist(), label) == ([0, 2, 2], 0)
    pred[0, 2, 2] = False
    p, label = r3.misclassified_voxel(pred, gt)             # RandomState(1).randint(3) = 1
    assert (p.tolist(), label) == ([1, 2, 0], 1)
    assert r3.misclassified_voxel(gt, gt) is None


def test_center_subset_to_box_and_middle_point():
    """P3 L168-182: points inside [centroid - 4, centroid + 4) on every axis (size 8); P3 L185-200:
    sorted by the 3rd coordinate, index (m - 1) // 2."""
    line = np.array([[5, 5, k] for k in range(21)][::-1] + [[20, 5, 10]])
    # centroid (5.68, 5, 10): i in [1.68, 9.68), k in [6, 14): k = 6..13 with i = 5; (20, 5, 10) out
    inside = r3.subset_to_box(line, (8, 8, 8))
    assert sorted(inside[:, 2].tolist()) == list(range(6, 14)) and (inside[:, 0] == 5).all()
    assert r3.middle_point(inside).tolist() == [[5, 5, 9]]
    with pytest.raises(ValueError):
        r3.middle_point(np.zeros((0, 3), int))


def test_interpolation_line_is_reordered_to_xyz():
    """IP L466-470, PU L405-421: seeds on min(5, GT slices) slices, interpolated, columns [2, 1, 0]."""
    sar = np.zeros((4, 6, 6), bool)
    sar[:, 2, 3] = True
    assert r3.interpolation_line(sar).tolist() == [[3, 2, z] for z in range(4)]


# -- the protocol loop --------------------------------------------------------------------------
def test_crop_is_centred_on_the_initial_point_and_fixed():
    """IM L10-44 / IP L404-408: CropOrPad(128) on a mask holding the initial point (here 8^3):
    the patch starts at p - 4 (RAS); canonical point (4, 5, 6) is RAS (7, 6, 4) -> start (3, 2, 0)
    -> canonical window z 0..7, y 2..9, x 3..10; the point at patch (4, 3, 3). One set_patch."""
    vol = ct()
    gt = truth((4, 5, 6))
    model = ScriptedPatch(empty)
    out = run("radioactive-3d-point", model, vol, gt)
    assert len(model.patches) == 1
    np.testing.assert_array_equal(model.patches[0], vol[0:8, 2:10, 3:11])
    assert model.calls[0][:2] == ([[4, 3, 3]], [1])
    assert (out[0].prompts[0].z, out[0].prompts[0].y, out[0].prompts[0].x) == (4, 5, 6)


def test_patch_is_percentile_clipped_then_z_normalised():
    """S3 L79-84 then L175-176: the whole resampled volume clipped to its 0.5/99.5 percentiles,
    the patch z-normalised over voxels > 0 (zscore-positive models)."""
    vol = ct()
    vol[0, 0, 0], vol[9, 11, 13] = -3000.0, 5000.0
    model = ScriptedPatch(empty, intensity="zscore-positive")
    run("radioactive-3d-point", model, vol, truth((4, 5, 6)), refinements=0)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    np.testing.assert_allclose(model.patches[0], znorm_positive(np.clip(vol, lo, hi)[0:8, 2:10, 3:11]), rtol=1e-5)


def test_refinement_draws_a_reseeded_error_voxel_inside_the_isolation_box():
    """IP L364-380, P3 L100-137: truth canonical (3,5,6), (3,5,7), (4,5,6) and (3,5,13); initial
    point (4,5,6) = RAS (7,6,4) (RandomState(1).choice(4) = 3 over the SAR raster order), box i in
    [3, 11) drops (3,5,13) = RAS (0,6,3); with an empty prediction the errors in RAS raster order
    are (6,6,3), (7,6,3), (7,6,4); randint(3) = 1 -> (7,6,3) = canonical (3,5,6), positive, every
    round (reseeded). 6 results, one point per call (NoPrevPoint), previous low-res resent."""
    model = ScriptedPatch(empty)
    out = run("radioactive-3d-point", model, ct(), truth((3, 5, 6), (3, 5, 7), (4, 5, 6), (3, 5, 13)))
    assert [o.round for o in out] == [1, 2, 3, 4, 5, 6]
    assert [(p.z, p.y, p.x, p.positive) for o in out for p in o.prompts] == [(4, 5, 6, True)] + [(3, 5, 6, True)] * 5
    assert [len(c[0]) for c in model.calls] == [1] * 6 and out[-1].clicks == 6
    assert model.calls[0][2] is None and [float(c[2][0, 0, 0]) for c in model.calls[1:]] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_logits_are_thresholded_at_one_half():
    """S3 L325: logits > 0.5 (0.3 everywhere is an empty prediction), pasted back on the case grid."""
    out = run("radioactive-3d-point", ScriptedPatch(lambda k, p: np.full((8, 8, 8), 0.3)), ct(), truth((4, 5, 6)),
              refinements=0)
    assert not out[0].prediction.any()
    out = run("radioactive-3d-point", ScriptedPatch(lambda k, p: np.full((8, 8, 8), 0.6)), ct(), truth((4, 5, 6)),
              refinements=0)
    want = np.zeros(SHAPE, bool)
    want[0:8, 2:10, 3:11] = True
    np.testing.assert_array_equal(out[0].prediction, want)


def test_object_stops_where_the_source_crashes_without_error():
    """P3 L127-128: a perfect prediction leaves no misclassified voxel; the source's randint(0)
    raises, annosim ends the object after round 1."""
    def hit(k, points):
        logits = -np.ones((8, 8, 8))
        logits[tuple(points[0])] = 1.0
        return logits

    out = run("radioactive-3d-point", ScriptedPatch(hit), ct(), truth((4, 5, 6)))
    assert len(out) == 1 and out[0].prediction.sum() == 1 and out[0].prediction[4, 5, 6]


def test_center_prompter_takes_the_middle_of_the_line_in_the_box():
    """IP L466-478: a tube z 0..9 at canonical (y 5, x 6) = RAS (7, 6, k); centroid k 4.5, box
    [0.5, 8.5) keeps k 1..8; middle (index 3) k = 4 -> canonical (4, 5, 6)."""
    gt = np.zeros(SHAPE, bool)
    gt[:, 5, 6] = True
    model = ScriptedPatch(empty)
    out = run("radioactive-3d-center", model, ct(), gt, refinements=0)
    assert [(p.z, p.y, p.x) for p in out[0].prompts] == [(4, 5, 6)]
    assert model.calls[0][:2] == ([[4, 3, 3]], [1])


# -- registry, CLI, models ----------------------------------------------------------------------
def test_registered_and_listed():
    from click.testing import CliRunner

    from annosim.cli import cli

    names = [e.name for e in list_protocols()]
    assert {"radioactive-3d-point", "radioactive-3d-center"} <= set(names)
    assert get_protocol("radioactive-3d-center").requires == ("set_patch", "predict_patch")
    assert get_protocol("radioactive-3d-point").max_rounds == 6
    text = CliRunner().invoke(cli, ["protocols"]).output
    assert "radioactive-3d-point" in text and "radioactive-3d-center" in text
    assert "parameters: refinements=5, slices=5, prev_prompts=False, seed=1" in text


def _rounds(out):
    with open(out / "rounds.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_run_with_classical_and_report_sensitivity(synthetic_manifest, tmp_path):
    """annosim run with classical, beside he2024; both get their columns in the sensitivity table."""
    import pandas as pd

    from annosim.cli import main

    out, rep = tmp_path / "run", tmp_path / "rep"
    assert main(["run", "--data", str(synthetic_manifest), "--limit", "1", "--labels", "1", "--model", "classical",
                 "--protocol", "he2024,radioactive-3d-point,radioactive-3d-center,radioactive-3d-center-2dalgo",
                 "--out", str(out), "--quiet"]) == 0
    errors = out / "errors.jsonl"
    assert not errors.exists() or errors.read_text().strip() == ""
    rows = [r for r in _rounds(out) if r["protocol"].startswith("radioactive-3d") and r["setting"] == "full"]
    assert {r["protocol"] for r in rows} == {"radioactive-3d-point", "radioactive-3d-center",
                                             "radioactive-3d-center-2dalgo"}
    assert all(0 <= float(r["dice"]) <= 1 for r in rows)
    assert main(["report", str(out), "--out", str(rep), "--no-qc", "--n-boot", "100"]) == 0
    sens = pd.read_csv(rep / "sensitivity.csv")
    assert {"he2024", "radioactive-3d-point", "radioactive-3d-center", "radioactive-3d-center-2dalgo"} <= set(sens.columns)
    assert sens["radioactive-3d-point"].between(0, 1).all()


def test_cli_run_with_random_weight_sammed3d(synthetic_manifest, tmp_path, one_torch_thread):
    """annosim run with sam-med3d-turbo from a random 32^3 checkpoint (medim): 6 rounds per object."""
    torch = pytest.importorskip("torch")
    medim = pytest.importorskip("medim")
    import contextlib
    import io

    from annosim.cli import main

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        net = medim.create_model("SAM-Med3D", pretrained=False, image_size=32, encoder_embed_dim=48,
                                 encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1],
                                 prompt_embed_dim=48)
    ckpt = tmp_path / "sam_med3d_small.pth"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, ckpt)
    out = tmp_path / "run"
    assert main(["run", "--data", str(synthetic_manifest), "--limit", "1", "--labels", "1", "--settings", "full",
                 "--model", "sam-med3d-turbo", "--checkpoint", str(ckpt),
                 "--protocol", "radioactive-3d-point,radioactive-3d-center,radioactive-3d-center-2dalgo",
                 "--out", str(out), "--quiet"]) == 0
    rows = _rounds(out)
    errors = out / "errors.jsonl"
    assert not errors.exists() or errors.read_text().strip() == ""
    for name in ("radioactive-3d-point", "radioactive-3d-center", "radioactive-3d-center-2dalgo"):
        got = [int(r["round"]) for r in rows if r["protocol"] == name]
        assert 1 <= len(got) <= 6 and got == list(range(1, len(got) + 1))


def test_with_prev_point_sends_the_new_point_without_the_mask():
    """IP L421-422: WithPrevPoint merges the steps into a new PromptStep without masks; S3
    L231-250 keeps the first point inside the patch (the newest): one point, no low-res logits."""
    model = ScriptedPatch(empty)
    out = run("radioactive-3d-point", model, ct(), truth((3, 5, 6), (3, 5, 7), (4, 5, 6), (3, 5, 13)),
              prev_prompts=True)
    assert len(out) == 6 and [len(c[0]) for c in model.calls] == [1] * 6
    assert all(c[2] is None for c in model.calls)


def test_truth_lost_by_the_resampling_gives_six_empty_results():
    """IP L387-395: groundtruth_model all zero -> max_iter + 1 empty results, no model call. One
    voxel at 1 mm resampled to 3 mm: its trilinear weight on every new voxel is below 0.5."""
    model = ScriptedPatch(empty)
    model.patch_spec = PatchSpec((8, 8, 8), (3.0, 3.0, 3.0), "hu")
    model.set_volume(ct(), (1.0, 1.0, 1.0))
    out = list(get_protocol("radioactive-3d-point").run_object(model, truth((4, 5, 6)), None, np.random.default_rng(0)))
    assert [o.round for o in out] == [1, 2, 3, 4, 5, 6] and not any(o.prediction.any() or o.prompts for o in out)
    assert model.calls == [] and model.patches == []
    with pytest.raises(Exception, match="seed"):
        get_protocol("radioactive-3d-point", seed=0)


def test_sample_ct_end_to_end_with_classical(shared_data):
    """Both prompters on the sample CT (3 mm, RAS: model space 1.5 mm): 6 rounds per object; the
    initial point of radioactive-3d-point is written at the drawn SAR voxel (P3 L26-47: the
    inverse of the sparse factor returns it), a truth voxel; every first click is positive."""
    from annosim.data.layouts import open_dataset
    from annosim.models.classical import ClassicalModel
    from annosim.engine.case import evaluate_case
    from annosim.protocols.radioactive_rules import points_from_sar, to_sar

    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    res = evaluate_case(case, ClassicalModel(), ["radioactive-3d-point", "radioactive-3d-center"],
                        settings=("full",), labels=[1, 2])
    assert res.errors == []
    for name in ("radioactive-3d-point", "radioactive-3d-center"):
        for lab in (1, 2):
            assert [r["round"] for r in res.rows if r["protocol"] == name and r["label"] == lab] == [1, 2, 3, 4, 5, 6]
    first = {(p["protocol"], p["label"]): p for p in res.prompts if p["round"] == 1}
    for (name, lab), p in first.items():
        assert p["positive"] and case.label[p["z"], p["y"], p["x"]] == lab
        if name == "radioactive-3d-point":
            sar = to_sar(case.label == lab)
            drawn = r3.random_fg_voxel(sar)[0][::-1]          # back to SAR (z, y, x)
            assert [p["z"], p["y"], p["x"]] == points_from_sar(drawn[None], sar.shape)[0].tolist()


# -- radioactive-3d-center-2dalgo (IP L481-669) -----------------------------------------------------
def _algo(pred, gt):
    from annosim.protocols.radioactive_rules import SourceRandom

    return r3.algo2d_step(pred, gt, SourceRandom(1))


def test_algo2d_positive_step_is_one_centroid_of_the_largest_fn_component():
    """IP L519-526: no prediction -> binomial(1, 0 / n) = 0, positive; IP L528-549: the largest
    FN component (a 3x3x3 cube at 2..4 beats a single voxel), one centroid point per axis-0
    slice (2,3,3), (3,3,3), (4,3,3); IP L657-662: one of them by choice(3, 1) from the global
    state after that binomial draw, label 1."""
    gt = np.zeros((8, 8, 8), bool)
    gt[2:5, 2:5, 2:5] = True
    gt[7, 7, 7] = True
    rs = np.random.RandomState(1)
    assert rs.binomial(1, 0.0) == 0
    want = [(2, 3, 3), (3, 3, 3), (4, 3, 3)][int(rs.choice(3, 1, replace=False)[0])]
    point, lab = _algo(np.zeros_like(gt), gt)
    assert tuple(point.tolist()) == want and lab == 1


def test_algo2d_negative_step_is_a_scribble_pixel_on_the_worst_axis1_plane():
    """IP L519-526 without guards: no FN -> binomial(1, 1.0) = 1, negative; IP L551-556: the
    axis-1 plane with the most FP (j = 4: the prediction reaches one voxel beyond the truth all
    round there); IP L600-618: the contour scribble's predicted pixels on that plane are the
    points, label 0; the kept point lies on plane j = 4 and is predicted."""
    gt = np.zeros((12, 12, 12), bool)
    gt[3:9, 3:9, 3:9] = True
    pred = gt.copy()
    pred[2:10, 4, 2:10] = True
    point, lab = _algo(pred, gt)
    assert lab == 0 and point[1] == 4 and pred[tuple(point)]


def test_algo2d_negative_fallback_draws_five_fp_voxels_labelled_one():
    """IP L558-568: the worst plane (j = 6) holds no truth -> a full line at its most-predicted
    column (k = 1: 2 pixels), whose predicted pixels (1,6,1), (3,6,1) are the points, label 0.
    IP L587-588, P3 L26-47: where the truth on the worst plane is one voxel the prediction holds,
    the scribble (its dilated contour) meets no predicted pixel, so min(5, |FP|) FP voxels are
    drawn after np.random.seed(1), labelled 1, and one is kept by choice from that state."""
    gt = np.zeros((10, 10, 10), bool)
    gt[4, 2, 4] = True
    pred = np.zeros_like(gt)
    pred[[1, 1, 3], 6, [1, 2, 1]] = True        # FP only on plane j = 6, which holds no truth
    point, lab = _algo(pred, gt)
    assert lab == 0 and point[1] == 6 and point[2] == 1 and pred[tuple(point)]
    # the fallback: a truth on the worst plane whose scribble lies nowhere on the prediction
    gt2 = np.zeros((10, 10, 10), bool)
    gt2[5, 6, 8] = True
    pred2 = np.zeros_like(gt2)
    pred2[[1, 1, 2, 2, 3, 3], 6, [1, 2, 1, 2, 1, 2]] = True
    pred2[5, 6, 8] = True                       # the truth predicted: no FN, the scribble misses the FP
    rs = np.random.RandomState(1)
    assert rs.binomial(1, 1.0) == 1
    vox = np.array(np.where(pred2 & ~gt2)).T
    rs = np.random.RandomState(1)               # P3 L27-28: reseeded
    picks = vox[rs.choice(len(vox), 5, replace=False)]
    want = picks[int(rs.choice(5, 1, replace=False)[0])]
    point, lab = _algo(pred2, gt2)
    assert point.tolist() == want.tolist() and lab == 1


def test_algo2d_without_error_stops_where_the_source_divides_by_zero():
    """IP L525: fp / (fn + fp) = 0 / 0 -> binomial(1, nan) raises; annosim stops (None)."""
    gt = np.zeros((6, 6, 6), bool)
    gt[2, 2, 2] = True
    assert _algo(gt.copy(), gt) is None


def test_algo2d_protocol_runs_on_the_sample_ct_with_classical(shared_data):
    """radioactive-3d-center-2dalgo end to end: the initial point of radioactive-3d-center (the
    same first round), then refinements by the 2D logic; up to 6 rounds, listed in the registry."""
    from annosim.data.layouts import open_dataset
    from annosim.engine.case import evaluate_case
    from annosim.models.classical import ClassicalModel

    assert "radioactive-3d-center-2dalgo" in {e.name for e in list_protocols()}
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    res = evaluate_case(case, ClassicalModel(), ["radioactive-3d-center", "radioactive-3d-center-2dalgo"],
                        settings=("full",), labels=[1])
    assert res.errors == []
    algo = [r for r in res.rows if r["protocol"] == "radioactive-3d-center-2dalgo"]
    centre = [r for r in res.rows if r["protocol"] == "radioactive-3d-center"]
    assert 2 <= len(algo) <= 6 and [r["round"] for r in algo] == list(range(1, len(algo) + 1))
    assert algo[0]["dice"] == centre[0]["dice"]
    first = [(p["z"], p["y"], p["x"]) for p in res.prompts if p["round"] == 1]
    assert len(first) == 2 and first[0] == first[1]
