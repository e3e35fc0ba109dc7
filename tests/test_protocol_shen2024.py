"""Shen et al. 2024 rules (Chuyun-Shen/SAM_2_Medical_3D @8a2b771, protocol-sources.md section 2)
on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.metrics.entry import RoundData
from annosim.metrics.native import NATIVE
from annosim.protocols.shen2024 import Shen2024Mask, Shen2024MaskParams, Shen2024Points
from annosim.protocols.shen_rules import conditioning_frame, deepest_click, select_video, source_order

NATIVE_BY_NAME = {m.name: m for m in NATIVE}


def _slab(counts: list[int], size: int = 20) -> np.ndarray:
    """(Z, size, size) bool with ``counts[z]`` pixels set in raster order on slice z."""
    g = np.zeros((len(counts), size, size), dtype=bool)
    for z, c in enumerate(counts):
        g[z].reshape(-1)[:c] = True
    return g


def test_video_threshold_256_strict_and_last_qualifying_slice_dropped():
    """V L52-68: slices with > 256 pixels qualify; range(min, max) keeps the gap, drops the last."""
    g = _slab([300, 256, 257, 10, 400, 500, 257, 0])
    # qualifying: 0, 2, 4, 5, 6 (256 does not: strictly more); kept 0..5, slice 6 dropped
    assert select_video(g).tolist() == [0, 1, 2, 3, 4, 5]
    assert select_video(_slab([0, 300, 0])).tolist() == []  # one qualifying slice: empty range


def test_video_threshold_zero_random_margins_from_the_generator():
    """V L64-66: threshold 0 -> margins randint(5, 10) below and above, upper bound exclusive."""
    g = _slab([0] * 20 + [5, 5, 5] + [0] * 20)
    r1, r2 = np.random.default_rng(7).integers(5, 10, size=2)
    video = select_video(g, 0, np.random.default_rng(7))
    assert video.tolist() == list(range(20 - r1, 22 + r2))
    assert video.tolist() == select_video(g, 0, np.random.default_rng(7)).tolist()


def test_conditioning_frame_is_frame_n_over_2_upper_middle():
    """M L56 / C L97: f = N // 2 of the cropped video."""
    assert conditioning_frame(np.arange(3, 7)) == 5
    assert conditioning_frame(np.arange(3, 8)) == 5


def test_depth_floor_1_42_skips_a_thin_component_even_when_alone_or_deepest_in_fp():
    """C L10-45: the running best starts at 1.42, so a component of depth <= sqrt(2) never wins."""
    gt = np.zeros((12, 12), bool)
    gt[1:4, 1:11] = True      # FN strip 3 rows thick: depth 2
    pred = np.zeros_like(gt)
    pred[7:9, 0:12] = True    # FP strip 2 rows thick, full width: depth 1 -> never qualifies
    assert deepest_click(gt, pred) == (2, 2, True)   # first raster argmax of the FN depth 2
    # only the thin FP: no click at all
    assert deepest_click(np.zeros_like(gt), pred) is None
    # a plus sign: its centre has depth sqrt(2) = 1.414 <= 1.42 -> no click (a floor at 1 would click)
    plus = np.zeros((7, 7), bool); plus[3, 2:5] = plus[2:5, 3] = True
    assert deepest_click(plus, np.zeros_like(plus)) is None
    plus[2:5, 2:5] = True  # the 3x3 square: depth 2 > 1.42 -> its centre
    assert deepest_click(plus, np.zeros_like(plus)) == (3, 3, True)


def test_tie_between_fn_and_fp_depths_goes_positive():
    """C L10-45: max_FN >= max_FP -> positive click."""
    gt = np.zeros((12, 12), bool); gt[1:4, 1:4] = True         # FN depth 2
    pred = np.zeros_like(gt); pred[7:10, 7:10] = True          # FP depth 2
    assert deepest_click(gt, pred) == (2, 2, True)
    pred[6:11, 6:11] = True                                    # FP depth 3 now deeper
    assert deepest_click(gt, pred) == (8, 8, False)


class Recorder:
    """Records the calls a protocol makes; predicts the clicked slice as the full truth."""

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt
        self.calls: list[tuple] = []

    def start_object(self, frames=None):
        self.calls.append(("start_object", tuple(int(f) for f in frames)))

    def add_clicks(self, z, points, labels, replace=False):
        self.calls.append(("add_clicks", z, points.tolist(), labels.tolist(), replace))
        return self.gt[z].copy() if len(points) >= 2 else np.zeros_like(self.gt[z])

    def add_mask(self, z, mask):
        self.calls.append(("add_mask", z, int(mask.sum())))
        return mask

    def reset(self):
        self.calls.append(("reset",))

    def propagate_pass(self, start, reverse=False):
        self.calls.append(("propagate_pass", start, reverse))
        z = np.arange(self.gt.shape[0])
        keep = z <= start if reverse else z >= start
        return self.gt & keep[:, None, None]


def _object() -> np.ndarray:
    g = np.zeros((8, 24, 24), bool)
    g[1:7, 2:20, 2:20] = True   # 324 px per slice: video 1..5, f = 1 + 5 // 2 = 3
    return g


def test_points_full_list_resent_then_forward_then_reverse_from_f_minus_1_without_reset():
    """C L112-163: clicks on f with the full accumulated list (clear_old_points), forward from f,
    reverse from f - 1 with no reset between."""
    g = _object()
    m = Recorder(g)
    (out,) = list(Shen2024Points().run_object(m, g, None, np.random.default_rng(0)))
    assert m.calls[0] == ("start_object", (1, 2, 3, 4, 5))
    clicks = [c for c in m.calls if c[0] == "add_clicks"]
    assert clicks[0] == ("add_clicks", 3, [[10, 10]], [1], True)   # deepest point of the 18x18 FN
    assert clicks[1][2] == [[10, 10], [10, 10]] and clicks[1][4] is True  # the list resent whole
    assert len(clicks) == 2  # prediction = truth after click 2: no error left, steps add nothing
    assert m.calls[-2:] == [("propagate_pass", 3, False), ("propagate_pass", 2, True)]
    assert not any(c[0] == "reset" for c in m.calls)
    assert out.clicks == 2 and out.round == 1
    assert out.scored_frames.tolist() == [False, True, True, True, True, True, False, False]
    assert (out.prediction[1:6] == g[1:6]).all() and not out.prediction[6].any()  # slice 6 outside the video


def test_points_skipped_when_conditioning_frame_has_at_most_100_pixels():
    """C L106-108: a volume whose frame f has <= 100 GT pixels is not evaluated."""
    g = np.zeros((8, 24, 24), bool)
    g[1:7, 2:20, 2:20] = True
    g[3] = False
    g[3].reshape(-1)[:300] = True   # f = 3 qualifies for the video (300 > 256)
    assert len(list(Shen2024Points().run_object(Recorder(g), g, None, np.random.default_rng(0)))) == 1
    g[3] = False
    g[3, 2:12, 2:12] = True         # 100 px: video unchanged? slice 3 no longer qualifies but is kept
    m = Recorder(g)
    assert list(Shen2024Points().run_object(m, g, None, np.random.default_rng(0))) == []
    assert not any(c[0] == "add_clicks" for c in m.calls)


def test_mask_variant_gt_of_frame_f_then_two_passes():
    """M L61-76: GT of frame f as the mask prompt, forward from f, unreset reverse from f - 1."""
    g = _object()
    m = Recorder(g)
    (out,) = list(Shen2024Mask().run_object(m, g, None, np.random.default_rng(0)))
    assert m.calls == [("start_object", (1, 2, 3, 4, 5)), ("add_mask", 3, 324),
                       ("propagate_pass", 3, False), ("propagate_pass", 2, True)]
    assert out.prompts[0].z == 3 and out.clicks == 0
    with pytest.raises(ValueError):
        Shen2024MaskParams(threshold=-1)


def test_source_order_and_native_metrics_match_monai_on_the_permuted_stack():
    """M L77-100: frames stacked [f..last, f-1..first]; MONAI Dice and NSD (1 voxel) on them."""
    torch = pytest.importorskip("torch")
    from monai.metrics import DiceHelper, compute_surface_dice

    assert source_order(np.array([1, 2, 3, 4, 5])).tolist() == [3, 4, 5, 2, 1]
    gt = np.zeros((7, 12, 12), bool)
    gt[1:6, 3:9, 3:9] = True
    pred = np.zeros_like(gt)
    pred[1:6, 4:10, 3:9] = True
    pred[2, 0:2, 0:2] = True
    gt[5, 3:9, 3:9] = False   # the last video slice empty in the truth, full in the prediction
    scored = np.array([0, 1, 1, 1, 1, 1, 0], bool)
    data = RoundData(pred, gt, (1.0, 1.0, 1.0), 1.0, scored=scored)
    order = source_order(np.flatnonzero(scored))
    tp = torch.from_numpy(pred[order].astype(np.float32))[None, None]
    tg = torch.from_numpy(gt[order].astype(np.float32))[None, None]
    dice = DiceHelper(include_background=False, sigmoid=True, softmax=True)(tp, tg)
    dice = float(dice[0] if isinstance(dice, tuple) else dice)
    nsd = float(compute_surface_dice(tp, tg, class_thresholds=[1.0]))
    assert NATIVE_BY_NAME["shen_dice"].compute(data) == pytest.approx(dice, abs=1e-6)
    assert NATIVE_BY_NAME["shen_nsd"].compute(data) == pytest.approx(nsd, abs=1e-6)
    # the permutation matters for NSD: the straight stack gives another value
    straight = float(compute_surface_dice(torch.from_numpy(pred[1:6].astype(np.float32))[None, None],
                                          torch.from_numpy(gt[1:6].astype(np.float32))[None, None], [1.0]))
    assert straight != pytest.approx(nsd)
    assert np.isnan(NATIVE_BY_NAME["shen_dice"].compute(RoundData(pred, np.zeros_like(gt), (1, 1, 1), 1.0)))
