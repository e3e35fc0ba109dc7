"""One unit: an object (case, label) in one setting under one protocol, driven round by round,
each round scored by the run's metric set into rows of the shared schema.

Where an exception is raised decides its stage: inside a model method -> ``model``, while
scoring a round -> ``metric``, in the protocol's own code -> ``protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from annosim.data.case import Case
from annosim.files import stable_seed
from annosim.metrics.registry import MetricError, MetricSet
from annosim.models.base import SliceModelBase, as_model
from annosim.protocols.base import (
    ModelCallError,
    Protocol,
    RoundOutcome,
    begin_object,
    describe_exception,
    propagate_in_frames,
)
from annosim.schema import SETTINGS, ErrorRecord, RoundRow, UnitKey, UnitResult, prompt_record

#: Called with every round's outcome as ``(label, setting, outcome)`` (e.g. to keep predictions).
RoundCallback = Callable[[int, str, RoundOutcome], None]


def object_rng(seed: int, case: str, label: int) -> np.random.Generator:
    """The random stream of one object, from a stable hash (never ``hash()``).

    It does not depend on the setting (nor the protocol): the ``full`` and ``fg-only`` runs of
    an object draw the same stream (common random numbers), so their
    comparison is paired.
    """
    return np.random.default_rng(stable_seed(int(seed), case, int(label)))


def setting_frames(gt: np.ndarray, setting: str) -> np.ndarray | None:
    """Slice indices of an object's video: ``None`` (all) for ``full``, the truth's slices for
    ``fg-only`` (increasing, not necessarily contiguous)."""
    if setting == "full":
        return None
    if setting == "fg-only":
        return np.flatnonzero(gt.any(axis=(1, 2)))
    raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")


class PromptFree(Protocol):
    """One round from ``propagate()`` with no prompt, for models with ``prompt_free = True``
    (e.g. VISTA3D in automatic mode)."""

    def __init__(self, wrapped: Protocol) -> None:
        self.name = wrapped.name

    def run_object(self, model, gt, frames, rng):  # type: ignore[override]
        call, fm, _ = begin_object(model, gt, frames)
        pred = propagate_in_frames(call, fm)
        yield RoundOutcome(1, pred, [], 0, 0, call.lap())


@dataclass(frozen=True)
class UnitContext:
    """What every unit of a run shares: seed, metric set, NSD tolerance, surface switch."""

    metrics: MetricSet = MetricSet()
    seed: int = 0
    nsd_tolerance: float = 2.0
    surface_metrics: bool = True


def run_unit(
    case: Case,
    model: SliceModelBase,
    protocol: Protocol,
    label: int,
    setting: str,
    ctx: UnitContext = UnitContext(),
    on_round: RoundCallback | None = None,
) -> UnitResult:
    """Drive ``model`` with ``protocol`` on one object in one setting; metrics per round.

    ``model.set_volume`` must have been called with this case. Metrics of a ``fg-only`` row
    cover the object's slices only (the prediction is empty elsewhere by construction). A failure
    gives a result with ``error`` set (stage by where it was raised) and no rows.
    """
    model = as_model(model)
    key = UnitKey(case.case_id, int(label), setting, protocol.name)
    result = UnitResult(key)
    name = case.name_of(label)
    gt = case.label == label
    frames = setting_frames(gt, setting)
    stage = "model"
    try:
        model.set_target(int(label), name)
        proto = PromptFree(protocol) if model.prompt_free else protocol
        rng = object_rng(ctx.seed, case.case_id, label)
        stage = "protocol"
        for outcome in proto.run_object(model, gt, frames, rng):
            stage = "metric"
            values = ctx.metrics.compute(outcome.prediction, gt, case.spacing, ctx.nsd_tolerance,
                                         surface=ctx.surface_metrics, native=protocol.native_metrics,
                                         scored=outcome.scored_frames, patch=outcome.patch)
            stage = "protocol"
            row = RoundRow(key.case, key.label, name, setting, protocol.name, outcome.round,
                           outcome.annotated_slices, outcome.clicks, values, outcome.model_seconds)
            result.rows.append(row.record())
            result.prompts.extend(prompt_record(key, outcome.round, p.to_record()) for p in outcome.prompts)
            if on_round is not None:
                on_round(key.label, setting, outcome)
    except ModelCallError as exc:
        return _failed(key, "model", f"model.{exc}")
    except MetricError as exc:
        return _failed(key, "metric", str(exc))
    except Exception as exc:  # raised by the protocol's own code (or set_target, for stage model)
        return _failed(key, stage, describe_exception(exc))
    return result


def _failed(key: UnitKey, stage: str, message: str) -> UnitResult:
    what = f"label {key.label}, {key.setting}, {key.protocol}"
    return UnitResult(key, error=ErrorRecord(key.case, key.label, stage, f"{key.case} ({what}): {message}"))
