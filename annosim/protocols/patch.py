"""The patch pipeline every patch protocol shares (SAM-Med3D ``medim_val_dataset.py`` /
``utils/infer_utils.py`` @f3de1fa; ``../shared/reference/protocol-sources.md`` section 7A.1 and
7A.3): resample to the model's spacing, canonical (RAS) order, crop or pad to its patch around
the label's bounding-box centre, z-normalise, and paste a patch prediction back on the case grid.

Everything here works on arrays in RAS order ``(i, j, k)`` (towards R, A, S), the order of a
torchio image after ``ToCanonical``: where the source's results depend on the axis order (the
crop's rounding, the raster order of a random draw), that is the order they are computed in.
Spacings are per array axis in mm. The case's canonical ``(Z, Y, X)`` array becomes RAS with
:func:`annosim.data.orientation.canonical_to_ras`.

Rules (torchio 0.18-0.20, as the source calls it):

* **Resample** (``tio.Resample(1.5)``): per axis ``n' = ceil(n * s / s')`` voxels (a singleton
  axis stays 1); new voxel ``u`` sits at old index ``u * r + (r - 1) / 2`` with ``r = s' / s``
  (the outer voxel borders of both grids meet at the start). A voxel whose old index is outside
  ``[-1/2, n - 1/2)`` (the trailing partial voxel when ``n * s`` is not a multiple of ``s'``) is 0,
  ITK's default pixel value (torchio sets none). Inside, the image is interpolated linearly (the
  edge value between the last voxel centre and the border, as ITK's linear interpolator), the
  label by the nearest voxel, halves rounded up (ITK's ``RoundHalfIntegerUp``).
* **CropOrPad** (``mask_name='label'``): bounding box ``[lo, hi)`` of the label (``hi`` = last
  index + 1), centre ``c = (lo + hi) / 2``; ``c -= 0.5`` when (the target ``t`` is even) XOR
  (``c`` is integral); the patch starts at
  ``begin = int(c - t / 2)`` (negative: zero padding before), and is zero-padded past the end.
  An empty label falls back to torchio's centre crop (``ceil`` of half the difference first).
* **ZNormalization** (``masking_method=x > 0``): ``(x - mean) / std`` with the mean and the
  standard deviation (ddof 1, torch's ``std``) of the patch voxels > 0.
* **Paste-back** (``tio.Resample(target=original, nearest)``): each voxel ``j`` of the case grid
  takes the patch voxel nearest its centre, patch index ``(j + 1/2) / r - 1/2 - begin`` rounded
  half up; 0 outside the patch.

One difference the README names: the source resamples the file in its stored axis order before
``ToCanonical``; annosim resamples the canonical RAS array, which is the same grid for files
stored in RAS order, and for others can move the far-edge voxels when an axis's extent is not a
multiple of the target spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def resample_coords(n: int, spacing: float, target: float) -> np.ndarray:
    """Old continuous indices (float64 ``(n',)``) of the voxels of one resampled axis: ``n``
    voxels of ``spacing`` mm to ``target`` mm (torchio ``Resample``; see module docstring).

    >>> resample_coords(4, 0.75, 1.5).tolist()
    [0.5, 2.5]
    """
    n = int(n)
    if n == 1:
        return np.zeros(1)
    r = float(target) / float(spacing)
    n_new = int(np.ceil(n * float(spacing) / float(target)))
    return np.arange(n_new, dtype=np.float64) * r + 0.5 * (r - 1.0)


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """Shape after :func:`resample_coords` on every axis."""
    return tuple(len(resample_coords(n, s, t)) for n, s, t in zip(shape, spacing, target))


def _nearest_index(coords: np.ndarray, n: int) -> np.ndarray:
    """Round half up and clamp to ``0..n-1`` (ITK's nearest neighbour inside the buffer)."""
    return np.clip(np.floor(coords + 0.5).astype(np.int64), 0, n - 1)


def _inside(coords: np.ndarray, n: int) -> np.ndarray:
    """ITK's ``IsInsideBuffer`` along one axis: ``-1/2 <= c < n - 1/2``."""
    return (coords >= -0.5) & (coords < n - 0.5)


def resample_nearest(mask: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...]) -> np.ndarray:
    """A label (any dtype, 3D) resampled by the nearest voxel to ``target`` mm per axis (0
    outside the old grid)."""
    coords = [resample_coords(n, s, t) for n, s, t in zip(mask.shape, spacing, target)]
    out = np.asarray(mask)[np.ix_(*[_nearest_index(c, n) for c, n in zip(coords, mask.shape)])]
    ki, kj, kk = (_inside(c, n) for c, n in zip(coords, mask.shape))
    inside = ki[:, None, None] & kj[None, :, None] & kk[None, None, :]
    return np.where(inside, out, np.zeros((), dtype=out.dtype))


def _linear_axis(volume: np.ndarray, axis: int, coords: np.ndarray, n: int, offset: int) -> np.ndarray:
    """Linear interpolation along ``axis`` at float ``coords`` of an axis of ``n`` voxels, of
    which ``volume`` holds those from ``offset`` on: the edge value between the end voxel centres
    and the border, 0 outside ``[-1/2, n - 1/2)``."""
    c = np.clip(coords, 0.0, n - 1.0)
    lo = np.floor(c).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    shape = [-1 if a == axis else 1 for a in range(volume.ndim)]
    w = (c - lo).reshape(shape)
    a, b = np.take(volume, lo - offset, axis=axis), np.take(volume, hi - offset, axis=axis)
    return (a + (b - a) * w) * _inside(coords, n).reshape(shape)


def resample_linear_window(
    volume: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...],
    begin: tuple[int, ...], size: tuple[int, ...],
) -> np.ndarray:
    """The linearly resampled ``volume`` (float32, 3D) restricted to the window
    ``[begin, begin + size)`` of the resampled grid, zero where the window leaves the grid
    (torchio's zero padding). Trilinear interpolation is separable, so only the window is
    computed, from the old voxels it reads (float64 inside, float32 out)."""
    out = np.zeros(tuple(int(s) for s in size), dtype=np.float32)
    coords, dst, src = [], [], []
    for n, s, t, b, m in zip(volume.shape, spacing, target, begin, size):
        c = resample_coords(n, s, t)
        lo, hi = max(int(b), 0), min(int(b) + int(m), len(c))
        if hi <= lo:
            return out
        c = c[lo:hi]
        coords.append(c)
        dst.append(slice(lo - int(b), hi - int(b)))
        first = int(np.floor(np.clip(c.min(), 0, n - 1)))
        src.append(slice(first, min(int(np.floor(np.clip(c.max(), 0, n - 1))) + 2, n)))
    work = np.asarray(volume[tuple(src)], dtype=np.float64)
    for axis, c in enumerate(coords):
        work = _linear_axis(work, axis, c, volume.shape[axis], src[axis].start)
    out[tuple(dst)] = work
    return out


def crop_or_pad_begin(mask: np.ndarray, size: tuple[int, ...]) -> tuple[int, ...]:
    """Start index per axis of torchio ``CropOrPad(target_shape=size, mask_name=label)`` on a 3D
    mask (see module docstring); negative = zero padding before the array.

    >>> m = np.zeros((200, 10, 10), bool); m[50:61, 2, 2] = True
    >>> crop_or_pad_begin(m, (128, 4, 5))
    (-9, 0, 0)
    """
    mask = np.asarray(mask, dtype=bool)
    out = []
    if not mask.any():
        for n, t in zip(mask.shape, size):
            diff = int(n) - int(t)
            out.append(math.ceil(diff / 2) if diff >= 0 else -math.ceil(-diff / 2))
        return tuple(out)
    for axis, t in enumerate(size):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        centre = (int(hit[0]) + int(hit[-1]) + 1) / 2.0
        if (int(t) % 2 == 0) ^ (centre % 1 == 0):
            centre -= 0.5
        out.append(int(centre - int(t) / 2))
    return tuple(out)


def window(array: np.ndarray, begin: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """``array[begin : begin + size]`` per axis, zero-padded where it leaves the array."""
    out = np.zeros(tuple(int(s) for s in size), dtype=array.dtype)
    src, dst = [], []
    for n, b, m in zip(array.shape, begin, size):
        lo, hi = max(int(b), 0), min(int(b) + int(m), int(n))
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(b), hi - int(b)))
    out[tuple(dst)] = array[tuple(src)]
    return out


def znorm_positive(patch: np.ndarray) -> np.ndarray:
    """torchio ``ZNormalization(masking_method=lambda x: x > 0)``: ``(x - mean) / std`` over
    every voxel, mean and std (ddof 1) of the voxels > 0; float32. ValueError when fewer than
    two voxels are > 0 or their std is 0 (torchio raises there too)."""
    x = np.asarray(patch, dtype=np.float32)
    values = x[x > 0].astype(np.float64)
    if values.size < 2 or float(values.std(ddof=1)) == 0.0:
        raise ValueError("z-normalisation: the patch has no spread of voxels > 0 (torchio needs a std > 0)")
    return ((x - values.mean()) / values.std(ddof=1)).astype(np.float32)


@dataclass(frozen=True)
class PatchGeometry:
    """Where one object's patch lies: the case's RAS shape and spacing, the patch spacing and
    size (RAS axes) and the patch start ``begin`` on the resampled grid."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    target: tuple[float, float, float]
    size: tuple[int, int, int]
    begin: tuple[int, int, int]

    @classmethod
    def around(cls, label: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...],
               size: tuple[int, ...]) -> tuple["PatchGeometry", np.ndarray]:
        """The geometry of the patch centred on bool RAS ``label`` and the label's patch (bool)."""
        res = resample_nearest(np.asarray(label, dtype=bool), spacing, target)
        begin = crop_or_pad_begin(res, size)
        geo = cls(tuple(int(s) for s in label.shape), tuple(float(s) for s in spacing),  # type: ignore[arg-type]
                  tuple(float(t) for t in target), tuple(int(s) for s in size), begin)  # type: ignore[arg-type]
        return geo, window(res, begin, size)

    def image(self, volume: np.ndarray) -> np.ndarray:
        """The RAS ``volume``'s patch: linearly resampled, zero-padded; float32 of :attr:`size`."""
        return resample_linear_window(volume, self.spacing, self.target, self.begin, self.size)

    def _case_to_patch(self, axis: int) -> np.ndarray:
        """Patch index (or -1 outside) of every case voxel along ``axis``."""
        n, s, t, b, m = self.shape[axis], self.spacing[axis], self.target[axis], self.begin[axis], self.size[axis]
        if n == 1:
            u = np.zeros(1)
        else:
            u = (np.arange(n) + 0.5) * (s / t) - 0.5
        k = np.floor(u - b + 0.5).astype(np.int64)
        return np.where((k >= 0) & (k < m), k, -1)

    def paste(self, patch_mask: np.ndarray) -> np.ndarray:
        """bool RAS case-grid mask from a bool patch mask (nearest, 0 outside the patch)."""
        idx = [self._case_to_patch(a) for a in range(3)]
        inside = [i >= 0 for i in idx]
        out = np.zeros(self.shape, dtype=bool)
        sub = np.asarray(patch_mask, dtype=bool)[np.ix_(*[np.maximum(i, 0) for i in idx])]
        sub &= inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
        out[...] = sub
        return out

    def case_point(self, point: tuple[int, int, int]) -> tuple[int, int, int]:
        """The case voxel (RAS index) nearest the centre of patch voxel ``point``."""
        out = []
        for a, p in enumerate(point):
            n, s, t, b = self.shape[a], self.spacing[a], self.target[a], self.begin[a]
            if n == 1:
                out.append(0)
                continue
            r = t / s
            c = (int(p) + b) * r + 0.5 * (r - 1.0)
            out.append(int(_nearest_index(np.array([c]), n)[0]))
        return tuple(out)  # type: ignore[return-value]
