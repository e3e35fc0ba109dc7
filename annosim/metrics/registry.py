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
from typing import Any, Sequence

import numpy as np

from annosim.errors import ConfigError
from annosim.metrics.entry import SUMMARIES, Metric, MetricError, RoundData
from annosim.metrics.functions import check_tolerance, hd95_from_distances, nsd_from_distances
from annosim.metrics.native import NATIVE
from annosim.plugins import import_target

__all__ = ["BUILTIN", "NATIVE", "SUMMARIES", "Metric", "MetricError", "MetricSet", "RoundData",
           "column_info", "round_metrics", "user_metric"]

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
_BY_NAME = {m.name: m for m in (*BUILTIN, *NATIVE)}


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
    def with_user(cls, specs: Sequence[str] = (), native: Sequence[str] = ()) -> "MetricSet":
        """Built-ins, the ``native`` metrics the run's protocols list (in :data:`NATIVE` order),
        then one user metric per spec; ConfigError on a clash of column names."""
        unknown = sorted(set(native) - {m.name for m in NATIVE})
        if unknown:
            raise ConfigError(f"unknown native metric(s) {', '.join(unknown)}")
        metrics = list(BUILTIN) + [m for m in NATIVE if m.name in set(native)]
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
        return [m.name for m in self.metrics if m.source != "annosim" and not m.native]

    @property
    def native_names(self) -> list[str]:
        """Names of the native metrics in the set."""
        return [m.name for m in self.metrics if m.native]

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.metrics]

    def compute(
        self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], nsd_tolerance: float = 2.0,
        surface: bool = True, native: Sequence[str] = (), scored: np.ndarray | None = None,
        patch: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, float | int]:
        """Every metric of one round: ``{column: value}``. A failing metric raises MetricError
        naming it; surface metrics are nan when ``surface`` is False; a native metric is nan
        unless the row's protocol lists it in ``native`` (``scored``: its source's frames)."""
        check_tolerance(nsd_tolerance)
        data = RoundData(pred, gt, spacing, nsd_tolerance, scored, patch)
        out: dict[str, float | int] = {}
        for m in self.metrics:
            if (m.surface and not surface) or (m.native and m.name not in native):
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
