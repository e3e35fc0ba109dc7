"""Click rules shared by the protocols: first click, error regions, centres, worst slice.

All functions are pure: they read masks and return voxel indices. Coordinates are integer
``(z, y, x)`` in 3D and ``(y, x)`` on a slice; ties are broken towards the lowest index in
lexicographic order, which is the order of :func:`numpy.argwhere`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: 26-connectivity in 3D.
_CONN26 = np.ones((3, 3, 3), dtype=bool)

CENTER_RULES = ("centroid", "scalar-mean")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 26-connected component of a 3D bool mask.

    Ties go to the component reached first in ``(z, y, x)`` raster order (scipy numbers
    components in that order). Returns a bool array of the same shape; all False if empty.
    """
    out = np.zeros(mask.shape, dtype=bool)
    box = ndimage.find_objects(np.asarray(mask, dtype=np.uint8))
    if not box:
        return out
    crop = box[0]  # bounding box of the whole mask: labelling there is equivalent and cheaper
    labels, n = ndimage.label(mask[crop], structure=_CONN26)
    sizes = np.bincount(labels.ravel())[1:]
    out[crop] = labels == (int(np.argmax(sizes)) + 1)
    return out


def nearest_pixel(coords: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Row of ``coords`` (N, D) nearest (Euclidean) to ``target`` (D,); ties: first row."""
    d2 = ((coords - np.asarray(target, dtype=np.float64)) ** 2).sum(axis=1)
    return coords[int(np.argmin(d2))]


def region_center(region: np.ndarray, rule: str = "centroid") -> tuple[int, ...] | None:
    """center(R): the pixel of ``region`` nearest to its centre, or ``None`` if empty.

    ``rule="centroid"`` (the paper): nearest to the mean index per axis.
    ``rule="scalar-mean"`` (the reference code): nearest to ``(m, m[, m])``, ``m`` being the mean
    of all coordinates of all pixels taken together. Ties: lowest index tuple.

    >>> r = np.zeros((200, 40), bool); r[100:111, 10:21] = True
    >>> region_center(r, "centroid"), region_center(r, "scalar-mean")
    ((105, 15), (100, 20))
    """
    coords = np.argwhere(region)
    if coords.shape[0] == 0:
        return None
    if rule == "centroid":
        target = coords.mean(axis=0)
    elif rule == "scalar-mean":
        target = np.full(coords.shape[1], coords.mean())
    else:
        raise ValueError(f"unknown centre rule {rule!r}; expected one of {CENTER_RULES}")
    return tuple(int(v) for v in nearest_pixel(coords, target))


FIRST_CLICK_REGIONS = ("whole", "largest")


def first_click(gt: np.ndarray, region: str = "whole") -> tuple[int, int, int]:
    """The first click on a bool ``(Z, Y, X)`` truth: the voxel nearest the centroid.

    ``region="whole"`` (he2024 rule 1, "pick the foreground geometric
    center"): the voxel of all of ``gt`` nearest the centroid (mean voxel index) of all of it.
    ``region="largest"``: the same on the largest 26-connected component only (the reading of
    earlier annosim versions and of Shen et al.). Ties: lowest ``(z, y, x)``. Raises
    ``ValueError`` on an empty mask.

    Two squares on one slice, of 9 and 4 pixels: the whole foreground's centroid lies between
    them, so its nearest voxel is the big square's pixel on the side facing the small one:

    >>> g = np.zeros((1, 9, 16), bool); g[0, 3:6, 2:5] = True; g[0, 3:5, 12:14] = True
    >>> first_click(g), first_click(g, "largest")
    ((0, 4, 4), (0, 4, 3))
    """
    if region == "whole":
        mask = np.asarray(gt, dtype=bool)
    elif region == "largest":
        mask = largest_component(gt)
    else:
        raise ValueError(f"unknown first-click region {region!r}; expected one of {FIRST_CLICK_REGIONS}")
    coords = np.argwhere(mask)
    if coords.shape[0] == 0:
        raise ValueError("empty ground truth: no first click")
    z, y, x = nearest_pixel(coords, coords.mean(axis=0))
    return int(z), int(y), int(x)


def eroded_errors(
    pred: np.ndarray, gt: np.ndarray, size: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Eroded false negatives and false positives of a 2D slice.

    ``FN = G & ~P`` and ``FP = P & ~G``, each eroded with a ``size x size`` square, pixels
    outside the image counting as background. ``size <= 1`` disables the erosion.
    Returns ``(FN', FP')`` bool ``(Y, X)``.
    """
    fn = gt & ~pred
    fp = pred & ~gt
    if size > 1:
        st = np.ones((size, size), dtype=bool)
        fn = ndimage.binary_erosion(fn, structure=st, border_value=0)
        fp = ndimage.binary_erosion(fp, structure=st, border_value=0)
    return fn, fp


def worst_slice(
    dice: np.ndarray, errors: np.ndarray, candidates: np.ndarray
) -> int | None:
    """Index of the candidate slice with the lowest 2D Dice.

    Ties: most error pixels, then lowest index. ``dice`` (Z,) float, ``errors`` (Z,) int,
    ``candidates`` (Z,) bool. Returns ``None`` when there is no candidate.
    """
    idx = np.flatnonzero(candidates)
    if idx.size == 0:
        return None
    order = np.lexsort((idx, -errors[idx], dice[idx]))
    return int(idx[order[0]])
