"""Surface Dice by surfel area (DeepMind ``surface-distance``), as Ma et al.'s MedSAM2 branch
computes it (bowang-lab/MedSAM @6abb0ad ``metrics/SurfaceDice.py`` = S, used by
``metrics/compute_metrics_flare22.py``; ``protocol-sources.md`` sections 1 and 1b).

The surface is not a set of border voxels (annosim's common NSD, MONAI's default) but the
marching-cubes surface of the mask, cut into "surfels" at the corners of the voxel grid:

1. Crop both masks to the bounding box of their union; pad one background voxel on every side
   (S L329-375: the source pads the high side and reads zeros below the low one).
2. Every corner of the grid gets the 8-bit code of the 2x2x2 voxels around it, the voxel at
   offset ``(a, b, c)`` (0 = the lower index) setting bit ``7 - (4a + 2b + c)`` (S L380-385).
3. A corner is a surfel when its code is neither 0 nor 255; its area is the area of the
   marching-cubes triangles of that code, in mm with the spacing (S L313-327, L403-404).
4. Each surfel's distance to the other mask's surfels is the exact EDT in mm over the corner
   grid (S L391-400, L407-408).
5. NSD at tolerance t = (area of both masks' surfels within t of the other surface) / (their
   total area) (S L469-478).

The area table: the source ships 256 lists of triangle normals made by marching cubes. Here it
is derived, not copied: for each code, the classic (Lorensen) marching-cubes triangulation of
the 2x2x2 cube at level 0.5 (vertices on edge midpoints, scikit-image's ``lorensen`` method) of
the code or of its complement, whichever has fewer inside corners (the source's table gives a
code and its complement the same area). ``tests/test_surfel_nsd.py`` checks every code against
MONAI's copy of the DeepMind table.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["surfel_area_table", "surfel_distances", "surfel_nsd", "triangle_normals"]


def _corner_cube(code: int) -> np.ndarray:
    """Float ``(2, 2, 2)``: 1 at the corners set in ``code`` (bit ``7 - (4a + 2b + c)``)."""
    a, b, c = np.indices((2, 2, 2))
    return ((code >> (7 - (4 * a + 2 * b + c))) & 1).astype(np.float64)


@lru_cache(maxsize=1)
def triangle_normals() -> tuple[np.ndarray, ...]:
    """Per code 0..255, float ``(T, 3)``: half the cross product of each marching-cubes triangle
    in voxel units, axes in array order; its length is the triangle's area. Computed once."""
    from skimage.measure import marching_cubes

    out = []
    for code in range(256):
        minority = code if bin(code).count("1") <= 4 else 255 - code
        if minority == 0:
            out.append(np.zeros((0, 3)))
            continue
        verts, faces, _, _ = marching_cubes(_corner_cube(minority), 0.5, method="lorensen",
                                            allow_degenerate=True)
        tri = np.asarray(verts, dtype=np.float64)[faces]  # edge midpoints: exact in float32
        out.append(0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    return tuple(out)


def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Float ``(256,)``: surfel area in mm^2 of each neighbour code for ``spacing`` ``(s0, s1, s2)``
    mm (a triangle's normal component along axis 0 scales by ``s1 * s2``, etc.; S L315-327).

    >>> t = surfel_area_table((2.0, 3.0, 5.0))
    >>> float(t[15]), round(float(t[1]), 12)   # a flat square across axis 0; one corner
    (15.0, 2.375)
    """
    s0, s1, s2 = (float(s) for s in spacing)
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.array([np.linalg.norm(n * scale, axis=1).sum() for n in triangle_normals()])


def _codes(m: np.ndarray) -> np.ndarray:
    """uint8 code of every grid corner of a padded bool ``(A, B, C)`` mask: ``(A-1, B-1, C-1)``."""
    code = np.zeros(tuple(s - 1 for s in m.shape), dtype=np.uint8)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                part = m[a:m.shape[0] - 1 + a, b:m.shape[1] - 1 + b, c:m.shape[2] - 1 + c]
                code |= part.astype(np.uint8) << np.uint8(7 - (4 * a + 2 * b + c))
    return code


def surfel_distances(
    gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(d_gt, area_gt, d_pred, area_pred)`` of bool ``(Z, Y, X)`` masks: each surfel's distance
    in mm to the other mask's surface (inf when that mask is empty) and its area in mm^2
    (S ``compute_surface_distances``, unsorted). All empty when both masks are."""
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"truth {gt.shape} and prediction {pred.shape} must be equal 3D shapes")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3:
        raise ValueError(f"spacing {tuple(spacing)} must give 3 values")
    union = gt | pred
    if not union.any():
        empty = np.zeros(0)
        return empty, empty, empty, empty
    idx = np.argwhere(union)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(idx.min(axis=0), idx.max(axis=0)))
    table = surfel_area_table(sp)
    out = []
    codes = [_codes(np.pad(m[box], 1)) for m in (gt, pred)]
    borders = [(c != 0) & (c != 255) for c in codes]
    dist = [ndimage.distance_transform_edt(~b, sampling=sp) if b.any() else np.full(b.shape, np.inf)
            for b in borders]
    for own, other in ((0, 1), (1, 0)):
        out += [dist[other][borders[own]], table[codes[own][borders[own]]]]
    return out[0], out[1], out[2], out[3]


def surfel_nsd(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
    """S ``compute_surface_dice_at_tolerance``: surfel-area NSD of bool ``(Z, Y, X)`` masks at
    ``tolerance_mm``; 0 when one mask is empty, nan when both are (0 / 0).

    >>> g = np.zeros((3, 3, 6), bool); g[1, 1, 1] = True
    >>> p = np.zeros_like(g); p[1, 1, 4] = True   # 3 voxels away: half of each cube's corners
    >>> surfel_nsd(g, p, (1.0, 1.0, 1.0), 2.0)    # are 2 from the other's, half 3
    0.5
    """
    d_g, a_g, d_p, a_p = surfel_distances(gt, pred, spacing)
    total = a_g.sum() + a_p.sum()
    if total == 0:
        return float("nan")
    return float((a_g[d_g <= tolerance_mm].sum() + a_p[d_p <= tolerance_mm].sum()) / total)
