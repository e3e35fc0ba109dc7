"""Prompt rules of Dong et al. 2024 (mazurowski-lab/segment-anything-medical-evaluation,
``prompt_funcs.py``): upper-median frame, largest 8-connected component, the 5x5 chamfer
distance of ``cv2.distanceTransform(DIST_L2, 5)`` and the deepest pixels it gives.

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


def chamfer_norm(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Chamfer length of integer offsets under the 5x5 mask (a, b, c) = (1, 1.4, 2.1969).

    >>> chamfer_norm(np.array([1, 1, 2, 3]), np.array([0, 1, 1, 3])).round(4).tolist()
    [1.0, 1.4, 2.1969, 4.2]
    """
    u = np.maximum(np.abs(dy), np.abs(dx)).astype(np.float64)
    v = np.minimum(np.abs(dy), np.abs(dx)).astype(np.float64)
    knights = np.where(2 * v <= u, v * CHAMFER_C + (u - 2 * v) * CHAMFER_A,
                       (u - v) * CHAMFER_C + (2 * v - u) * CHAMFER_B)
    return knights


def chamfer_distance(mask: np.ndarray) -> np.ndarray:
    """Float ``(Y, X)`` 5x5 chamfer distance of each foreground pixel to the background, the
    mask padded by one background pixel first (as the source pads before cv2); 0 off the mask.

    The nearest background pixel under a chamfer path metric is 8-adjacent to the foreground,
    so only those are searched.

    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> chamfer_distance(m)[2].tolist()
    [0.0, 1.0, 2.0, 1.0, 0.0]
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    out = np.zeros(m.shape, dtype=np.float64)
    fg = np.argwhere(m)
    if fg.size:
        ring = np.argwhere(ndimage.binary_dilation(m, structure=_CONN8) & ~m)
        for i in range(0, len(fg), 2048):
            c = fg[i:i + 2048]
            d = chamfer_norm(c[:, None, 0] - ring[None, :, 0], c[:, None, 1] - ring[None, :, 1])
            out[c[:, 0], c[:, 1]] = d.min(axis=1)
    return out[1:-1, 1:-1]


def deepest_candidates(mask: np.ndarray) -> np.ndarray:
    """``(K, 2)`` pixels of ``mask`` whose chamfer depth is ``>= max(max depth, 1)``, raster
    order (the source draws one uniformly among them).

    >>> m = np.zeros((3, 4), bool); m[1, 1:3] = True
    >>> deepest_candidates(m).tolist()
    [[1, 1], [1, 2]]
    """
    dt = chamfer_distance(mask)
    return np.argwhere(dt >= max(float(dt.max(initial=0.0)), 1.0))
