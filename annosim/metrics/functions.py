"""Segmentation metric functions for one object: Dice, per-slice Dice, NSD, HD95, slice counts.

Masks are boolean numpy arrays; 3D masks are shaped ``(Z, Y, X)`` (axis 0 = axial slice) and
``spacing`` is ``(sz, sy, sx)`` in mm, i.e. one spacing per array axis in array order.

Surface metrics follow MONAI's definitions (``compute_surface_dice`` with ``use_subvoxels=False``
and ``compute_hausdorff_distance(percentile=95)``) so that the numbers agree with MONAI's:

* the surface (border) of a mask is the set of its voxels removed by one binary erosion with the
  6-connected cross (scipy's default structuring element), voxels outside the array counting as
  background;
* distances are exact Euclidean distances in mm between border voxel centres;
* NSD at tolerance ``t`` = (number of border voxels of P within ``t`` of G's border + the same for
  G towards P) / (number of border voxels of P + of G);
* HD95 = the larger of the two directed 95th percentiles (linear interpolation, as
  ``numpy.percentile``/``torch.quantile``) of border-to-border distances.

Both are computed on a crop of the bounding box of ``pred | gt`` padded by one voxel, so a small
object in a large volume costs little. MONAI works in float32; this module in float64, so values
agree to about 1e-7 relative.

Empty masks (MONAI's value in brackets):

* prediction empty, truth not: dice 0, nsd 0 [0], hd95 nan [nan]. MONAI gives every border
  voxel an infinite distance; its plain Hausdorff distance is then inf, and its 95th percentile
  interpolates between infinities (inf - inf) and comes out nan. nan is also the value wanted
  here: the distance is undefined, nan-aware means skip it instead of turning into inf, and
  ``dice`` and ``nsd`` already score the miss as 0.
* truth empty, prediction not: dice 0 [MONAI ``compute_dice`` nan with its default
  ``ignore_empty=True``], nsd 0 [0], hd95 nan [nan]. Not produced by the he2024 protocol (every
  object has truth), handled so that nothing crashes.
* both empty: dice 1, nsd 1 [nan], hd95 0 [nan]: nothing to disagree about, consistent with the
  per-slice Dice used for slice selection, where a slice empty in both counts as perfect.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "dice",
    "dice_per_slice",
    "nsd",
    "hd95",
    "fp_slices",
    "gt_slices",
    "per_slice_counts",
    "surface_distances",
    "nsd_from_distances",
    "hd95_from_distances",
    "check_tolerance",
]

Spacing = Sequence[float]


def _check_pair(pred: np.ndarray, gt: np.ndarray, ndim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {gt.shape}")
    if ndim is not None and pred.ndim != ndim:
        raise ValueError(f"expected {ndim}D masks, got shape {pred.shape}")
    return pred, gt


def _slice_any(mask: np.ndarray) -> np.ndarray:
    """Bool (Z,): which slices of a (Z, ...) mask hold any voxel (fast: no per-voxel counting)."""
    if mask.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return mask.reshape(mask.shape[0], -1).any(axis=1)


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the True voxels of ``mask`` as slices, or None if it is empty."""
    zs = np.flatnonzero(_slice_any(mask))
    if zs.size == 0:
        return None
    box = [slice(int(zs[0]), int(zs[-1]) + 1)]
    sub = mask[box[0]]
    for axis in range(1, mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(sub.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def _union_box(pred: np.ndarray, gt: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of ``pred | gt`` as slices, or None if both are empty."""
    boxes = [b for b in (_bbox(pred), _bbox(gt)) if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(pred.ndim))


def _crop_union(pred: np.ndarray, gt: np.ndarray, pad: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop both masks to the bounding box of ``pred | gt``, zero-padded by ``pad`` voxels."""
    box = _union_box(pred, gt)
    if box is None:
        return None
    p, g = pred[box], gt[box]
    if pad:
        p, g = np.pad(p, pad), np.pad(g, pad)
    return p, g


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient 2|P∧G| / (|P| + |G|) of two bool masks of any (equal) shape.

    Both empty -> 1.0 (perfect agreement); exactly one empty -> 0.0.
    """
    pred, gt = _check_pair(pred, gt)
    if pred.ndim == 0:
        p, g = pred, gt
    else:
        cropped = _crop_union(pred, gt)
        if cropped is None:
            return 1.0
        p, g = cropped
    sp, sg = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    if sp + sg == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & g)) / (sp + sg)


def per_slice_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice |P|, |G|, |P∧G| as int64 (Z,) arrays, counted only inside the union's bounding box."""
    z = pred.shape[0]
    sp = np.zeros(z, dtype=np.int64)
    sg = np.zeros(z, dtype=np.int64)
    si = np.zeros(z, dtype=np.int64)
    box = _union_box(pred, gt)
    if box is None:
        return sp, sg, si
    p, g = pred[box], gt[box]
    n = p.shape[0]
    rows = box[0]
    sp[rows] = p.reshape(n, -1).sum(axis=1, dtype=np.int64)
    sg[rows] = g.reshape(n, -1).sum(axis=1, dtype=np.int64)
    si[rows] = (p & g).reshape(n, -1).sum(axis=1, dtype=np.int64)
    return sp, sg, si


def dice_per_slice(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D Dice and error-pixel count of every axial slice of bool (Z, Y, X) masks.

    Returns ``(dice, errors)``: float64 (Z,) Dice per slice (1.0 where both are empty) and int64
    (Z,) ``|P xor G|`` per slice. Vectorised over slices.
    """
    pred, gt = _check_pair(pred, gt, ndim=3)
    sp, sg, si = per_slice_counts(pred, gt)
    total = sp + sg
    d = np.ones(pred.shape[0], dtype=np.float64)
    nz = total > 0
    d[nz] = 2.0 * si[nz] / total[nz]
    return d, total - 2 * si


def fp_slices(pred: np.ndarray, gt: np.ndarray) -> int:
    """Number of slices of (Z, ...) masks with predicted voxels but no truth (over-tracking)."""
    pred, gt = _check_pair(pred, gt)
    return int(np.count_nonzero(_slice_any(pred) & ~_slice_any(gt)))


def gt_slices(gt: np.ndarray) -> int:
    """Number of slices of a (Z, ...) truth mask that hold any truth voxel."""
    return int(np.count_nonzero(_slice_any(np.asarray(gt, dtype=bool))))


def _border(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` removed by one erosion with the 6-connected cross (outside = background)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing
) -> tuple[np.ndarray, np.ndarray] | None:
    """Directed border distances in mm: (pred border -> gt border, gt border -> pred border).

    None when either mask is empty (distances undefined).
    """
    pred, gt = _check_pair(pred, gt)
    scale = np.asarray(spacing, dtype=np.float64)
    if scale.shape != (pred.ndim,):
        raise ValueError(f"spacing {tuple(spacing)} does not give one value per axis of shape {pred.shape}")
    cropped = _crop_union(pred, gt, pad=1)
    if cropped is None:
        return None
    p, g = cropped
    if not (p.any() and g.any()):
        return None
    pts_p = np.argwhere(_border(p)) * scale
    pts_g = np.argwhere(_border(g)) * scale
    d_pg = cKDTree(pts_g).query(pts_p, k=1)[0]
    d_gp = cKDTree(pts_p).query(pts_g, k=1)[0]
    return d_pg, d_gp


def nsd_from_distances(dists: tuple[np.ndarray, np.ndarray] | None, pred_any: bool, gt_any: bool, tol: float) -> float:
    """NSD from :func:`surface_distances` (``None``: a mask is empty) at tolerance ``tol`` mm."""
    if dists is None:
        return 1.0 if not (pred_any or gt_any) else 0.0
    d_pg, d_gp = dists
    good = int(np.count_nonzero(d_pg <= tol)) + int(np.count_nonzero(d_gp <= tol))
    return good / (d_pg.size + d_gp.size)


def hd95_from_distances(dists: tuple[np.ndarray, np.ndarray] | None, pred_any: bool, gt_any: bool) -> float:
    """HD95 in mm from :func:`surface_distances` (``None``: a mask is empty)."""
    if dists is None:
        return 0.0 if not (pred_any or gt_any) else float("nan")
    return float(max(np.percentile(dists[0], 95), np.percentile(dists[1], 95)))


def check_tolerance(tolerance_mm: float) -> None:
    """ValueError unless ``tolerance_mm`` is a finite number >= 0 (an NSD tolerance in mm)."""
    if not np.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"NSD tolerance must be a finite number >= 0 mm, got {tolerance_mm}")


def nsd(pred: np.ndarray, gt: np.ndarray, spacing: Spacing, tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice of bool masks at ``tolerance_mm``; ``spacing`` in mm per array axis.

    Equals MONAI's ``compute_surface_dice(class_thresholds=[tolerance_mm], spacing=spacing)``.
    One mask empty -> 0.0 (as MONAI); both empty -> 1.0 (MONAI: nan).
    """
    check_tolerance(tolerance_mm)
    pred, gt = _check_pair(pred, gt)
    return nsd_from_distances(surface_distances(pred, gt, spacing), bool(pred.any()), bool(gt.any()), tolerance_mm)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> float:
    """95th-percentile symmetric Hausdorff distance in mm; ``spacing`` in mm per array axis.

    Equals MONAI's ``compute_hausdorff_distance(percentile=95, spacing=spacing)``.
    One mask empty -> nan (as MONAI); both empty -> 0.0 (MONAI: nan).
    """
    pred, gt = _check_pair(pred, gt)
    return hd95_from_distances(surface_distances(pred, gt, spacing), bool(pred.any()), bool(gt.any()))
