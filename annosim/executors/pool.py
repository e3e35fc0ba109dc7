"""Scheduling shared by the worker pools (local processes and Ray actors): the queue of cases,
retries of cases whose worker died, case timeouts, and the error lines of lost cases.

Failures: a worker that dies (killed, segfault, out of memory, Ray node lost) loses only its case
in flight; the case is retried up to ``retries`` times on a fresh worker, then recorded in
``errors.jsonl`` (stage ``worker``). A case running longer than ``case_timeout`` seconds is
stopped (its worker killed and replaced) and recorded (stage ``timeout``, not retried); the clock
starts when the case is handed to a worker. Units a worker finished before dying stay written.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from annosim.config import ResolvedRun
from annosim.data.layouts import CaseRef
from annosim.errors import ConfigError
from annosim.executors.base import CaseDoneMsg, FatalMsg, Message, ReadyMsg, Sink, deliver
from annosim.schema import ErrorRecord


class SlotState(enum.Enum):
    """Life of a worker place."""

    STARTING = "starting"  # loading the model
    READY = "ready"  # idle, model loaded
    BUSY = "busy"  # running a case
    DEAD = "dead"  # gone (replaced by a new one unless it failed to start)


@dataclass
class Job:
    """One case to run; ``attempts`` counts the tries lost to dead workers."""

    ref: CaseRef
    attempts: int = 0


@dataclass
class Slot:
    """One worker place: state, the case it runs and since when; backends add their handles."""

    index: int
    device: str | None = None
    state: SlotState = SlotState.STARTING
    job: Job | None = None
    since: float = 0.0
    pid: int | None = None
    info: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.state is not SlotState.DEAD

    def label(self) -> str:
        parts = [f"pid {self.pid}" if self.pid else f"worker {self.index}"]
        if self.device:
            parts.append(self.device)
        return ", ".join(parts)


class Pool:
    """A pool of workers; subclasses start, feed, watch and stop them."""

    def __init__(self, run: ResolvedRun) -> None:
        self.run_spec = ResolvedRun(run.spec.for_workers(), run.protocols, run.metrics)
        self.spec = self.run_spec.spec
        self.slots: list[Any] = []
        self.queue: deque[Job] = deque()
        self.sink: Sink | None = None
        self.last_fatal = ""

    # -- to implement ---------------------------------------------------------------------------
    def _dispatch(self, slot: Any, job: Job) -> None:
        raise NotImplementedError

    def _wait(self, timeout: float | None) -> None:
        """Wait for messages or deaths (at most ``timeout`` s) and handle them."""
        raise NotImplementedError

    def _stop(self, slot: Any) -> None:
        """Kill the slot's worker now and collect what it sent before dying."""
        raise NotImplementedError

    def _spawn(self, slot: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def run(self, refs: Sequence[CaseRef], sink: Sink) -> None:
        """Run every case of ``refs``; returns when each is done or recorded as failed."""
        self.sink = sink
        self.queue = deque(Job(ref) for ref in refs)
        while True:
            for slot in self.slots:
                if slot.state is SlotState.READY and self.queue:
                    job = self.queue.popleft()
                    slot.job, slot.state, slot.since = job, SlotState.BUSY, time.monotonic()
                    sink.case_started(job.ref)
                    self._dispatch(slot, job)
            busy = [s for s in self.slots if s.state is SlotState.BUSY]
            if not busy and not self.queue:
                return
            if not busy and not any(s.state is SlotState.STARTING for s in self.slots):
                why = self.last_fatal or "every worker died"
                while self.queue:
                    job = self.queue.popleft()
                    self._record(job, "worker", f"{job.ref.image}: not run, no worker left ({why})")
                return
            self._wait(self._time_left(busy))
            self._check_timeouts()

    def _time_left(self, busy: list[Slot]) -> float | None:
        timeout = self.spec.execution.case_timeout
        if timeout is None or not busy:
            return None
        now = time.monotonic()
        return max(0.0, min(s.since + timeout - now for s in busy))

    def _check_timeouts(self) -> None:
        timeout = self.spec.execution.case_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.state is SlotState.BUSY and now - slot.since >= timeout and slot.job is not None:
                job = slot.job
                self._stop(slot)
                if slot.job is job:  # it did not finish while being stopped
                    slot.job = None
                    self._record(job, "timeout", f"{job.ref.image}: exceeded --case-timeout of {timeout:g} s; "
                                                 "stopped (units finished before are kept)")
                self._spawn(slot)

    def _record(self, job: Job, stage: str, message: str) -> None:
        assert self.sink is not None
        self.sink.error(ErrorRecord(job.ref.case_id, None, stage, message))
        self.sink.case_done(job.ref)

    def _lost(self, slot: Slot, how: str) -> None:
        """The slot's worker died (``how``: 'was killed by SIGKILL'...): retry its case or record it."""
        job, slot.job = slot.job, None
        was_starting = slot.state is SlotState.STARTING
        slot.state = SlotState.DEAD
        if was_starting:
            self.last_fatal = f"the process {how}"
            return  # a worker that cannot start is not restarted (it would fail again)
        retries = self.spec.execution.retries
        if job is not None:
            assert self.sink is not None, "cases are handed out by run()"
            job.attempts += 1
            msg = f"{job.ref.image}: the worker running this case ({slot.label()}) {how}"
            if job.attempts <= retries:
                self.sink.note(f"{job.ref.case_id}: {msg}; retrying ({job.attempts}/{retries})")
                self.queue.appendleft(job)
            else:
                self._record(job, "worker", msg + "; case not completed")
        if self.sink is not None:
            self.sink.note(f"worker ({slot.label()}) {how}; starting a new one")
        self._spawn(slot)

    def _handle(self, slot: Slot, msg: Message) -> None:
        """One message from a worker."""
        if isinstance(msg, CaseDoneMsg):
            job, slot.job = slot.job, None
            slot.state = SlotState.READY
            if job is not None and self.sink is not None:
                self.sink.case_done(job.ref)
        elif isinstance(msg, ReadyMsg):
            slot.state, slot.info, slot.pid = SlotState.READY, msg.info, msg.pid
        elif isinstance(msg, FatalMsg):
            slot.state = SlotState.DEAD
            self.last_fatal = msg.message
        else:
            assert self.sink is not None, "run() dispatches cases"
            deliver(msg, self.sink)

    def _first_ready(self, every: bool = True) -> dict[str, Any]:
        """Wait until the workers (``every``) or one of them have loaded the model; returns its
        description. Raises ConfigError when a worker cannot load it."""
        while True:
            for slot in self.slots:
                if slot.state is SlotState.DEAD:
                    msg = f"a worker ({slot.label()}) could not load the model: {self.last_fatal}"
                    self.close()
                    raise ConfigError(msg)
            ready = [s for s in self.slots if s.state is SlotState.READY]
            if ready and (not every or len(ready) == len(self.slots)):
                return dict(ready[0].info or {})
            self._wait(None)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
