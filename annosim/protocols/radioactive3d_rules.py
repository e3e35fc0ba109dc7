"""Rules of RadioActive's 3D cropped prompters and of its SAM-Med3D inferer (MIC-DKFZ/radioactive
@1796386; ``protocol-sources.md`` section 8, "3D prompters").

File abbreviations: IP = ``src/radioa/prompts/interactive_prompter.py``, P3 =
``prompts/prompt_3d.py``, PU = ``prompts/prompt_utils.py``, IM = ``utils/image.py``, S3 =
``model/SAMMed3D.py``, RS = ``utils/resample.py``, TR = ``utils/transforms.py``, NR =
``utils/nnunet/resample_torch.py``, ND = ``utils/nnunet/default_resampling.py``.

Arrays are in the source's **model space**: the file's voxel axes resampled to the model's
spacing (S3 L86-108, no reorientation). annosim passes RAS-ordered ``(i, j, k)`` arrays (the
voxel order of a file stored RAS, see the protocol module). The resampling is nnU-Net's torch
resampling the source calls (RS L11-46, NR L14-171), not torchio's:

* new shape ``int(round(n * s / t))`` per axis (ND L27-35);
* ``F.interpolate(mode='trilinear', align_corners=False)``: new voxel ``u`` reads old index
  ``max((u + 1/2) * n / n' - 1/2, 0)``, linear between its two neighbours, the last voxel
  repeated past the end; float32 axis by axis from the last one, with the fused multiply-adds
  of torch's CPU kernel (``fma`` for the source index and for ``x0 w0 + x1 w1``), so that labels
  interpolated to exactly 0.5 fall as there;
* where one spacing (old or new) is more than 3x the smallest (ND L15-71: one axis only), the two
  other axes linearly first, then that axis by ``nearest-exact`` (old ``floor((u + 1/2) * n / n')``);
* a label: the same interpolation of the 0/1 mask, then ``> 0.5`` after each step (NR L83-89,
  ``memefficient_seg_resampling``).
"""

from __future__ import annotations

import numpy as np

from annosim.protocols import radioactive_rules as rr

#: nnU-Net's anisotropy threshold (``configuration.py`` ANISO_THRESHOLD).
ANISO_THRESHOLD = 3.0
#: The SAM-Med3D inferer's percentile clip of the resampled volume (S3 L79-84).
CLIP_PERCENTILES = (0.5, 99.5)
#: The inferer's threshold on the upsampled logits (S3 L325).
LOGIT_THRESHOLD = 0.5


def model_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """ND L27-35 ``compute_new_shape``: ``int(round(s / t * n))`` per axis (Python's half-to-even).

    >>> model_shape((122, 101, 30), (3.0, 3.0, 3.0), (1.5, 1.5, 1.5))
    (244, 202, 60)
    """
    return tuple(int(round(float(s) / float(t) * int(n))) for n, s, t in zip(shape, spacing, target))


def separate_axis(spacing: tuple[float, ...], target: tuple[float, ...]) -> int | None:
    """ND L38-71 with ``force_separate_z=None``: the low-resolution axis of the old spacing when it
    is anisotropic (max / min > 3), else of the new one; ``None`` when neither is, or when two or
    three axes share the largest spacing."""
    for sp in (spacing, target):
        sp = np.asarray(sp, dtype=float)
        if sp.max() / sp.min() > ANISO_THRESHOLD:
            axes = np.where(sp.max() / sp == 1)[0]
            return int(axes[0]) if len(axes) == 1 else None
    return None


def _linear(a: np.ndarray, axis: int, n_new: int) -> np.ndarray:
    """One axis of torch's linear ``F.interpolate`` (``align_corners=False``), float32."""
    n = a.shape[axis]
    if n == n_new:
        return a
    scale = np.float32(n) / np.float32(n_new)
    d = (np.arange(n_new, dtype=np.float32) + np.float32(0.5)).astype(np.float64)
    # fused multiply-add (float64 product of float32 is exact, one rounding), as torch's build
    src = np.maximum((np.float64(scale) * d - 0.5).astype(np.float32), np.float32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    shape = [-1 if k == axis else 1 for k in range(a.ndim)]
    w1 = np.clip(src - lo.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    w0 = (np.float32(1) - w1).reshape(shape).astype(np.float64)
    x0, x1 = np.take(a, lo, axis=axis), np.take(a, hi, axis=axis)
    last = (x1 * w1.reshape(shape)).astype(np.float32).astype(np.float64)
    return (x0.astype(np.float64) * w0 + last).astype(np.float32)  # fma(x0, w0, x1 * w1)


def _nearest_exact(a: np.ndarray, axis: int, n_new: int) -> np.ndarray:
    """One axis of torch's ``nearest-exact``: old index ``min(floor((u + 1/2) * n / n'), n - 1)``."""
    n = a.shape[axis]
    if n == n_new:
        return a
    scale = np.float32(n) / np.float32(n_new)
    idx = np.minimum(np.floor((np.arange(n_new, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64), n - 1)
    return np.take(a, idx, axis=axis)


def resample(array: np.ndarray, spacing: tuple[float, ...], target: tuple[float, ...],
             shape: tuple[int, ...] | None = None, is_seg: bool = False) -> np.ndarray:
    """RS L11-46 / NR L100-171: a 3D array from ``spacing`` to ``target`` mm (to ``shape``, default
    :func:`model_shape`); float32 for an image, bool (``> 0.5``) for a label (``is_seg``)."""
    a = np.asarray(array, dtype=np.float32)
    shape = tuple(int(s) for s in (shape if shape is not None else model_shape(a.shape, spacing, target)))
    axis = separate_axis(spacing, target)
    inplane = [d for d in range(3) if d != axis]
    for d in reversed(inplane):  # torch nests the last axis innermost
        a = _linear(a, d, shape[d])
    if is_seg and any(a.shape[d] != array.shape[d] for d in inplane):
        a = (a > 0.5).astype(np.float32)
    if axis is not None:
        a = _nearest_exact(a, axis, shape[axis])
    return a > 0.5 if is_seg else a


def points_to_model(coords: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
                    target: tuple[float, ...]) -> np.ndarray:
    """S3 L110-116 with TR L283-314: case voxel ``(K, 3)`` -> model voxel. The source passes the
    *resampled* shape ``n'`` as the current shape, so the factor is ``(n'' - 1) / (n' - 1)`` with
    ``n''`` = :func:`model_shape` of ``n'`` (not ``(n' - 1) / (n - 1)``), rounded half-to-even; int.

    >>> points_to_model(np.array([[60, 50, 29]]), (122, 101, 30), (3.0,) * 3, (1.5,) * 3).tolist()
    [[120, 100, 58]]
    """
    new = np.array(model_shape(shape, spacing, target))
    again = np.array(model_shape(tuple(new), spacing, target))
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    return np.round(c * (again - 1) / (new - 1)).astype(np.int64)


def random_fg_voxel(g_sar: np.ndarray, seed: int = rr.SOURCE_SEED) -> np.ndarray:
    """P3 L26-47 with one click (IP L347-351): numpy reseeded, one truth voxel of the SAR array by
    ``choice(n_fg, 1, replace=False)`` over ``np.where`` order, then its coordinates reversed to
    ``(x, y, z)`` = RAS order; int ``(1, 3)``. ValueError on an empty truth (the source raises)."""
    fg = np.array(np.where(np.asarray(g_sar) == 1)).T
    if len(fg) == 0:
        raise ValueError("no foreground voxel (P3 L36-39)")
    pick = fg[np.random.RandomState(seed).choice(len(fg), size=1, replace=False)]
    return pick[:, ::-1].astype(np.int64)


def interpolation_line(g_sar: np.ndarray, n_slices: int = 5) -> np.ndarray:
    """IP L466-470 with PU L405-421: the point-interpolation line on ``min(n_slices, GT slices)``
    seed slices (:func:`radioactive_rules.interpolation_points`), reordered ``[2, 1, 0]`` to RAS
    order; int ``(m, 3)``."""
    n = min(int(n_slices), len(rr.gt_slices(g_sar)))
    return rr.interpolation_points(g_sar, n)[:, [2, 1, 0]].astype(np.int64)


def subset_to_box(coords: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """P3 L168-182: the points inside ``[c - size // 2, c + size // 2)`` (every axis) around their
    float centroid ``c``; order kept.

    >>> subset_to_box(np.array([[0, 0, 0], [0, 0, 3], [0, 0, 9]]), (8, 8, 8)).tolist()
    [[0, 0, 0], [0, 0, 3]]
    """
    c = np.asarray(coords)
    half = np.array(size) // 2
    centroid = np.mean(c, axis=0)
    inside = np.all(c >= centroid - half, axis=1) & np.all(c < centroid + half, axis=1)
    return c[inside]


def middle_point(coords: np.ndarray, n_points: int = 1) -> np.ndarray:
    """P3 L185-200: points sorted by the 3rd coordinate (``np.argsort``, numpy's default kind, as
    the source), then the ``unique(linspace(0, m - 1, n + 2, dtype=int)[1:-1])`` of them (one point:
    index ``(m - 1) // 2``). ValueError when there is none (the source's index error)."""
    c = np.asarray(coords)
    if len(c) == 0:
        raise ValueError("no interpolated point inside the box (P3 L168-200)")
    c = c[np.argsort(c[:, 2])]
    return c[np.unique(np.linspace(0, len(c) - 1, num=n_points + 2, dtype=int)[1:-1])]


def isolate(mask: np.ndarray, point: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """P3 L100-114: ``mask`` kept inside ``[max(p - size // 2, 0), min(p + size // 2, shape))``
    around ``point`` ``(3,)``, zero elsewhere; bool."""
    m = np.asarray(mask, dtype=bool)
    p, half = np.asarray(point, dtype=np.int64), np.array(size, dtype=np.int64) // 2
    lo, hi = np.maximum(p - half, 0), np.minimum(p + half, m.shape)
    out = np.zeros(m.shape, dtype=bool)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)) if np.all(hi > lo) else (slice(0, 0),) * 3
    out[sl] = m[sl]
    return out


def misclassified_voxel(pred: np.ndarray, gt: np.ndarray, seed: int = rr.SOURCE_SEED) -> tuple[np.ndarray, int] | None:
    """P3 L117-137: numpy reseeded (``if seed:``), one voxel of ``pred != gt`` by ``randint(n)``
    over ``np.where`` order; its label is the truth there. ``None`` where the source crashes
    (no misclassified voxel: ``randint(0)``). Returns ``((3,) int point, label)``."""
    wrong = np.vstack(np.where(np.asarray(pred, dtype=bool) != np.asarray(gt, dtype=bool))).T
    if len(wrong) == 0:
        return None
    rs = np.random.RandomState(seed) if seed else np.random.RandomState()
    p = wrong[rs.randint(len(wrong))].astype(np.int64)
    return p, int(np.asarray(gt)[tuple(p)])


def clip_percentiles(image: np.ndarray) -> np.ndarray:
    """S3 L79-84: the resampled volume clipped to its own 0.5 and 99.5 percentiles (``np.percentile``)."""
    lo, hi = np.percentile(image, CLIP_PERCENTILES)
    return np.clip(image, lo, hi).astype(np.float32)


#: FP voxels drawn by the 2dAlgo negative step's fallback (IP L516 ``negative_failed_choose_n_points``).
ALGO2D_FALLBACK_POINTS = 5


def algo2d_step(pred: np.ndarray, gt: np.ndarray, rng: rr.SourceRandom,
                n_points: int = 1) -> tuple[np.ndarray, int] | None:
    """IP L519-669 (``threeDCroppedFromCenterAnd2dAlgo...``) on the isolated bool model-space
    ``pred`` and ``gt``: negative step with probability ``binomial(1, |FP| / (|FN| + |FP|))``
    drawn from the source's global state ``rng.state`` with **no** FN = 0 / FP = 0 guards (IP
    L519-526); negative: the 2D contour scribble on the axis-1 plane with the most FP
    (:func:`radioactive_rules.negative_step`, its fallback drawing 5 FP voxels, numpy reseeded,
    labelled 1 as P3 L26-47 labels them); positive: the 2D positive step (largest FN component,
    one centroid point per axis-0 slice, IP L528-549). Then ``n_points`` (1) of the step's points
    by ``choice(range(n), n_points, replace=False)`` from the global state (IP L657-662); model
    order, no axis swap. Returns ``((3,) int point, label)`` of the first kept point, or ``None``
    where the source fails (no error left: its ``0 / 0`` gives ``binomial(1, nan)``, which raises).
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    fn, fp = gt & ~pred, pred & ~gt
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn + n_fp == 0:
        return None
    if rng.state.binomial(1, n_fp / (n_fn + n_fp)):
        coords, labels = rr.negative_step(gt, pred, fp, rng, fallback=ALGO2D_FALLBACK_POINTS)
    else:
        coords, labels = rr.positive_step(fn)
    keep = rng.state.choice(len(coords), min(int(n_points), len(coords)), replace=False)
    return np.asarray(coords[keep[0]], dtype=np.int64), int(labels[keep[0]])
