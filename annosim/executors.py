"""Where cases run: in the driver's process, in local worker processes, or on a Ray cluster.

Workers compute; only the driver writes the results folder. A worker loads the model once and
then runs whole cases it is handed: it receives a case (a :class:`CaseRef`) and the units of that
case already in the folder, and sends back finished units and error lines, which the driver
writes through a :class:`Sink`. Rows of a parallel run are appended as units finish, so their
order may differ from a sequential run's; the rows themselves are the same.

Executors
---------
:class:`InProcess`   one case after the other in the driver (the default: ``--workers 1``).
:class:`ProcessPool` ``--workers N`` and/or ``--devices cuda:0,cuda:1``: local processes started
                     with the ``spawn`` method (safe with torch and CUDA), one case each at a time,
                     units streamed to the driver as they finish.
:class:`RayPool`     ``--executor ray``: one Ray actor per worker (holding the model), one actor
                     task per case returning the case's units when the case ends.

Failures: a worker that dies (killed, segfault, out of memory, Ray node lost) loses only its case
in flight; the driver retries that case up to ``retries`` times on a fresh worker, then records it
in ``errors.jsonl`` (stage ``worker``). A case running longer than ``case_timeout`` seconds is
stopped (its worker is killed and replaced) and recorded (stage ``timeout``, not retried); the
clock starts when the case is handed to a worker. Units
that a worker finished before dying stay written; a rerun runs only what is missing.
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from annosim.data.layouts import CaseRef
from annosim.errors import AnnosimError, ConfigError
from annosim.results import UnitKey
from annosim.runner import UnitResult

if TYPE_CHECKING:  # pragma: no cover
    from annosim.execute import RunConfig

#: Values of ``--executor``.
EXECUTORS: tuple[str, ...] = ("local", "ray")

ErrorFn = Callable[[str, "int | None", str, str], None]


@dataclass
class Sink:
    """The driver's side of a run: the only code that touches the results folder.

    Attributes
    ----------
    done_for : callable
        ``done_for(case_id)`` -> units of that case already committed.
    emit : callable
        ``emit(unit, predictions)``: write one finished unit (or its error).
    on_error : callable
        ``on_error(case, label, stage, message)``: one line in ``errors.jsonl``.
    case_started, case_done : callable
        Progress callbacks, ``(CaseRef) -> None``.
    note : callable
        A one-line message for the user (retries, restarted workers).
    """

    done_for: Callable[[str], frozenset[UnitKey]]
    emit: Callable[[UnitResult, list[np.ndarray]], None]
    on_error: ErrorFn
    case_started: Callable[[CaseRef], None] = lambda ref: None
    case_done: Callable[[CaseRef], None] = lambda ref: None
    note: Callable[[str], None] = lambda text: None


# ---------------------------------------------------------------------------------------------
# options
def check_execution_options(cfg: "RunConfig") -> None:
    """Refuse inconsistent scale-out options before anything starts (ConfigError)."""
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {cfg.executor!r}")
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {cfg.retries}")
    if cfg.case_timeout is not None and not cfg.case_timeout > 0:
        raise ConfigError(f"--case-timeout must be a positive number of seconds, got {cfg.case_timeout}")
    if not cfg.gpus_per_case >= 0:
        raise ConfigError(f"--gpus-per-case must be 0 or more, got {cfg.gpus_per_case}")
    if any(not d.strip() for d in cfg.devices):
        raise ConfigError("--devices: empty device name")
    if cfg.executor == "local":
        if cfg.address:
            raise ConfigError("--address is for --executor ray")
        if cfg.gpus_per_case:
            raise ConfigError("--gpus-per-case is a Ray resource (--executor ray); locally use --devices")
    else:
        if cfg.devices:
            raise ConfigError("--devices is for --executor local; Ray assigns GPUs with --gpus-per-case")
    if cfg.devices and "device" in cfg.model_args:
        raise ConfigError("give the device either with --devices or with --model-arg device=..., not both")


def make_executor(cfg: "RunConfig", n_cases: int) -> "InProcess | ProcessPool | RayPool":
    """The executor ``cfg`` asks for, sized for ``n_cases`` cases."""
    check_execution_options(cfg)
    if cfg.executor == "ray":
        return RayPool(cfg, n_cases)
    devices = list(cfg.devices)
    n = cfg.workers or (len(devices) if devices else 1)
    if n == 1 and not devices and cfg.case_timeout is None:
        return InProcess(cfg)
    n = max(1, min(n, n_cases))
    return ProcessPool(cfg, [devices[i % len(devices)] if devices else None for i in range(n)])


def worker_config(cfg: "RunConfig") -> "RunConfig":
    """``cfg`` as workers get it: a ``file.py:Class`` model spec made absolute (workers may run
    in another working directory)."""
    module, sep, attr = cfg.model.rpartition(":")
    if sep and (module.endswith(".py") or "/" in module or "\\" in module):
        return replace(cfg, model=f"{Path(module).expanduser().resolve()}:{attr}")
    return cfg


# ---------------------------------------------------------------------------------------------
# the model side, in whatever process runs cases
def _model_class(spec: str) -> Any:
    from annosim.models.registry import model_class

    return model_class(spec)


def accepts_device(cls: Any) -> bool:
    """Whether a model constructor takes ``device`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "device" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class CaseWorker:
    """The model (loaded once) and the protocols of a run; runs whole cases.

    ``device``: passed to the model as ``device=`` when its constructor accepts one; otherwise a
    ``cuda:K`` device restricts this process to GPU K through ``CUDA_VISIBLE_DEVICES``.
    """

    def __init__(self, cfg: "RunConfig", device: str | None = None) -> None:
        from annosim.execute import build_protocols, check_model_supports
        from annosim.models.registry import load_model, model_info

        self.cfg = cfg
        args = dict(cfg.model_args)
        if device is not None:
            try:
                takes = accepts_device(_model_class(cfg.model))
            except AnnosimError:
                takes = False  # load_model below reports the problem with its own hint
            if takes:
                args["device"] = device
            elif device.startswith("cuda:"):
                os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        self.device = device
        self.model = load_model(cfg.model, args)
        self.protocols = build_protocols(cfg.protocols, cfg.protocol_args)
        check_model_supports(self.model, self.protocols)
        self.info = model_info(self.model)

    def run_case(
        self,
        ref: CaseRef,
        done: frozenset[UnitKey],
        emit: Callable[[UnitResult, list[np.ndarray]], None],
        on_error: ErrorFn,
    ) -> None:
        """Every unit of ``ref`` not in ``done``; an unexpected exception ends this case only."""
        from annosim.execute import process_case

        try:
            process_case(ref, self.model, self.protocols, self.cfg, done.__contains__, emit, on_error)
        except Exception as exc:  # a plugin bug or an unexpected library error: this case only
            on_error(ref.case_id, None, "model", f"{ref.image}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
class InProcess:
    """Cases one after the other in the driver's process (no retries, no timeout)."""

    def __init__(self, cfg: "RunConfig") -> None:
        self.cfg = cfg
        self.worker: CaseWorker | None = None

    def start(self) -> dict[str, Any]:
        """Load the model; returns its description for run.json."""
        self.worker = CaseWorker(self.cfg)
        return self.worker.info

    def run(self, refs: Sequence[CaseRef], sink: Sink) -> None:
        from annosim.execute import process_case

        assert self.worker is not None, "start() first"
        for ref in refs:
            sink.case_started(ref)
            process_case(
                ref, self.worker.model, self.worker.protocols, self.cfg,
                lambda key, _d=sink.done_for(ref.case_id): key in _d, sink.emit, sink.on_error,
            )
            sink.case_done(ref)

    def close(self) -> None:
        self.worker = None

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
@dataclass
class _Job:
    """One case to run; ``attempts`` counts the tries lost to dead workers."""

    ref: CaseRef
    attempts: int = 0


@dataclass
class _Slot:
    """One worker place: its process or actor, state (starting, ready, busy, dead) and case."""

    index: int
    device: str | None = None
    handle: Any = None  # Process (local) or actor handle (Ray)
    conn: Any = None  # local: the driver's end of the pipe
    state: str = "starting"
    job: _Job | None = None
    since: float = 0.0
    pid: int | None = None
    pending: Any = None  # Ray: the ObjectRef being waited for
    info: dict[str, Any] | None = None  # the model's description, from the worker

    def label(self) -> str:
        parts = [f"pid {self.pid}" if self.pid else f"worker {self.index}"]
        if self.device:
            parts.append(self.device)
        return ", ".join(parts)


class _Pool:
    """Scheduling shared by the local and Ray pools: queue, retries, timeouts, error lines."""

    def __init__(self, cfg: "RunConfig") -> None:
        self.cfg = worker_config(cfg)
        self.slots: list[_Slot] = []
        self.queue: deque[_Job] = deque()
        self.sink: Sink | None = None
        self.last_fatal = ""

    # -- to implement ---------------------------------------------------------------------------
    def _dispatch(self, slot: _Slot, job: _Job) -> None:
        raise NotImplementedError

    def _wait(self, timeout: float | None) -> None:
        raise NotImplementedError

    def _stop(self, slot: _Slot) -> None:
        """Kill the slot's worker now and collect what it sent before dying."""
        raise NotImplementedError

    def _spawn(self, slot: _Slot) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def run(self, refs: Sequence[CaseRef], sink: Sink) -> None:
        """Run every case of ``refs``; returns when each is done or recorded as failed."""
        self.sink = sink
        self.queue = deque(_Job(ref) for ref in refs)
        while True:
            for slot in self.slots:
                if slot.state == "ready" and self.queue:
                    job = self.queue.popleft()
                    slot.job, slot.state, slot.since = job, "busy", time.monotonic()
                    sink.case_started(job.ref)
                    self._dispatch(slot, job)
            busy = [s for s in self.slots if s.state == "busy"]
            if not busy and not self.queue:
                return
            if not busy and not any(s.state == "starting" for s in self.slots):
                why = self.last_fatal or "every worker died"
                while self.queue:
                    job = self.queue.popleft()
                    self._record(job, "worker", f"{job.ref.image}: not run, no worker left ({why})")
                return
            self._wait(self._time_left(busy))
            self._check_timeouts()

    def _time_left(self, busy: list[_Slot]) -> float | None:
        if self.cfg.case_timeout is None or not busy:
            return None
        now = time.monotonic()
        return max(0.0, min(s.since + self.cfg.case_timeout - now for s in busy))

    def _check_timeouts(self) -> None:
        if self.cfg.case_timeout is None:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.state == "busy" and now - slot.since >= self.cfg.case_timeout and slot.job is not None:
                job = slot.job
                self._stop(slot)
                if slot.job is job:  # it did not finish while being stopped
                    slot.job = None
                    self._record(
                        job, "timeout",
                        f"{job.ref.image}: exceeded --case-timeout of {self.cfg.case_timeout:g} s; "
                        "stopped (units finished before are kept)",
                    )
                self._spawn(slot)

    def _record(self, job: _Job, stage: str, message: str) -> None:
        assert self.sink is not None
        self.sink.on_error(job.ref.case_id, None, stage, message)
        self.sink.case_done(job.ref)

    def _lost(self, slot: _Slot, how: str) -> None:
        """The slot's worker died (``how``: 'was killed by SIGKILL'...): retry its case or record it."""
        job, slot.job = slot.job, None
        was_starting = slot.state == "starting"
        slot.state = "dead"
        if was_starting:
            self.last_fatal = f"the process {how}"
            return  # a worker that cannot start is not restarted (it would fail again)
        if job is not None:
            assert self.sink is not None, "cases are handed out by run()"
            job.attempts += 1
            msg = f"{job.ref.image}: the worker running this case ({slot.label()}) {how}"
            if job.attempts <= self.cfg.retries:
                self.sink.note(f"{job.ref.case_id}: {msg}; retrying ({job.attempts}/{self.cfg.retries})")
                self.queue.appendleft(job)
            else:
                self._record(job, "worker", msg + "; case not completed")
        if self.sink is not None:
            self.sink.note(f"worker ({slot.label()}) {how}; starting a new one")
        self._spawn(slot)

    def _handle(self, slot: _Slot, msg: tuple) -> None:
        """One message from a worker."""
        kind = msg[0]
        if kind in ("unit", "error", "done"):
            assert self.sink is not None, "run() dispatches cases"
        if kind == "unit":
            self.sink.emit(msg[1], msg[2])
        elif kind == "error":
            self.sink.on_error(*msg[1:5])
        elif kind == "done":
            job, slot.job = slot.job, None
            slot.state = "ready"
            if job is not None:
                self.sink.case_done(job.ref)
        elif kind == "ready":
            slot.state, slot.info, slot.pid = "ready", msg[1], msg[2]
        elif kind == "fatal":
            slot.state = "dead"
            self.last_fatal = msg[1]

    def _done_for(self, job: _Job) -> frozenset[UnitKey]:
        assert self.sink is not None
        return self.sink.done_for(job.ref.case_id)

    def _first_ready(self, every: bool = True) -> dict[str, Any]:
        """Wait until the workers (``every``) or one of them have loaded the model; returns its
        description. Raises ConfigError when a worker cannot load it."""
        while True:
            for slot in self.slots:
                if slot.state == "dead":
                    msg = f"a worker ({slot.label()}) could not load the model: {self.last_fatal}"
                    self.close()
                    raise ConfigError(msg)
            ready = [s for s in self.slots if s.state == "ready"]
            if ready and (not every or len(ready) == len(self.slots)):
                return dict(ready[0].info or {})
            self._wait(None)

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# local processes
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


def _sender(conn: Any) -> Callable[[tuple], None]:
    def send(msg: tuple) -> None:
        try:
            conn.send(msg)
        except (OSError, EOFError) as exc:
            raise _DriverGone() from exc

    return send


def _worker_main(conn: Any, cfg: "RunConfig", device: str | None, parent_pid: int) -> None:
    """Body of a local worker process: load the model, then run cases until told to stop."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's; it stops the workers
    send = _sender(conn)
    try:
        try:
            worker = CaseWorker(cfg, device)
        except AnnosimError as exc:
            send(("fatal", str(exc)))
            return
        except Exception as exc:  # e.g. CUDA out of memory while loading weights
            send(("fatal", f"{type(exc).__name__}: {exc}"))
            return
        send(("ready", worker.info, os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            ref, done = msg
            worker.run_case(
                ref,
                done,
                lambda unit, preds: send(("unit", unit, preds)),
                lambda case, label, stage, text: send(("error", case, label, stage, text)),
            )
            send(("done",))
    except _DriverGone:
        return


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessPool(_Pool):
    """Local worker processes (``spawn``), one per entry of ``devices`` (``None``: CPU default)."""

    def __init__(self, cfg: "RunConfig", devices: Sequence[str | None]) -> None:
        super().__init__(cfg)
        self._ctx = mp.get_context("spawn")
        self.slots = [_Slot(i, d) for i, d in enumerate(devices)]

    def start(self) -> dict[str, Any]:
        """Start the workers and wait until each has loaded the model; returns one's description."""
        for slot in self.slots:
            self._spawn(slot)
        return self._first_ready()

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.cfg, slot.device, os.getpid()),
            name=f"annosim-worker-{slot.index}",
        )
        proc.start()
        child.close()
        slot.handle, slot.conn, slot.state, slot.job, slot.pid = proc, parent, "starting", None, proc.pid

    def _dispatch(self, slot: _Slot, job: _Job) -> None:
        try:
            slot.conn.send((job.ref, self._done_for(job)))
        except OSError:  # died between jobs; noticed by _wait
            pass

    def _drain(self, slot: _Slot) -> bool:
        """Handle every message waiting from ``slot``; False when its pipe is closed (worker gone)."""
        while slot.state in ("starting", "ready", "busy"):
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
        watched: dict[Any, _Slot] = {}
        for slot in self.slots:
            if slot.state in ("starting", "ready", "busy"):
                watched[slot.conn] = slot
                watched[slot.handle.sentinel] = slot
        if not watched:
            return
        ready = mp_wait(list(watched), timeout)
        for slot in {id(watched[obj]): watched[obj] for obj in ready}.values():
            open_ = self._drain(slot)
            if slot.state == "dead":  # reported a fatal error while loading
                self._reap(slot)
                continue
            if not open_ or not slot.handle.is_alive():
                self._drain(slot)
                code = self._reap(slot)
                self._lost(slot, _exit_text(code))

    def _reap(self, slot: _Slot) -> int | None:
        proc = slot.handle
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        try:
            slot.conn.close()
        except OSError:
            pass
        return proc.exitcode

    def _stop(self, slot: _Slot) -> None:
        slot.handle.kill()
        slot.handle.join(timeout=5)
        self._drain(slot)
        self._reap(slot)

    def close(self) -> None:
        """Tell idle workers to stop, then kill whatever is left."""
        for slot in self.slots:
            if slot.handle is None or slot.state == "dead":
                continue
            try:
                slot.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for slot in self.slots:
            if slot.handle is None:
                continue
            if slot.state == "busy":
                slot.handle.kill()
            slot.handle.join(timeout=max(0.1, deadline - time.monotonic()))
            if slot.handle.is_alive():
                slot.handle.kill()
                slot.handle.join(timeout=5)
            try:
                slot.conn.close()
            except OSError:
                pass
            slot.state = "dead"


# ---------------------------------------------------------------------------------------------
# Ray
class CaseActor:
    """Body of a Ray actor: one model per actor process, one actor task per case."""

    def __init__(self, cfg: "RunConfig") -> None:
        self.cfg = cfg
        self.worker: CaseWorker | None = None

    def load(self) -> tuple:
        """``("ready", model description, pid)`` or ``("fatal", message)``; never raises."""
        try:
            self.worker = CaseWorker(self.cfg)
        except AnnosimError as exc:
            return ("fatal", str(exc))
        except Exception as exc:
            return ("fatal", f"{type(exc).__name__}: {exc}")
        return ("ready", self.worker.info, os.getpid())

    def run_case(self, ref: CaseRef, done: frozenset[UnitKey]) -> list[tuple]:
        """The messages of one case (units and error lines), returned when the case ends."""
        assert self.worker is not None, "load() first"
        out: list[tuple] = []
        self.worker.run_case(
            ref,
            done,
            lambda unit, preds: out.append(("unit", unit, preds)),
            lambda case, label, stage, text: out.append(("error", case, label, stage, text)),
        )
        return out


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'annosim[ray]'") from None
    return ray


class RayPool(_Pool):
    """Ray actors on a cluster (``address``; ``None``: the running session or a new local one)."""

    def __init__(self, cfg: "RunConfig", n_cases: int) -> None:
        super().__init__(cfg)
        self.n_cases = max(1, n_cases)
        self._ray: Any = None
        self._owns_session = False
        self._actor_cls: Any = None

    def start(self) -> dict[str, Any]:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.cfg.address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot start or reach Ray (--address {self.cfg.address!r}): {exc}") from None
            self._owns_session = True
        res = ray.cluster_resources()
        n = int(res.get("CPU", 1))
        if self.cfg.gpus_per_case > 0:
            n_gpu = int(res.get("GPU", 0) / self.cfg.gpus_per_case + 1e-9)
            if n_gpu < 1:
                self.close()
                raise ConfigError(
                    f"--gpus-per-case {self.cfg.gpus_per_case:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs"
                )
            n = min(n, n_gpu)
        n = self.cfg.workers or max(1, min(n, self.n_cases))
        self._actor_cls = ray.remote(CaseActor)
        self.slots = [_Slot(i) for i in range(n)]
        for slot in self.slots:
            self._spawn(slot)
        return self._first_ready(every=False)  # actors beyond the cluster's room may wait long

    def _spawn(self, slot: _Slot) -> None:
        actor = self._actor_cls.options(
            num_cpus=1, num_gpus=self.cfg.gpus_per_case, max_restarts=0, max_task_retries=0
        ).remote(self.cfg)
        slot.handle, slot.state, slot.job, slot.pid = actor, "starting", None, None
        slot.pending = actor.load.remote()

    def _dispatch(self, slot: _Slot, job: _Job) -> None:
        slot.pending = slot.handle.run_case.remote(job.ref, self._done_for(job))

    def _wait(self, timeout: float | None) -> None:
        ray = self._ray
        watched = {s.pending: s for s in self.slots if s.state in ("starting", "busy") and s.pending is not None}
        if not watched:
            if timeout:
                time.sleep(timeout)
            return
        ready, _ = ray.wait(list(watched), num_returns=1, timeout=timeout)
        for ref in ready:
            slot = watched[ref]
            slot.pending = None
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # raised inside the task's code: not transient
                cause = getattr(exc, "cause", None) or exc
                text = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
                if slot.state == "starting":
                    slot.state, self.last_fatal = "dead", text
                else:
                    job, slot.job, slot.state = slot.job, None, "ready"
                    if job is not None:
                        self._record(job, "model", f"{job.ref.image}: {text}")
                continue
            except ray.exceptions.RayError as exc:  # actor/worker/node died: transient
                self._kill(slot)
                self._lost(slot, f"died ({type(exc).__name__})")
                continue
            if slot.state == "starting":
                self._handle(slot, result)
                continue
            for msg in result:
                self._handle(slot, msg)
            self._handle(slot, ("done",))

    def _kill(self, slot: _Slot) -> None:
        try:
            self._ray.kill(slot.handle, no_restart=True)
        except Exception:  # already gone
            pass

    def _stop(self, slot: _Slot) -> None:
        slot.pending = None
        self._kill(slot)

    def close(self) -> None:
        if self._ray is None:
            return
        for slot in self.slots:
            if slot.handle is not None:
                self._kill(slot)
            slot.state = "dead"
        if self._owns_session:
            self._ray.shutdown()
            self._owns_session = False
