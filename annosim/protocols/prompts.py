"""Prompt rules shared by the published protocols: frames, slice choice, boxes, deepest points.

All functions are pure: they read bool masks and return indices. Coordinates are integer
``(z, y, x)`` in 3D and ``(y, x)`` on a slice; ties go to the lowest index in lexicographic
(raster) order. Distances are in voxel units (a protocol does not see the spacing).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


#: 8-connectivity on a slice (the 2D analogue of the 26-connectivity of the first click).
_CONN8 = np.ones((3, 3), dtype=bool)


def foreground_slices(mask: np.ndarray) -> np.ndarray:
    """Increasing indices of the slices of a bool ``(Z, Y, X)`` mask that hold foreground."""
    return np.flatnonzero(np.asarray(mask, dtype=bool).any(axis=(1, 2)))


def z_extent(mask: np.ndarray) -> tuple[int, int]:
    """``(z_min, z_max)`` inclusive of a bool ``(Z, Y, X)`` mask; ValueError when empty."""
    zs = foreground_slices(mask)
    if zs.size == 0:
        raise ValueError("empty ground truth: no z extent")
    return int(zs[0]), int(zs[-1])


def nearest_foreground_slice(mask: np.ndarray, target: float) -> int:
    """The foreground slice of ``mask`` nearest to position ``target`` (ties: lower z)."""
    zs = foreground_slices(mask)
    if zs.size == 0:
        raise ValueError("empty ground truth: no slice to prompt")
    return int(zs[int(np.argmin(np.abs(zs - float(target))))])


def quantile_slices(mask: np.ndarray, fractions: tuple[float, ...]) -> list[int]:
    """Slices at ``fractions`` of the object's z extent, each snapped to a foreground slice.

    Position ``z_min + floor(f * (z_max - z_min))`` for each fraction ``f``, then the nearest
    slice holding foreground (ties: lower z; only matters when the object skips slices).
    Returns the distinct slices in increasing order (fewer than ``len(fractions)`` when the
    extent is too short to separate them).

    >>> m = np.zeros((20, 4, 4), bool); m[2:11, 1, 1] = True   # extent 2..10
    >>> quantile_slices(m, (0.25, 0.5, 0.75))
    [4, 6, 8]
    """
    lo, hi = z_extent(mask)
    picks = {nearest_foreground_slice(mask, lo + int(np.floor(f * (hi - lo)))) for f in fractions}
    return sorted(picks)


def middle_slice(mask: np.ndarray) -> int:
    """The object's middle slice: ``z_min + (z_max - z_min) // 2`` of its z extent, or the
    nearest slice holding foreground when that one holds none (ties: lower z)."""
    return quantile_slices(mask, (0.5,))[0]


def bounding_box(mask2d: np.ndarray, margin: int = 0) -> tuple[int, int, int, int]:
    """Tight box ``(y0, x0, y1, x1)`` (inclusive) of a bool ``(Y, X)`` mask, grown by
    ``margin`` pixels on each side and clipped to the slice. ValueError when empty."""
    m = np.asarray(mask2d, dtype=bool)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask: no bounding box")
    ny, nx = m.shape
    return (
        max(int(rows[0]) - margin, 0),
        max(int(cols[0]) - margin, 0),
        min(int(rows[-1]) + margin, ny - 1),
        min(int(cols[-1]) + margin, nx - 1),
    )


def nearest_index(n_src: int, n_dst: int, centre: bool = False) -> np.ndarray:
    """Source index of each of ``n_dst`` pixels when ``n_src`` pixels are resized to ``n_dst`` by
    nearest neighbour: ``cv2.INTER_NEAREST`` takes ``floor(i * n_src / n_dst)``, Pillow's
    ``NEAREST`` (``centre``) ``floor((i + 0.5) * n_src / n_dst)``; both capped at ``n_src - 1``.

    >>> nearest_index(3, 8).tolist(), nearest_index(3, 8, centre=True).tolist()
    ([0, 0, 0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2])
    """
    i = np.arange(n_dst) + (0.5 if centre else 0.0)
    return np.minimum(np.floor(i * (n_src / n_dst)).astype(np.int64), n_src - 1)


def grid_bounding_box(mask2d: np.ndarray, grid: int, centre: bool = False) -> tuple[int, int, int, int]:
    """Tight inclusive box ``(y0, x0, y1, x1)`` of a bool ``(H, W)`` mask after a nearest resize
    to ``grid`` x ``grid`` (:func:`nearest_index`), in grid pixels: the box a source takes on
    the model's input grid. ValueError when the resized mask is empty.

    >>> m = np.zeros((512, 512), bool); m[100:201, 10] = True
    >>> grid_bounding_box(m, 1024)
    (200, 20, 401, 21)
    """
    m = np.asarray(mask2d, dtype=bool)
    h, w = m.shape
    rows = np.flatnonzero(m.any(axis=1)[nearest_index(h, grid, centre)])
    cols = np.flatnonzero(m.any(axis=0)[nearest_index(w, grid, centre)])
    if rows.size == 0 or cols.size == 0:
        raise ValueError("empty mask on the grid: no bounding box")
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def largest_component_2d(mask2d: np.ndarray) -> np.ndarray:
    """Largest 8-connected component of a bool ``(Y, X)`` mask (ties: first in raster order)."""
    labels, n = ndimage.label(mask2d, structure=_CONN8)
    if n == 0:
        return np.zeros(np.shape(mask2d), dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def depth_map(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (voxel units) of each pixel of ``mask`` to the nearest pixel outside
    it; pixels beyond the array's edge count as outside. 0 outside the mask; any dimension."""
    m = np.asarray(mask, dtype=bool)
    out = np.zeros(m.shape, dtype=np.float64)
    if not m.any():
        return out
    # Crop to the mask's bounding box plus one background pixel each side (the padding makes
    # the array's edge count as background, and keeps the transform small).
    box = ndimage.find_objects(m.astype(np.uint8))[0]
    crop = np.pad(m[box], 1)
    out[box] = ndimage.distance_transform_edt(crop)[(slice(1, -1),) * m.ndim]
    return out


def deepest_point(mask: np.ndarray) -> tuple[int, ...] | None:
    """The pixel of ``mask`` farthest from its boundary (max of :func:`depth_map`); ties:
    lowest index tuple. ``None`` when empty.

    >>> m = np.zeros((7, 9), bool); m[1:6, 1:8] = True
    >>> deepest_point(m)
    (3, 3)
    """
    d = depth_map(mask)
    if not d.any():
        return None
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(d)), d.shape))


def upper_median_slice(gt: np.ndarray) -> int:
    """The upper median of the distinct slices of bool ``(Z, Y, X)`` ``gt`` that hold
    foreground (index ``n // 2`` of the sorted list): the CVPR 2025 challenge's ``z_mid`` (B
    L66-72) and Dong et al.'s frame mode 2 (``occupied[len // 2]``). ValueError when empty.

    >>> g = np.zeros((10, 2, 2), bool); g[[2, 3, 7, 8], 0, 0] = True
    >>> upper_median_slice(g)
    7
    """
    zs = foreground_slices(gt)
    if zs.size == 0:
        raise ValueError("empty ground truth: no box slice")
    return int(zs[zs.size // 2])
