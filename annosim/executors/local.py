"""Local worker processes (``--workers N`` and/or ``--devices cuda:0,cuda:1``), started with the
``spawn`` method (safe with torch and CUDA); one case each at a time, units streamed to the
driver over a pipe as they finish."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Any, Callable, Sequence

from annosim.config import ResolvedRun, RunSpec
from annosim.executors.base import CaseDoneMsg, Message, load_worker
from annosim.executors.pool import Job, Pool, Slot, SlotState


@dataclass
class LocalSlot(Slot):
    """A worker place of a local pool: its process and the driver's end of its pipe."""

    process: Any = None
    conn: Any = None


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the driver dies (a killed driver leaves no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(0)


class _DriverGone(BaseException):
    """The pipe to the driver is closed: the worker stops (a BaseException, so that no
    ``except Exception`` in case code mistakes it for a failure of the case)."""


def _sender(conn: Any) -> Callable[[Message], None]:
    def send(msg: Message) -> None:
        try:
            conn.send(msg)
        except (OSError, EOFError) as exc:
            raise _DriverGone() from exc

    return send


def _worker_main(conn: Any, spec: RunSpec, device: str | None, parent_pid: int) -> None:
    """Body of a local worker process: load the model, then run cases until told to stop."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's; it stops the workers
    send = _sender(conn)
    try:
        worker, hello = load_worker(spec, device)
        send(hello)
        if worker is None:
            return
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            ref, done = msg
            worker.run_case(ref, done, send)
            send(CaseDoneMsg())
    except _DriverGone:
        return


def exit_text(code: int | None) -> str:
    """How a process ended, for messages (``was killed by SIGKILL``, ``exited with code 1``)."""
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessPool(Pool):
    """Local worker processes, one per entry of ``devices`` (``None``: the model's default)."""

    def __init__(self, run: ResolvedRun, devices: Sequence[str | None]) -> None:
        super().__init__(run)
        self._ctx = mp.get_context("spawn")
        self.slots: list[LocalSlot] = [LocalSlot(i, d) for i, d in enumerate(devices)]

    def start(self) -> dict[str, Any]:
        """Start the workers and wait until each has loaded the model; returns one's description."""
        for slot in self.slots:
            self._spawn(slot)
        return self._first_ready()

    def _spawn(self, slot: LocalSlot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.spec, slot.device, os.getpid()),
                                 name=f"annosim-worker-{slot.index}")
        proc.start()
        child.close()
        slot.process, slot.conn, slot.state, slot.job, slot.pid = proc, parent, SlotState.STARTING, None, proc.pid

    def _dispatch(self, slot: LocalSlot, job: Job) -> None:
        assert self.sink is not None
        try:
            slot.conn.send((job.ref, self.sink.done_for(job.ref.case_id)))
        except OSError:  # died between jobs; noticed by _wait
            pass

    def _drain(self, slot: LocalSlot) -> bool:
        """Handle every message waiting from ``slot``; False when its pipe is closed (worker gone)."""
        while slot.alive:
            try:
                if not slot.conn.poll():
                    return True
                msg = slot.conn.recv()
            except (EOFError, OSError):
                return False
            except Exception:  # a message cut off by the worker's death
                return False
            self._handle(slot, msg)
        return True

    def _wait(self, timeout: float | None) -> None:
        watched: dict[Any, LocalSlot] = {}
        for slot in self.slots:
            if slot.alive:
                watched[slot.conn] = slot
                watched[slot.process.sentinel] = slot
        if not watched:
            return
        ready = mp_wait(list(watched), timeout)
        for slot in {id(watched[obj]): watched[obj] for obj in ready}.values():
            open_ = self._drain(slot)
            if slot.state is SlotState.DEAD:  # reported a fatal error while loading
                self._reap(slot)
                continue
            if not open_ or not slot.process.is_alive():
                self._drain(slot)
                code = self._reap(slot)
                self._lost(slot, exit_text(code))

    def _reap(self, slot: LocalSlot) -> int | None:
        proc = slot.process
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        try:
            slot.conn.close()
        except OSError:
            pass
        return proc.exitcode

    def _stop(self, slot: LocalSlot) -> None:
        slot.process.kill()
        slot.process.join(timeout=5)
        self._drain(slot)
        self._reap(slot)

    def close(self) -> None:
        """Tell idle workers to stop, then kill whatever is left."""
        for slot in self.slots:
            if slot.process is None or not slot.alive:
                continue
            try:
                slot.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for slot in self.slots:
            if slot.process is None:
                continue
            if slot.state is SlotState.BUSY:
                slot.process.kill()
            slot.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            try:
                slot.conn.close()
            except OSError:
                pass
            slot.state = SlotState.DEAD
