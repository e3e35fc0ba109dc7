"""Reading CT images and label maps from disk into stored arrays with their world geometry.

Every reader returns a :class:`Volume`: the voxel array in *stored* index order ``data[i, j, k]``
(as nibabel indexes a NIfTI file; SimpleITK arrays are transposed to match, so both libraries give
the same array for the same file) and ``affine``, voxel ``(i, j, k)`` -> RAS+ mm. Orientation to
``(Z, Y, X)`` happens later, in :mod:`annosim.data.orientation`.

Formats: NIfTI (``.nii``, ``.nii.gz``) through nibabel; NRRD, MHA/MHD and the other single-file
formats through SimpleITK; a folder of DICOM files through SimpleITK's series reader; 3D Slicer
``.seg.nrrd`` segmentations through ``slicerio`` (segment names and values from the header).
Problems with a file raise :class:`annosim.errors.InputError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annosim.data.orientation import NIFTI_SUFFIXES, itk_to_affine, voxel_sizes
from annosim.errors import InputError

#: Image/label grids agree when spacings agree within this relative tolerance...
SPACING_RTOL = 1e-3
#: ...direction cosines within this absolute tolerance...
DIRECTION_ATOL = 1e-3
#: ...and origins within this fraction of the smallest voxel size.
ORIGIN_VOXEL_FRACTION = 1e-2


@dataclass
class Volume:
    """One file's voxels on its stored grid.

    Attributes
    ----------
    data : ndarray, shape (I, J, K)
        float32 HU for images; an unsigned/signed integer label map for labels.
    affine : ndarray (4, 4)
        Voxel ``(i, j, k)`` -> RAS+ mm.
    path : str
        The file (or DICOM folder) read.
    label_names : dict[int, str]
        Names found in the file itself (``.seg.nrrd`` segments, merged label files); else empty.
    notes : list of str
        Things the user should know that are not errors (overlapping structures when merging).
    """

    data: np.ndarray
    affine: np.ndarray
    path: str
    label_names: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the stored axes ``(i, j, k)``."""
        return tuple(float(v) for v in voxel_sizes(self.affine))  # type: ignore[return-value]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # SimpleITK messages start with a long "Exception thrown in SimpleITK ... .cxx:NNN:" prefix.
    for marker in ("sitk::ERROR:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
            break
    return text if len(text) <= 200 else text[:197] + "..."


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def is_seg_nrrd(path: str | Path) -> bool:
    """Whether ``path`` names a 3D Slicer segmentation file (``*.seg.nrrd``)."""
    return str(path).lower().endswith(".seg.nrrd")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")


def _to_3d(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Drop trailing singleton axes beyond the third; reject anything not 3D."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"{what} is {data.ndim}D (shape {tuple(data.shape)}), expected a 3D volume")
    return data


def _read_nifti(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad headers
        raise InputError(path, f"cannot read {what}: {_one_line(exc)}") from exc
    if img.ndim < 3 or (img.ndim > 3 and any(n != 1 for n in img.shape[3:])):
        raise InputError(path, f"{what} is {img.ndim}D (shape {tuple(img.shape)}), expected a 3D volume")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # EOFError, zlib.error, ValueError on truncated files
        raise InputError(path, f"cannot read {what} data (truncated or corrupt file: {_one_line(exc)})") from exc
    return _to_3d(data, path, what), np.asarray(img.affine, dtype=float)


def _sitk_to_stored(img, path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            path, f"{what} has {img.GetNumberOfComponentsPerPixel()} components per voxel, expected 1"
        )
    dim = img.GetDimension()
    if dim < 3 or (dim > 3 and any(n != 1 for n in img.GetSize()[3:])):
        raise InputError(path, f"{what} is {dim}D (size {img.GetSize()}), expected a 3D volume")
    arr = sitk.GetArrayFromImage(img)  # (..., k, j, i)
    data = _to_3d(np.transpose(arr, tuple(range(arr.ndim))[::-1]), path, what)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    affine = itk_to_affine(img.GetOrigin()[:3], img.GetSpacing()[:3], direction)
    return data, affine


def _read_sitk_file(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(path, f"cannot read {what} (unknown format, truncated or corrupt): {_one_line(exc)}") from exc
    return _sitk_to_stored(img, path, what)


def _read_dicom_series(folder: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(folder, "folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(folder, f"folder holds {len(series)} DICOM series; give a folder with one")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(folder, f"cannot read DICOM series: {_one_line(exc)}") from exc
    return _sitk_to_stored(img, folder, what)


def _read_any(path: str | Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _read_dicom_series(path, what)
    if _is_nifti(path):
        return _read_nifti(path, what)
    return _read_sitk_file(path, what)


def read_image(path: str | Path) -> Volume:
    """Read a CT image: NIfTI, NRRD, MHA/MHD... or a DICOM series folder.

    Returns a :class:`Volume` with ``data`` float32 HU, shape ``(I, J, K)`` (stored order).
    Raises :class:`InputError` for a missing, unreadable or truncated file, an image that is not
    3D, or non-finite (NaN/inf) voxels.
    """
    data, affine = _read_any(path, "image")
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int(data.size - np.count_nonzero(finite))
        raise InputError(path, f"image has {n_bad} NaN or infinite voxels")
    return Volume(data=data, affine=affine, path=str(path))


def _as_label_array(data: np.ndarray, path: str | Path) -> np.ndarray:
    """Integer label map in the smallest fitting dtype; rejects fractional, non-finite, negative values."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        data = np.asarray(data, dtype=np.float64)
        bad = ~np.isfinite(data)
        if bad.any():
            raise InputError(path, f"label map has {int(bad.sum())} NaN or infinite voxels")
        frac = data != np.round(data)
        if frac.any():
            example = data[frac].flat[0]
            raise InputError(
                path, f"label values are not integers ({int(frac.sum())} voxels, e.g. {example:g})"
            )
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if lo < 0:
        raise InputError(path, f"label map has negative values (minimum {lo})")
    for dtype in (np.uint8, np.uint16, np.int32):
        if hi <= np.iinfo(dtype).max:
            return data.astype(dtype, copy=False)
    raise InputError(path, f"label value {hi} is too large")


def _read_seg_nrrd(path: Path) -> Volume:
    """A 3D Slicer segmentation: segments (possibly in several layers) -> one label map with names."""
    import slicerio

    _check_exists(path)
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # pynrrd errors, IOError, ValueError
        raise InputError(path, f"cannot read segmentation: {_one_line(exc)}") from exc
    voxels = np.asarray(seg["voxels"])
    layers = voxels if voxels.ndim == 4 else voxels[np.newaxis]
    if layers.ndim != 4:
        raise InputError(path, f"segmentation is {voxels.ndim}D, expected 3D (or 4D with layers)")
    layers = _as_label_array(layers, path)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(seg["ijkToLPS"], dtype=float)
    segments = list(seg.get("segments", []))
    parts = []
    for index, segment in enumerate(segments):
        layer = int(segment.get("layer", 0))
        value = int(segment.get("labelValue", index + 1))
        name = str(segment.get("name") or segment.get("id") or f"segment_{index}")
        parts.append((name, value, layers[layer] == value))
    label, names, notes = merge_masks(parts, layers.shape[1:])
    return Volume(data=label, affine=affine, path=str(path), label_names=names, notes=notes)


def merge_masks(
    parts: list[tuple[str, int, np.ndarray]], shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """Merge named boolean masks ``(name, value, mask)`` of grid ``shape`` into one label map.

    Each mask's voxels take its value; when two parts share a value (or one is not positive), all
    parts are renumbered 1..N in the order given. Where masks overlap, the later one wins (as 3D
    Slicer collapses segments) and a note says how many voxels changed hands.
    Returns ``(label map uint8/uint16, {value: name}, notes)``.
    """
    values = [v for _, v, _ in parts]
    if len(set(values)) != len(values) or any(v <= 0 for v in values):
        values = list(range(1, len(parts) + 1))
    dtype = np.uint8 if max(values, default=0) <= 255 else np.uint16
    label = np.zeros(shape, dtype=dtype)
    names: dict[int, str] = {}
    notes: list[str] = []
    for (name, _, mask), value in zip(parts, values):
        taken = label[mask]
        overlap = taken[taken != 0]
        if overlap.size:
            for other, count in zip(*np.unique(overlap, return_counts=True)):
                notes.append(
                    f"{name!r} overlaps {names[int(other)]!r} in {int(count)} voxels; {name!r} kept there"
                )
        label[mask] = value
        names[value] = name
    return label, names, notes


def structure_name(path: str | Path) -> str:
    """Structure name of a one-structure label file: its stem without ``_seg`` (``liver_seg.nrrd`` -> ``liver``)."""
    name = Path(path).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    for suffix in ("_seg", "-seg", "_mask", "-mask"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def read_label(path: str | Path) -> Volume:
    """Read one label file: integer map, stored order ``(I, J, K)``.

    ``.seg.nrrd`` files give their segment names in ``label_names``. Raises :class:`InputError`
    for a missing/unreadable file, non-integer, NaN or negative values, or a non-3D map.
    """
    path = Path(path)
    if is_seg_nrrd(path):
        return _read_seg_nrrd(path)
    data, affine = _read_any(path, "label map")
    return Volume(data=_as_label_array(data, path), affine=affine, path=str(path))


def labels_json_names(label_path: str | Path) -> dict[int, str]:
    """Names from a ``labels.json`` (``{"1": "spleen", ...}``) beside a label file; empty if none."""
    candidate = Path(label_path).parent / "labels.json"
    if not candidate.is_file():
        return {}
    return parse_label_names(candidate)


def parse_label_names(spec: str | Path | dict) -> dict[int, str]:
    """Label names from a dict, JSON text, a JSON file, or ``"1=liver,2=tumour"``.

    JSON may map values to names (``{"1": "liver"}``) or names to values (``{"liver": 1}``,
    nnU-Net and MONAI ``label_dict`` form); ``background``/0 is dropped.
    """
    source: str | Path | None = None
    if isinstance(spec, dict):
        raw: object = spec
    else:
        text = str(spec).strip()
        if isinstance(spec, Path) or (not text.startswith("{") and Path(text).suffix.lower() == ".json"):
            source = Path(spec)
            if not source.is_file():
                raise InputError(source, "label-names file not found")
            try:
                raw = json.loads(source.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(source, f"not valid JSON: {_one_line(exc)}") from exc
        elif text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(None, f"--label-names is not valid JSON: {_one_line(exc)}") from exc
        else:
            raw = {}
            for item in filter(None, (s.strip() for s in text.split(","))):
                key, sep, name = item.partition("=")
                if not sep or not key.strip() or not name.strip():
                    raise InputError(None, f"--label-names item {item!r} is not VALUE=NAME")
                raw[key.strip()] = name.strip()  # type: ignore[index]
    if not isinstance(raw, dict):
        raise InputError(source, "label names must be a JSON object")
    names: dict[int, str] = {}
    for key, val in raw.items():
        if isinstance(val, list):  # nnU-Net region labels: not one value
            continue
        try:
            if isinstance(val, (int, float)) and not isinstance(val, bool) and not _is_int_text(key):
                value, name = int(val), str(key)
            else:
                value, name = int(str(key).strip()), str(val)
        except ValueError:
            raise InputError(source, f"label names entry {key!r}: {val!r} has no integer value") from None
        if value != 0:
            names[value] = name
    return names


def _is_int_text(text: object) -> bool:
    try:
        int(str(text).strip())
    except ValueError:
        return False
    return True


def _fmt(values, digits: int) -> str:
    """``(1.5, 0.8, 0.8)``: plain floats rounded for messages (numpy 2 scalars print their type)."""
    return "(" + ", ".join(f"{round(float(v), digits):g}" for v in values) + ")"


def same_grid(a: Volume, b: Volume) -> str | None:
    """``None`` when two volumes share a grid (shape, spacing, direction, origin within tolerance), else why not."""
    if a.data.shape != b.data.shape:
        return f"shape {tuple(b.data.shape)} vs {tuple(a.data.shape)}"
    va, vb = voxel_sizes(a.affine), voxel_sizes(b.affine)
    if not np.allclose(vb, va, rtol=SPACING_RTOL, atol=0):
        return f"spacing {_fmt(vb, 4)} vs {_fmt(va, 4)} mm"
    da, db = a.affine[:3, :3] / va, b.affine[:3, :3] / vb
    if not np.allclose(da, db, atol=DIRECTION_ATOL, rtol=0):
        return "direction cosines differ"
    if np.max(np.abs(a.affine[:3, 3] - b.affine[:3, 3])) > ORIGIN_VOXEL_FRACTION * float(va.min()):
        return f"origin {_fmt(b.affine[:3, 3], 3)} vs {_fmt(a.affine[:3, 3], 3)} mm"
    return None


def _embed(label: Volume, image: Volume) -> Volume | None:
    """A cropped label grid (same spacing/direction, integer offset, inside the image) padded to the image grid."""
    va, vb = voxel_sizes(image.affine), voxel_sizes(label.affine)
    if not np.allclose(vb, va, rtol=SPACING_RTOL) or not np.allclose(
        image.affine[:3, :3] / va, label.affine[:3, :3] / vb, atol=DIRECTION_ATOL
    ):
        return None
    offset = np.linalg.solve(image.affine[:3, :3], label.affine[:3, 3] - image.affine[:3, 3])
    start = np.round(offset).astype(int)
    if np.max(np.abs(offset - start)) > ORIGIN_VOXEL_FRACTION:
        return None
    stop = start + np.array(label.data.shape)
    if (start < 0).any() or (stop > np.array(image.data.shape)).any():
        return None
    data = np.zeros(image.data.shape, dtype=label.data.dtype)
    data[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = label.data
    return Volume(data=data, affine=image.affine.copy(), path=label.path, label_names=label.label_names)


def read_labels_on(image: Volume, paths: list[str] | list[Path]) -> Volume:
    """Read one or several label files on ``image``'s grid and merge them into one label map.

    One file is returned as is (``.seg.nrrd`` segments cropped by 3D Slicer are padded back to
    the image grid). Several files: a file holding one non-zero value is one structure named after
    its stem minus ``_seg`` (see :func:`structure_name`); a file with several values keeps them
    and its own names. Values shared between structures are renumbered 1..N in file order; where
    structures overlap the later file wins (recorded in ``notes``).
    Raises :class:`InputError` naming both files when a grid differs from the image's.
    """
    if not paths:
        raise InputError(image.path, "no label file given for this image")
    volumes = []
    for p in paths:
        vol = read_label(p)
        problem = same_grid(image, vol)
        if problem is not None and is_seg_nrrd(p):
            embedded = _embed(vol, image)
            if embedded is not None:
                vol, problem = embedded, None
        if problem is not None:
            raise InputError(p, f"label grid does not match image {image.path}: {problem}")
        volumes.append(vol)
    if len(volumes) == 1:
        return volumes[0]
    parts: list[tuple[str, int, np.ndarray]] = []
    for vol in volumes:
        present = np.unique(vol.data)
        present = present[present != 0]
        if len(present) == 1 and not vol.label_names:
            parts.append((structure_name(vol.path), int(present[0]), vol.data == present[0]))
        else:
            for value in present:
                name = vol.label_names.get(int(value), f"{structure_name(vol.path)}_{int(value)}")
                parts.append((name, int(value), vol.data == value))
    label, names, notes = merge_masks(parts, image.data.shape)
    notes = [n for vol in volumes for n in vol.notes] + notes
    return Volume(data=label, affine=image.affine.copy(), path=str(paths[0]), label_names=names, notes=notes)
