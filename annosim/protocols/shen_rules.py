"""Pure rules of Shen et al. 2024 (Chuyun-Shen/SAM_2_Medical_3D @8a2b771; protocol-sources.md
section 2): the video slab, the conditioning frame, the deepest-point click and the frame order
the source stacks for its metrics. Slices are volume axis 0; masks are bool.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: The running best a component's maximal EDT must strictly exceed (C L10-45): depth <= 1.42
#: (so <= sqrt(2)) never gives a click.
DEPTH_FLOOR = 1.42


def select_video(gt: np.ndarray, threshold: int = 256, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frames of the source's video (V L52-68): ``range(min_q, max_q)`` over the slices of bool
    ``gt`` ``(Z, Y, X)`` with more than ``threshold`` pixels, so the last qualifying slice is
    dropped and every slice in between kept. ``threshold == 0``: ``min - r1`` to ``max + r2 - 1``
    with ``r1, r2`` drawn in {5..9} from ``rng`` (the source's exclusive upper bound), clipped
    to the volume. Returns increasing int64 indices (empty when none qualifies).

    >>> g = np.zeros((6, 20, 20), bool); g[1, :13, :20] = g[2, :13, :20] = g[4, :13, :20] = True
    >>> select_video(g).tolist()
    [1, 2, 3]
    """
    counts = np.asarray(gt, dtype=bool).reshape(gt.shape[0], -1).sum(axis=1)
    q = np.flatnonzero(counts > threshold)
    if q.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(q[0]), int(q[-1])
    if threshold == 0:
        if rng is None:
            raise ValueError("threshold 0 draws margins: a generator is required")
        r1, r2 = (int(r) for r in rng.integers(5, 10, size=2))
        lo, hi = max(lo - r1, 0), min(hi + r2, gt.shape[0])
    return np.arange(lo, hi, dtype=np.int64)


def conditioning_frame(video: np.ndarray) -> int:
    """The slice of frame ``N // 2`` of the video (M L56; C L97): the upper middle when N is even.

    >>> conditioning_frame(np.array([3, 4, 5, 6]))
    5
    """
    return int(video[len(video) // 2])


def _deepest(region: np.ndarray) -> tuple[float, tuple[int, int] | None]:
    """Depth and (row, col) of the best component of bool ``region`` (Y, X): 4-connected
    components of the 1-px zero-padded region, each one's exact EDT on its own, the first whose
    maximum strictly exceeds the running best (starting at :data:`DEPTH_FLOOR`), its first
    raster-order argmax."""
    padded = np.pad(region, 1)
    lab, n = ndimage.label(padded)
    best, point = DEPTH_FLOOR, None
    for i in range(1, n + 1):
        edt = ndimage.distance_transform_edt(lab == i)
        m = float(edt.max())
        if m > best:
            flat = int(np.argmax(edt))
            r, c = divmod(flat, padded.shape[1])
            best, point = m, (r - 1, c - 1)
    return best, point


def deepest_click(gt2d: np.ndarray, pred2d: np.ndarray) -> tuple[int, int, bool] | None:
    """The source's click on one frame (C L10-45): ``(y, x, positive)`` at the deepest point of
    the false negatives ``gt & ~pred`` or false positives ``~gt & pred`` (see :func:`_deepest`);
    positive when depth(FN) >= depth(FP) (a tie goes positive); ``None`` when no component is
    deeper than 1.42.

    >>> g = np.zeros((7, 7), bool); g[1:6, 1:6] = True
    >>> deepest_click(g, np.zeros_like(g))
    (3, 3, True)
    >>> g[:] = False; g[2:4, :] = True   # 2 rows thick: depth 1 <= 1.42
    >>> deepest_click(g, np.zeros_like(g)) is None
    True
    """
    gt2d, pred2d = np.asarray(gt2d, bool), np.asarray(pred2d, bool)
    dfn, pfn = _deepest(gt2d & ~pred2d)
    dfp, pfp = _deepest(~gt2d & pred2d)
    if pfn is None and pfp is None:
        return None
    if pfp is None or (pfn is not None and dfn >= dfp):
        return pfn[0], pfn[1], True  # type: ignore[index]
    return pfp[0], pfp[1], False


def source_order(video: np.ndarray) -> np.ndarray:
    """The frames in the order the source stacks them for its metrics (M L77-78; C L164-165):
    ``[f, f+1, ..., last, f-1, ..., first]`` with ``f`` the conditioning frame.

    >>> source_order(np.array([10, 11, 12, 13, 14])).tolist()
    [12, 13, 14, 11, 10]
    """
    video = np.asarray(video, dtype=np.int64)
    k = len(video) // 2
    return np.concatenate([video[k:], video[:k][::-1]])
