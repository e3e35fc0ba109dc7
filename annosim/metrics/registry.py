"""The metric registry: every per-round metric is one :class:`Metric` entry.

The row builder (:mod:`annosim.engine.unit`), ``annosim score``, the results reader and the
report iterate a :class:`MetricSet`; nothing else names a metric column. Built-in metrics are
:data:`BUILTIN`; users add their own with ``annosim run --metric package.module:function`` (or
``path/to/file.py:function``), a function ``(pred, gt, spacing) -> float`` on bool ``(Z, Y, X)``
arrays of the setting's frames with ``spacing`` ``(sz, sy, sx)`` in mm. Its column is named after
the function.

Every metric sees the round's prediction and the truth restricted to the setting's frames (the
prediction is empty outside them by construction). Intermediate results shared by several
metrics (per-slice counts, surface distances) are computed once per round by
:class:`RoundData`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from annosim.errors import AnnosimError, ConfigError
from annosim.metrics.functions import (
    check_tolerance,
    hd95_from_distances,
    nsd_from_distances,
    per_slice_counts,
    surface_distances,
)
from annosim.plugins import import_target

#: How the report reduces a metric's final values over the objects of a group.
SUMMARIES = ("mean", "nanmean", "none")


class MetricError(AnnosimError):
    """A metric raised or returned something that is not a number (the unit's error line)."""


class RoundData:
    """One round's masks and what several metrics share, computed at most once.

    ``pred``, ``gt``: bool (Z, Y, X); ``spacing`` (sz, sy, sx) mm; ``nsd_tolerance`` mm.
    """

    def __init__(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], nsd_tolerance: float) -> None:
        pred = np.asarray(pred, dtype=bool)
        gt = np.asarray(gt, dtype=bool)
        if pred.shape != gt.shape or pred.ndim != 3:
            raise ValueError(f"prediction {pred.shape} and truth {gt.shape} must be equal 3D shapes")
        self.pred, self.gt = pred, gt
        self.spacing = tuple(float(s) for s in spacing)
        self.nsd_tolerance = float(nsd_tolerance)

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
        Registry name (``--metric`` spec for a user metric).
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
        ``annosim`` for built-ins, else the ``module:function`` it came from.
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

    def describe(self) -> dict[str, Any]:
        """The entry as run.json records it."""
        return {"name": self.name, "column": self.column, "source": self.source}


def _dice(d: RoundData) -> float:
    sp, sg, si = d.counts
    total = int(sp.sum() + sg.sum())
    return 1.0 if total == 0 else 2.0 * int(si.sum()) / total


def _nsd(d: RoundData) -> float:
    return nsd_from_distances(d.distances, d.pred_any, d.gt_any, d.nsd_tolerance)


def _hd95(d: RoundData) -> float:
    return hd95_from_distances(d.distances, d.pred_any, d.gt_any)


def _fp_slices(d: RoundData) -> int:
    sp, sg, _ = d.counts
    return int(np.count_nonzero((sp > 0) & (sg == 0)))


def _gt_slices(d: RoundData) -> int:
    return int(np.count_nonzero(d.counts[1] > 0))


#: The built-in metrics, in column order.
BUILTIN: tuple[Metric, ...] = (
    Metric("dice", "dice", _dice, label="Dice"),
    Metric("nsd", "nsd", _nsd, needs_spacing=True, surface=True, label="NSD"),
    Metric("hd95", "hd95", _hd95, needs_spacing=True, surface=True, summary="nanmean", label="HD95 mm", digits=1),
    Metric("fp_slices", "fp_slices", _fp_slices, on="slices", integer=True, label="FP slices", digits=2),
    Metric("gt_slices", "gt_slices", _gt_slices, on="slices", integer=True, summary="none", label="GT slices"),
)
_BY_NAME = {m.name: m for m in BUILTIN}


def user_metric(spec: str) -> Metric:
    """The metric behind ``--metric spec``: a function ``(pred, gt, spacing) -> float``."""
    func = import_target(spec, "metric")
    if not callable(func):
        raise ConfigError(f"metric {spec!r} is not a function")
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        raise ConfigError(f"metric {spec!r} must take (pred, gt, spacing)") from None
    except ValueError:  # a builtin without a signature: accept it
        pass
    column = str(getattr(func, "__name__", "") or spec.rpartition(":")[2])
    if not column.isidentifier():
        column = spec.rpartition(":")[2]

    def compute(d: RoundData) -> float:
        return func(d.pred, d.gt, d.spacing)

    return Metric(spec, column, compute, needs_spacing=True, summary="nanmean", label=column, source=spec)


@dataclass(frozen=True)
class MetricSet:
    """The metrics of one run, in column order (built-ins first, then the users')."""

    metrics: tuple[Metric, ...] = BUILTIN

    @classmethod
    def with_user(cls, specs: Sequence[str] = ()) -> "MetricSet":
        """Built-ins plus one user metric per spec; ConfigError on a clash of column names."""
        metrics = list(BUILTIN)
        for spec in specs:
            m = user_metric(spec)
            clash = next((o for o in metrics if o.column == m.column), None)
            if clash is not None:
                raise ConfigError(f"metric {spec!r}: its column {m.column!r} is already written by {clash.name!r}")
            metrics.append(m)
        return cls(tuple(metrics))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(m.column for m in self.metrics)

    @property
    def user_specs(self) -> list[str]:
        return [m.name for m in self.metrics if m.source != "annosim"]

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.metrics]

    def compute(
        self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], nsd_tolerance: float = 2.0,
        surface: bool = True,
    ) -> dict[str, float | int]:
        """Every metric of one round: ``{column: value}``. A failing metric raises MetricError
        naming it; surface metrics are nan when ``surface`` is False."""
        check_tolerance(nsd_tolerance)
        data = RoundData(pred, gt, spacing, nsd_tolerance)
        out: dict[str, float | int] = {}
        for m in self.metrics:
            if m.surface and not surface:
                out[m.column] = float("nan")
                continue
            try:
                value = m.compute(data)
            except MetricError:
                raise
            except Exception as exc:
                raise MetricError(f"metric {m.name!r} failed: {type(exc).__name__}: {exc}") from exc
            out[m.column] = _number(m, value)
        return out


def _number(m: Metric, value: Any) -> float | int:
    """``value`` as the column's type; MetricError for something that is not a real number."""
    try:
        if isinstance(value, np.ndarray):
            value = value.item()
        number = float(value)
    except (TypeError, ValueError):
        raise MetricError(f"metric {m.name!r} returned {type(value).__name__}, not a number") from None
    if m.integer:
        return int(number)
    return number


def column_info(described: Sequence[dict[str, Any]] | None) -> tuple[Metric, ...]:
    """Metric entries of a results folder from run.json's ``metrics`` (``None``: the built-ins).

    A user metric is not imported: its entry carries the column and a float type, which is all
    a reader needs.
    """
    if not described:
        return BUILTIN
    out = []
    for item in described:
        name = str(item.get("name", ""))
        builtin = _BY_NAME.get(name)
        if builtin is not None:
            out.append(builtin)
        else:
            column = str(item.get("column") or name)
            out.append(Metric(name, column, _unavailable, summary="nanmean", label=column,
                              source=str(item.get("source") or name)))
    return tuple(out)


def _unavailable(d: RoundData) -> float:
    raise MetricError("a metric read from run.json is not computed again")


def round_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], nsd_tolerance: float = 2.0, surface: bool = True,
) -> dict[str, float | int]:
    """The built-in metrics of bool (Z, Y, X) masks with ``spacing`` (sz, sy, sx) mm:
    ``{"dice", "nsd", "hd95", "fp_slices", "gt_slices"}``; with ``surface=False`` the surface
    metrics are nan."""
    return MetricSet().compute(pred, gt, spacing, nsd_tolerance, surface)
