"""Prompt rules of RadioActive (MIC-DKFZ/radioactive @1796386; ``protocol-sources.md`` section 8):
the 2D prompters' seed slices, points and boxes, and the refinement step.

File abbreviations as in the reference: PU = ``src/radioa/prompts/prompt_utils.py``, IP =
``prompts/interactive_prompter.py``, IA = ``utils/interactivity.py``, P3 = ``prompts/prompt_3d.py``.

Every function works on arrays in the source's model space, **SAR** (axis 0 superior, axis 1
anterior, axis 2 right): :func:`to_sar` turns annosim's canonical ``(Z, Y, X)`` = (S, P, L) array
into it (and back). Coordinates are integer ``(z, y, x)`` in that array. The same libraries as
the source do the computations whose ties they decide (skimage's ``label`` and
``find_contours``, scipy's ``cKDTree`` and ``interp1d``, numpy's ``argsort``), so ties go
where the source's go. Random draws come from the :class:`SourceRandom` the caller passes, which
stands for the source's global numpy state and Python ``random`` module.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.interpolate import interp1d
from scipy.spatial import cKDTree
from skimage.measure import find_contours, label
from skimage.morphology import disk

#: The runner's seed (ER L96: ``seed=1``; the config's 11121 is ignored).
SOURCE_SEED = 1
#: Random FP voxels of the negative step's fallback (IP L188).
FALLBACK_POINTS = 3


@dataclass
class SourceRandom:
    """The source's global numpy state: seeded when the prompter is built (PR L61-63) and
    reseeded by the helpers that call ``np.random.seed(seed)`` (:meth:`reseed`)."""

    seed: int = SOURCE_SEED
    state: np.random.RandomState = field(init=False)

    def __post_init__(self) -> None:
        self.reseed()

    def reseed(self) -> np.random.RandomState:
        """``np.random.seed(seed)``: a fresh state, returned."""
        self.state = np.random.RandomState(self.seed)
        return self.state


def to_sar(a: np.ndarray) -> np.ndarray:
    """Canonical ``(S, P, L)`` array -> SAR (axes 1 and 2 reversed); its own inverse."""
    return np.asarray(a)[:, ::-1, ::-1]


def points_from_sar(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """SAR ``(K, 3)`` ``(z, y, x)`` -> canonical ``(z, Y-1-y, X-1-x)`` for a ``(Z, Y, X)`` shape."""
    c = np.asarray(coords, dtype=np.int64).reshape(-1, 3).copy()
    c[:, 1] = shape[1] - 1 - c[:, 1]
    c[:, 2] = shape[2] - 1 - c[:, 2]
    return c


def box_from_sar(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """SAR box ``(x0, y0, x1, y1)`` with exclusive max (the source's) -> canonical inclusive
    ``(y0, x0, y1, x1)`` (annosim's box)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    ny, nx = shape[1], shape[2]
    return ny - y1, nx - x1, ny - 1 - y0, nx - 1 - x0


def gt_slices(gt: np.ndarray) -> np.ndarray:
    """Increasing indices of the slices of bool ``(Z, Y, X)`` ``gt`` holding foreground."""
    return np.where(np.any(gt, axis=(1, 2)))[0]


def snap_slices(proposed: np.ndarray, fg: np.ndarray) -> list[int]:
    """PU L39-52: each proposed slice, or the foreground slice nearest it (first argmin: the
    lower one on a tie).

    >>> snap_slices(np.array([0, 5, 8]), np.array([0, 1, 2, 10, 11]))
    [0, 2, 10]
    """
    out = []
    for s in proposed:
        out.append(int(s) if s in fg else int(fg[np.argmin(np.abs(fg - s))]))
    return out


def seed_slices(gt: np.ndarray, n: int) -> list[int]:
    """PU L339-342: ``linspace(z_min, z_max, n, dtype=int)`` snapped to foreground slices
    (duplicates kept).

    >>> g = np.zeros((12, 2, 2), bool); g[[0, 1, 2, 10, 11], 0, 0] = True
    >>> seed_slices(g, 5)
    [0, 2, 2, 10, 11]
    """
    fg = gt_slices(gt)
    return snap_slices(np.linspace(fg.min(), fg.max(), num=n, dtype=int), fg)


def largest_cc(mask: np.ndarray) -> np.ndarray:
    """PU L287-301 with n = 1: skimage ``label`` (full connectivity) and the last of
    ``np.argsort`` of the component sizes; bool, same shape. ValueError when empty."""
    labels = label(np.asarray(mask).astype(np.uint8))
    if labels.max() == 0:
        raise ValueError("empty mask: no connected component")
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argsort(sizes)[-1] + 1)


def nearest_fg(point: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """PU L256-277: the foreground pixel of bool ``(Y, X)`` ``mask`` nearest ``point`` by
    scipy's ``cKDTree`` over ``np.where`` order (its own tie order)."""
    fg = np.column_stack(np.where(np.asarray(mask) == 1))
    _, index = cKDTree(fg).query([np.asarray(point, dtype=float)], k=1)
    y, x = fg[index[0]]
    return int(y), int(x)


def bbox_centre_point(mask2d: np.ndarray) -> tuple[int, int]:
    """PU L346-351 and L455-465: the largest component's inclusive bounding box, the mean of its
    min and max corners rounded half-to-even (``np.round``), moved to the nearest foreground
    pixel of the component.

    >>> m = np.zeros((6, 6), bool); m[1:5, 1] = True; m[1, 1:5] = True   # an L
    >>> bbox_centre_point(m)   # centre (2.5, 2.5) -> (2, 2) -> nearest of the L
    (1, 2)
    """
    cc = largest_cc(mask2d)
    rows, cols = np.where(cc.any(axis=1))[0], np.where(cc.any(axis=0))[0]
    centre = np.vstack([[rows[0], cols[0]], [rows[-1], cols[-1]]]).mean(axis=0).round()
    return nearest_fg(centre, cc)


def centroid_point(mask2d: np.ndarray) -> tuple[int, int]:
    """PU L319-331: the largest component's centroid (mean index, ``np.round``) moved to its
    nearest foreground pixel."""
    cc = largest_cc(mask2d)
    centre = np.mean(np.where(cc), axis=1).round().astype(int)
    return nearest_fg(centre, cc)


def interpolate_points(points: np.ndarray) -> np.ndarray:
    """PU L357-384 (linear): ``(n, 3)`` ``(z, y, x)`` seeds -> y and x by scipy's ``interp1d`` at
    every integer z from the lowest to the highest seed, rounded half-to-even; float ``(m, 3)``."""
    p = np.asarray(points)
    p = p[p[:, 0].argsort()]
    z, y, x = p[:, 0], p[:, 1], p[:, 2]
    z_new = np.arange(z.min(), z.max() + 1)
    return np.column_stack((z_new, interp1d(z, y)(z_new), interp1d(z, x)(z_new))).round()


def interpolation_points(gt: np.ndarray, n: int) -> np.ndarray:
    """PU L334-354, L405-421: seeds on :func:`seed_slices` at :func:`bbox_centre_point`, then
    :func:`interpolate_points`; int ``(m, 3)`` ``(z, y, x)``, all positive (even where an
    interpolated point falls outside the object)."""
    seeds = np.array([[z, *bbox_centre_point(gt[z])] for z in seed_slices(gt, n)], dtype=int)
    return interpolate_points(seeds).astype(int)


def slice_box(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """PU L226-238: ``(x_min, y_min, x_max + 1, y_max + 1)`` of the whole slice's truth."""
    rows, cols = np.where(np.any(mask2d, axis=1))[0], np.where(np.any(mask2d, axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def seed_boxes(gt: np.ndarray, n: int) -> dict[int, tuple[int, int, int, int]]:
    """PU L468-486: a :func:`slice_box` on each of :func:`seed_slices` (n > 1) or on the median
    foreground slice (``int(np.median)``, snapped; n = 1); a slice picked twice gives one box."""
    fg = gt_slices(gt)
    if n > 1:
        picks = seed_slices(gt, n)
    else:
        m = int(np.median(fg))
        picks = [m if m in fg else int(fg[np.argmin(np.abs(m - fg))])]
    return {z: slice_box(gt[z]) for z in picks}


def interpolate_boxes(boxes: dict[int, tuple[int, int, int, int]]) -> dict[int, tuple[int, int, int, int]]:
    """PU L489-506: the min corners ``(x0, y0)`` and the (exclusive) max corners ``(x1, y1)``
    interpolated separately with :func:`interpolate_points` for every z between the seeds.

    >>> interpolate_boxes({0: (0, 0, 4, 4), 4: (2, 2, 9, 9)})[1]
    (0, 0, 5, 5)
    """
    mins = np.array([(z, b[0], b[1]) for z, b in boxes.items()])
    maxs = np.array([(z, b[2], b[3]) for z, b in boxes.items()])
    rows = np.concatenate((interpolate_points(mins), interpolate_points(maxs)[:, 1:]), axis=1).astype(int)
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


def median_seed_slice(gt: np.ndarray) -> int:
    """PU L510-516: ``np.median`` of the foreground slices cast to int, snapped (lower on a tie)."""
    fg = gt_slices(gt)
    m = int(np.median(fg).astype(int))
    return m if m in fg else int(fg[np.argmin(np.abs(m - fg))])


def random_slice_points(mask2d: np.ndarray, n: int, rs: np.random.RandomState) -> np.ndarray:
    """PU L428-452: ``min(n, fg)`` foreground pixels of ``mask2d`` drawn without replacement by
    ``rs.choice`` over ``np.where`` order; int ``(k, 2)`` ``(y, x)``."""
    fg = np.array(np.where(mask2d)).T
    return fg[rs.choice(len(fg), size=min(n, len(fg)), replace=False)]


def one_point_per_slice(gt: np.ndarray, rng: SourceRandom) -> np.ndarray:
    """PU L80-120 with one click: numpy reseeded once, then per foreground slice one pixel by
    ``choice(n_fg, 1, replace=False)``; int ``(K, 3)`` ``(z, y, x)``."""
    rs = rng.reseed()
    out = []
    for z in gt_slices(gt):
        fg = np.array(np.where(gt[z])).T
        out.append([z, *fg[rs.choice(len(fg), size=1, replace=False)[0]]])
    return np.array(out, dtype=np.int64).reshape(-1, 3)


# -- refinement ----------------------------------------------------------------------------------
def negative_flag(fn: np.ndarray, fp: np.ndarray, rs: np.random.RandomState) -> bool:
    """IP L190-203: negative step when FN is empty, positive when FP is empty, else
    ``binomial(1, |FP| / (|FN| + |FP|))`` (one draw from ``rs``)."""
    n_fn, n_fp = int(np.sum(fn)), int(np.sum(fp))
    if n_fn == 0:
        return True
    if n_fp == 0:
        return False
    return bool(rs.binomial(1, n_fp / (n_fn + n_fp)))


def max_fp_plane(fp: np.ndarray) -> int:
    """IP L226-231: the axis-1 plane with the most FP voxels (first argmax)."""
    return int(np.argmax(np.sum(fp, axis=(0, 2))))


def contour_scribble(
    slice_gt: np.ndarray, slice_seg: np.ndarray, contour_distance: int = 2,
    disk_size_range: tuple[int, int] = (0, 0), scribble_length: float = 0.6, seed: int = SOURCE_SEED,
) -> np.ndarray | None:
    """IA L15-64 on one plane: Python ``random`` reseeded; the truth dilated by
    ``disk(contour_distance + randint(range))``; skimage ``find_contours`` at 0.5, all contours
    concatenated; ``L = round(0.6 * n)`` consecutive points centred (``pos - int(L / 2)``) on a
    contour point drawn by ``random.choices`` among those whose rounded position is predicted
    foreground, wrapping around the list; rasterised; its largest 8-connected piece (first of
    equal size). ``None`` where the source gives up (no dilated truth, no contour, no contour
    point on the prediction). Bool, the plane's shape."""
    r = random.Random(seed)
    radius = r.randint(contour_distance + disk_size_range[0], contour_distance + disk_size_range[1])
    dilated = ndimage.binary_dilation(np.asarray(slice_gt, dtype=bool), structure=disk(radius).astype(bool))
    if not np.any(np.nonzero(dilated)):
        return None
    contours = find_contours(dilated)
    if len(contours) == 0:
        return None
    contour = np.concatenate(contours, axis=0)
    length = round(len(contour) * scribble_length)
    rounded = np.round(contour).astype(int)
    on_pred = np.where(np.asarray(slice_seg)[rounded[:, 0], rounded[:, 1]] == 1)[0]
    if len(on_pred) == 0:
        return None
    pos = r.choices(on_pred)[0]
    picked = np.take(contour, range(pos - int(length / 2), pos + length - int(length / 2)), axis=0, mode="wrap")
    picked = np.round(picked).astype(np.int32)
    scribble = np.zeros(np.shape(slice_gt), dtype=np.uint8)
    scribble[picked[:, 0], picked[:, 1]] = 1
    comps = label(scribble)
    labels, counts = np.unique(comps, return_counts=True)
    counts, labels = counts[labels > 0], labels[labels > 0]
    return comps == labels[np.argmax(counts)]


def negative_step(
    gt: np.ndarray, pred: np.ndarray, fp: np.ndarray, rng: SourceRandom, fallback: int = FALLBACK_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """IP L233-294: on the :func:`max_fp_plane`, a full-height line at the column with the most
    predicted pixels when the plane holds no truth, else a :func:`contour_scribble`; its pixels
    that the plane's prediction holds are the negative points ``(z, plane, x)``. Fallback (no
    scribble, or none of it predicted): P3 L26-47 on the FP mask, numpy reseeded, ``fallback`` (3) voxels by
    ``choice(replace=False)`` over ``np.where`` order, **labelled 1** as that function labels
    them. Returns int ``(K, 3)`` ``(z, y, x)`` and labels ``(K,)``."""
    plane = max_fp_plane(fp)
    slice_gt, slice_seg = gt[:, plane], pred[:, plane]
    if not np.any(slice_gt):
        scribble = np.zeros(slice_seg.shape, dtype=bool)
        scribble[:, int(np.argmax(np.sum(slice_seg, axis=0)))] = True
    else:
        scribble = contour_scribble(slice_gt, slice_seg, seed=rng.seed)
    if scribble is not None:
        coords = np.array(np.where(scribble)).T
        coords = coords[slice_seg[tuple(coords.T)].astype(bool)]
        if len(coords):
            out = np.column_stack([coords[:, 0], np.full(len(coords), plane), coords[:, 1]])
            return out.astype(np.int64), np.zeros(len(out), dtype=np.int64)
    rs = rng.reseed()
    vox = np.array(np.where(fp == 1)).T
    picks = vox[rs.choice(len(vox), size=min(len(vox), fallback), replace=False)]
    return picks.astype(np.int64), np.ones(len(picks), dtype=np.int64)


def positive_step(fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IP L205-224: the largest 3D FN component (full connectivity); on every axial slice it
    touches, :func:`centroid_point` of that slice of the component. Int ``(K, 3)``, labels 1."""
    cc = largest_cc(fn)
    pts = [[z, *centroid_point(cc[z])] for z in gt_slices(cc)]
    out = np.array(pts, dtype=np.int64).reshape(-1, 3)
    return out, np.ones(len(out), dtype=np.int64)


def refinement_step(
    gt: np.ndarray, pred: np.ndarray, rng: SourceRandom
) -> tuple[np.ndarray, np.ndarray] | None:
    """IP L296-329 on bool SAR ``gt`` and ``pred``: ``None`` on a perfect prediction, else the
    negative or positive step chosen by :func:`negative_flag` (``rng.state``)."""
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if np.array_equal(pred, gt):
        return None
    fn, fp = ~pred & gt, pred & ~gt
    if negative_flag(fn, fp, rng.state):
        return negative_step(gt, pred, fp, rng)
    return positive_step(fn)
