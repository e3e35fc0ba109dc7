"""Tests of annosim.metrics: hand-computed cases, empty masks, and agreement with MONAI on real masks."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from annosim.metrics import dice, dice_per_slice, fp_slices, gt_slices, hd95, nsd, round_metrics


def _box(shape: tuple[int, ...], *ranges: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in ranges)] = True
    return m


# --- Dice -------------------------------------------------------------------------------------


def test_dice_cubes_offset_by_one_voxel() -> None:
    gt = _box((8, 8, 8), (2, 6), (2, 6), (2, 6))  # 4x4x4 = 64 voxels
    pred = _box((8, 8, 8), (2, 6), (2, 6), (3, 7))  # shifted by 1 in x: overlap 4*4*3 = 48
    assert dice(pred, gt) == 2 * 48 / 128 == 0.75


def test_dice_empty_conventions() -> None:
    empty = np.zeros((3, 4, 5), dtype=bool)
    full = _box((3, 4, 5), (1, 2), (1, 3), (1, 3))
    assert dice(empty, empty) == 1.0
    assert dice(empty, full) == 0.0
    assert dice(full, empty) == 0.0
    assert dice(full, full) == 1.0


def test_dice_any_shape_and_shape_mismatch() -> None:
    assert dice(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == 0.5
    assert dice(np.array([[1, 1], [0, 0]], bool), np.array([[1, 1], [1, 1]], bool)) == 2 * 2 / 6
    with pytest.raises(ValueError, match="differs"):
        dice(np.zeros((2, 3), bool), np.zeros((3, 2), bool))


# --- per-slice Dice ---------------------------------------------------------------------------


def test_dice_per_slice_hand_example() -> None:
    gt = np.zeros((4, 6, 6), dtype=bool)
    pred = np.zeros_like(gt)
    # slice 0: both empty -> Dice 1, 0 errors
    # slice 1: truth 2x2 (4 px), prediction 2x3 covering it (6 px): Dice 8/10, 2 error px
    gt[1, 1:3, 1:3] = True
    pred[1, 1:3, 1:4] = True
    # slice 2: prediction only, 3 px: Dice 0, 3 errors
    pred[2, 0, 0:3] = True
    # slice 3: truth only (5 px), prediction disjoint (1 px): Dice 0, 6 errors
    gt[3, 5, 0:5] = True
    pred[3, 0, 5] = True
    d, err = dice_per_slice(pred, gt)
    assert d.dtype == np.float64 and err.dtype == np.int64
    assert d.shape == err.shape == (4,)
    np.testing.assert_array_equal(d, [1.0, 0.8, 0.0, 0.0])
    np.testing.assert_array_equal(err, [0, 2, 3, 6])


def test_dice_per_slice_matches_slice_by_slice_definition() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((12, 20, 16)) < 0.3
    pred = rng.random((12, 20, 16)) < 0.3
    gt[[0, 5]] = False
    pred[[0, 7]] = False
    d, err = dice_per_slice(pred, gt)
    for z in range(gt.shape[0]):
        assert d[z] == dice(pred[z], gt[z])
        assert err[z] == np.count_nonzero(pred[z] ^ gt[z])
    assert d[0] == 1.0 and d[5] == 0.0 and d[7] == 0.0


def test_dice_per_slice_requires_3d() -> None:
    with pytest.raises(ValueError, match="3D"):
        dice_per_slice(np.zeros((4, 4), bool), np.zeros((4, 4), bool))


# --- slice counts -----------------------------------------------------------------------------


def test_fp_slices_and_gt_slices() -> None:
    gt = np.zeros((8, 5, 5), dtype=bool)
    pred = np.zeros_like(gt)
    gt[2:5, 2, 2] = True  # truth on slices 2, 3, 4
    pred[1:4, 1:3, 1:3] = True  # prediction on 1, 2, 3 ...
    pred[6, 4, 4] = True  # ... and 6
    assert gt_slices(gt) == 3
    assert fp_slices(pred, gt) == 2  # slices 1 and 6
    assert fp_slices(gt, pred) == 1  # slice 4 seen from the other side
    assert fp_slices(np.zeros_like(gt), gt) == 0
    assert gt_slices(np.zeros_like(gt)) == 0


# --- surface metrics: hand-computed -----------------------------------------------------------


def test_surface_metrics_line_with_overshoot() -> None:
    """Truth: 10 voxels along x; prediction: the same line continued to 20 voxels.

    Every voxel of a one-voxel-thick line is a border voxel. Prediction -> truth distances are
    0 (x 0..9) then 1..10 voxels (x 10..19); truth -> prediction all 0.
    """
    gt = _box((3, 3, 24), (1, 2), (1, 2), (2, 12))
    pred = _box((3, 3, 24), (1, 2), (1, 2), (2, 22))
    # 95th percentile of [0]*10 + [1..10] (20 values, linear interpolation): 9 + 0.05 * (10 - 9)
    assert hd95(pred, gt, (1.0, 1.0, 1.0)) == pytest.approx(9.05, abs=1e-12)
    # tolerance 2: prediction voxels x 0..11 (12) plus all 10 truth voxels, out of 30
    assert nsd(pred, gt, (1.0, 1.0, 1.0), 2.0) == pytest.approx(22 / 30, abs=1e-15)
    # x spacing 0.5 mm halves the distances; spacing along z and y is irrelevant here
    assert hd95(pred, gt, (7.0, 3.0, 0.5)) == pytest.approx(4.525, abs=1e-12)
    assert nsd(pred, gt, (7.0, 3.0, 0.5), 2.0) == pytest.approx(24 / 30, abs=1e-15)


def test_surface_metrics_concentric_cubes() -> None:
    """Truth 3x3x3 inside prediction 5x5x5 (spacing 1 mm).

    Border = voxels removed by one 6-connected erosion: 26 for the small cube, 98 for the large.
    Truth -> prediction: all 26 at 1 mm. Prediction -> truth: 54 face voxels at 1, 36 edge voxels
    at sqrt(2), 8 corners at sqrt(3).
    """
    gt = _box((7, 7, 7), (2, 5), (2, 5), (2, 5))
    pred = _box((7, 7, 7), (1, 6), (1, 6), (1, 6))
    s = (1.0, 1.0, 1.0)
    assert nsd(pred, gt, s, 1.0) == pytest.approx((26 + 54) / 124, abs=1e-15)
    assert nsd(pred, gt, s, 1.5) == pytest.approx((26 + 90) / 124, abs=1e-15)
    assert nsd(pred, gt, s, 0.99) == 0.0
    # 95th percentile of the 98 prediction distances lies among the 8 corners (indices 90..97)
    assert hd95(pred, gt, s) == pytest.approx(math.sqrt(3), abs=1e-12)
    assert nsd(gt, gt, s, 0.0) == 1.0
    assert hd95(gt, gt, s) == 0.0


def test_surface_metrics_spacing_follows_array_axes() -> None:
    """Two single voxels one step apart along z: the distance is sz, whatever sy and sx are."""
    gt = _box((4, 4, 4), (1, 2), (1, 2), (1, 2))
    pred = _box((4, 4, 4), (2, 3), (1, 2), (1, 2))
    assert hd95(pred, gt, (2.5, 0.7, 0.7)) == 2.5
    assert nsd(pred, gt, (2.5, 0.7, 0.7), 2.0) == 0.0
    assert nsd(pred, gt, (2.5, 0.7, 0.7), 2.5) == 1.0  # <= tolerance counts as correct


def test_crop_does_not_change_results() -> None:
    """Objects touching the volume border, and the same objects inside a larger volume."""
    gt = _box((6, 7, 8), (0, 4), (0, 7), (2, 8))
    pred = _box((6, 7, 8), (1, 6), (0, 5), (0, 7))
    big_gt = np.zeros((30, 40, 50), dtype=bool)
    big_pred = np.zeros_like(big_gt)
    big_gt[10:16, 20:27, 30:38] = gt
    big_pred[10:16, 20:27, 30:38] = pred
    s = (3.0, 0.8, 1.1)
    assert nsd(big_pred, big_gt, s, 2.0) == nsd(pred, gt, s, 2.0)
    assert hd95(big_pred, big_gt, s) == hd95(pred, gt, s)
    assert dice(big_pred, big_gt) == dice(pred, gt)


# --- empty masks ------------------------------------------------------------------------------


def test_empty_mask_conventions() -> None:
    s = (2.0, 1.0, 1.0)
    empty = np.zeros((5, 6, 7), dtype=bool)
    obj = _box((5, 6, 7), (1, 3), (1, 4), (2, 5))
    # empty prediction: a complete miss
    assert nsd(empty, obj, s) == 0.0
    assert math.isnan(hd95(empty, obj, s))
    # empty truth (never produced by the protocol): no crash, same convention
    assert nsd(obj, empty, s) == 0.0
    assert math.isnan(hd95(obj, empty, s))
    # both empty: perfect agreement, like dice
    assert nsd(empty, empty, s) == 1.0
    assert hd95(empty, empty, s) == 0.0

    r = round_metrics(empty, obj, s)
    assert r["dice"] == 0.0 and r["nsd"] == 0.0 and math.isnan(r["hd95"])
    assert r["fp_slices"] == 0 and r["gt_slices"] == 2
    r = round_metrics(obj, empty, s)
    assert r["dice"] == 0.0 and r["nsd"] == 0.0 and math.isnan(r["hd95"])
    assert r["fp_slices"] == 2 and r["gt_slices"] == 0
    assert round_metrics(empty, empty, s) == {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "fp_slices": 0, "gt_slices": 0}


def test_empty_mask_values_beside_monai() -> None:
    """MONAI: one mask empty -> NSD 0, HD95 nan (HD inf); both empty -> nan, nan. See module doc."""
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    obj = _box((5, 6, 7), (1, 3), (1, 4), (2, 5))
    empty = np.zeros_like(obj)
    s = (1.0, 1.0, 1.0)

    def monai(p: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
        pt = torch.as_tensor(p, dtype=torch.float32)[None, None]
        gt = torch.as_tensor(g, dtype=torch.float32)[None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return (
                compute_surface_dice(pt, gt, [2.0], include_background=True).item(),
                compute_hausdorff_distance(pt, gt, include_background=True, percentile=95).item(),
                compute_hausdorff_distance(pt, gt, include_background=True).item(),
            )

    for p, g in ((empty, obj), (obj, empty)):
        m_nsd, m_hd95, m_hd = monai(p, g)
        assert m_nsd == 0.0 == nsd(p, g, s)
        assert math.isnan(m_hd95) and math.isnan(hd95(p, g, s))
        assert m_hd == math.inf
    m_nsd, m_hd95, _ = monai(empty, empty)
    assert math.isnan(m_nsd) and math.isnan(m_hd95)  # here: 1.0 and 0.0 (perfect agreement)


# --- round_metrics and argument checks ----------------------------------------------------------


def test_round_metrics_equals_the_single_functions() -> None:
    rng = np.random.default_rng(1)
    gt = ndimage.binary_dilation(rng.random((10, 30, 30)) < 0.01, iterations=2)
    pred = ndimage.binary_dilation(rng.random((10, 30, 30)) < 0.01, iterations=2)
    s = (3.0, 0.7, 0.9)
    r = round_metrics(pred, gt, s, nsd_tolerance=1.5)
    assert r == {
        "dice": dice(pred, gt),
        "nsd": nsd(pred, gt, s, 1.5),
        "hd95": hd95(pred, gt, s),
        "fp_slices": fp_slices(pred, gt),
        "gt_slices": gt_slices(gt),
    }
    assert isinstance(r["fp_slices"], int) and isinstance(r["gt_slices"], int)
    fast = round_metrics(pred, gt, s, surface=False)
    assert math.isnan(fast["nsd"]) and math.isnan(fast["hd95"])
    assert {k: fast[k] for k in ("dice", "fp_slices", "gt_slices")} == {
        k: r[k] for k in ("dice", "fp_slices", "gt_slices")
    }


def test_bad_arguments() -> None:
    m = _box((3, 3, 3), (1, 2), (1, 2), (1, 2))
    with pytest.raises(ValueError, match="spacing"):
        nsd(m, m, (1.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        nsd(m, m, (1.0, 1.0, 1.0), -1.0)
    with pytest.raises(ValueError, match="tolerance"):
        round_metrics(m, m, (1.0, 1.0, 1.0), nsd_tolerance=float("nan"))
    with pytest.raises(ValueError, match="differs"):
        hd95(m, m[:2], (1.0, 1.0, 1.0))


# --- agreement with MONAI on real masks -------------------------------------------------------
# MONAI returns float32; these functions compute in float64. Values are compared with
# rtol = atol = 1e-6 (an HD95 of 136 mm carries a float32 rounding of about 4e-6 mm).


def _load(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    nib = pytest.importorskip("nibabel")
    img = nib.load(str(path))
    return np.asarray(img.dataobj), tuple(float(v) for v in img.header.get_zooms()[:3])


def _real_pairs(data: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """(name, prediction, truth, spacing) in the files' own (X, Y, Z) array order."""
    seg, s_ts = _load(data / "totalseg-abdomen" / "seg.nii.gz")
    pairs = [
        ("kidney_right vs dilated", ndimage.binary_dilation(seg == 2, iterations=2), seg == 2, s_ts),
        ("liver vs shifted", np.roll(seg == 5, (2, -1, 1), axis=(0, 1, 2)), seg == 5, s_ts),
        ("spleen vs stomach", seg == 6, seg == 1, s_ts),
        ("pancreas vs eroded", ndimage.binary_erosion(seg == 7), seg == 7, s_ts),
    ]
    for case in ("STS_002", "STS_019"):
        mask, s = _load(data / "ibsi-sts" / case / "CT_mask.nii.gz")
        gt = mask == 1
        pairs.append((f"{case} vs eroded", ndimage.binary_erosion(gt, iterations=2), gt, s))
        pairs.append((f"{case} vs shifted", np.roll(gt, (3, 0, 1), axis=(0, 1, 2)), gt, s))
    return pairs


def test_agreement_with_monai_on_real_masks(shared_data: Path) -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    tolerances = (1.0, 2.0, 3.0)  # 3 mm hits distances equal to the tolerance on the 3 mm grid
    pairs = _real_pairs(shared_data)
    assert len(pairs) == 8
    for name, pred, gt, spacing in pairs:
        assert pred.any() and gt.any() and pred.shape == gt.shape, name
        p = torch.as_tensor(pred, dtype=torch.float32)[None, None]
        g = torch.as_tensor(gt, dtype=torch.float32)[None, None]
        sp = list(spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {
                "dice": compute_dice(p, g, include_background=True).item(),
                "hd95": compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp).item(),
            }
            for t in tolerances:
                expected[f"nsd{t}"] = compute_surface_dice(p, g, [t], include_background=True, spacing=sp).item()
        # as stored (X, Y, Z) with (sx, sy, sz), and in the contract order (Z, Y, X) with (sz, sy, sx)
        for label, pr, gr, s in (
            ("XYZ", pred, gt, spacing),
            ("ZYX", pred.transpose(2, 1, 0), gt.transpose(2, 1, 0), spacing[::-1]),
        ):
            got = {"dice": dice(pr, gr), "hd95": hd95(pr, gr, s)}
            got.update({f"nsd{t}": nsd(pr, gr, s, t) for t in tolerances})
            for key, want in expected.items():
                assert got[key] == pytest.approx(want, rel=1e-6, abs=1e-6), (name, label, key, got[key], want)
        # the pairs are chosen to give non-trivial values
        assert expected["hd95"] > 0.0, name
        if name != "spleen vs stomach":
            assert 0.0 < expected["dice"] < 1.0, name
            assert any(0.0 < expected[f"nsd{t}"] < 1.0 for t in tolerances), name
