"""2D building blocks of the ``classical`` model: morphology, click regions, cuts, propagation.

Every function works on one axial slice: images are float32 ``(Y, X)`` (smoothed HU), masks are
bool ``(Y, X)``, points are integer ``(y, x)``; radii are in pixels (the model converts from mm).
Morphology uses square (Chebyshev) structuring elements, which are separable and therefore cost
the same for any radius.
"""

from __future__ import annotations

from typing import Any

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
    image: np.ndarray,
    point: tuple[int, int],
    window: int,
    tolerance: float,
    open_r: int,
    adapt_k: float = 0.0,
    max_tolerance: float | None = None,
    fixed_range: tuple[float, float] = (-np.inf, np.inf),
    iterations: int = 8,
) -> np.ndarray:
    """The region a positive click at ``point`` selects on ``image`` (smoothed HU, (Y, X)).

    Pixels within ``tolerance`` HU of the median of the ``(2 window + 1)`` square around the
    click, opened by ``open_r`` (cuts thin bridges to neighbouring tissue of the same density),
    4-connected to the click, holes filled. When the opening removes the click's own pixel
    (a structure thinner than the opening), the unopened component is used instead.

    With ``adapt_k > 0``, when the click's HU lies outside ``fixed_range`` (the soft-tissue
    window, where neighbouring organs differ by tens of HU and a wider band would leak into
    them), the band then adapts to the tissue: up to ``iterations`` times, each side's
    tolerance becomes ``adapt_k`` times the root-mean-square deviation of the region's HU on
    that side of the click's value, never below ``tolerance`` nor above ``max_tolerance``;
    it stops when neither side grows. Textured tissue bounded by strong contrast (lung with
    its vessels, bone) is then taken whole.
    """
    y, x = int(point[0]), int(point[1])
    win = image[max(y - window, 0) : y + window + 1, max(x - window, 0) : x + window + 1]
    centre = float(np.median(win))
    below = above = float(tolerance)
    region = _band_region(image, (y, x), centre - below, centre + above, open_r)
    cap = np.inf if max_tolerance is None else float(max_tolerance)
    adapt = adapt_k > 0 and not fixed_range[0] <= centre <= fixed_range[1]
    for _ in range(iterations if adapt else 0):
        dev = image[region] - centre
        new_below = _side_tolerance(-dev[dev < 0], adapt_k, float(tolerance), cap)
        new_above = _side_tolerance(dev[dev > 0], adapt_k, float(tolerance), cap)
        if new_below <= below + 1e-6 and new_above <= above + 1e-6:
            break
        below, above = max(below, new_below), max(above, new_above)
        region = _band_region(image, (y, x), centre - below, centre + above, open_r)
    return ndi.binary_fill_holes(region)


def _side_tolerance(dev: np.ndarray, k: float, floor: float, cap: float) -> float:
    """``k`` times the root-mean-square of the deviations ``dev`` (>= 0), within [floor, cap]."""
    rms = float(np.sqrt(np.mean(dev**2))) if dev.size else 0.0
    return min(max(k * rms, floor), cap)


def _band_region(
    image: np.ndarray, point: tuple[int, int], lo: float, hi: float, open_r: int
) -> np.ndarray:
    """Pixels with HU in ``[lo, hi]``, opened, 4-connected to ``point`` (always in)."""
    y, x = point
    band = (image >= lo) & (image <= hi)
    band[y, x] = True
    seed = np.zeros_like(band)
    seed[y, x] = True
    opened = opening(band, open_r)
    return components_touching(opened, seed) if opened[y, x] else components_touching(band, seed)


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
    free_grow: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The object on a neighbouring frame ``image`` (smoothed HU) given its mask ``prev``.

    Candidates are pixels with HU in ``[lo, hi]``, opened by ``open_r``; the result is made of
    the candidate components touching ``prev`` eroded by ``seed_r`` (``prev`` itself when that
    erosion is empty), holes filled. How far a component may reach beyond ``prev``:

    - *enclosed*: a component of the candidates within ``free_grow`` pixels (square) of
      ``prev`` that stays clear of that band's outer edge (and of the image border) is
      surrounded by tissue outside the object's range: it is taken whole, however much the
      object grew (an organ's end meeting thick slices, lung walled in by soft tissue);
    - otherwise it is limited to ``grow`` pixels from ``prev`` (tissue of the same density
      continues beyond: the object's border cannot be told, so it moves slowly).

    Returns ``(mask, enclosed)``: bool ``(Y, X)`` result and the part of it from enclosed
    components (empty when ``free_grow <= grow``). The stop rules are applied by the caller.
    """
    reach = max(grow, free_grow)
    box = bbox_slices(prev, reach + 2)
    out = np.zeros(prev.shape, dtype=bool)
    enclosed = np.zeros(prev.shape, dtype=bool)
    if box is None:
        return out, enclosed
    p = prev[box]
    in_range = (image[box] >= lo) & (image[box] <= hi)
    seed = erode(p, seed_r)
    if not seed.any():
        seed = p
    near = dilate(p, grow)
    cand = in_range & near
    if open_r > 0:
        cand = opening(cand, open_r)
    region = components_touching(cand, seed)
    free = np.zeros_like(p)
    if free_grow > grow:
        zone = dilate(p, free_grow)
        edge = zone & ~dilate(p, free_grow - 1)
        _mark_image_border(edge, box, prev.shape)
        wide = in_range & zone
        if open_r > 0:
            wide = opening(wide, open_r)
        lab, n = ndi.label(wide, structure=_CROSS)
        if n:
            keep = np.zeros(n + 1, dtype=bool)
            keep[np.unique(lab[seed & wide])] = True
            keep[np.unique(lab[edge & wide])] = False
            keep[0] = False
            free = keep[lab]
    out[box] = ndi.binary_fill_holes(region | free)
    enclosed[box] = free
    return out, enclosed


def _mark_image_border(edge: np.ndarray, box: tuple[slice, slice], shape: tuple[int, int]) -> None:
    """Set in ``edge`` (the crop ``box`` of an image of ``shape``) the image's outer pixels."""
    ys, xs = box
    if ys.start == 0:
        edge[0, :] = True
    if ys.stop == shape[0]:
        edge[-1, :] = True
    if xs.start == 0:
        edge[:, 0] = True
    if xs.stop == shape[1]:
        edge[:, -1] = True


def box_region(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    ring_r: int,
    open_r: int,
    bandwidth: float,
    floor: float = 0.0,
) -> np.ndarray:
    """The object a tight box ``(y0, x0, y1, x1)`` (inclusive) encloses on ``image`` (smoothed HU).

    1. *Intensity band.* The HU density inside the box, each pixel weighted by a tent that is
       1 at the box centre and falls to 0 at its sides (the object fills the middle of a tight
       box; its corners are mostly background), minus the density of the ring ``ring_r``
       pixels wide just outside the box (background only, as the box is tight). Both are
       Gaussian kernel densities with ``bandwidth`` HU. The object's level is where that
       difference peaks; its band is the interval of HU around it where the difference stays
       positive (HU more typical of the box's middle than of its surroundings).
    2. *Region.* In-band pixels inside the box, opened by ``open_r`` (at most an eighth of
       the box's shorter side, so small boxes are not emptied), 4-connected components. A
       tight box touches the object on all four sides: the component whose bounding box best
       covers the box (intersection over union, ties: larger area) is taken, and further
       components are added while they make the union's bounding box cover the box better
       (an object split by a darker cleft, such as a kidney's hilum). Holes are filled.

    Returns bool ``(Y, X)``, empty outside the box.
    """
    y0, x0, y1, x1 = (int(v) for v in box)
    crop = image[y0 : y1 + 1, x0 : x1 + 1]
    h, w = crop.shape
    out = np.zeros(image.shape, dtype=bool)
    inside = np.zeros(image.shape, dtype=bool)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    ring = image[dilate(inside, ring_r) & ~inside] if ring_r > 0 else np.zeros(0, image.dtype)
    yy, xx = np.indices(crop.shape, dtype=np.float64)
    tent = (1.0 - np.abs(yy - (h - 1) / 2) / (h / 2 + 0.5)) * (
        1.0 - np.abs(xx - (w - 1) / 2) / (w / 2 + 0.5)
    )
    lo, hi = _box_band(crop.ravel(), tent.ravel(), ring, bandwidth, floor)
    band = (crop >= lo) & (crop <= hi)
    r = min(open_r, min(h, w) // 8)
    opened = opening(band, r) if r > 0 else band
    if not opened.any():
        opened = band
    out[y0 : y1 + 1, x0 : x1 + 1] = ndi.binary_fill_holes(_best_fit_components(opened))
    return out


def _kde(values: np.ndarray, weights: np.ndarray | None, lo: float, n: int, bandwidth: float) -> np.ndarray:
    """Normalised Gaussian kernel density of ``values`` on the 1-HU grid ``lo + arange(n)``."""
    if values.size == 0:
        return np.zeros(n)
    hist = np.bincount(
        np.clip(np.rint(values - lo).astype(np.int64), 0, n - 1), weights=weights, minlength=n
    ).astype(np.float64)
    if bandwidth > 0:
        hist = ndi.gaussian_filter1d(hist, bandwidth, mode="constant")
    total = hist.sum()
    return hist / total if total > 0 else hist


def _box_band(
    values: np.ndarray, weights: np.ndarray, ring: np.ndarray, bandwidth: float, floor: float = 0.0
) -> tuple[float, float]:
    """HU band of the object: around the peak of (weighted box density - ring density)."""
    allv = np.concatenate([values, ring]) if ring.size else values
    lo = float(np.floor(allv.min())) - 4 * bandwidth - 1
    n = int(np.ceil(allv.max() - lo + 4 * bandwidth)) + 2
    if weights.sum() <= 0:  # a box one pixel wide: no middle to weigh
        weights = np.ones_like(weights)
    diff = _kde(values, weights, lo, n, bandwidth) - _kde(ring, None, lo, n, bandwidth)
    k = int(np.argmax(diff))
    pos = diff > floor * diff[k]
    pos[k] = True
    # The run of positive difference containing the peak.
    a = k - int(np.argmin(pos[k::-1])) + 1 if not pos[: k + 1].all() else 0
    b = k + int(np.argmin(pos[k:])) - 1 if not pos[k:].all() else n - 1
    return lo + a - 0.5, lo + b + 0.5


def _best_fit_components(mask: np.ndarray) -> np.ndarray:
    """Components of ``mask`` whose joint bounding box best covers the whole array (see
    :func:`box_region`); empty when ``mask`` is."""
    lab, n = ndi.label(mask, structure=_CROSS)
    if n == 0:
        return np.zeros_like(mask)
    objs = ndi.find_objects(lab)
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    boxes = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in objs])
    full = float(mask.size)

    cover = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / full
    first = int(np.lexsort((-areas, -cover))[0])  # best cover, ties: larger area
    chosen = [first]
    union = boxes[first].copy()
    while True:
        merged = np.concatenate(
            [np.minimum(boxes[:, :2], union[:2]), np.maximum(boxes[:, 2:], union[2:])], axis=1
        )
        gain = (merged[:, 2] - merged[:, 0]) * (merged[:, 3] - merged[:, 1]) / full - (
            (union[2] - union[0]) * (union[3] - union[1]) / full
        )
        gain[chosen] = 0.0
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        chosen.append(best)
        union = merged[best]
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.array(chosen) + 1] = True
    return keep[lab]


def check_clicks(points: Any, labels: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Clicks checked against a ``(Y, X)`` slice: points (K, 2) int64 ``(y, x)``, labels (K,)."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
    ny, nx = shape
    if pts.size and (pts.min() < 0 or np.any(pts[:, 0] >= ny) or np.any(pts[:, 1] >= nx)):
        raise ValueError(f"click outside the {ny}x{nx} slice")
    return pts, lab


def clip_box(box: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Inclusive box ``(y0, x0, y1, x1)`` clipped to a ``(Y, X)`` slice, corners sorted."""
    y0, x0, y1, x1 = (int(v) for v in box)
    ny, nx = shape
    y0, y1 = sorted((max(min(y0, ny - 1), 0), max(min(y1, ny - 1), 0)))
    x0, x1 = sorted((max(min(x0, nx - 1), 0), max(min(x1, nx - 1), 0)))
    return y0, x0, y1, x1
