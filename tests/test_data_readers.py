"""Readers: label maps, merging, 3D Slicer segmentations, names, and every kind of bad input (DESIGN 9)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from annosim.cli import main
from annosim.data.layouts import open_dataset
from annosim.data.readers import (
    merge_masks,
    parse_label_names,
    read_image,
    read_label,
    structure_name,
)
from annosim.errors import InputError

AFFINE = np.diag([-1.0, -1.0, 2.0, 1.0])  # LPS-stored, 1 x 1 x 2 mm


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _image(tmp_path: Path, shape=(6, 5, 4), name="ct.nii.gz") -> Path:
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape) - 50
    return _nifti(tmp_path / name, data)


def _load_pair(image: Path, labels: str):
    return open_dataset(f"{image} {labels}").cases[0].load()


def _one_line_error(excinfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------ labels


def test_label_map_integer_dtype_and_float_integral_values(tmp_path):
    lab = np.zeros((6, 5, 4), dtype=np.float32)
    lab[1, 1, 1] = 3.0
    vol = read_label(_nifti(tmp_path / "lab.nii.gz", lab))
    assert vol.data.dtype == np.uint8
    assert vol.data[1, 1, 1] == 3 and int(vol.data.sum()) == 3
    lab[0, 0, 0] = 300
    assert read_label(_nifti(tmp_path / "big.nii.gz", lab)).data.dtype == np.uint16


def test_merge_masks_keeps_distinct_values_and_renumbers_shared_ones():
    a = np.zeros((2, 2, 2), bool)
    b = np.zeros((2, 2, 2), bool)
    a[0, 0, 0] = True
    b[1, 1, 1] = True
    label, names, notes = merge_masks([("a", 4, a), ("b", 7, b)], (2, 2, 2))
    assert names == {4: "a", 7: "b"} and label[0, 0, 0] == 4 and label[1, 1, 1] == 7 and notes == []
    label, names, _ = merge_masks([("a", 1, a), ("b", 1, b)], (2, 2, 2))
    assert names == {1: "a", 2: "b"} and label[0, 0, 0] == 1 and label[1, 1, 1] == 2


def test_merge_masks_later_wins_on_overlap_with_note():
    a = np.ones((2, 2, 2), bool)
    b = np.zeros((2, 2, 2), bool)
    b[0, :, :] = True
    label, _, notes = merge_masks([("a", 1, a), ("b", 2, b)], (2, 2, 2))
    assert int((label == 2).sum()) == 4 and int((label == 1).sum()) == 4
    assert notes == ["'b' overlaps 'a' in 4 voxels; 'b' kept there"]


def test_several_label_files_merge_with_names_from_stems(tmp_path):
    image = _image(tmp_path)
    liver = np.zeros((6, 5, 4), np.uint8)
    liver[0:2] = 1
    spine = np.zeros((6, 5, 4), np.uint8)
    spine[4:6] = 1  # same value 1 as the liver: renumbered by file order
    _nifti(tmp_path / "liver_seg.nii.gz", liver)
    _nifti(tmp_path / "spine_seg.nii.gz", spine)
    case = _load_pair(image, f"{tmp_path / 'liver_seg.nii.gz'},{tmp_path / 'spine_seg.nii.gz'}")
    assert case.label_names == {1: "liver", 2: "spine"}
    # canonical Z runs along stored k (S); rows along j (P); columns along i (L)
    assert int((case.label == 1).sum()) == 2 * 5 * 4
    assert np.all(case.label[:, :, 0:2] == 1) and np.all(case.label[:, :, 4:6] == 2)


def test_structure_name_strips_suffixes():
    assert structure_name("a/liver_seg.nrrd") == "liver"
    assert structure_name("b/tumour.nii.gz") == "tumour"
    assert structure_name("c/heart.seg.nrrd") == "heart"


def test_slicer_seg_nrrd_names_values_and_layers(tmp_path):
    image = _image(tmp_path)
    ijk_to_lps = np.diag([1.0, 1.0, 2.0, 1.0])  # the image's RAS diag(-1,-1,2) in LPS
    seg = slicerio.create_segmentation((6, 5, 4), ijk_to_lps)
    kidney = np.zeros((6, 5, 4), bool)
    kidney[0:3] = True
    tumour = np.zeros((6, 5, 4), bool)
    tumour[2:4] = True  # overlaps the kidney in slice i=2: goes to a second layer
    slicerio.add_segment(seg, kidney, {"name": "kidney"})
    slicerio.add_segment(seg, tumour, {"name": "tumour"})
    assert seg["voxels"].ndim == 4
    slicerio.write_segmentation(str(tmp_path / "s.seg.nrrd"), seg)
    case = _load_pair(image, str(tmp_path / "s.seg.nrrd"))
    inv = {n: v for v, n in case.label_names.items()}
    assert set(inv) == {"kidney", "tumour"}
    assert int((case.label == inv["tumour"]).sum()) == 2 * 5 * 4
    assert int((case.label == inv["kidney"]).sum()) == 2 * 5 * 4  # slice i=2 went to the tumour
    assert case.notes == ["'tumour' overlaps 'kidney' in 20 voxels; 'tumour' kept there"]


def test_cropped_seg_nrrd_is_padded_to_image_grid(tmp_path):
    image = _image(tmp_path)
    ijk_to_lps = np.diag([1.0, 1.0, 2.0, 1.0])
    ijk_to_lps[:3, 3] = [2.0, 1.0, 4.0]  # starts at image voxel (2, 1, 2)
    seg = slicerio.create_segmentation((2, 2, 2), ijk_to_lps)
    slicerio.add_segment(seg, np.ones((2, 2, 2), bool), {"name": "node"})
    slicerio.write_segmentation(str(tmp_path / "crop.seg.nrrd"), seg)
    case = open_dataset(f"{image} {tmp_path / 'crop.seg.nrrd'}", layout="pair").cases[0].load("as-stored")
    assert case.label_names == {1: "node"}
    stored = case.geometry.to_stored(case.label)
    expected = np.zeros((6, 5, 4), np.uint8)
    expected[2:4, 1:3, 2:4] = 1
    assert np.array_equal(stored, expected)


def test_parse_label_names_forms(tmp_path):
    assert parse_label_names("1=liver, 2=tumour") == {1: "liver", 2: "tumour"}
    assert parse_label_names('{"0": "background", "3": "spleen"}') == {3: "spleen"}
    assert parse_label_names('{"background": 0, "liver": 1}') == {1: "liver"}
    (tmp_path / "n.json").write_text('{"2": "kidney"}')
    assert parse_label_names(str(tmp_path / "n.json")) == {2: "kidney"}
    assert parse_label_names({"5": "liver", "whole": [1, 2]}) == {5: "liver"}
    with pytest.raises(InputError, match="not VALUE=NAME"):
        parse_label_names("liver")


def test_dicom_series_reads_hu_float32(shared_data):
    vol = read_image(shared_data / "dcmqi-ct-3slice" / "ct")
    assert vol.data.dtype == np.float32 and vol.data.shape == (512, 512, 3)
    assert float(vol.data.min()) == -3024.0


# ------------------------------------------------------------------------------ bad input (DESIGN 9)


def test_bad_unreadable_file(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "ct.nii.gz")
    _one_line_error(e, "ct.nii.gz", "cannot read image")
    (tmp_path / "ct.nrrd").write_bytes(b"garbage")
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "ct.nrrd")
    _one_line_error(e, "ct.nrrd", "cannot read image")


def test_bad_truncated_file(tmp_path):
    path = _nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).random((40, 40, 40)).astype(np.float32))
    blob = path.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "cut.nii.gz")
    _one_line_error(e, "cut.nii.gz", "truncated")
    raw = gzip.decompress(blob)
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "cut.nii")
    _one_line_error(e, "cut.nii", "cannot read image")


def test_bad_grid_mismatch_names_both_files(tmp_path):
    image = _image(tmp_path)
    _nifti(tmp_path / "shape.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "shape.nii.gz"))
    _one_line_error(e, "shape.nii.gz", "ct.nii.gz", "label grid does not match", "shape (6, 5, 3) vs (6, 5, 4)")
    _nifti(tmp_path / "spacing.nii.gz", np.zeros((6, 5, 4), np.uint8), np.diag([-1.0, -1.0, 2.5, 1.0]))
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "spacing.nii.gz"))
    _one_line_error(e, "spacing.nii.gz", "ct.nii.gz", "spacing")
    shifted = AFFINE.copy()
    shifted[:3, 3] = [0.0, 0.0, 1.0]  # half a slice off
    _nifti(tmp_path / "origin.nii.gz", np.zeros((6, 5, 4), np.uint8), shifted)
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "origin.nii.gz"))
    _one_line_error(e, "origin.nii.gz", "ct.nii.gz", "origin")
    flipped = np.diag([1.0, -1.0, 2.0, 1.0])
    _nifti(tmp_path / "direction.nii.gz", np.zeros((6, 5, 4), np.uint8), flipped)
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "direction.nii.gz"))
    _one_line_error(e, "direction.nii.gz", "direction")


def test_tiny_float_rounding_in_geometry_is_tolerated(tmp_path):
    image = _image(tmp_path)
    near = AFFINE.copy()
    near[:3, 3] = [1e-4, -1e-4, 1e-4]
    near[2, 2] = 2.0 * (1 + 1e-6)
    _nifti(tmp_path / "near.nii.gz", np.zeros((6, 5, 4), np.uint8), near)
    assert _load_pair(image, str(tmp_path / "near.nii.gz")).label.shape == (4, 5, 6)


def test_bad_non_integer_labels(tmp_path):
    image = _image(tmp_path)
    lab = np.zeros((6, 5, 4), np.float32)
    lab[1, 2, 3] = 0.5
    _nifti(tmp_path / "soft.nii.gz", lab)
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "soft.nii.gz"))
    _one_line_error(e, "soft.nii.gz", "label values are not integers", "e.g. 0.5")


def test_bad_negative_labels(tmp_path):
    lab = np.zeros((6, 5, 4), np.int16)
    lab[0, 0, 0] = -1
    with pytest.raises(InputError) as e:
        read_label(_nifti(tmp_path / "neg.nii.gz", lab))
    _one_line_error(e, "neg.nii.gz", "negative")


def test_bad_nan_voxels(tmp_path):
    data = np.zeros((6, 5, 4), np.float32)
    data[2, 2, 2] = np.nan
    data[3, 3, 3] = np.inf
    with pytest.raises(InputError) as e:
        read_image(_nifti(tmp_path / "nan.nii.gz", data))
    _one_line_error(e, "nan.nii.gz", "2 NaN or infinite voxels")


def test_bad_2d_image(tmp_path):
    path = _nifti(tmp_path / "flat.nii.gz", np.zeros((6, 5), np.int16))
    with pytest.raises(InputError) as e:
        read_image(path)
    _one_line_error(e, "flat.nii.gz", "2D", "expected a 3D volume")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.int16)), str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "flat.nrrd")
    _one_line_error(e, "flat.nrrd", "2D")


def test_bad_4d_image_but_trailing_singleton_is_3d(tmp_path):
    path = _nifti(tmp_path / "time.nii.gz", np.zeros((6, 5, 4, 2), np.int16))
    with pytest.raises(InputError) as e:
        read_image(path)
    _one_line_error(e, "time.nii.gz", "4D", "(6, 5, 4, 2)")
    ok = _nifti(tmp_path / "single.nii.gz", np.zeros((6, 5, 4, 1), np.int16))
    assert read_image(ok).data.shape == (6, 5, 4)


def test_bad_missing_file(tmp_path):
    image = _image(tmp_path)
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "nowhere.nii.gz"))
    _one_line_error(e, "nowhere.nii.gz", "file not found")
    with pytest.raises(InputError) as e:
        _load_pair(image, str(tmp_path / "none_*.nrrd"))
    _one_line_error(e, "none_*.nrrd", "no label files match")


def test_bad_input_through_cli_is_one_line_status_2(tmp_path, capsys):
    image = _image(tmp_path)
    lab = np.zeros((6, 5, 4), np.float32)
    lab[0, 0, 0] = 1.25
    _nifti(tmp_path / "soft.nii.gz", lab)
    status = main(["datasets", "inspect", f"{image} {tmp_path / 'soft.nii.gz'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2  # the case failed; inspect reports it, goes on, and fails at the end
    assert err[0].startswith("annosim: error: case ct: ") and "soft.nii.gz: label values are not integers" in err[0]
    assert err[1:] == ["annosim: error: 1 of 1 case(s) could not be read"]
    assert "Traceback" not in "\n".join(err)
    status = main(["datasets", "inspect", str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"annosim: error: {tmp_path / 'missing.csv'}: file not found"]
