"""Native metrics: each protocol's source's own metric, computed as that source computes it on
the frames it scores (README, Metrics), written in its own rounds.csv column beside annosim's
common metrics.

A protocol lists the entries it reports in ``native_metrics`` (names below); the run's
:class:`~annosim.metrics.registry.MetricSet` then holds them and fills them on that protocol's
rows only (nan on the others). Adding a native metric is one entry here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from annosim.metrics.entry import Metric, RoundData
from annosim.metrics.surfel import surfel_nsd
from annosim.protocols.sammed3d_rules import crop_dice, crop_iou
from annosim.protocols.shen_rules import source_order


def _iou(d: RoundData) -> float:
    """Intersection over union ``|P∧G| / |P∨G|`` over the scored frames (1 when both are empty)."""
    sp, sg, si = d.scored_counts
    union = int(sp.sum() + sg.sum() - si.sum())
    return 1.0 if union == 0 else int(si.sum()) / union


def _shen_stack(d: RoundData) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and truth of the scored frames (the Shen video) stacked in the source's order
    ``[f, ..., last, f-1, ..., first]`` (:func:`~annosim.protocols.shen_rules.source_order`)."""
    video = np.flatnonzero(d.scored) if d.scored is not None else np.arange(d.pred.shape[0])
    order = source_order(video)
    return d.pred[order], d.gt[order]


def _shen_dice(d: RoundData) -> float:
    """MONAI ``DiceHelper`` on one channel (Shen M L77-100): ``2|P∧G| / (|P|+|G|)`` over the
    video, nan when the truth is empty."""
    sp, sg, si = d.scored_counts
    g = int(sg.sum())
    return float("nan") if g == 0 else 2.0 * int(si.sum()) / (int(sp.sum()) + g)


def _edges(mask: np.ndarray) -> np.ndarray:
    """``mask XOR binary_erosion(mask)`` with scipy's default 6-connected cross (MONAI
    ``get_mask_edges``)."""
    return mask ^ ndimage.binary_erosion(mask)


def _shen_nsd(d: RoundData) -> float:
    """MONAI ``compute_surface_dice`` at 1 voxel, voxel units, on the video stacked in the
    source's permuted order (Shen M L77-100): (pred edges within 1 of GT edges + GT edges within
    1 of pred edges) / all edges; 0 when one mask is empty, nan when both are."""
    p, g = _shen_stack(d)
    union = p | g
    if not union.any():
        return float("nan")
    if not p.any() or not g.any():
        return 0.0
    lo = np.argwhere(union).min(axis=0)
    hi = np.argwhere(union).max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    ep, eg = (np.pad(m[box], 1) for m in (p, g))
    ep, eg = _edges(ep), _edges(eg)
    d_pg = ndimage.distance_transform_edt(~eg)[ep]
    d_gp = ndimage.distance_transform_edt(~ep)[eg]
    return float(((d_pg <= 1).sum() + (d_gp <= 1).sum()) / (d_pg.size + d_gp.size))


def _frame_ious(d: RoundData) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame IoU and weight on the scored frames where the truth is non-empty (Dong)."""
    sp, sg, si = d.scored_counts
    keep = sg > 0
    w = np.ones(sg.shape) if d.frame_weights is None else d.frame_weights
    return si[keep] / (sp + sg - si)[keep], w[keep]


def _dong_iou(d: RoundData) -> float:
    """Dong 2024 (eval_sam2_3d.py): mean per-frame IoU over frames with truth (empty-truth
    frames score -1 there and are ignored), every frame once; nan when none."""
    iou, _ = _frame_ious(d)
    return float(iou.mean()) if iou.size else float("nan")


def _dong_iou_weighted(d: RoundData) -> float:
    """Dong 2024 as its code pools it: the global list extended with itself weights each frame
    2x, or 4x up to the prompt frame and 2x after it when bidirectional (the frame weights the
    protocol gives)."""
    iou, w = _frame_ious(d)
    return float((iou * w).sum() / w.sum()) if iou.size else float("nan")


def _zhu_pair(d: RoundData) -> tuple[float, float]:
    """Zhu 2024 (func_3d/utils.py): mean over the scored frames, empty-truth frames included, of
    IoU = (I + 1e-6) / (U + 1e-6) and Dice = (2I + 1e-4) / (|P| + |G| + 1e-4). The source
    averages five logit thresholds; on a binary mask all five give the same value."""
    sp, sg, si = d.counts
    frames = np.arange(sp.size) if d.scored is None else np.flatnonzero(d.scored)
    sp, sg, si = sp[frames], sg[frames], si[frames]
    iou = (si + 1e-6) / (sp + sg - si + 1e-6)
    dice = (2 * si + 1e-4) / (sp + sg + 1e-4)
    return float(dice.mean()), float(iou.mean())


def _ma_empty(d: RoundData) -> float | None:
    """Ma's wrapper (compute_metrics_flare22.py M L35-38, L53-56): 1 when truth and prediction
    are both empty, 0 when only the truth is; None otherwise (the metric is computed)."""
    if not d.gt_any:
        return 0.0 if d.pred_any else 1.0
    return None


def _ma_dsc(d: RoundData) -> float:
    """Ma et al. 2024 (MedSAM2 branch, M L27-42 with SurfaceDice.py L481-498): per label on the
    whole volume, ``2|P∧G| / (|P|+|G|)``, rounded to 4 decimals as the source writes it (M L131)."""
    fixed = _ma_empty(d)
    if fixed is not None:
        return fixed
    sp, sg, si = d.counts
    return float(np.round(2.0 * int(si.sum()) / int(sp.sum() + sg.sum()), 4))


#: NSD tolerance of Ma's metric script (M L45), whatever ``--nsd-tolerance`` says.
MA_NSD_TOLERANCE_MM = 2.0


def _ma_nsd(d: RoundData) -> float:
    """Ma et al. 2024 (M L45-63): the DeepMind surfel-area NSD at 2 mm with the case's spacing
    (:mod:`annosim.metrics.surfel`), per label on the whole volume, rounded to 4 decimals (M L133);
    0 when the prediction is empty."""
    fixed = _ma_empty(d)
    if fixed is not None:
        return fixed
    return float(np.round(surfel_nsd(d.gt, d.pred, d.spacing, MA_NSD_TOLERANCE_MM), 4))


def _sammed3d_empty(d: RoundData) -> float | None:
    """SAM-Med3D MU L11-136's empty cases: both empty -> nan, truth empty only -> 0."""
    if not d.gt_any:
        return float("nan") if not d.pred_any else 0.0
    return None


def _sammed3d_dsc(d: RoundData) -> float:
    """SAM-Med3D 7A DSC on the case grid: ``2|P∧G| / (|P|+|G|)`` with :func:`_sammed3d_empty`."""
    empty = _sammed3d_empty(d)
    if empty is not None:
        return empty
    sp, sg, si = d.counts
    return 2.0 * int(si.sum()) / (int(sp.sum()) + int(sg.sum()))


#: SAM-Med3D's NSD tolerance in mm (MU: ``compute_surface_dice_at_tolerance(..., 1.0)``).
SAMMED3D_NSD_MM = 1.0


def _sammed3d_nsd(d: RoundData) -> float:
    """SAM-Med3D 7A NSD at 1 mm on the case grid: DeepMind's surfel-area NSD (MU calls
    ``surface_distance.compute_surface_dice_at_tolerance``) with :func:`_sammed3d_empty`; a
    prediction empty against a truth -> 0."""
    empty = _sammed3d_empty(d)
    if empty is not None:
        return empty
    return surfel_nsd(d.gt, d.pred, d.spacing, SAMMED3D_NSD_MM)


#: NSD tolerance of the CVPR 2025 challenge's scoring (CVPR25_iter_eval.py I, SurfaceDice.py S).
CVPR25_NSD_MM = 2.0


def _cvpr25_nsd(d: RoundData) -> float:
    """CVPR 2025 challenge NSD of one round (I with S L280-478): DeepMind's surfel-area NSD at
    2 mm with the case's spacing; 0 when one mask is empty. The challenge's gate (0 in a round
    whose case-mean DSC is <= 0.2) is applied over the case by the object-level metrics."""
    if not (d.gt_any and d.pred_any):
        return 0.0 if d.gt_any or d.pred_any else float("nan")
    return surfel_nsd(d.gt, d.pred, d.spacing, CVPR25_NSD_MM)


def _crop(fn):  # type: ignore[no-untyped-def]
    def compute(d: RoundData) -> float:
        """nan on a row without a patch (not a patch protocol)."""
        return float("nan") if d.patch is None else fn(*d.patch)
    return compute


#: Every native metric, in column order.
NATIVE: tuple[Metric, ...] = (
    Metric("ma_dsc", "ma_dsc", _ma_dsc, label="DSC (Ma)",
           source="Ma et al. 2024 (MedSAM2 metrics/compute_metrics_flare22.py)", native=True),
    Metric("ma_nsd", "ma_nsd", _ma_nsd, needs_spacing=True, surface=True, label="NSD@2mm (Ma, surfel)",
           source="Ma et al. 2024 (MedSAM2 metrics/SurfaceDice.py, DeepMind surfel NSD, 2 mm)", native=True),
    Metric("iou", "iou", _iou, summary="nanmean", label="IoU", source="RITM (Sofiiuk et al. 2022)",
           native=True),
    Metric("shen_dice", "shen_dice", _shen_dice, summary="nanmean", label="Shen Dice",
           source="Shen et al. 2024 (MONAI Dice on the video)", native=True),
    Metric("shen_nsd", "shen_nsd", _shen_nsd, surface=True, summary="nanmean", label="Shen NSD@1vox",
           source="Shen et al. 2024 (MONAI NSD, 1 voxel, source frame order)", native=True),
    Metric("dong_iou_weighted", "dong_iou_weighted", _dong_iou_weighted, summary="nanmean",
           label="IoU (Dong, weighted)", source="Dong et al. 2024 (eval_sam2_3d.py)", native=True),
    Metric("dong_iou", "dong_iou", _dong_iou, summary="nanmean", label="IoU (Dong)",
           source="Dong et al. 2024 (eval_sam2_3d.py, unweighted)", native=True),
    Metric("zhu_dice", "zhu_dice", lambda d: _zhu_pair(d)[0], label="Dice (Zhu)",
           source="Zhu et al. 2024 (Medical-SAM2 func_3d)", native=True),
    Metric("zhu_iou", "zhu_iou", lambda d: _zhu_pair(d)[1], label="IoU (Zhu)",
           source="Zhu et al. 2024 (Medical-SAM2 func_3d)", native=True),
    Metric("sammed3d_dsc", "sammed3d_dsc", _sammed3d_dsc, summary="nanmean", label="DSC (SAM-Med3D)",
           source="SAM-Med3D (utils/metric_utils.py)", native=True),
    Metric("sammed3d_nsd", "sammed3d_nsd", _sammed3d_nsd, needs_spacing=True, surface=True, summary="nanmean",
           label="NSD@1mm (SAM-Med3D, surfel)", source="SAM-Med3D (utils/metric_utils.py, DeepMind surfel NSD)",
           native=True),
    Metric("cvpr25_nsd", "cvpr25_nsd", _cvpr25_nsd, needs_spacing=True, surface=True, summary="nanmean",
           label="NSD@2mm (CVPR25, surfel)", source="CVPR 2025 challenge (SurfaceDice.py, DeepMind surfel NSD)",
           native=True),
    Metric("sammed3d_crop_dice", "sammed3d_crop_dice", _crop(crop_dice), summary="nanmean",
           label="crop Dice (SAM-Med3D 2024)", digits=4, source="SAM-Med3D 2024 (validation.py)", native=True),
    Metric("sammed3d_crop_iou", "sammed3d_crop_iou", _crop(crop_iou), summary="nanmean",
           label="crop IoU (SAM-Med3D 2024)", digits=4, source="SAM-Med3D 2024 (validation.py)", native=True),
)
