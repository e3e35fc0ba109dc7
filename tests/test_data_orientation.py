"""Orientation (DESIGN section 2): synthetic affines, anatomy on real CT, write-back round trips."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from annosim.data.layouts import open_dataset
from annosim.data.orientation import (
    affine_to_itk,
    itk_to_affine,
    orient,
    orientation_geometry,
    write_mask,
)
from annosim.data.readers import _read_nifti, _read_sitk_file


def _affine(columns, origin=(0.0, 0.0, 0.0)):
    """4x4 affine whose columns 0..2 are the world (RAS) steps of stored axes i, j, k."""
    a = np.eye(4)
    a[:3, :3] = np.array(columns, dtype=float).T
    a[:3, 3] = origin
    return a


# ------------------------------------------------------------------------------ synthetic


def test_ras_stored_flips_rows_and_columns():
    # RAS: i -> R, j -> A, k -> S.  Canonical wants Z = S, Y = P, X = L.
    g = orientation_geometry((4, 5, 6), _affine([(2, 0, 0), (0, 3, 0), (0, 0, 4)]), "canonical")
    assert g.axes == (2, 1, 0)
    assert g.flips == (False, True, True)
    assert g.volume_shape == (6, 5, 4)
    assert g.spacing == (4.0, 3.0, 2.0)
    assert g.axcodes == ("S", "P", "L")
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    vol = g.to_volume(data)
    # volume[z, y, x] = data[I-1-x, J-1-y, z]
    assert vol[1, 2, 3] == data[4 - 1 - 3, 5 - 1 - 2, 1]
    assert np.array_equal(g.to_stored(vol), data)


def test_lps_stored_needs_no_flip():
    # LPS (DICOM-like, as the IBSI and dcmqi samples): i -> L, j -> P, k -> S.
    g = orientation_geometry((4, 5, 6), _affine([(-1, 0, 0), (0, -1, 0), (0, 0, 2.5)]), "canonical")
    assert g.axes == (2, 1, 0)
    assert g.flips == (False, False, False)
    assert g.spacing == (2.5, 1.0, 1.0)


def test_permuted_axes_sagittal_storage():
    # i -> S, j -> R, k -> A: Z = i, Y = k reversed (A -> P), X = j reversed (R -> L).
    g = orientation_geometry((3, 4, 5), _affine([(0, 0, 1.5), (0.5, 0, 0), (0, 2, 0)]), "canonical")
    assert g.axes == (0, 2, 1)
    assert g.flips == (False, True, True)
    assert g.spacing == (1.5, 2.0, 0.5)
    data = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    vol = g.to_volume(data)
    assert vol.shape == (3, 5, 4)
    assert vol[2, 1, 3] == data[2, 4 - 1 - 3, 5 - 1 - 1]
    assert np.array_equal(g.to_stored(vol), data)


def test_volume_affine_maps_oriented_index_to_same_world_point():
    affine = _affine([(0, 0, 1.5), (0.5, 0, 0), (0, 2, 0)], origin=(10, -20, 30))
    g = orientation_geometry((3, 4, 5), affine, "canonical")
    # stored (i, j, k) = (2, 0, 1) is oriented (z, y, x) = (2, 5-1-1, 4-1-0) = (2, 3, 3)
    world_stored = affine @ np.array([2, 0, 1, 1.0])
    world_oriented = g.volume_affine @ np.array([2, 3, 3, 1.0])
    assert np.allclose(world_stored, world_oriented)


def test_oblique_scan_is_reordered_not_resampled():
    t = np.deg2rad(10)
    rot = [(np.cos(t), np.sin(t), 0), (-np.sin(t), np.cos(t), 0), (0, 0, 1)]
    g = orientation_geometry((4, 5, 6), _affine(rot), "canonical")
    assert g.axes == (2, 1, 0) and g.flips == (False, True, True)
    data = np.random.default_rng(0).random((4, 5, 6))
    vol, _ = orient(data, _affine(rot))
    assert sorted(vol.ravel()) == sorted(data.ravel())


def test_as_stored_is_data_axis_2_as_slices():
    g = orientation_geometry((4, 5, 6), _affine([(2, 0, 0), (0, 3, 0), (0, 0, 4)]), "as-stored")
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    vol = g.to_volume(data)
    assert vol.shape == (6, 4, 5)
    assert vol[5, 1, 2] == data[1, 2, 5]  # volume[z, y, x] = data[y, x, z]
    assert g.spacing == (4.0, 2.0, 3.0)
    assert np.array_equal(g.to_stored(vol), data)


def test_itk_affine_conversion_round_trip():
    affine = _affine([(0, 0, 1.5), (-0.5, 0, 0), (0, 2, 0)], origin=(10, -20, 30))
    origin, spacing, direction = affine_to_itk(affine)
    assert origin == (-10.0, 20.0, 30.0)  # RAS -> LPS flips x and y
    assert spacing == (1.5, 0.5, 2.0)
    assert np.allclose(itk_to_affine(origin, spacing, direction), affine)


def test_unknown_orientation_is_rejected():
    with pytest.raises(ValueError, match="unknown orientation"):
        orientation_geometry((2, 2, 2), np.eye(4), "sideways")


# ------------------------------------------------------------------------------ real CT


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.array(np.nonzero(mask)).mean(axis=1)


def test_canonical_anatomy_totalseg(shared_data):
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load("canonical")
    z, y, x = case.label.shape
    assert case.label_names[5] == "liver"
    spine_values = [v for v, n in case.label_names.items() if n.startswith("vertebrae")]
    spine = np.isin(case.label, spine_values)
    assert spine.any()
    assert _centroid(spine)[1] > y / 2  # posterior = high row
    assert _centroid(case.label == 5)[2] < x / 2  # liver: patient's right = low column
    assert _centroid(case.label == 1)[2] > x / 2  # spleen on the patient's left
    lungs = np.isin(case.label, [10, 11, 13, 14])
    assert _centroid(lungs)[0] > z / 2  # lungs superior = high slice index
    assert case.spacing == (3.0, 3.0, 3.0)


def test_canonical_anatomy_dicom_series(shared_data):
    d = shared_data / "dcmqi-ct-3slice"
    case = open_dataset(f"{d / 'ct'} {d / '*_seg.nrrd'}").cases[0].load()
    assert case.image.shape == (3, 512, 512)
    names = {n: v for v, n in case.label_names.items()}
    assert set(names) == {"liver", "spine", "heart"}
    spine_c = _centroid(case.label == names["spine"])
    liver_c = _centroid(case.label == names["liver"])
    heart_c = _centroid(case.label == names["heart"])
    assert spine_c[1] > 256  # posterior = high row
    assert liver_c[2] < 256  # patient's right = low column
    assert heart_c[1] < spine_c[1]  # heart anterior to spine
    assert case.spacing == pytest.approx((1.0, 0.810547, 0.810547), abs=1e-6)


def test_as_stored_matches_nibabel_indexing(shared_data):
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load("as-stored")
    raw = np.asanyarray(nib.load(d / "seg.nii.gz").dataobj)
    assert np.array_equal(case.label, np.transpose(raw, (2, 0, 1)))
    assert case.label[10, 60, 40] == raw[60, 40, 10]


def test_nibabel_and_simpleitk_give_same_stored_array(shared_data):
    path = shared_data / "ibsi-sts" / "STS_002" / "CT_image.nii.gz"
    data_nib, aff_nib = _read_nifti(path, "image")
    data_itk, aff_itk = _read_sitk_file(path, "image")
    assert np.array_equal(data_nib, data_itk)
    assert np.allclose(aff_nib, aff_itk, atol=1e-4)


# ------------------------------------------------------------------------------ write-back


@pytest.mark.parametrize("orientation", ["canonical", "as-stored"])
def test_write_mask_round_trip_nifti(shared_data, tmp_path, orientation):
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}").cases[0].load(orientation)
    original = nib.load(d / "seg.nii.gz")
    write_mask(case.label, case, tmp_path / "out.nii.gz")
    back = nib.load(tmp_path / "out.nii.gz")
    assert np.array_equal(np.asanyarray(back.dataobj), np.asanyarray(original.dataobj))
    assert np.allclose(back.affine, original.affine, atol=1e-4)
    # a boolean mask lands as uint8 0/1 on the same voxels
    write_mask(case.label == 5, case, tmp_path / "liver.nii.gz")
    liver = nib.load(tmp_path / "liver.nii.gz")
    assert liver.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(liver.dataobj), np.asanyarray(original.dataobj) == 5)


def test_write_mask_round_trip_nrrd_on_dicom_grid(shared_data, tmp_path):
    d = shared_data / "dcmqi-ct-3slice"
    case = open_dataset(f"{d / 'ct'} {d / 'spine_seg.nrrd'}").cases[0].load()
    write_mask(case.label, case, tmp_path / "spine.nrrd")
    original = sitk.ReadImage(str(d / "spine_seg.nrrd"))
    back = sitk.ReadImage(str(tmp_path / "spine.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    assert np.allclose(back.GetOrigin(), original.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetSpacing(), original.GetSpacing(), atol=1e-6)
    assert np.allclose(back.GetDirection(), original.GetDirection(), atol=1e-9)
    # the same mask as NIfTI, read with nibabel: stored order data[i, j, k] = itk array[k, j, i]
    write_mask(case.label, case, tmp_path / "spine.nii.gz")
    as_nifti = nib.load(tmp_path / "spine.nii.gz")
    assert np.array_equal(np.asanyarray(as_nifti.dataobj), sitk.GetArrayFromImage(original).T)
    assert nib.aff2axcodes(as_nifti.affine) == ("L", "P", "S")


def test_write_mask_rejects_wrong_shape(shared_data, tmp_path):
    d = shared_data / "ibsi-sts" / "STS_019"
    case = open_dataset(f"{d / 'CT_image.nii.gz'} {d / 'CT_mask.nii.gz'}").cases[0].load()
    with pytest.raises(ValueError, match="not the volume shape"):
        write_mask(case.label[:-1], case, tmp_path / "bad.nii.gz")
