"""sammed3d (7A, uni-medical/SAM-Med3D @f3de1fa: IU = utils/infer_utils.py) and sammed3d-2024
(7B, @84079e6: VA = validation.py, CM = utils/click_method.py), rule by rule on hand-built
volumes (../shared/reference/protocol-sources.md section 7), with a scripted patch model that
records what the protocol sends."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.data.case import Case
from annosim.engine.case import evaluate_case
from annosim.errors import ConfigError
from annosim.metrics.native_object import ObjectRounds, object_values
from annosim.metrics.registry import MetricSet
from annosim.models.base import PatchPrediction, PatchSpec, SliceModelBase
from annosim.protocols.registry import get_protocol, list_protocols
from annosim.protocols.sammed3d_rules import crop_dice, crop_iou, padded_edt, random_click, ritm_click

SP = (1.5, 1.5, 1.5)  # the patch spacing: resampling is the identity on these volumes


class ScriptedPatch(SliceModelBase):
    """A patch model whose logits come from ``script(call_number, patch)``; it records every
    patch and every ``predict_patch`` call."""

    name = "scripted-patch"

    def __init__(self, script, size=(8, 8, 8), intensity="zscore-positive"):
        super().__init__()
        self.patch_spec = PatchSpec(size, SP, intensity)
        self.script = script
        self.patches, self.calls = [], []

    def set_patch(self, patch):
        self.patches.append(patch.copy())

    def predict_patch(self, points, labels, low_res=None):
        self.calls.append((np.asarray(points).tolist(), np.asarray(labels).tolist(), low_res))
        logits = np.asarray(self.script(len(self.calls), self.patches[-1]), np.float32)
        return PatchPrediction(logits, np.full((2, 2, 2), float(len(self.calls)), np.float32))


def run(protocol, model, volume, gt, spacing=SP, frames=None):
    model.set_volume(volume.astype(np.float32), spacing)
    return list(get_protocol(protocol, **{}).run_object(model, gt, frames, np.random.default_rng(0))
                if isinstance(protocol, str) else protocol.run_object(model, gt, frames, np.random.default_rng(0)))


def ct(shape=(10, 12, 14), seed=0):
    return np.random.default_rng(seed).normal(50, 20, shape).astype(np.float32)


# -- click rules -----------------------------------------------------------------------------------

def test_random_click_draws_over_the_error_raster_order():
    """IU L39-54: np.random.randint over torch.argwhere(FN | FP); label = FN membership.
    RandomState(233).randint(2) = 1: the second error voxel in raster order."""
    gt = np.zeros((4, 4, 4), bool)
    gt[1, 1, 1] = True
    pred = np.zeros_like(gt)
    pred[2, 0, 3] = True            # FP after the FN in raster order
    assert random_click(pred, gt, np.random.RandomState(233)) == ((2, 0, 3), False)
    pred[0, 0, 0] = True            # now three errors; randint(3) with seed 233 is 1: the FN
    assert np.random.RandomState(233).randint(3) == 1
    assert random_click(pred, gt, np.random.RandomState(233)) == ((1, 1, 1), True)


def test_random_click_without_error_7a_falls_back_7b_stops():
    """IU L42-45: no error -> a random GT voxel, positive; CM L110-111: randint(0) raises (None)."""
    gt = np.zeros((3, 3, 3), bool)
    gt[0, 0, 0] = gt[2, 2, 2] = True
    assert random_click(gt, gt, np.random.RandomState(233)) == ((2, 2, 2), True)
    assert random_click(gt, gt, np.random.RandomState(233), fallback=False) is None


def test_ritm_click_half_maximum_depth_set():
    """IU L56-85: EDT of FN padded by 1; candidates DT > max / 2. A 5^3 FN cube has max DT 3 at
    its centre; DT > 1.5 keeps the inner 3^3 = 27 voxels; randint(27) with 233 is 7 -> the 8th
    of them in raster order: (1+0, 1+2, 1+1) + the cube's offset."""
    gt = np.zeros((9, 9, 9), bool)
    gt[2:7, 2:7, 2:7] = True
    pred = np.zeros_like(gt)
    dt = padded_edt(gt & ~pred)
    assert dt.max() == 3.0 and int((dt > 1.5).sum()) == 27
    assert np.random.RandomState(233).randint(27) == 7
    assert ritm_click(pred, gt, np.random.RandomState(233)) == ((3, 5, 4), True)


def test_ritm_click_positive_only_if_fn_strictly_deeper_and_fallback():
    """IU L67-68: positive iff max FN DT > max FP DT (a tie goes to FP); L74-77: no candidate ->
    the centre shape // 2 as a negative click; CM has no fallback (None)."""
    gt = np.zeros((7, 7, 14), bool)
    gt[1:4, 1:4, 1:4] = True        # FN cube, max DT 2
    pred = np.zeros_like(gt)
    pred[1:4, 1:4, 8:11] = True     # FP cube, max DT 2: tie -> negative, drawn from the FP
    (p, positive) = ritm_click(pred, gt, np.random.RandomState(0))
    assert not positive and p == (2, 2, 9)  # DT > 1 leaves only the FP cube's centre
    assert ritm_click(gt, gt, np.random.RandomState(0)) == ((3, 3, 7), False)
    assert ritm_click(gt, gt, np.random.RandomState(0), fallback=False) is None


def test_crop_scores_round_to_four_decimals():
    """VA L61-76, L282-283: Dice 2|P&G|/(|P|+|G|) (nan if both empty), IoU |P&G|/|P|G|, np.round(., 4)."""
    g = np.zeros((3, 1, 1), bool)
    p = np.zeros_like(g)
    assert np.isnan(crop_dice(p, g)) and np.isnan(crop_iou(p, g))
    g[:, 0, 0] = True
    p[0, 0, 0] = True
    assert crop_dice(p, g) == 0.5 and crop_iou(p, g) == 0.3333


# -- the patch a model receives --------------------------------------------------------------------

def test_patch_is_centred_on_the_label_box_in_ras_order_and_z_normalised():
    """IU L246-272 at 1.5 mm (no resampling): RAS order (i, j, k) = (X-1-x, Y-1-y, z), CropOrPad
    around the box centre (8 even: centre 5.5 -> 5, start 1 along i), zero padding, z-norm over > 0."""
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[2:7, 3:5, 4:9] = True        # canonical box: z 2..6, y 3..4, x 4..8
    model = ScriptedPatch(lambda k, p: np.full(p.shape, -1.0))
    run("sammed3d", model, vol, gt)
    # RAS axes: i = 13 - x in 5..9 -> centre 7.5 -> 7 -> start 3; j = 11 - y in 7..8 -> 8 -> 4;
    # k = z in 2..6 -> 4.5 -> 4 -> start 0
    ras = vol[:, ::-1, ::-1].transpose(2, 1, 0)[3:11, 4:12, 0:8]
    pos = ras[ras > 0].astype(np.float64)
    want = ((ras - pos.mean()) / pos.std(ddof=1)).astype(np.float32)
    np.testing.assert_allclose(model.patches[0], want.transpose(2, 1, 0)[:, ::-1, ::-1], atol=1e-5)


def test_sammed3d_clicks_accumulate_with_low_res_and_paste_back():
    """IU L110-169: every click so far and the previous low-res logits go to the prompt encoder;
    IU L172-179 + L275-353: the last mask (logits > 0) pasted on the case grid."""
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[3:6, 4:8, 5:9] = True
    proto = get_protocol("sammed3d", clicks=3)
    model = ScriptedPatch(lambda k, p: np.where(p > -10, -1.0, 1.0))  # always empty: every click random FN
    out = run(proto, model, vol, gt)
    assert [len(c[0]) for c in model.calls] == [1, 2, 3]
    assert model.calls[0][2] is None and model.calls[1][2][0, 0, 0] == 1.0 and model.calls[2][2][0, 0, 0] == 2.0
    assert all(c[1] == [1] * len(c[0]) for c in model.calls)   # FN clicks are positive
    assert [o.round for o in out] == [1, 2, 3] and not out[-1].prediction.any()
    perfect = ScriptedPatch(lambda k, p: np.where(model_gt_patch(vol, gt), 1.0, -1.0))
    res = run("sammed3d", perfect, vol, gt)
    np.testing.assert_array_equal(res[0].prediction, gt)   # the paste-back of the truth's patch is the truth


def model_gt_patch(vol, gt):
    """The canonical-axes truth patch of :func:`test_sammed3d_clicks_accumulate_with_low_res_and_paste_back`'s
    object (8^3 around its box), built by hand."""
    ras = gt[:, ::-1, ::-1].transpose(2, 1, 0)
    # i = 13 - x in 5..8 -> centre 7 -> start 3; j = 11 - y in 4..7 -> 6 -> 2; k in 3..5 -> 4.5 -> 4 -> 0
    return ras[3:11, 2:10, 0:8].transpose(2, 1, 0)[:, ::-1, ::-1]


def test_first_click_is_seeded_per_object_with_233():
    """IU L384-385: RandomState(233); the first click (empty prediction: FN = the truth in the
    patch) is truth voxel randint(n) in RAS raster order. Two voxels: randint(2) = 1, the second
    in (i, j, k) order: i = X-1-x, so the voxel with the smaller x comes second."""
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[4, 5, 3] = gt[4, 5, 9] = True   # RAS i = 10 and 4: (4, ...) first, (10, ...) second
    model = ScriptedPatch(lambda k, p: np.full(p.shape, -1.0))
    out = run("sammed3d", model, vol, gt)
    assert out[0].prompts[0].to_record() == {"kind": "point", "z": 4, "y": 5, "x": 3, "positive": True}
    # in the patch (8^3, start i 3, j 2, k 0): RAS (7, 4, 4) -> canonical (z 4, y 8-1-4, x 8-1-7)
    assert model.calls[0][0] == [[4, 3, 0]]


def test_empty_truth_in_the_patch_gives_an_empty_prediction_without_clicks():
    """IU L104-108: roi_gt empty -> zeros and no click (a label lost by the resampling)."""
    vol = ct((6, 6, 6))
    gt = np.zeros(vol.shape, bool)
    gt[2, 2, 2] = True
    model = ScriptedPatch(lambda k, p: np.ones(p.shape))
    model.set_volume(vol, (0.5, 0.5, 0.5))  # 0.5 -> 1.5 mm: nearest takes old voxels 1, 4 only
    out = list(get_protocol("sammed3d").run_object(model, gt, None, np.random.default_rng(0)))
    assert model.calls == [] and not out[0].prediction.any() and out[0].prompts == []


def test_2024_newest_click_only_logit_threshold_and_rule_switch():
    """VA L247-273: clicks 1-2 by the ritm rule, then random; only the newest click is sent; CM
    L59/L101: the next click reads logits > 0.5, while the scored mask is sigmoid > 0.5 (logits > 0)."""
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[2:7, 3:8, 4:9] = True
    model = ScriptedPatch(lambda k, p: np.full(p.shape, 0.3))  # mask full, click mask empty
    out = run("sammed3d-2024", model, vol, gt)
    assert len(out) == 5 and [len(c[0]) for c in model.calls] == [1] * 5
    assert all(c[1] == [1] for c in model.calls)                  # all FN: positive
    # RandomState(2023): randint(27) = 23, randint(27) = 25 over the depth set (the inner 3^3: RAS
    # i = 13-x in 6..8, j = 11-y in 5..7, k = z in 3..5), then randint(125) = 70 over the whole
    # 5^3 FN (i 5..9, j 4..8, k 2..6): 23 -> (8, 6, 5), 25 -> (8, 7, 4), 70 -> (7, 8, 2) in RAS
    clicks = [(o.prompts[0].z, o.prompts[0].y, o.prompts[0].x) for o in out]
    assert clicks[:3] == [(5, 5, 5), (4, 4, 5), (2, 3, 6)]          # click 3 outside the depth set
    assert out[0].patch[0].all()                                   # logits 0.3 > 0: full mask
    assert model.calls[1][2][0, 0, 0] == 1.0                       # low-res of call 1 handed back


def test_2024_stops_where_the_source_crashes():
    """CM L78 / L111: with no error left the source's randint(0) raises; the object stops there."""
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[3:6, 4:8, 5:9] = True
    truth = model_gt_patch(vol, gt)
    model = ScriptedPatch(lambda k, p: np.where(truth, 1.0, -1.0))
    out = run("sammed3d-2024", model, vol, gt)
    assert len(out) == 1 and out[0].patch[0].sum() == truth.sum()


def test_2024_clamps_ct_before_the_patch():
    """DL L51-52: CT clamped to [-1000, 1000] before normalisation (clamp_ct=true)."""
    vol = ct()
    vol[0, 0, 0] = 5000.0
    gt = np.zeros(vol.shape, bool)
    gt[0:4, 0:4, 0:4] = True
    a, b = (ScriptedPatch(lambda k, p: np.full(p.shape, -1.0), intensity="hu") for _ in range(2))
    run("sammed3d-2024", a, vol, gt)
    run(get_protocol("sammed3d-2024", clamp_ct=False), b, vol, gt)
    assert a.patches[0].max() == 1000.0 and b.patches[0].max() == 5000.0


def test_best_of_n_is_the_maximum_over_clicks():
    """VA L378-382: per case max(dice_list)."""
    d = ObjectRounds({"sammed3d_crop_dice": np.array([0.5, 0.7, 0.6]), "sammed3d_crop_iou": np.array([0.3, 0.2, 0.25])})
    assert object_values(["sammed3d_best_dice", "sammed3d_best_iou"], d) == {"sammed3d_best_dice": 0.7,
                                                                            "sammed3d_best_iou": 0.3}


def test_native_case_grid_metrics_empty_rules():
    """MU L11-136: both empty -> nan; truth empty, prediction not -> 0; NSD at 1 mm."""
    ms = MetricSet.with_user(native=("sammed3d_dsc", "sammed3d_nsd"))
    g = np.zeros((4, 4, 4), bool)
    nat = ("sammed3d_dsc", "sammed3d_nsd")
    both = ms.compute(g, g, (1, 1, 1), native=nat)
    assert np.isnan(both["sammed3d_dsc"]) and np.isnan(both["sammed3d_nsd"])
    p = g.copy()
    p[1, 1, 1] = True
    one = ms.compute(p, g, (1, 1, 1), native=nat)
    assert one["sammed3d_dsc"] == 0.0 and one["sammed3d_nsd"] == 0.0
    g2 = np.zeros((4, 4, 4), bool)
    g2[1, 1, 1:3] = True             # 1 mm off on one voxel: NSD@1mm counts it, DSC 2/3
    r = ms.compute(p, g2, (1, 1, 1), native=nat)
    assert r["sammed3d_dsc"] == pytest.approx(2 / 3) and r["sammed3d_nsd"] == 1.0


def test_protocols_registered_and_refuse_slice_only_models():
    names = [e.name for e in list_protocols()]
    assert "sammed3d" in names and "sammed3d-2024" in names
    assert get_protocol("sammed3d").requires == ("set_patch", "predict_patch")
    with pytest.raises(Exception, match="click_method"):
        get_protocol("sammed3d", click_method="edt")
    from click.testing import CliRunner

    from annosim.cli import cli

    text = CliRunner().invoke(cli, ["protocols"]).output
    assert "parameters: clicks=1, click_method=random, seed=233" in text
    assert "parameters: clicks=5, ritm_clicks=2, seed=2023, clamp_ct=True, newest_only=True" in text


def test_classical_runs_both_protocols_end_to_end():
    """classical answers 3D points on the patch (its slice API on a twin of itself)."""
    from annosim.models.classical import ClassicalModel

    rng = np.random.default_rng(0)
    img = np.full((8, 32, 32), 40.0, np.float32) + rng.normal(0, 5, (8, 32, 32)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[2:6, 8:20, 8:18] = 1
    img[lab == 1] += 160.0
    case = Case("syn", img, lab, (1.5, 1.0, 1.0), {1: "box"})
    ms = MetricSet.with_user(native=("sammed3d_dsc", "sammed3d_nsd", "sammed3d_crop_dice", "sammed3d_crop_iou"))
    res = evaluate_case(case, ClassicalModel(), ["sammed3d", "sammed3d-2024"], settings=("full",), metrics=ms)
    assert res.errors == []
    rows = {(r["protocol"], r["round"]): r for r in res.rows}
    rounds = sorted(k[1] for k in rows if k[0] == "sammed3d-2024")
    assert rounds == list(range(1, len(rounds) + 1)) and 1 <= len(rounds) <= 5
    assert rows[("sammed3d", 1)]["sammed3d_dsc"] == rows[("sammed3d", 1)]["dice"] > 0.5
    assert 0 < rows[("sammed3d-2024", 1)]["sammed3d_crop_dice"] <= 1


def test_classical_patch_size_and_spacing_model_args():
    """--model-arg patch_size / patch_spacing set the patch classical receives (shape, mm) and its
    describe(); default SAM-Med3D's 128^3 at 1.5 mm; a bad value is a one-line ConfigError."""
    from annosim.models.classical import ClassicalModel

    class Recording(ClassicalModel):
        def set_patch(self, patch):
            super().set_patch(patch)
            self.seen = (patch.shape, self._twin.spacing)

    assert ClassicalModel().patch_spec == PatchSpec((128, 128, 128), (1.5, 1.5, 1.5), "hu")
    model = Recording(patch_size="16", patch_spacing="1.5,1,1")
    assert model.describe()["patch"] == {"size": [16, 16, 16], "spacing": [1.5, 1.0, 1.0]}
    img = np.full((8, 32, 32), 40.0, np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[2:6, 8:20, 8:18] = 1
    img[lab == 1] += 160.0
    res = evaluate_case(Case("syn", img, lab, (1.5, 1.0, 1.0), {1: "box"}), model, ["sammed3d"], settings=("full",))
    assert res.errors == [] and model.seen == ((16, 16, 16), (1.5, 1.0, 1.0))
    for bad, says in ((dict(patch_size="8,8"), "patch_size must be 1 or 3 positive integers, got '8,8'"),
                      (dict(patch_spacing="-1"), "patch_spacing must be 1 or 3 positive mm, got '-1'")):
        with pytest.raises(ConfigError, match=f"^model 'classical': {says}$"):
            ClassicalModel(**bad)


def test_sample_ct_end_to_end_with_classical(shared_data):
    """Both protocols on the sample CT (3 mm, resampled to 1.5 mm; 128^3 patch with padding in z):
    the first click of each object is a truth voxel of the case grid (the case voxel nearest the
    patch voxel is the one the nearest-neighbour label resampling took), positive; 7A's native
    DSC equals annosim's Dice in the full setting; the crop scores carry 4 decimals."""
    from annosim.data.layouts import open_dataset
    from annosim.models.classical import ClassicalModel

    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    ms = MetricSet.with_user(native=("sammed3d_dsc", "sammed3d_nsd", "sammed3d_crop_dice", "sammed3d_crop_iou"))
    res = evaluate_case(case, ClassicalModel(), ["sammed3d", "sammed3d-2024"], settings=("full",),
                        labels=[1, 2], metrics=ms)
    assert res.errors == []
    first = [p for p in res.prompts if p["round"] == 1]
    assert len(first) == 4
    for p in first:
        assert p["positive"] and case.label[p["z"], p["y"], p["x"]] == p["label"]
    for r in res.rows:
        if r["protocol"] == "sammed3d":
            assert r["sammed3d_dsc"] == r["dice"] > 0.5
        else:
            assert r["sammed3d_crop_dice"] == round(r["sammed3d_crop_dice"], 4)


class PlainPatchPlugin:
    """A patch plugin that subclasses nothing (wrapped in PluginModel): logits +1 on a 2^3 cube
    at the patch centre."""

    name = "plain-patch"
    patch_spec = PatchSpec((8, 8, 8), SP, "hu")

    def set_volume(self, volume, spacing):
        self.seen = []

    def start_object(self, frames=None):
        pass

    def add_clicks(self, z, points, labels, replace=False):
        raise NotImplementedError

    def propagate(self):
        raise NotImplementedError

    def set_patch(self, patch):
        self.seen.append(patch.shape)

    def predict_patch(self, points, labels, low_res=None):
        logits = -np.ones((8, 8, 8), np.float32)
        logits[3:5, 3:5, 3:5] = 1.0
        return PatchPrediction(logits, None)


def test_plugin_patch_model_without_base_class(tmp_path):
    """The plugin API: patch_spec, set_patch and predict_patch on a plain class; the protocol
    reads the case from the wrapper (PluginModel keeps what set_volume received)."""
    from annosim.models.base import as_model

    model = as_model(PlainPatchPlugin())
    assert model.supports("predict_patch") and model.patch_spec.size == (8, 8, 8)
    vol = ct()
    gt = np.zeros(vol.shape, bool)
    gt[3:6, 4:8, 5:9] = True
    out = run("sammed3d", model, vol, gt)
    assert model.plugin.seen == [(8, 8, 8)]
    # patch start (RAS) i 3, j 2, k 0; the cube at RAS 3..4 -> case i 6..7, j 5..6, k 3..4
    # -> canonical z 3..4, y 11-6..11-5 = 5..6, x 13-7..13-6 = 6..7
    want = np.zeros(vol.shape, bool)
    want[3:5, 5:7, 6:8] = True
    np.testing.assert_array_equal(out[0].prediction, want)


def test_protocols_in_the_report_sensitivity_table(synthetic_manifest, tmp_path):
    """Both protocols run from the CLI beside he2024 and get their columns in the sensitivity
    table, with their native headline in the detail table."""
    import pandas as pd

    from annosim.cli import main

    out, rep = tmp_path / "run", tmp_path / "rep"
    assert main(["run", "--data", str(synthetic_manifest), "--limit", "1", "--labels", "1", "--model", "classical",
                 "--protocol", "he2024,sammed3d,sammed3d-2024", "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out), "--out", str(rep), "--no-qc", "--n-boot", "100"]) == 0
    sens = pd.read_csv(rep / "sensitivity.csv")
    assert {"he2024", "sammed3d", "sammed3d-2024"} <= set(sens.columns) and len(sens) == 2  # full, fg-only
    assert sens["sammed3d"].between(0, 1).all()
    detail = (rep / "sensitivity_detail.md").read_text()
    assert "best-of-N crop Dice" in detail and "DSC (SAM-Med3D)" in detail


def test_patch_twin_leaves_the_case_state_of_the_model_untouched():
    """A slice model answers patch calls on a twin (a shallow copy): a slice protocol run after a
    patch protocol on the same case gives the rows it gives alone."""
    from annosim.models.classical import ClassicalModel

    rng = np.random.default_rng(0)
    img = np.full((8, 32, 32), 40.0, np.float32) + rng.normal(0, 5, (8, 32, 32)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[2:6, 8:20, 8:18] = 1
    img[lab == 1] += 160.0
    case = Case("syn", img, lab, (1.5, 1.0, 1.0), {1: "box"})

    def he_rows(protocols):
        res = evaluate_case(case, ClassicalModel(), protocols, settings=("full",))
        return [{k: v for k, v in r.items() if k != "model_seconds"} for r in res.rows if r["protocol"] == "he2024"]

    assert he_rows(["sammed3d", "he2024"]) == he_rows(["he2024"])


def test_vista3d_runs_sammed3d_on_the_sample_ct(shared_data, tmp_path, one_torch_thread):
    """VISTA3D (random weights, its own HU window and grid) under both patch protocols."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from monai.networks.nets import vista3d132

    from annosim.data.layouts import open_dataset
    from annosim.models.vista3d_model import VISTA3DModel

    torch.manual_seed(0)
    ckpt = tmp_path / "vista3d.pt"
    torch.save(vista3d132(encoder_embed_dim=8).state_dict(), ckpt)
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load()
    model = VISTA3DModel(checkpoint=str(ckpt), patch_size=32, device="cpu")
    assert model.patch_spec == PatchSpec((32, 32, 32), (1.5, 1.5, 1.5), "hu")
    other = VISTA3DModel(checkpoint=str(ckpt), patch_size="16,32,48", patch_spacing="2", device="cpu")
    assert other.patch_spec == PatchSpec((48, 32, 16), (2.0, 2.0, 2.0), "hu")  # window RAS, patch (Z, Y, X)
    assert other.describe()["patch"] == {"size": [48, 32, 16], "spacing": [2.0, 2.0, 2.0]}
    with pytest.raises(ConfigError, match=r"^model 'vista3d': patch_spacing must be 1 or 3 positive mm, got '0'$"):
        VISTA3DModel(checkpoint=str(ckpt), patch_spacing="0", device="cpu")
    res = evaluate_case(case, model, ["sammed3d", "sammed3d-2024"], settings=("full",), labels=[1])
    assert res.errors == [] and {r["protocol"] for r in res.rows} == {"sammed3d", "sammed3d-2024"}


def test_other_orientation_is_refused_before_any_work(synthetic_manifest, tmp_path, capsys):
    """The patch pipeline reorders canonical axes to RAS: --orientation as-stored is exit 2."""
    from annosim.cli import main

    out = tmp_path / "run"
    assert main(["run", "--data", str(synthetic_manifest), "--model", "classical", "--protocol", "sammed3d",
                 "--orientation", "as-stored", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["annosim: error: protocol 'sammed3d' runs in the canonical orientation only, "
                   "not --orientation as-stored"] and not out.exists()
