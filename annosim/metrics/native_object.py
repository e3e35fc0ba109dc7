"""Object-level native metrics: a protocol's source's own statistics that are functions of one
object's per-round values (an area under the click curve, a number of clicks), beside the
per-round entries of :mod:`annosim.metrics.native`.

Each entry is one :class:`ObjectMetric`: a name, the ``rounds.csv`` columns it reads and a
function of :class:`ObjectRounds` (those columns over rounds 1..R of one object, carried
forward to the protocol's last round as every report table is, and their means over the
objects of the same case, protocol and setting). A protocol lists the entries it reports in
``native_object_metrics``; the report computes them per object
(:func:`annosim.report.stats.object_table`) and averages them per group. Adding one is one
entry in :data:`OBJECT_NATIVE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: How the report reduces an object-level metric over the objects of a group.
OBJECT_SUMMARIES = ("mean", "sum")


@dataclass(frozen=True)
class ObjectRounds:
    """One object's per-round values.

    ``values[column]``: float64 ``(R,)`` over rounds 1..R (carried forward after an early stop);
    ``case_mean[column]``: float64 ``(R,)``, the mean of that column per round over the objects
    (labels) of the same case under the same protocol and setting (the source's multi-class
    case mean).
    """

    values: dict[str, np.ndarray]
    case_mean: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectMetric:
    """One object-level entry: ``compute(ObjectRounds) -> float`` reads ``columns``; ``summary``
    says how a group of objects is reduced (``mean`` or ``sum``, NaNs skipped)."""

    name: str
    columns: tuple[str, ...]
    compute: Callable[[ObjectRounds], float]
    summary: str = "mean"
    label: str = ""
    digits: int = 3
    source: str = ""


# -- CVPR 2025 challenge (CVPR25_iter_eval.py @748e862 L495-533) -------------------------------

#: NSD is computed only when the case-mean DSC exceeds this (strictly), else 0 (I L495-505).
CVPR25_NSD_GATE = 0.2
CVPR25_SOURCE = "CVPR 2025 challenge (CVPR25_iter_eval.py)"


def trapezoid_auc(values: np.ndarray) -> float:
    """Unit-spacing trapezoid over ``values`` (1-D): ``0.5 v0 + v1 + ... + 0.5 v_last`` (what
    ``scipy.integrate.cumulative_trapezoid(v, np.arange(n))[-1]`` gives); NaN below 2 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float("nan")
    return float(0.5 * (v[:-1] + v[1:]).sum())


def cvpr25_gated_nsd(d: ObjectRounds) -> np.ndarray:
    """Per-round NSD as the challenge scores it (the surfel NSD of ``cvpr25_nsd``): 0 in a round
    whose case-mean DSC is <= 0.2."""
    gate = d.case_mean.get("dice", d.values["dice"])
    return np.where(gate > CVPR25_NSD_GATE, d.values["cvpr25_nsd"], 0.0)


def _dsc_auc(d: ObjectRounds) -> float:
    """AUC over the click rounds only (rounds 2..R; the box round is excluded), I L530."""
    return trapezoid_auc(d.values["dice"][1:])


def _nsd_auc(d: ObjectRounds) -> float:
    return trapezoid_auc(cvpr25_gated_nsd(d)[1:])


def _dsc_final(d: ObjectRounds) -> float:
    return float(d.values["dice"][-1])


def _nsd_final(d: ObjectRounds) -> float:
    return float(cvpr25_gated_nsd(d)[-1])


# -- RITM (isegm/inference/utils.py, scripts/evaluate_model.py @b9b4460) ------------------------

RITM_SOURCE = "RITM (Sofiiuk et al. 2022)"
#: The source's thresholds, ``np.arange(0.8, min(0.95, 0.90) + 0.001, 0.05)`` (evaluate_model.py
#: L195): 0.8, 0.8500000000000001, 0.9000000000000001.
RITM_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.arange(0.8, 0.9 + 0.001, 0.05))
#: Clicks at which evaluate_model.py L207 prints mIoU@k.
RITM_MIOU_CLICKS: tuple[int, ...] = (1, 2, 3, 5, 10, 20)


def ritm_noc(iou: np.ndarray, threshold: float) -> int:
    """NoC (utils.py L79-96): the 1-based index of the first round whose IoU is >= ``threshold``;
    ``len(iou)`` (the click budget, 20) when none is. The source stores the IoUs as float32 and
    compares them with the Python-float threshold, which numpy does in float32: so the
    comparison is made in float32 here too (an IoU of 0.8999999999 reaches 0.9000000000000001)."""
    hit = np.flatnonzero(np.asarray(iou, dtype=np.float32) >= np.float32(threshold))
    return int(hit[0]) + 1 if hit.size else int(np.size(iou))


def _noc(threshold: float) -> Callable[[ObjectRounds], float]:
    def compute(d: ObjectRounds) -> float:
        return float(ritm_noc(d.values["iou"], threshold))
    return compute


def _over_max(threshold: float) -> Callable[[ObjectRounds], float]:
    def compute(d: ObjectRounds) -> float:
        iou = d.values["iou"]
        return float(ritm_noc(iou, threshold) == iou.size)
    return compute


def _miou(k: int) -> Callable[[ObjectRounds], float]:
    def compute(d: ObjectRounds) -> float:
        iou = d.values["iou"]
        return float(iou[k - 1]) if k <= iou.size else float("nan")
    return compute


# -- SAM-Med3D paper-era (validation.py @84079e6 L378-389) --------------------------------------

SAMMED3D_SOURCE = "SAM-Med3D 2024 (validation.py)"


def _best(column: str) -> Callable[[ObjectRounds], float]:
    def compute(d: ObjectRounds) -> float:
        """The maximum over the object's clicks (VA L378-382: ``max(dice_list)``), NaNs skipped."""
        v = d.values[column]
        return float(np.nanmax(v)) if np.isfinite(v).any() else float("nan")
    return compute


#: Every object-level native metric, in column order.
OBJECT_NATIVE: tuple[ObjectMetric, ...] = (
    ObjectMetric("cvpr25_dsc_auc", ("dice",), _dsc_auc, label="DSC AUC", source=CVPR25_SOURCE),
    ObjectMetric("cvpr25_nsd_auc", ("dice", "cvpr25_nsd"), _nsd_auc, label="NSD AUC", source=CVPR25_SOURCE),
    ObjectMetric("cvpr25_dsc_final", ("dice",), _dsc_final, label="Final DSC", source=CVPR25_SOURCE),
    ObjectMetric("cvpr25_nsd_final", ("dice", "cvpr25_nsd"), _nsd_final, label="Final NSD", source=CVPR25_SOURCE),
    *(ObjectMetric(f"ritm_noc{round(t * 100)}", ("iou",), _noc(t), label=f"NoC@{round(t * 100)} (IoU)",
                   digits=2, source=RITM_SOURCE) for t in RITM_THRESHOLDS),
    *(ObjectMetric(f"ritm_over_max{round(t * 100)}", ("iou",), _over_max(t), summary="sum",
                   label=f">=max@{round(t * 100)}", digits=0, source=RITM_SOURCE) for t in RITM_THRESHOLDS[1:]),
    *(ObjectMetric(f"ritm_miou{k}", ("iou",), _miou(k), label=f"mIoU@{k}", source=RITM_SOURCE)
      for k in RITM_MIOU_CLICKS),
    ObjectMetric("sammed3d_best_dice", ("sammed3d_crop_dice",), _best("sammed3d_crop_dice"),
                 label="best-of-N crop Dice", source=SAMMED3D_SOURCE),
    ObjectMetric("sammed3d_best_iou", ("sammed3d_crop_iou",), _best("sammed3d_crop_iou"),
                 label="best-of-N crop IoU", source=SAMMED3D_SOURCE),
)
OBJECT_BY_NAME: dict[str, ObjectMetric] = {m.name: m for m in OBJECT_NATIVE}


def object_values(names: tuple[str, ...] | list[str], data: ObjectRounds) -> dict[str, float]:
    """``{name: value}`` of the entries ``names`` on one object; NaN where a column is missing."""
    out: dict[str, float] = {}
    for name in names:
        m = OBJECT_BY_NAME[name]
        if any(c not in data.values for c in m.columns):
            out[name] = float("nan")
        else:
            out[name] = float(m.compute(data))
    return out
