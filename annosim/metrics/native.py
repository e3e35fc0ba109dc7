"""Native metrics: each protocol's source's own metric, computed as that source computes it on
the frames it scores (README, Metrics), written in its own rounds.csv column beside annosim's
common metrics.

A protocol lists the entries it reports in ``native_metrics`` (names below); the run's
:class:`~annosim.metrics.registry.MetricSet` then holds them and fills them on that protocol's
rows only (nan on the others). Adding a native metric is one entry here.
"""

from __future__ import annotations

from annosim.metrics.entry import Metric, RoundData


def _iou(d: RoundData) -> float:
    """Intersection over union ``|P∧G| / |P∨G|`` over the scored frames (1 when both are empty)."""
    sp, sg, si = d.scored_counts
    union = int(sp.sum() + sg.sum() - si.sum())
    return 1.0 if union == 0 else int(si.sum()) / union


#: Every native metric, in column order.
NATIVE: tuple[Metric, ...] = (
    Metric("iou", "iou", _iou, summary="nanmean", label="IoU", source="RITM (Sofiiuk et al. 2022)",
           native=True),
)
