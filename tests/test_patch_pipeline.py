"""The shared patch pipeline (annosim.protocols.patch) against the rules SAM-Med3D's torchio calls
follow (../shared/reference/protocol-sources.md section 7A.1 and 7A.3; utils/infer_utils.py
@f3de1fa L246-353): Resample, CropOrPad around the label's box, ZNormalization over voxels > 0,
the nearest paste-back; hand values, and SimpleITK (which torchio's Resample runs) on the grids
torchio builds."""

from __future__ import annotations

import numpy as np
import pytest

from annosim.data.orientation import (
    canonical_points_to_ras,
    canonical_to_ras,
    ras_points_to_canonical,
    ras_to_canonical,
)
from annosim.protocols.patch import (
    PatchGeometry,
    crop_or_pad_begin,
    resample_coords,
    resample_linear_window,
    resample_nearest,
    resampled_shape,
    window,
    znorm_positive,
)

sitk = pytest.importorskip("SimpleITK")


def torchio_reference(img, spacing):
    """The reference grid torchio's Resample.get_reference_image builds (new size ceil, origin at
    continuous index (s'/s - 1) / 2, same direction), rebuilt here from its rule."""
    old_sp, new_sp = np.array(img.GetSpacing()), np.array(spacing, dtype=float)
    old_size = np.array(img.GetSize())
    new_size = np.ceil(old_size * old_sp / new_sp).astype(int)
    new_size[old_size == 1] = 1
    ref = sitk.Image([int(s) for s in new_size], img.GetPixelID())
    ref.SetDirection(img.GetDirection())
    ref.SetSpacing(new_sp.tolist())
    ref.SetOrigin(img.TransformContinuousIndexToPhysicalPoint((0.5 * (new_sp / old_sp - 1)).tolist()))
    return ref


def to_sitk(a, spacing, origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(origin)
    return img


def from_sitk(img):
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def test_resample_grid_is_corner_aligned_with_ceil_size():
    """torchio Resample: n' = ceil(n s / s'); new voxel u at old index u r + (r - 1) / 2."""
    assert resample_coords(4, 0.75, 1.5).tolist() == [0.5, 2.5]        # r = 2
    assert resample_coords(5, 0.75, 1.5).tolist() == [0.5, 2.5, 4.5]   # ceil(3.75 / 1.5) = 3
    assert resample_coords(2, 3.0, 1.5).tolist() == [-0.25, 0.25, 0.75, 1.25]
    assert resample_coords(1, 0.7, 1.5).tolist() == [0.0]              # singleton axis kept
    assert resampled_shape((5, 4, 1), (0.75, 3.0, 0.7), (1.5, 1.5, 1.5)) == (3, 8, 1)


def test_linear_resample_hand_values_and_trailing_voxel_zero():
    """Linear between voxel centres, the edge value up to the border, 0 past it (ITK's default
    pixel value: the trailing partial voxel of 5 x 0.75 mm at 1.5 mm sits at old index 4.5)."""
    a = np.zeros((5, 1, 1), np.float32)
    a[:, 0, 0] = [10, 20, 30, 40, 50]
    out = resample_linear_window(a, (0.75, 1.0, 1.0), (1.5, 1.0, 1.0), (0, 0, 0), (3, 1, 1))
    assert out[:, 0, 0].tolist() == [15.0, 35.0, 0.0]
    b = np.zeros((2, 1, 1), np.float32)
    b[:, 0, 0] = [10, 20]
    up = resample_linear_window(b, (3.0, 1.0, 1.0), (1.5, 1.0, 1.0), (0, 0, 0), (4, 1, 1))
    assert up[:, 0, 0].tolist() == [10.0, 12.5, 17.5, 20.0]           # -0.25 -> edge, 1.25 -> edge
    win = resample_linear_window(b, (3.0, 1.0, 1.0), (1.5, 1.0, 1.0), (-1, 0, 0), (6, 1, 1))
    assert win[:, 0, 0].tolist() == [0.0, 10.0, 12.5, 17.5, 20.0, 0.0]  # zero padding both sides


def test_nearest_resample_rounds_half_up():
    """ITK's nearest neighbour rounds a half index up: 0.75 mm -> 1.5 mm takes old voxels 1, 3."""
    m = np.zeros((4, 1, 1), np.uint8)
    m[:, 0, 0] = [1, 2, 3, 4]
    assert resample_nearest(m, (0.75, 1, 1), (1.5, 1, 1))[:, 0, 0].tolist() == [2, 4]


@pytest.mark.parametrize("shape,spacing,origin", [
    ((9, 7, 5), (0.75, 0.8, 3.0), (0.0, 0.0, 0.0)),
    ((10, 11, 4), (0.7, 1.1, 2.5), (-123.4, 55.2, -300.7)),
])
def test_resample_matches_simpleitk_on_torchio_grid(shape, spacing, origin):
    """The same numbers as sitk.Resample (what torchio's Resample calls) onto torchio's grid:
    linear to float32 rounding, nearest exactly (ties included: 0.75 mm)."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, 100, shape).astype(np.float32)
    ref = torchio_reference(to_sitk(a, spacing, origin), (1.5, 1.5, 1.5))
    want = from_sitk(sitk.Resample(to_sitk(a, spacing, origin), ref, sitk.Transform(), sitk.sitkLinear, 0.0))
    got = resample_linear_window(a, spacing, (1.5,) * 3, (0, 0, 0), want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    m = (rng.random(shape) > 0.5).astype(np.uint8)
    want_m = from_sitk(sitk.Resample(to_sitk(m, spacing, origin), ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    np.testing.assert_array_equal(resample_nearest(m, spacing, (1.5,) * 3), want_m)


def test_crop_or_pad_centre_rounding():
    """torchio CropOrPad(mask): centre (lo + hi) / 2 with hi = last + 1; shifted by -1/2 when
    (target even) XOR (centre integral); start = centre - target / 2, negative = padding."""
    m = np.zeros((200, 10, 10), bool)
    m[50:61, 2, 2] = True           # lo 50, hi 61: centre 55.5, t = 128 even -> 55 -> start -9
    assert crop_or_pad_begin(m, (128, 4, 5)) == (-9, 0, 0)  # axis 1: 2.5 -> 2, 2 - 2; axis 2: 2.5 - 2.5
    m = np.zeros((300, 9, 9), bool)
    m[100:200, 3:5, 4] = True       # centre 150 integral, t even -> 150 - 64 = 86
    assert crop_or_pad_begin(m, (128, 3, 3)) == (86, 2, 3)  # 4 integral, t odd -> 3.5 -> 2; 4.5 -> 3
    assert crop_or_pad_begin(np.zeros((10, 3, 7), bool), (4, 4, 4)) == (3, -1, 2)  # empty: centre crop


def test_window_zero_pads_outside():
    a = np.arange(1, 6)[:, None, None] * np.ones((5, 2, 2))
    w = window(a, (-2, 0, 1), (4, 2, 2))
    assert w[:, 0, 0].tolist() == [0, 0, 1, 2] and w[:, 0, 1].tolist() == [0, 0, 0, 0]


def test_znorm_over_positive_voxels_with_bessel_std():
    """ZNormalization(masking_method=x > 0): mean and torch's std (ddof 1) of the voxels > 0."""
    p = np.array([0.0, -5.0, 1.0, 2.0, 3.0], np.float32).reshape(5, 1, 1)
    assert znorm_positive(p)[:, 0, 0].tolist() == [-2.0, -7.0, -1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="voxels > 0"):
        znorm_positive(np.full((3, 1, 1), -1.0, np.float32))


def test_paste_back_matches_simpleitk_nearest():
    """IU L275-353: the patch label map resampled by nearest onto the case grid (0 outside), as
    sitk.Resample does from the patch's own grid (origin at its start on the resampled grid)."""
    shape, spacing = (9, 7, 5), (0.75, 0.8, 3.0)
    rng = np.random.default_rng(1)
    label = np.zeros(shape, bool)
    label[2:6, 1:4, 1:3] = True
    geo, gt_patch = PatchGeometry.around(label, spacing, (1.5,) * 3, (4, 4, 4))
    patch = rng.random((4, 4, 4)) > 0.4
    case = to_sitk(np.zeros(shape, np.uint8), spacing)
    res_origin = np.array(case.TransformContinuousIndexToPhysicalPoint((0.5 * (1.5 / np.array(spacing) - 1)).tolist()))
    roi = to_sitk(patch.astype(np.uint8), (1.5,) * 3, tuple(res_origin + 1.5 * np.array(geo.begin)))
    want = from_sitk(sitk.Resample(roi, case, sitk.Transform(), sitk.sitkNearestNeighbor, 0)).astype(bool)
    np.testing.assert_array_equal(geo.paste(patch), want)
    assert gt_patch.sum() > 0


def test_ras_conversions_are_inverse_and_by_hand():
    """Canonical (Z, Y, X) = (S, P, L); RAS (i, j, k) = (X-1-x, Y-1-y, z)."""
    v = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    r = canonical_to_ras(v)
    assert r.shape == (4, 3, 2) and r[0, 0, 1] == v[1, 2, 3]
    np.testing.assert_array_equal(ras_to_canonical(r), v)
    p = np.array([[1, 2, 3], [0, 0, 0]])
    np.testing.assert_array_equal(ras_points_to_canonical(canonical_points_to_ras(p, v.shape), r.shape), p)
    assert canonical_points_to_ras(np.array([[1, 2, 3]]), v.shape).tolist() == [[0, 0, 1]]


def test_window_of_the_resampled_grid_equals_the_full_resampling_cut():
    """Only the window is interpolated, from the old voxels it reads: the same values as the whole
    resampled grid cut by :func:`window` (inside, across the border and past the end)."""
    a = np.random.default_rng(2).normal(0, 100, (23, 17, 9)).astype(np.float32)
    sp = (0.7, 0.9, 3.0)
    full = resample_linear_window(a, sp, (1.5,) * 3, (0, 0, 0), resampled_shape(a.shape, sp, (1.5,) * 3))
    for begin, size in (((3, 2, 5), (4, 5, 6)), ((-2, 6, 12), (6, 8, 9)), ((0, 0, 0), (11, 11, 18))):
        np.testing.assert_array_equal(resample_linear_window(a, sp, (1.5,) * 3, begin, size), window(full, begin, size))
