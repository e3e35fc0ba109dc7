"""``annosim datasets inspect``: printed numbers against numpy on the raw files, and label_stats by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from annosim.cli import main
from annosim.data.inspect import label_stats

ROW = re.compile(r"^\s+(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$")


def _raw_nifti_sample(shared: Path, image: str, label: str):
    """(image, label) as nibabel stores them, data[i, j, k]; k is the superior axis in every sample."""
    img, lab = nib.load(shared / image), nib.load(shared / label)
    assert nib.aff2axcodes(img.affine)[2] == "S"
    return img.get_fdata(), np.asanyarray(lab.dataobj), tuple(float(z) for z in img.header.get_zooms())


def _raw_dcmqi(shared: Path):
    """DICOM series and the three NRRD masks (glob order, later file wins), transposed to [i, j, k]."""
    d = shared / "dcmqi-ct-3slice"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(d / "ct")))
    img = reader.Execute()
    assert img.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # LPS: k is superior
    label = np.zeros(img.GetSize(), np.uint8)
    for name in ("heart", "liver", "spine"):
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(d / f"{name}_seg.nrrd"))).T
        label[arr != 0] = arr[arr != 0]
    return sitk.GetArrayFromImage(img).T, label, img.GetSpacing()


def _expected_rows(label_ijk: np.ndarray, names: dict[int, str]) -> list[tuple]:
    rows = []
    for value in np.unique(label_ijk):
        if value == 0:
            continue
        mask = label_ijk == value
        slices = np.flatnonzero(mask.any(axis=(0, 1)))
        rows.append((int(value), names.get(int(value), f"label_{int(value)}"), int(mask.sum()),
                     int(slices[0]), int(slices[-1]), int(slices.size)))
    return rows


def _parse(out: str) -> dict:
    shape = re.search(r"shape \(Z, Y, X\): (\d+) x (\d+) x (\d+)", out)
    spacing = re.search(r"spacing \(mm\): (\S+) x (\S+) x (\S+)", out)
    hu = re.search(r"HU range: (\S+) \.\. (\S+)", out)
    orient = re.search(r"orientation: (\S+) \((\w+)\)", out)
    rows = []
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            v, name, n, first, last, k = m.groups()
            rows.append((int(v), name, int(n), int(first), int(last), int(k)))
    return {
        "shape": tuple(int(g) for g in shape.groups()),
        "spacing": tuple(float(g) for g in spacing.groups()),
        "hu": (float(hu.group(1)), float(hu.group(2))),
        "orientation": orient.groups(),
        "rows": rows,
    }


def _inspect(capsys, *args: str) -> str:
    status = main(["datasets", "inspect", *args])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def _check(printed: dict, image_ijk: np.ndarray, label_ijk: np.ndarray, zooms, names) -> None:
    i, j, k = image_ijk.shape
    assert printed["shape"] == (k, j, i)
    assert printed["spacing"] == pytest.approx((zooms[2], zooms[1], zooms[0]), rel=1e-5)
    assert printed["hu"] == (float(image_ijk.min()), float(image_ijk.max()))
    assert printed["orientation"] == ("canonical", "SPL")
    assert printed["rows"] == _expected_rows(label_ijk, names)


def test_inspect_totalseg(shared_data, capsys):
    d = shared_data / "totalseg-abdomen"
    image, label, zooms = _raw_nifti_sample(shared_data, "totalseg-abdomen/ct.nii.gz", "totalseg-abdomen/seg.nii.gz")
    names = {int(k): v for k, v in json.loads((d / "labels.json").read_text()).items()}
    printed = _parse(_inspect(capsys, f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}"))
    _check(printed, image, label, zooms, names)
    assert len(printed["rows"]) == 41
    assert printed["rows"][4] == (5, "liver", int((label == 5).sum()), 0, 29, 30)


@pytest.mark.parametrize("sts", ["STS_002", "STS_019"])
def test_inspect_ibsi(shared_data, capsys, sts):
    d = shared_data / "ibsi-sts" / sts
    image, label, zooms = _raw_nifti_sample(shared_data, f"ibsi-sts/{sts}/CT_image.nii.gz", f"ibsi-sts/{sts}/CT_mask.nii.gz")
    out = _inspect(capsys, f"{d / 'CT_image.nii.gz'} {d / 'CT_mask.nii.gz'}", "--label-names", "1=GTV")
    _check(_parse(out), image, label, zooms, {1: "GTV"})


def test_inspect_dicom_with_label_files(shared_data, capsys):
    d = shared_data / "dcmqi-ct-3slice"
    image, label, spacing = _raw_dcmqi(shared_data)
    out = _inspect(capsys, f"{d / 'ct'} {d / '*_seg.nrrd'}")
    _check(_parse(out), image, label, spacing, {1: "liver", 2: "spine", 3: "heart"})
    assert "note: 'liver' overlaps 'heart' in 522 voxels" in out


def test_inspect_as_stored_and_json(shared_data, capsys):
    d = shared_data / "ibsi-sts" / "STS_002"
    image, label, zooms = _raw_nifti_sample(shared_data, "ibsi-sts/STS_002/CT_image.nii.gz", "ibsi-sts/STS_002/CT_mask.nii.gz")
    spec = f"{d / 'CT_image.nii.gz'} {d / 'CT_mask.nii.gz'}"
    printed = _parse(_inspect(capsys, spec, "--orientation", "as-stored"))
    i, j, k = image.shape
    assert printed["shape"] == (k, i, j)  # volume[z, y, x] = data[y, x, z]
    assert printed["orientation"] == ("as-stored", "SLP")
    assert printed["rows"] == _expected_rows(label, {})
    summary = json.loads(_inspect(capsys, spec, "--json").strip())
    assert summary["shape"] == [k, j, i] and summary["orientation"] == "canonical"
    assert summary["spacing"] == pytest.approx([zooms[2], zooms[1], zooms[0]], rel=1e-6)
    assert summary["labels"] == [dict(zip(("value", "name", "voxels", "first_slice", "last_slice", "n_slices"), r))
                                 for r in _expected_rows(label, {})]


def test_label_stats_by_hand():
    label = np.zeros((5, 2, 2), np.uint8)
    label[1, 0, 0] = 3
    label[3, :, :] = 3  # gap at slice 2: extent 1..3 but 2 slices
    label[4, 1, 1] = 1
    stats = label_stats(label, {3: "kidney"})
    assert [(s.value, s.name, s.voxels, s.first_slice, s.last_slice, s.n_slices) for s in stats] == [
        (1, "label_1", 1, 4, 4, 1),
        (3, "kidney", 5, 1, 3, 2),
    ]
    big = label.astype(np.int32) * 10000  # sparse path (values beyond the dense table)
    assert [(s.value, s.voxels, s.n_slices) for s in label_stats(big)] == [(10000, 1, 1), (30000, 5, 2)]
