"""One case: check and read its files, check its memory, resolve its labels, and run every
pending unit (protocol x label x setting) on one loaded model.

:class:`CaseRunner` is the one case worker every executor uses (in the driver's process, in
local worker processes, in Ray actors). It never raises for a problem of the case: each becomes
an :class:`annosim.schema.ErrorRecord` whose stage says where it happened (``read``, ``memory``,
``labels``, ``model``, ``protocol``, ``metric``), sent through the :class:`CaseSink`.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol, Sequence

import numpy as np

from annosim.config import ResolvedRun, orientation_of
from annosim.data.case import Case
from annosim.data.layouts import CaseRef
from annosim.engine.unit import RoundCallback, UnitContext, run_unit
from annosim.errors import AnnosimError, InputError
from annosim.memory import estimate_case, estimate_from_header, header_grid_problem, memory_refusal
from annosim.metrics.registry import MetricSet
from annosim.models.base import SliceModelBase
from annosim.protocols.base import Protocol, RoundOutcome, describe_exception
from annosim.schema import SETTINGS, ErrorRecord, UnitKey, UnitResult


class CaseSink(TypingProtocol):
    """Where a case's results go (the driver's store, a pipe to it, or a list for Ray)."""

    def unit(self, result: UnitResult, predictions: list[np.ndarray]) -> None:
        """A finished unit (or one that failed: ``result.error`` set), with its kept predictions."""

    def error(self, record: ErrorRecord) -> None:
        """An error line about the case (``label`` None) or one of its labels."""


def resolve_labels(case: Case, requested: Sequence[str | int] | None) -> tuple[list[int], list[str]]:
    """Label values to evaluate and messages for requested labels that are absent.

    ``requested`` holds names or values; ``None`` means every label present in the case.
    """
    present = case.present_labels()
    if not requested:
        return present, []
    by_name = {name: value for value, name in case.label_names.items()}
    values: list[int] = []
    problems: list[str] = []
    source = case.sources.get("label", case.case_id)
    for item in requested:
        token = str(item).strip()
        if token.lstrip("-").isdigit():
            value = int(token)
        elif token in by_name:
            value = by_name[token]
        else:
            problems.append(f"{source}: label {token!r} is not among the label names")
            continue
        if value not in present:
            problems.append(f"{source}: label {token!r} (value {value}) is absent from this case")
        elif value not in values:
            values.append(value)
    return values, problems


def check_input_paths(ref: CaseRef) -> None:
    """Raise InputError for an input that is neither a regular file nor a folder (a FIFO, socket
    or device would block or fail obscurely when read) or that cannot be looked at (a symlink
    loop). Missing files are left to the readers, which say "file not found"."""
    for path in [ref.image, *ref.labels]:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InputError(path, f"cannot access: {exc.strerror or exc}") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(path, "not a regular file or folder (a FIFO, socket or device); not read")


def read_case(ref: CaseRef, orientation: str) -> Case:
    """The case in ``orientation``; InputError naming the files for anything that goes wrong."""
    try:
        return ref.load(orientation)
    except AnnosimError:
        raise
    except MemoryError:
        raise InputError(ref.image, "out of memory while reading") from None
    except Exception as exc:  # a library error the readers did not anticipate
        files = ", ".join([ref.image, *ref.labels])
        raise InputError(None, f"{files}: cannot read case ({describe_exception(exc)})") from None


class _Stop(Exception):
    """The case cannot go on (its error line was sent)."""


class CaseRunner:
    """The model (loaded once) and the resolved run; runs whole cases."""

    def __init__(self, run: ResolvedRun, model: SliceModelBase) -> None:
        self.run = run
        self.model = model
        ev = run.spec.evaluation
        self.ctx = UnitContext(run.metrics, ev.seed, ev.nsd_tolerance, ev.surface_metrics)
        self.kept_rounds = max(p.max_rounds for p in run.protocols) if ev.save_predictions else 0

    def run_case(self, ref: CaseRef, done: frozenset[UnitKey], sink: CaseSink) -> None:
        """Every unit of ``ref`` not in ``done``; problems become error lines, never exceptions."""
        try:
            self._run(ref, done, sink)
        except _Stop:
            pass
        except Exception as exc:  # anything the stages below did not place: this case only
            sink.error(ErrorRecord(ref.case_id, None, "model", f"{ref.image}: {describe_exception(exc)}"))

    # -----------------------------------------------------------------------------------------
    def _fail(self, sink: CaseSink, ref: CaseRef, stage: str, message: str) -> _Stop:
        sink.error(ErrorRecord(ref.case_id, None, stage, message))
        return _Stop()

    def _run(self, ref: CaseRef, done: frozenset[UnitKey], sink: CaseSink) -> None:
        spec = self.run.spec
        by_orientation: dict[str, list[Protocol]] = defaultdict(list)
        for proto in self.run.protocols:
            by_orientation[orientation_of(proto, spec.evaluation.orientation)].append(proto)
        try:
            check_input_paths(ref)
        except InputError as exc:
            raise self._fail(sink, ref, "read", str(exc)) from None
        grid = header_grid_problem(ref.image, ref.labels)  # both headers, before any voxel is read
        if grid is not None:
            raise self._fail(sink, ref, "read", grid)
        try:
            self.model.release_case()
        except Exception as exc:
            raise self._fail(sink, ref, "model", f"{ref.image}: model.release_case: {describe_exception(exc)}") from None
        checked = not spec.execution.memory_check
        if not checked:
            est = self._staged(sink, ref, "model", lambda: estimate_from_header(
                ref.image, ref.labels[0] if ref.labels else None, self.model, kept_predictions=self.kept_rounds))
            if est is not None:
                self._check_memory(sink, ref, est)
                checked = True
        first = True
        for orientation, protos in by_orientation.items():
            try:
                case = read_case(ref, orientation)
            except InputError as exc:
                raise self._fail(sink, ref, "read", str(exc)) from None
            if first and not checked:
                est = self._staged(sink, ref, "model", lambda: estimate_case(
                    case.image.shape, self.model, kept_predictions=self.kept_rounds, loaded=True))
                self._check_memory(sink, ref, est)
            values, problems = resolve_labels(case, spec.data.labels)
            if first:
                for msg in problems:
                    sink.error(ErrorRecord(case.case_id, None, "labels", msg))
                if not values and not problems and spec.data.labels is None:
                    source = case.sources.get("label", case.case_id)
                    raise self._fail(sink, ref, "labels", f"{source}: label map holds no labels (every voxel is 0)")
            first = False
            todo = [(p, v, s) for p in protos for v in values for s in spec.evaluation.settings
                    if UnitKey(case.case_id, int(v), s, p.name) not in done]
            if todo:
                run_units(case, self.model, todo, self.ctx, sink, self.kept_rounds)

    def _staged(self, sink: CaseSink, ref: CaseRef, stage: str, fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except Exception as exc:
            raise self._fail(sink, ref, stage, f"{ref.image}: {describe_exception(exc)}") from None

    def _check_memory(self, sink: CaseSink, ref: CaseRef, est) -> None:  # type: ignore[no-untyped-def]
        why = memory_refusal(ref.image, est, self.model)
        if why:
            raise self._fail(sink, ref, "memory", why)


def run_units(case: Case, model: SliceModelBase, todo: Sequence[tuple[Protocol, int, str]], ctx: UnitContext,
              sink: CaseSink, kept_rounds: int = 0,
              on_round: RoundCallback | None = None) -> None:
    """``model.set_volume`` once, then every (protocol, label, setting) of ``todo`` in order, each
    result to ``sink``; ``kept_rounds`` > 0 keeps the predictions for the sink. A failure of
    ``set_volume`` or ``configure_protocol`` is an error line that ends the case (_Stop)."""
    ref_name = case.sources.get("image", case.case_id)
    try:
        model.set_volume(case.image, case.spacing)
    except Exception as exc:
        sink.error(ErrorRecord(case.case_id, None, "model", f"{ref_name}: model.set_volume: {describe_exception(exc)}"))
        raise _Stop() from None
    configured: Protocol | None = None
    for proto, label, setting in todo:
        if proto is not configured:
            try:
                model.configure_protocol(**proto.model_options)
            except Exception as exc:
                sink.error(ErrorRecord(case.case_id, None, "model",
                                       f"{ref_name}: model.configure_protocol: {describe_exception(exc)}"))
                raise _Stop() from None
            configured = proto
        kept: list[np.ndarray] = []

        def keep(label: int, setting: str, outcome: RoundOutcome) -> None:
            if kept_rounds:
                kept.append(outcome.prediction)
            if on_round is not None:
                on_round(label, setting, outcome)

        result = run_unit(case, model, proto, label, setting, ctx, on_round=keep)
        sink.unit(result, kept if result.error is None else [])


@dataclass
class CaseResult:
    """All rows, prompt records and error records of one case (see :func:`evaluate_case`)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def unit(self, result: UnitResult, predictions: list[np.ndarray]) -> None:
        if result.error is not None:
            self.error(result.error)
        self.rows.extend(result.rows)
        self.prompts.extend(result.prompts)

    def error(self, record: ErrorRecord) -> None:
        self.errors.append(record.record())


def evaluate_case(
    case: Case,
    model: Any,
    protocol: Protocol | str | Sequence[Protocol | str] = "he2024",
    *,
    settings: Sequence[str] = SETTINGS,
    labels: Sequence[int | str] | None = None,
    seed: int = 0,
    nsd_tolerance: float = 2.0,
    surface_metrics: bool = True,
    metrics: MetricSet = MetricSet(),
    on_round: RoundCallback | None = None,
) -> CaseResult:
    """Run one protocol (or several, given a list) on a loaded case in memory; no files written.

    The same units, rows and error records as ``annosim run`` gives for this case (order:
    protocol, label, setting).
    """
    from annosim.models.base import as_model
    from annosim.protocols.registry import get_protocol

    items = protocol if isinstance(protocol, (list, tuple)) else [protocol]
    protos = [get_protocol(p) if isinstance(p, str) else p for p in items]
    values, problems = resolve_labels(case, labels)
    result = CaseResult()
    for msg in problems:
        result.error(ErrorRecord(case.case_id, None, "labels", msg))
    ctx = UnitContext(metrics, seed, nsd_tolerance, surface_metrics)
    todo = [(p, v, s) for p in protos for v in values for s in settings]
    try:
        run_units(case, as_model(model), todo, ctx, result, on_round=on_round)
    except _Stop:
        pass
    return result

