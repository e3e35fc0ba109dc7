"""SAM-Med3D's click rules and crop scores (uni-medical/SAM-Med3D; ``protocol-sources.md``
section 7): IU = ``utils/infer_utils.py`` @f3de1fa, CM = ``utils/click_method.py`` and VA =
``validation.py`` @84079e6.

Masks are bool RAS-ordered patches ``(i, j, k)`` (the source's tensor order), so that
``np.argwhere`` lists voxels in the order of the source's ``torch.argwhere``. Every draw is
``rs.randint(n)`` on a ``numpy.random.RandomState``, the call the source makes on numpy's seeded
global generator. A click is ``(point, positive)`` with ``point`` an ``(i, j, k)`` tuple.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Click = tuple[tuple[int, int, int], bool]


def _errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    return gt & ~pred, pred & ~gt


def random_click(pred: np.ndarray, gt: np.ndarray, rs: np.random.RandomState, fallback: bool = True) -> Click | None:
    """IU L39-54 (7A 'random') and CM L93-123 (7B from click 3): a voxel of FN ∪ FP drawn with
    ``rs.randint`` over its raster order, positive iff it is a FN voxel. Without error: a
    positive draw over the truth's voxels (``fallback``, 7A), else ``None`` (7B's
    ``randint(0)`` raises there)."""
    fn, fp = _errors(pred, gt)
    err = fn | fp
    if not err.any():
        if not fallback:
            return None
        cand = np.argwhere(np.asarray(gt, dtype=bool))
        if cand.shape[0] == 0:
            raise ValueError("random click: the truth is empty")
        p = cand[rs.randint(len(cand))]
        return (int(p[0]), int(p[1]), int(p[2])), True
    cand = np.argwhere(err)
    p = tuple(int(v) for v in cand[rs.randint(len(cand))])
    return p, bool(fn[p])  # type: ignore[return-value]


def padded_edt(mask: np.ndarray) -> np.ndarray:
    """Exact EDT (voxel units) of a bool mask zero-padded by one voxel, cropped back (the
    source's ``F.pad(..., 1)`` then ``edt.edt(black_border=True)``): the distance of each mask
    voxel to the nearest background voxel, the outside counting as background."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    if not m.any():
        return np.zeros(np.asarray(mask).shape)
    return ndimage.distance_transform_edt(m)[1:-1, 1:-1, 1:-1]


def ritm_click(pred: np.ndarray, gt: np.ndarray, rs: np.random.RandomState, fallback: bool = True) -> Click | None:
    """IU L56-85 (7A 'ritm') and CM L52-89 (7B clicks 1-2): EDTs of FN and FP
    (:func:`padded_edt`); positive map iff max FN distance > max FP distance; candidates are its
    voxels deeper than half the larger maximum, one drawn with ``rs.randint``; positive iff a FN
    voxel. No candidate: the patch centre ``shape // 2`` as a negative click (``fallback``, 7A),
    else ``None`` (7B crashes there)."""
    fn, fp = _errors(pred, gt)
    dfn, dfp = padded_edt(fn), padded_edt(fp)
    mfn, mfp = float(dfn.max()), float(dfp.max())
    positive = mfn > mfp
    dt = dfn if positive else dfp
    cand = np.argwhere(dt > max(mfn, mfp) / 2.0)
    if cand.shape[0] == 0:
        if not fallback:
            return None
        shape = np.asarray(gt).shape
        return (shape[0] // 2, shape[1] // 2, shape[2] // 2), False
    p = tuple(int(v) for v in cand[rs.randint(len(cand))])
    return p, bool(fn[p])  # type: ignore[return-value]


def crop_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """VA L67-76 rounded as VA L283: ``2|P∧G| / (|P|+|G|)`` on the crop, nan when both are empty,
    ``np.round(., 4)``."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    total = int(p.sum()) + int(g.sum())
    if total == 0:
        return float("nan")
    return float(np.round(2 * int((p & g).sum()) / total, 4))


def crop_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """VA L61-65 rounded as VA L282: ``|P∧G| / |P∨G|`` on the crop (nan when both are empty:
    the source's 0/0), ``np.round(., 4)``."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    union = int((p | g).sum())
    if union == 0:
        return float("nan")
    return float(np.round(int((p & g).sum()) / union, 4))
