"""Segmentation metrics: the functions (:mod:`annosim.metrics.functions`) and the registry that
the run, the results reader and the report iterate (:mod:`annosim.metrics.registry`)."""

from annosim.metrics.functions import dice, dice_per_slice, fp_slices, gt_slices, hd95, nsd
from annosim.metrics.registry import BUILTIN, Metric, MetricError, MetricSet, round_metrics

__all__ = [
    "dice", "dice_per_slice", "fp_slices", "gt_slices", "hd95", "nsd",
    "BUILTIN", "Metric", "MetricError", "MetricSet", "round_metrics",
]
