"""What a metric is: :class:`Metric` (one registry entry), :class:`RoundData` (one round's masks
and the intermediates several metrics share) and :class:`MetricError`.

The entries themselves live in :mod:`annosim.metrics.registry` (annosim's common metrics) and
:mod:`annosim.metrics.native` (each protocol's source's own metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from annosim.errors import AnnosimError
from annosim.metrics.functions import per_slice_counts, surface_distances

#: How the report reduces a metric's final values over the objects of a group.
SUMMARIES = ("mean", "nanmean", "none")


class MetricError(AnnosimError):
    """A metric raised or returned something that is not a number (the unit's error line)."""


class RoundData:
    """One round's masks and what several metrics share, computed at most once.

    ``pred``, ``gt``: bool (Z, Y, X); ``spacing`` (sz, sy, sx) mm; ``nsd_tolerance`` mm;
    ``scored``: (Z,) frames the protocol's source scores (``None``: every frame), read by
    native metrics through :attr:`scored_counts`; bool, or non-negative per-frame weights (a
    frame scores where its weight is > 0; :attr:`frame_weights` keeps the weights).
    ``patch``: a patch protocol's bool ``(prediction, truth)`` on its patch (``None``: not a patch
    protocol), read by crop metrics.
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], nsd_tolerance: float,
                 scored: np.ndarray | None = None,
                 patch: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        pred = np.asarray(pred, dtype=bool)
        gt = np.asarray(gt, dtype=bool)
        if pred.shape != gt.shape or pred.ndim != 3:
            raise ValueError(f"prediction {pred.shape} and truth {gt.shape} must be equal 3D shapes")
        self.pred, self.gt = pred, gt
        self.spacing = tuple(float(s) for s in spacing)
        self.nsd_tolerance = float(nsd_tolerance)
        self.frame_weights: np.ndarray | None = None
        if scored is not None:
            weights = np.asarray(scored, dtype=np.float64)
            if weights.shape != (pred.shape[0],):
                raise ValueError(f"scored frames {weights.shape} must be ({pred.shape[0]},)")
            self.frame_weights, scored = weights, weights > 0
        self.scored = scored
        self.patch = patch

    @cached_property
    def scored_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:attr:`counts` on the scored frames only (zero elsewhere)."""
        if self.scored is None:
            return self.counts
        return tuple(np.where(self.scored, c, 0) for c in self.counts)  # type: ignore[return-value]

    @cached_property
    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-slice |P|, |G|, |P and G| as int64 (Z,) arrays."""
        return per_slice_counts(self.pred, self.gt)

    @cached_property
    def distances(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Directed border distances in mm (None when a mask is empty)."""
        return surface_distances(self.pred, self.gt, self.spacing)

    @property
    def pred_any(self) -> bool:
        return bool(self.counts[0].any())

    @property
    def gt_any(self) -> bool:
        return bool(self.counts[1].any())


@dataclass(frozen=True)
class Metric:
    """One registry entry.

    Attributes
    ----------
    name : str
        Registry name (``--metric`` spec for a user metric; for a native metric, the name a
        protocol lists in its ``native_metrics``).
    column : str
        The rounds.csv column it writes.
    compute : callable
        ``compute(data: RoundData) -> float | int``.
    on : str
        What it is computed on: ``volume`` (3D over the setting's frames) or ``slices`` (per 2D
        slice, then reduced to one number).
    needs_spacing : bool
        Whether the value depends on the voxel spacing.
    surface : bool
        A surface metric: skipped (nan) with ``--no-surface-metrics``.
    integer : bool
        Written and read as an integer.
    summary : str
        How reports reduce the final round over objects: ``mean``, ``nanmean`` (undefined values
        skipped and counted), or ``none`` (not summarised).
    label : str
        Column heading in tables.
    digits : int
        Decimals in tables.
    source : str
        ``annosim`` for built-ins, the source's name for a native metric, else the
        ``module:function`` it came from.
    native : bool
        A protocol's own metric (:mod:`annosim.metrics.native`): computed only on the rows of
        protocols that list it, nan elsewhere.
    """

    name: str
    column: str
    compute: Callable[[RoundData], float | int]
    on: str = "volume"
    needs_spacing: bool = False
    surface: bool = False
    integer: bool = False
    summary: str = "mean"
    label: str = ""
    digits: int = 3
    source: str = "annosim"
    native: bool = False

    def describe(self) -> dict[str, Any]:
        """The entry as run.json records it."""
        return {"name": self.name, "column": self.column, "source": self.source}
