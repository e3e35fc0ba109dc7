"""The executor contract: what every backend receives, runs and sends back.

Workers compute; only the driver writes the results folder. A worker builds one
:class:`CaseWorker` (the model, loaded once, and the one :class:`annosim.engine.case.CaseRunner`)
and runs whole cases it is handed: it receives a case (a :class:`CaseRef`) and the units of that
case already committed, and sends back typed messages (:data:`Message`) that the executor turns
into calls on the driver's :class:`Sink`.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol as TypingProtocol, Sequence, Union

import numpy as np

from annosim.config import ResolvedRun, RunSpec, validate
from annosim.data.layouts import CaseRef
from annosim.engine.case import CaseRunner
from annosim.errors import AnnosimError
from annosim.protocols.base import describe_exception
from annosim.schema import ErrorRecord, UnitKey, UnitResult


# -- messages from a worker ---------------------------------------------------------------------
@dataclass(frozen=True)
class UnitMsg:
    """A finished (or failed) unit and the predictions kept for it."""

    result: UnitResult
    predictions: list[np.ndarray]


@dataclass(frozen=True)
class ErrorMsg:
    """An error line about a case."""

    record: ErrorRecord


@dataclass(frozen=True)
class CaseDoneMsg:
    """The case handed out last is finished."""


@dataclass(frozen=True)
class ReadyMsg:
    """The worker loaded the model: its description and the worker's process id."""

    info: dict[str, Any]
    pid: int


@dataclass(frozen=True)
class FatalMsg:
    """The worker could not load the model (one line)."""

    message: str


Message = Union[UnitMsg, ErrorMsg, CaseDoneMsg, ReadyMsg, FatalMsg]


class Sink(TypingProtocol):
    """The driver's side of a run: the only code that touches the results folder."""

    def done_for(self, case_id: str) -> frozenset[UnitKey]:
        """Units of that case already committed."""

    def unit(self, result: UnitResult, predictions: list[np.ndarray]) -> None:
        """Write one finished unit (or its error)."""

    def error(self, record: ErrorRecord) -> None:
        """One line in errors.jsonl."""

    def case_started(self, ref: CaseRef) -> None:
        """Progress: a case was handed to a worker."""

    def case_done(self, ref: CaseRef) -> None:
        """Progress: a case is finished (or recorded as failed)."""

    def note(self, text: str) -> None:
        """A one-line message for the user (retries, restarted workers)."""


class MessageSink:
    """A :class:`annosim.engine.case.CaseSink` that turns a case's results into messages for
    ``send`` (a pipe, or a list that a Ray task returns)."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self.send = send

    def unit(self, result: UnitResult, predictions: list[np.ndarray]) -> None:
        self.send(UnitMsg(result, predictions))

    def error(self, record: ErrorRecord) -> None:
        self.send(ErrorMsg(record))


def deliver(msg: Message, sink: Sink) -> None:
    """Pass a unit or error message on to the driver's sink."""
    if isinstance(msg, UnitMsg):
        sink.unit(msg.result, msg.predictions)
    elif isinstance(msg, ErrorMsg):
        sink.error(msg.record)


# -- the model side, in whatever process runs cases --------------------------------------------
def accepts_device(cls: Any) -> bool:
    """Whether a model constructor takes ``device`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "device" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class CaseWorker:
    """The model (loaded once) and the resolved run of one worker; runs whole cases.

    ``device``: passed to the model as ``device=`` when its constructor accepts one, a ``cuda:K``
    device being made this process's current CUDA device first (before the model is built, see
    :mod:`annosim.models.devices`); otherwise a ``cuda:K`` device restricts this process to GPU K
    through ``CUDA_VISIBLE_DEVICES``.
    """

    def __init__(self, spec: RunSpec | ResolvedRun, device: str | None = None) -> None:
        from annosim.models.registry import load_model, model_class, model_info

        resolved = spec if isinstance(spec, ResolvedRun) else validate(spec, check_model=False)
        self.spec = resolved.spec
        args = dict(self.spec.model.args)
        if device is not None:
            try:
                takes = accepts_device(model_class(self.spec.model.name))
            except AnnosimError:
                takes = False  # load_model below reports the problem with its own hint
            if takes:
                args["device"] = device
                if device.startswith("cuda:"):
                    from annosim.models.devices import select_cuda_device

                    select_cuda_device(device)
            elif device.startswith("cuda:"):
                os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        self.device = device
        self.model = load_model(self.spec.model.name, args)
        self.runner = CaseRunner(resolved, self.model)
        self.info = model_info(self.model)

    def run_case(self, ref: CaseRef, done: frozenset[UnitKey], send: Callable[[Message], None]) -> None:
        """Every unit of ``ref`` not in ``done``, as messages through ``send``."""
        self.runner.run_case(ref, done, MessageSink(send))


def load_worker(spec: RunSpec, device: str | None = None) -> tuple[CaseWorker | None, Message]:
    """A worker and its :class:`ReadyMsg`, or ``None`` and a :class:`FatalMsg`; never raises."""
    try:
        worker = CaseWorker(spec, device)
    except AnnosimError as exc:
        return None, FatalMsg(str(exc))
    except Exception as exc:  # e.g. CUDA out of memory while loading weights
        return None, FatalMsg(describe_exception(exc))
    return worker, ReadyMsg(worker.info, os.getpid())


class Executor(TypingProtocol):
    """A backend: ``start()`` loads the model(s) and returns one's description, ``run`` runs
    every case into the sink, ``close`` releases workers. Used as a context manager."""

    def start(self) -> dict[str, Any]: ...

    def run(self, refs: Sequence[CaseRef], sink: Sink) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc: Any) -> None: ...
