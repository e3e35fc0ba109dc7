"""Array orientation (the README's Data section) and writing masks back on the original grid.

Files are read into a *stored* array ``data[i, j, k]`` indexed as nibabel indexes a NIfTI file
(``i`` fastest on disk) together with ``affine``, the 4x4 matrix from voxel ``(i, j, k)`` to RAS+
world coordinates in mm (x towards the patient's Right, y Anterior, z Superior).
From there a volume ``(Z, Y, X)`` is made by permuting and flipping axes only (never resampling):

``canonical``
    Z runs inferior -> superior, Y (rows) anterior -> posterior, X (columns) from the patient's
    right to left: the radiological view of axial slices. Each output axis takes the stored axis
    closest to its world direction (``nibabel.orientations.io_orientation``), so oblique scans are
    reordered, not resampled.
``as-stored``
    The order on disk with NIfTI data axis 2 as slices: ``volume[z, y, x] = data[y, x, z]``, the
    frames the reference code of He et al. 2024 fed to SAM2.

:class:`Geometry` records the permutation and flips so that :func:`write_mask` puts a ``(Z, Y, X)``
mask back on the stored grid of the image it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from nibabel.orientations import io_orientation

from annosim import schema

if TYPE_CHECKING:  # pragma: no cover
    from annosim.data.case import Case

#: Orientation names accepted by :func:`orient` (their home is :mod:`annosim.schema`).
ORIENTATIONS = schema.ORIENTATIONS

#: World axis (0 = x, 1 = y, 2 = z in RAS+) and direction (+1 towards R/A/S, -1 towards L/P/I)
#: that output axes (Z, Y, X) follow in the canonical orientation: S, P, L.
_CANONICAL_TARGET = ((2, 1), (1, -1), (0, -1))

_CODES = {(0, 1): "R", (0, -1): "L", (1, 1): "A", (1, -1): "P", (2, 1): "S", (2, -1): "I"}

#: File endings written with nibabel; anything else goes through SimpleITK (.nrrd, .mha, ...).
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along the stored axes ``i, j, k``: the norms of the affine's columns."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=float)[:3, :3] ** 2, axis=0))


@dataclass(frozen=True)
class Geometry:
    """How a ``(Z, Y, X)`` volume relates to the stored grid of its file.

    Attributes
    ----------
    shape : tuple of 3 ints
        Stored shape ``(I, J, K)``.
    affine : ndarray (4, 4)
        Voxel ``(i, j, k)`` -> RAS+ mm of the stored grid.
    axes : tuple of 3 ints
        ``axes[o]`` is the stored axis that becomes output axis ``o`` (0 = Z, 1 = Y, 2 = X).
    flips : tuple of 3 bools
        Whether output axis ``o`` runs opposite to its stored axis.
    orientation : str
        ``"canonical"`` or ``"as-stored"``.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    orientation: str

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Shape ``(Z, Y, X)`` of the oriented volume."""
        return tuple(int(self.shape[a]) for a in self.axes)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(sz, sy, sx)`` in mm of the oriented volume."""
        vs = voxel_sizes(self.affine)
        return tuple(float(vs[a]) for a in self.axes)  # type: ignore[return-value]

    @property
    def volume_affine(self) -> np.ndarray:
        """4x4 matrix from an oriented voxel index ``(z, y, x)`` to RAS+ mm."""
        index_map = np.zeros((4, 4))
        index_map[3, 3] = 1.0
        for out_axis, (stored_axis, flip) in enumerate(zip(self.axes, self.flips)):
            if flip:  # stored index = n - 1 - output index
                index_map[stored_axis, out_axis] = -1.0
                index_map[stored_axis, 3] = self.shape[stored_axis] - 1
            else:
                index_map[stored_axis, out_axis] = 1.0
        return np.asarray(self.affine, dtype=float) @ index_map

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical direction each oriented axis runs towards, e.g. ``('S', 'P', 'L')``."""
        ornt = io_orientation(self.volume_affine)
        return tuple(_CODES[(int(w), int(s))] for w, s in ornt)  # type: ignore[return-value]

    def to_volume(self, data: np.ndarray) -> np.ndarray:
        """Stored array ``(I, J, K)`` -> oriented ``(Z, Y, X)`` (a view where possible)."""
        if tuple(data.shape) != tuple(self.shape):
            raise ValueError(f"array shape {data.shape} is not the stored shape {self.shape}")
        out = np.transpose(data, self.axes)
        flip_axes = tuple(o for o, f in enumerate(self.flips) if f)
        return np.flip(out, flip_axes) if flip_axes else out

    def to_stored(self, volume: np.ndarray) -> np.ndarray:
        """Oriented ``(Z, Y, X)`` -> stored ``(I, J, K)``: the inverse of :meth:`to_volume`."""
        if tuple(volume.shape) != self.volume_shape:
            raise ValueError(f"mask shape {volume.shape} is not the volume shape {self.volume_shape}")
        flip_axes = tuple(o for o, f in enumerate(self.flips) if f)
        if flip_axes:
            volume = np.flip(volume, flip_axes)
        return np.transpose(volume, np.argsort(self.axes))


def orientation_geometry(shape: tuple[int, ...], affine: np.ndarray, orientation: str) -> Geometry:
    """The :class:`Geometry` taking a stored grid (shape ``(I, J, K)``, RAS+ affine) to ``orientation``."""
    if orientation == "as-stored":
        axes, flips = (2, 0, 1), (False, False, False)
    elif orientation == "canonical":
        ornt = io_orientation(np.asarray(affine, dtype=float))  # per stored axis: world axis, sign
        axes_l: list[int] = []
        flips_l: list[bool] = []
        for world_axis, sign in _CANONICAL_TARGET:
            stored_axis = int(np.flatnonzero(ornt[:, 0] == world_axis)[0])
            axes_l.append(stored_axis)
            flips_l.append(bool(ornt[stored_axis, 1] != sign))
        axes, flips = tuple(axes_l), tuple(flips_l)
    else:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {ORIENTATIONS}")
    return Geometry(
        shape=tuple(int(n) for n in shape),  # type: ignore[arg-type]
        affine=np.array(affine, dtype=float),
        axes=axes,  # type: ignore[arg-type]
        flips=flips,  # type: ignore[arg-type]
        orientation=orientation,
    )


def orient(data: np.ndarray, affine: np.ndarray, orientation: str = "canonical") -> tuple[np.ndarray, Geometry]:
    """Stored array ``(I, J, K)`` with its RAS+ affine -> (contiguous ``(Z, Y, X)`` volume, geometry)."""
    geometry = orientation_geometry(data.shape, affine, orientation)
    return np.ascontiguousarray(geometry.to_volume(data)), geometry


def affine_to_itk(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """RAS+ affine -> SimpleITK ``(origin, spacing, direction)`` in LPS."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=float)
    spacing = voxel_sizes(lps)
    direction = lps[:3, :3] / spacing
    return tuple(lps[:3, 3].tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def itk_to_affine(origin, spacing, direction) -> np.ndarray:
    """SimpleITK ``(origin, spacing, direction)`` (LPS, 3D) -> RAS+ affine (4, 4)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    lps[:3, 3] = np.asarray(origin, dtype=float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _mask_dtype(mask: np.ndarray) -> np.dtype:
    if mask.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be boolean or integer, got {mask.dtype}")
    lo, hi = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def write_stored(data: np.ndarray, affine: np.ndarray, path: str | Path) -> None:
    """Write a stored array ``(I, J, K)`` with its RAS+ affine; NIfTI (nibabel) or other (SimpleITK) by extension."""
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        import nibabel as nib

        img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
        img.set_qform(np.asarray(affine, dtype=float), code=1)
        img.set_sform(np.asarray(affine, dtype=float), code=1)
        img.header.set_xyzt_units("mm")
        nib.save(img, str(path))
        return
    import SimpleITK as sitk

    origin, spacing, direction = affine_to_itk(affine)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path), useCompression=True)


def write_mask(mask_zyx: np.ndarray, case: Case, path: str | Path) -> None:
    """Put a ``(Z, Y, X)`` mask (bool or integer, in ``case``'s orientation) back on the original grid.

    The file type follows the extension: ``.nii``/``.nii.gz`` through nibabel, anything else
    SimpleITK writes (``.nrrd``, ``.mha``, ``.mhd``...). Boolean masks are written as uint8 0/1.
    """
    geometry: Geometry = case.geometry
    if not isinstance(geometry, Geometry):
        raise ValueError(f"case {case.case_id!r} carries no geometry to write a mask with")
    mask = np.asarray(mask_zyx)
    stored = geometry.to_stored(mask).astype(_mask_dtype(mask), copy=False)
    write_stored(np.ascontiguousarray(stored), geometry.affine, path)


def canonical_to_ras(volume: np.ndarray) -> np.ndarray:
    """A canonical ``(Z, Y, X)`` array (S, P, L) as an array indexed ``(i, j, k)`` towards R, A, S:
    the order of a ``ToCanonical`` (torchio) or ``as_closest_canonical`` (nibabel) image.
    ``out[i, j, k] = volume[k, Y-1-j, X-1-i]`` (a view, no copy)."""
    return np.asarray(volume)[:, ::-1, ::-1].transpose(2, 1, 0)


def ras_to_canonical(volume: np.ndarray) -> np.ndarray:
    """Inverse of :func:`canonical_to_ras`: an ``(i, j, k)`` RAS-ordered array as canonical ``(Z, Y, X)``."""
    return np.asarray(volume).transpose(2, 1, 0)[:, ::-1, ::-1]


def ras_points_to_canonical(points: np.ndarray, ras_shape: tuple[int, int, int]) -> np.ndarray:
    """int ``(K, 3)`` ``(i, j, k)`` indices of an array of RAS shape ``ras_shape`` as ``(z, y, x)``
    indices of its canonical view: ``(k, J-1-j, I-1-i)``."""
    p = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    ni, nj, _ = (int(s) for s in ras_shape)
    return np.stack([p[:, 2], nj - 1 - p[:, 1], ni - 1 - p[:, 0]], axis=1)


def canonical_points_to_ras(points: np.ndarray, zyx_shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`ras_points_to_canonical`: ``(z, y, x)`` of a canonical array of shape
    ``zyx_shape`` as ``(i, j, k)`` = ``(X-1-x, Y-1-y, z)``."""
    p = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    _, ny, nx = (int(s) for s in zyx_shape)
    return np.stack([nx - 1 - p[:, 2], ny - 1 - p[:, 1], p[:, 0]], axis=1)
