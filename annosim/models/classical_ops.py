"""2D building blocks of the ``classical`` model: morphology, click regions, cuts, propagation.

Every function works on one axial slice: images are float32 ``(Y, X)`` (smoothed HU), masks are
bool ``(Y, X)``, points are integer ``(y, x)``; radii are in pixels (the model converts from mm).
Morphology uses square (Chebyshev) structuring elements, which are separable and therefore cost
the same for any radius.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.graph import MCP_Geometric

_CROSS = ndi.generate_binary_structure(2, 1)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation of bool ``mask`` by a ``(2r+1)`` square."""
    if r <= 0:
        return mask.copy()
    return ndi.maximum_filter(mask.view(np.uint8), size=2 * r + 1, mode="constant", cval=0) > 0


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Erosion of bool ``mask`` by a ``(2r+1)`` square; outside the array counts as background."""
    if r <= 0:
        return mask.copy()
    return ndi.minimum_filter(mask.view(np.uint8), size=2 * r + 1, mode="constant", cval=0) > 0


def opening(mask: np.ndarray, r: int) -> np.ndarray:
    """Opening (erode then dilate) by a ``(2r+1)`` square: removes parts thinner than ``2r+1``."""
    return dilate(erode(mask, r), r) & mask


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Union of the 4-connected components of ``mask`` that contain a pixel of ``seeds``."""
    lab, n = ndi.label(mask, structure=_CROSS)
    if n == 0:
        return np.zeros_like(mask)
    ids = np.unique(lab[seeds & mask])
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros_like(mask)
    keep = np.zeros(n + 1, dtype=bool)
    keep[ids] = True
    return keep[lab]


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    """Bool ``shape`` mask of the pixels within Euclidean ``radius`` of ``centre`` (y, x)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def bbox_slices(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Bounding box of ``mask`` grown by ``margin`` pixels and clipped, or ``None`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, mask.shape[0])
    x0, x1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, mask.shape[1])
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


def click_region(
    image: np.ndarray, point: tuple[int, int], window: int, tolerance: float, open_r: int
) -> np.ndarray:
    """The region a positive click at ``point`` selects on ``image`` (smoothed HU, (Y, X)).

    Pixels within ``tolerance`` HU of the median of the ``(2 window + 1)`` square around the
    click, opened by ``open_r`` (cuts thin bridges to neighbouring tissue of the same density),
    4-connected to the click, holes filled. When the opening removes the click's own pixel
    (a structure thinner than the opening), the unopened component is used instead.
    """
    y, x = int(point[0]), int(point[1])
    win = image[max(y - window, 0) : y + window + 1, max(x - window, 0) : x + window + 1]
    centre = float(np.median(win))
    band = np.abs(image - centre) <= tolerance
    band[y, x] = True
    seed = np.zeros_like(band)
    seed[y, x] = True
    opened = opening(band, open_r)
    region = components_touching(opened, seed) if opened[y, x] else components_touching(band, seed)
    return ndi.binary_fill_holes(region)


def _geodesic_costs(cost: np.ndarray, points: list[tuple[int, int]]) -> np.ndarray:
    """Cumulative geodesic cost from ``points`` over ``cost`` (inf = impassable)."""
    if not points:
        return np.full(cost.shape, np.inf)
    dist, _ = MCP_Geometric(cost, fully_connected=True).find_costs(points)
    return dist


def cut_negative(
    mask: np.ndarray,
    positives: list[tuple[int, int]],
    negatives: list[tuple[int, int]],
    neck_power: float,
) -> np.ndarray:
    """Remove from ``mask`` what the ``negatives`` clicks touch, keeping what ``positives`` hold.

    Inside ``mask`` every pixel goes to the click set it is geodesically nearest to, the step
    cost being ``1 / depth ** neck_power`` (depth = distance to the mask's border), so that the
    boundary between the two sets falls in the narrowest neck between them rather than halfway.
    Pixels nearer a negative click are removed; a component without any positive click but with
    a negative one is removed whole; components with neither are kept.
    """
    if not negatives or not mask.any():
        return mask.copy()
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    cost = np.where(mask, 1.0 / np.maximum(depth, 1.0) ** neck_power, np.inf)
    inside = [(int(y), int(x)) for y, x in positives if mask[y, x]]
    neg = [(int(y), int(x)) for y, x in negatives if mask[y, x]]
    if not neg:
        return mask.copy()
    d_pos = _geodesic_costs(cost, inside)
    d_neg = _geodesic_costs(cost, neg)
    removed = mask & np.isfinite(d_neg) & (d_neg < d_pos)
    out = mask & ~removed
    for y, x in inside:  # a positive click always keeps its own pixel
        out[y, x] = True
    return out


def deepest_away_from(mask: np.ndarray, negatives: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The deepest pixel of ``mask`` outside the lobes the ``negatives`` clicks sit in.

    A pixel qualifies when its distance to every negative click exceeds twice that click's
    depth (so it is not in the same blob); the deepest qualifying pixel (ties: lowest (y, x))
    stands in for a positive click on a slice that has only negative clicks. ``None`` if none.
    """
    if not mask.any():
        return None
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ok = mask.copy()
    yy, xx = np.indices(mask.shape)
    for y, x in negatives:
        reach = 2.0 * max(float(depth[y, x]), 1.0)
        ok &= (yy - y) ** 2 + (xx - x) ** 2 > reach**2
    if not ok.any():
        return None
    flat = np.where(ok, depth, -1.0).ravel()
    i = int(np.argmax(flat))
    return divmod(i, mask.shape[1])


def propagate_step(
    prev: np.ndarray,
    image: np.ndarray,
    lo: float,
    hi: float,
    grow: int,
    seed_r: int,
    open_r: int,
) -> np.ndarray:
    """The object on a neighbouring frame ``image`` (smoothed HU) given its mask ``prev``.

    Candidates are pixels with HU in ``[lo, hi]`` no further than ``grow`` pixels (square) from
    ``prev``, opened by ``open_r``; the result is the candidate components touching ``prev``
    eroded by ``seed_r`` (``prev`` itself when that erosion is empty), holes filled. Empty when
    nothing qualifies. The stop rules (area, support, intensity) are applied by the caller.
    """
    box = bbox_slices(prev, grow + 2)
    out = np.zeros(prev.shape, dtype=bool)
    if box is None:
        return out
    p = prev[box]
    img = image[box]
    cand = (img >= lo) & (img <= hi) & dilate(p, grow)
    if open_r > 0:
        cand = opening(cand, open_r)
    seed = erode(p, seed_r)
    if not seed.any():
        seed = p
    region = components_touching(cand, seed)
    out[box] = ndi.binary_fill_holes(region)
    return out
