"""Prompt rules of Dong et al. 2024 (mazurowski-lab/segment-anything2-medical-evaluation,
``prompt_funcs.py``): upper-median frame, largest 8-connected components, the 5x5 chamfer
distance of ``cv2.distanceTransform(DIST_L2, 5)`` (float32, as cv2 computes it) and the deepest
pixels it gives.

All functions are pure; coordinates are ``(y, x)`` on a slice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from annosim.protocols.prompts import upper_median_slice  # noqa: F401 - Dong's frame mode 2

#: Weights of cv2's 5x5 DIST_L2 mask: axial, diagonal, knight move (pixels).
CHAMFER_A, CHAMFER_B, CHAMFER_C = 1.0, 1.4, 2.1969

_CONN8 = np.ones((3, 3), dtype=bool)


def largest_components_8(mask: np.ndarray, k: int) -> list[np.ndarray]:
    """Up to ``k`` largest 8-connected components of a bool ``(Y, X)`` mask, largest first;
    equal areas: the higher label id first (P L146-160: sorted by (area ratio, label id), then
    reversed; skimage and scipy number components in raster order of their first pixel).

    >>> m = np.zeros((1, 8), bool); m[0, [0, 1, 3, 4, 6]] = True
    >>> [np.flatnonzero(c).tolist() for c in largest_components_8(m, 3)]
    [[3, 4], [0, 1], [6]]
    """
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_CONN8)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = sorted(range(1, n + 1), key=lambda i: (int(sizes[i - 1]), i), reverse=True)
    return [labels == i for i in order[:k]]


def largest_component_8(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected component of a bool ``(Y, X)`` mask; equal areas: the higher label
    id (:func:`largest_components_8` with ``k`` = 1); all False when the mask is empty.

    >>> m = np.zeros((1, 5), bool); m[0, [0, 1, 3, 4]] = True
    >>> np.flatnonzero(largest_component_8(m)).tolist()
    [3, 4]
    """
    comps = largest_components_8(mask, 1)
    return comps[0] if comps else np.zeros(np.shape(mask), dtype=bool)


#: The forward half of cv2's 5x5 mask: ``(dy, dx, weight)``; the backward pass mirrors it.
_FORWARD_MASK = ((-2, -1, "c"), (-2, 1, "c"), (-1, -2, "c"), (-1, -1, "b"), (-1, 0, "a"),
                 (-1, 1, "b"), (-1, 2, "c"), (0, -1, "a"))
_FAR = np.float32(3.0e38)


def chamfer_distance(mask: np.ndarray) -> np.ndarray:
    """float32 ``(Y, X)`` 5x5 chamfer distance of each foreground pixel to the background, as
    ``cv2.distanceTransform(mask padded by 1, DIST_L2, 5)`` computes it (P L192-193): two raster
    scans (forward, then backward with the mirrored mask), each pixel the minimum of its own
    value and each scanned neighbour's value plus the weight (a, b, c) = (1, 1.4, 2.1969), all
    in float32. The float32 sums are what cv2 returns, so the deepest pixels are the same: ten
    diagonal steps give 13.999998, fourteen axial steps 14.0. 0 off the mask.

    Vectorised along wavefronts ``3 y + x`` (every neighbour a scan reads lies on an earlier
    one), on the mask's bounding box with its one-pixel background ring (what lies beyond the
    ring never gives a smaller value).

    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> chamfer_distance(m)[2].tolist()
    [0.0, 1.0, 2.0, 1.0, 0.0]
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return out
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = np.pad(mask[y0:y1, x0:x1], 1)
    weight = {"a": np.float32(CHAMFER_A), "b": np.float32(CHAMFER_B), "c": np.float32(CHAMFER_C)}
    d = np.full((m.shape[0] + 4, m.shape[1] + 4), _FAR, dtype=np.float32)  # 2 more: the mask's reach
    d[2:-2, 2:-2] = np.where(m, _FAR, np.float32(0.0))
    ii, jj = np.nonzero(m)
    t = 3 * ii + jj
    order = np.argsort(t, kind="stable")
    ii, jj, t = ii[order] + 2, jj[order] + 2, t[order]
    cuts = np.flatnonzero(np.diff(t)) + 1
    fronts = list(zip(np.split(ii, cuts), np.split(jj, cuts)))
    for sign, seq in ((1, fronts), (-1, fronts[::-1])):
        for fy, fx in seq:
            best = d[fy, fx]
            for dy, dx, w in _FORWARD_MASK:
                best = np.minimum(best, d[fy + sign * dy, fx + sign * dx] + weight[w])
            d[fy, fx] = best
    out[y0:y1, x0:x1] = d[3:-3, 3:-3]
    return out


def deepest_candidates(mask: np.ndarray) -> np.ndarray:
    """``(K, 2)`` pixels of ``mask`` whose chamfer depth is ``>= max(max depth, 1)``, raster
    order (the source draws one uniformly among them).

    >>> m = np.zeros((3, 4), bool); m[1, 1:3] = True
    >>> deepest_candidates(m).tolist()
    [[1, 1], [1, 2]]
    """
    dt = chamfer_distance(mask)
    return np.argwhere(dt >= max(float(dt.max(initial=0.0)), 1.0))
