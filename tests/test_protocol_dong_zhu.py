"""Rules of dong2024 / dong2024-2d (mazurowski-lab, protocol-sources.md section 3) and zhu2024
(MedicineToken/Medical-SAM2, section 4) on hand-built masks, through a recording stub model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from annosim.models.base import SliceModelBase
from annosim.protocols.dong_rules import (
    chamfer_distance,
    deepest_candidates,
    largest_component_8,
    upper_median_slice,
)
from annosim.protocols.registry import get_protocol


class Recorder(SliceModelBase):
    """Records every call; propagate returns all-True on the frames."""

    name = "recorder"

    def __init__(self, slice2d: bool = True):
        self.calls: list[tuple] = []
        self.slice2d = slice2d

    def set_volume(self, volume, spacing):
        super().set_volume(volume, spacing)

    def start_object(self, frames=None):
        super().start_object(frames)
        self.calls.append(("start_object",))

    def add_clicks(self, z, points, labels, replace=False):
        self.calls.append(("add_clicks", z, np.asarray(points).tolist(), np.asarray(labels).tolist()))

    def add_box(self, z, box):
        self.calls.append(("add_box", z, tuple(box)))

    def add_mask(self, z, mask):
        self.calls.append(("add_mask", z, int(np.asarray(mask).sum())))

    def propagate(self):
        return np.ones(self.shape, bool)

    def propagate_pass(self, start, reverse=False):
        self.calls.append(("propagate_pass", start, reverse))
        return np.ones(self.shape, bool)

    def predict_slice(self, z, points=None, labels=None, box=None):
        self.calls.append(("predict_slice", z, None if points is None else np.asarray(points).tolist(), box))
        return np.ones(self.shape[1:], bool)


def run(protocol, model, gt, frames=None):
    model.set_volume(np.zeros(gt.shape, np.float32), (1.0, 1.0, 1.0))
    return list(protocol.run_object(model, gt, frames, np.random.default_rng(0)))


# --- dong rules -------------------------------------------------------------------------------

def test_dong_frame_is_upper_median_of_occupied_slices():
    """prompt_funcs.py frame_mode 2: occupied[len // 2] (4 occupied slices -> the third)."""
    g = np.zeros((9, 3, 3), bool)
    g[[1, 2, 6, 8], 1, 1] = True
    assert upper_median_slice(g) == 6


def test_dong_chamfer_picks_another_pixel_than_exact_edt():
    """cv2.distanceTransform(DIST_L2, 5) weights 1, 1.4, 2.1969: on this shape the chamfer
    maximum is (12, 9) while the exact EDT maximum is (11, 9)."""
    m = np.ones((20, 20), bool)
    for y, x in ((4, 5), (13, 1), (13, 17), (15, 17)):
        m[y, x] = False
    edt = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    assert np.argwhere(edt == edt.max()).tolist() == [[11, 9]]
    assert deepest_candidates(m).tolist() == [[12, 9]]
    assert chamfer_distance(m)[12, 9] == pytest.approx(8.0)


def test_dong_chamfer_weights_axial_diagonal_knight():
    """cv2 5x5 mask weights a=1 (axial), b=1.4 (diagonal), c=2.1969 (knight move)."""
    m = np.ones((11, 11), bool)
    m[5, 5] = False
    dt = chamfer_distance(m)
    assert (dt[5, 6], dt[6, 6], dt[6, 7]) == pytest.approx((1.0, 1.4, 2.1969))
    assert dt[0, 0] == pytest.approx(1.0)  # the one-pixel padding is background


def test_dong_largest_component_is_8_connected_and_ties_go_to_higher_label():
    """prompt_funcs.py: skimage label connectivity 2; sort (area, label) reversed."""
    m = np.zeros((4, 7), bool)
    m[0, 0] = m[1, 1] = True      # diagonal pair: one 8-component of 2
    m[0, 5] = m[0, 6] = True      # second component of 2, higher label
    assert np.argwhere(largest_component_8(m)).tolist() == [[0, 5], [0, 6]]
    m[2, 2] = True                # now the diagonal chain has 3
    assert np.argwhere(largest_component_8(m)).tolist() == [[0, 0], [1, 1], [2, 2]]


# --- dong2024 protocol ------------------------------------------------------------------------

def _dong_gt():
    g = np.zeros((6, 9, 9), bool)
    for z in (1, 2, 3, 4):
        g[z, 2:7, 2:7] = True
    g[3, 0, 8] = True  # a stray pixel: not the largest component
    return g


def test_dong2024_default_forward_from_frame_0_with_box_of_largest_component():
    """eval_sam2_3d.py default: prompt on the upper median (slice 3), propagate_in_video(0)."""
    m = Recorder()
    out = run(get_protocol("dong2024", prompt="box"), m, _dong_gt())
    assert m.calls == [("start_object",), ("add_box", 3, (2, 2, 6, 6)), ("propagate_pass", 0, False)]
    assert len(out) == 1 and out[0].prediction.all()


def test_dong2024_point_is_the_chamfer_deepest_pixel():
    """prompt_mode 1: the centre of the 5x5 square (depth 3) on the largest component."""
    m = Recorder()
    run(get_protocol("dong2024"), m, _dong_gt())
    assert m.calls[1] == ("add_clicks", 3, [[4, 4]], [1])


def test_dong2024_bidirectional_reverse_then_reset_then_forward():
    """--bidirectional: reverse from the prompt frame, reset_state, same prompt, forward."""
    m = Recorder()
    run(get_protocol("dong2024", prompt="box", bidirectional="true"), m, _dong_gt())
    assert m.calls == [("start_object",), ("add_box", 3, (2, 2, 6, 6)), ("propagate_pass", 3, True),
                       ("start_object",), ("add_box", 3, (2, 2, 6, 6)), ("propagate_pass", 3, False)]


def test_dong2024_2d_calls_predict_slice_per_occupied_slice():
    """eval_sam2_2d.py: every image with truth predicted on its own; empty ones skipped."""
    m = Recorder()
    out = run(get_protocol("dong2024-2d", prompt="box"), m, _dong_gt())
    assert [c[:2] for c in m.calls[1:]] == [("predict_slice", z) for z in (1, 2, 3, 4)]
    assert not any(c[0] == "propagate_pass" for c in m.calls)
    assert out[0].prediction[[1, 2, 3, 4]].all() and not out[0].prediction[[0, 5]].any()


def test_dong2024_2d_declares_slice2d_so_models_without_it_are_refused():
    """Issue 14 model API: a model without predict_slice is refused before any case is read."""
    p = get_protocol("dong2024-2d")
    assert "predict_slice" in p.requires


# --- zhu2024 ----------------------------------------------------------------------------------

def test_zhu2024_quarter_slab_prompt_freq_2_and_empty_mask_prompts():
    """btcv.py test mode: video = first int(n/4) frames of the GT slab; function.py: prompt
    frames 0, 2, 4, ...; an absent object gets an all-zero mask prompt; one forward pass."""
    g = np.zeros((20, 8, 8), bool)
    g[2:18, 3:5, 3:6] = True      # slab 2..17, n = 16 -> evaluated 2..5
    g[4] = False                  # absent on prompt frame 4 (inside the slab)
    m = Recorder()
    out = run(get_protocol("zhu2024"), m, g)
    # the box of the mask resized to 1024 (Pillow nearest: each pixel 128 wide), back in pixels
    assert m.calls == [("start_object",), ("add_box", 2, (3.0, 3.0, 639 / 128, 767 / 128)), ("add_mask", 4, 0),
                       ("propagate_pass", 2, False)]
    assert out[0].prompts[0].to_record() == {"kind": "box", "z": 2, "y0": 3, "x0": 3, "y1": 4, "x1": 5}
    assert np.flatnonzero(out[0].scored_frames).tolist() == [2, 3, 4, 5]
    assert np.flatnonzero(out[0].prediction.any(axis=(1, 2))).tolist() == [2, 3, 4, 5]


def test_zhu_box_is_taken_on_the_mask_resized_to_1024_by_pillow_nearest():
    """btcv.py L86-98 + utils.py generate_bbox: the mask goes through PIL mode "1" resize to
    1024 (nearest, pixel centres) and its tight box is the prompt, in 1024 pixels: on a 512
    slice rows 10..19 become 20..39, i.e. 10.0 .. 19.5 slice pixels."""
    from annosim.protocols.zhu2024 import zhu_box

    m = np.zeros((512, 512), bool)
    m[10:20, 30:40] = True
    assert zhu_box(m, 1024) == (10.0, 30.0, 19.5, 39.5)
    assert zhu_box(m, 0) == (10.0, 30.0, 19.0, 39.0)
    wide = np.zeros((4, 3000), bool)
    wide[1, 2] = True                 # column 2 is not sampled (1, 4, ...): the source's box would be NaN
    assert zhu_box(wide, 1024) == (1.0, 2.0, 1.0, 2.0)
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    for shape in ((512, 512), (333, 97), (700, 1100)):
        r = np.zeros(shape, bool)
        r[rng.integers(0, shape[0] // 2):rng.integers(shape[0] // 2, shape[0]),
          rng.integers(0, shape[1] // 2):rng.integers(shape[1] // 2, shape[1])] = True
        big = np.argwhere(np.array(pil.fromarray(r).resize((1024, 1024))))
        (r0, c0), (r1, c1) = big.min(axis=0), big.max(axis=0)
        assert zhu_box(r, 1024) == (r0 * shape[0] / 1024, c0 * shape[1] / 1024,
                                    r1 * shape[0] / 1024, c1 * shape[1] / 1024)


def test_zhu2024_click_mode_one_truth_pixel_from_the_run_rng():
    """utils.py click mode: one uniformly random foreground pixel, label 1 (here from rng)."""
    g = np.zeros((8, 6, 6), bool)
    g[0:8, 2, 1:4] = True
    m = Recorder()
    run(get_protocol("zhu2024", prompt="point"), m, g)
    (name, z, pts, labels), = [c for c in m.calls if c[0] == "add_clicks"]
    assert z == 0 and labels == [1] and g[0][tuple(pts[0])]


# --- native metrics ---------------------------------------------------------------------------

def _data(pred_rows, gt_rows, scored):
    from annosim.metrics.entry import RoundData
    z = len(gt_rows)
    p = np.zeros((z, 1, 4), bool)
    g = np.zeros((z, 1, 4), bool)
    for i, (a, b) in enumerate(zip(pred_rows, gt_rows)):
        p[i, 0, :a] = True
        g[i, 0, :b] = True
    return RoundData(p, g, (1, 1, 1), 1.0, scored)


def test_dong_weighting_on_given_per_frame_ious():
    """eval_sam2_3d.py: the list extended with itself; bidirectional counts 0..prompt 4x.
    Frame IoUs 1/4, 2/4, 4/4 (frame 3 has empty truth: ignored)."""
    from annosim.metrics.native import _dong_iou, _dong_iou_weighted
    from annosim.protocols.dong2024 import dong_weights
    d = _data([1, 2, 4, 3], [4, 4, 4, 0], dong_weights(np.ones(4, bool), 0, True))
    assert _dong_iou(d) == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    assert _dong_iou_weighted(d) == pytest.approx((4 * 0.25 + 2 * 0.5 + 2 * 1.0) / 8)
    uni = _data([1, 2, 4, 3], [4, 4, 4, 0], dong_weights(np.ones(4, bool), 0, False))
    assert _dong_iou_weighted(uni) == pytest.approx(_dong_iou(uni))


def test_zhu_empty_vs_empty_scores_one_and_scored_frames_only():
    """Medical-SAM2 utils.py eval_seg: (I + 1e-6)/(U + 1e-6) and (2I + 1e-4)/(|P|+|G|+1e-4);
    empty vs empty = 1; only the scored (first-quarter) frames count."""
    from annosim.metrics.native import _zhu_pair
    d = _data([0, 2, 4], [0, 4, 0], np.array([True, True, False]))
    dice, iou = _zhu_pair(d)
    assert iou == pytest.approx((1.0 + (2 + 1e-6) / (4 + 1e-6)) / 2)
    assert dice == pytest.approx((1.0 + (4 + 1e-4) / (6 + 1e-4)) / 2)


def test_dong2024_and_zhu2024_end_to_end_with_classical_on_a_real_case(tmp_path):
    """CLI run --limit 1 on ../shared/data (one label): native columns filled per protocol."""
    import pathlib

    import pandas as pd
    from click.testing import CliRunner

    from annosim.cli import cli

    d = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-abdomen"
    if not (d / "ct.nii.gz").exists():
        pytest.skip("no shared CT case")
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}",
                                 "--label-names", str(d / "labels.json"), "--labels", "spleen",
                                 "--protocol", "dong2024,zhu2024,dong2024-2d", "--settings", "full", "--limit", "1",
                                 "--no-surface-metrics", "--save-predictions", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = pd.read_csv(out / "rounds.csv").set_index("protocol")
    assert 0 <= rows.loc["dong2024", "dong_iou_weighted"] <= 1 and np.isnan(rows.loc["dong2024", "zhu_dice"])
    assert 0 <= rows.loc["zhu2024", "zhu_dice"] <= 1 and np.isnan(rows.loc["zhu2024", "dong_iou"])
    # dong2024-2d with classical's one-shot predict_slice: one point prompt per slice with truth,
    # and dong_iou = the mean per-frame IoU over those slices of the saved prediction.
    import json

    from annosim.data.layouts import open_dataset

    case = next(iter(open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}"))).load()
    gt = case.label == 1
    occupied = np.flatnonzero(gt.any(axis=(1, 2)))
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    two_d = [p for p in prompts if p["protocol"] == "dong2024-2d"]
    assert sorted(p["z"] for p in two_d) == occupied.tolist() and {p["kind"] for p in two_d} == {"point"}
    with np.load(out / "predictions" / "ct" / "dong2024-2d__1__full.npz") as npz:
        pred = npz["round_1"]
    inter = (pred & gt).sum(axis=(1, 2))[occupied]
    union = (pred | gt).sum(axis=(1, 2))[occupied]
    assert rows.loc["dong2024-2d", "dong_iou"] == pytest.approx(float(np.mean(inter / union)), abs=1e-12)
    assert not pred[~gt.any(axis=(1, 2))].any()  # slices without truth are not predicted


def test_dong2024_2d_refuses_a_model_without_predict_slice_before_any_case(shared_data, tmp_path, capsys):
    """Issue 14 model API: a model without the one-shot 2D prediction is refused up front."""
    from annosim.cli import main

    d = shared_data / "totalseg-abdomen"
    plugin = Path(__file__).resolve().parent / "plugin_models.py"
    out = tmp_path / "run"
    assert main(["run", "--data", f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", "--model", f"{plugin}:ThresholdGrow",
                 "--labels", "spleen", "--protocol", "dong2024-2d", "--out", str(out), "--quiet"]) == 2
    assert "needs the model method predict_slice()" in capsys.readouterr().err
    assert not out.exists()


# --- ma2024-box (bowang-lab/MedSAM MedSAM2 infer_SAM2_3D_npz.py, protocol-sources.md section 1) ------------
def test_ma2024_box_calls_in_the_source_order_on_the_upper_middle_slice():
    """A L205-206: z_min + n // 2 (4 slices 2..5 -> 4); A L202: the 3D box's in-plane extent; A L209-223:
    predict_slice, add_mask, forward pass, reset, the same mask, reverse pass; video = the z extent."""
    gt = np.zeros((9, 20, 20), bool)
    gt[2, 3:6, 4:8] = True
    gt[3:6, 10:14, 9:12] = True
    model = Recorder()
    out = run(get_protocol("ma2024-box"), model, gt)
    assert model.frames.tolist() == [2, 3, 4, 5]
    assert model.calls == [("start_object",), ("predict_slice", 4, None, (3, 4, 13, 11)), ("add_mask", 4, 400),
                           ("propagate_pass", 4, False), ("start_object",), ("add_mask", 4, 400),
                           ("propagate_pass", 4, True)]
    pred = out[0].prediction
    assert pred.any(axis=(1, 2)).tolist() == [False, False, True, True, True, True, False, False, False]
    assert (out[0].round, out[0].clicks, out[0].annotated_slices) == (1, 0, 1)
    assert [p.to_record()["kind"] for p in out[0].prompts] == ["box", "mask"]


def test_ma2024_box_odd_extent_and_passes_or_ed_on_the_box_slice():
    """A L205-206 with 3 slices (1..3) -> slice 1 + 3 // 2 = 2; the forward pass covers z >= 2, the
    reverse z <= 2, and their union is the prediction (the source writes both into one volume)."""
    gt = np.zeros((6, 10, 10), bool)
    gt[1:4, 2:5, 2:5] = True

    class Halves(Recorder):
        def propagate_pass(self, start, reverse=False):
            super().propagate_pass(start, reverse)
            out = np.zeros(self.shape, bool)
            z = np.arange(self.shape[0])
            keep = (z <= start) if reverse else (z >= start)
            out[keep, (0 if reverse else 1), 0] = True
            return out

    model = Halves()
    pred = run(get_protocol("ma2024-box"), model, gt)[0].prediction
    assert model.calls[1][1] == 2
    assert pred[2, 0, 0] and pred[2, 1, 0]  # both passes on the box slice
    assert pred[1, 0, 0] and not pred[1, 1, 0] and pred[3, 1, 0] and not pred[3, 0, 0]
    assert not pred[[0, 4, 5]].any()  # nothing outside the z extent
