"""``--executor ray``: one Ray actor per worker (holding the model), one actor task per case
returning the case's messages when the case ends."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from annosim.config import ResolvedRun, RunSpec
from annosim.data.layouts import CaseRef
from annosim.errors import ConfigError
from annosim.executors.base import CaseDoneMsg, CaseWorker, Message, load_worker
from annosim.executors.pool import Job, Pool, Slot, SlotState
from annosim.schema import UnitKey


@dataclass
class RaySlot(Slot):
    """A worker place of a Ray pool: its actor and the task being waited for."""

    actor: Any = None
    pending: Any = None


class CaseActor:
    """Body of a Ray actor: one model per actor process, one actor task per case."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.worker: CaseWorker | None = None

    def load(self) -> Message:
        """A ReadyMsg or a FatalMsg; never raises."""
        self.worker, hello = load_worker(self.spec)
        return hello

    def run_case(self, ref: CaseRef, done: frozenset[UnitKey]) -> list[Message]:
        """The messages of one case (units and error lines), returned when the case ends."""
        assert self.worker is not None, "load() first"
        out: list[Message] = []
        self.worker.run_case(ref, done, out.append)
        return out


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'annosim[ray]'") from None
    return ray


def gpu_problem(spec: RunSpec, cluster_gpus: float) -> str | None:
    """Why the run would silently compute on the CPU (one line), or ``None``.

    Ray gives an actor with ``num_gpus=0`` an empty ``CUDA_VISIBLE_DEVICES``: a model that asks for
    CUDA (``--model-arg device=cuda...``), or a built-in that defaults to CUDA on a cluster with
    GPUs, would see none. That needs ``--gpus-per-case`` > 0, never a quiet fall-back.
    """
    from annosim.models.registry import wants_cuda

    if spec.execution.gpus_per_case > 0 or not wants_cuda(spec.model.name, dict(spec.model.args), cluster_gpus > 0):
        return None
    device = spec.model.args.get("device")
    why = (f"the model asks for device {device}" if device is not None else
           f"model {spec.model.name!r} runs on CUDA by default and the Ray cluster has {cluster_gpus:g} GPU(s)")
    return (f"--executor ray: {why}, but with --gpus-per-case 0 Ray hides every GPU from the actors; "
            "give --gpus-per-case 1 (or a fraction such as 0.5 to share a GPU), or --model-arg device=cpu")


class RayPool(Pool):
    """Ray actors on a cluster (``address``; ``None``: the running session or a new local one)."""

    def __init__(self, run: ResolvedRun, n_cases: int) -> None:
        super().__init__(run)
        self.n_cases = max(1, n_cases)
        self._ray: Any = None
        self._owns_session = False
        self._actor_cls: Any = None
        self.slots: list[RaySlot] = []

    def start(self) -> dict[str, Any]:
        ex = self.spec.execution
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=ex.address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot start or reach Ray (--address {ex.address!r}): {exc}") from None
            self._owns_session = True
        res = ray.cluster_resources()
        problem = gpu_problem(self.spec, float(res.get("GPU", 0)))
        if problem is not None:
            self.close()
            raise ConfigError(problem)
        n = int(res.get("CPU", 1))
        if ex.gpus_per_case > 0:
            n_gpu = int(res.get("GPU", 0) / ex.gpus_per_case + 1e-9)
            if n_gpu < 1:
                self.close()
                raise ConfigError(f"--gpus-per-case {ex.gpus_per_case:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs")
            n = min(n, n_gpu)
        n = ex.workers or max(1, min(n, self.n_cases))
        self._actor_cls = ray.remote(CaseActor)
        self.slots = [RaySlot(i) for i in range(n)]
        for slot in self.slots:
            self._spawn(slot)
        return self._first_ready(every=False)  # actors beyond the cluster's room may wait long

    def _spawn(self, slot: RaySlot) -> None:
        actor = self._actor_cls.options(
            num_cpus=1, num_gpus=self.spec.execution.gpus_per_case, max_restarts=0, max_task_retries=0
        ).remote(self.spec)
        slot.actor, slot.state, slot.job, slot.pid = actor, SlotState.STARTING, None, None
        slot.pending = actor.load.remote()

    def _dispatch(self, slot: RaySlot, job: Job) -> None:
        assert self.sink is not None
        slot.pending = slot.actor.run_case.remote(job.ref, self.sink.done_for(job.ref.case_id))

    def _wait(self, timeout: float | None) -> None:
        ray = self._ray
        watched = {s.pending: s for s in self.slots
                   if s.state in (SlotState.STARTING, SlotState.BUSY) and s.pending is not None}
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
                if slot.state is SlotState.STARTING:
                    slot.state, self.last_fatal = SlotState.DEAD, text
                else:
                    job, slot.job, slot.state = slot.job, None, SlotState.READY
                    if job is not None:
                        self._record(job, "model", f"{job.ref.image}: {text}")
                continue
            except ray.exceptions.RayError as exc:  # actor/worker/node died: transient
                self._kill(slot)
                self._lost(slot, f"died ({type(exc).__name__})")
                continue
            if slot.state is SlotState.STARTING:
                self._handle(slot, result)
                continue
            for msg in result:
                self._handle(slot, msg)
            self._handle(slot, CaseDoneMsg())

    def _kill(self, slot: RaySlot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass

    def _stop(self, slot: RaySlot) -> None:
        slot.pending = None
        self._kill(slot)

    def close(self) -> None:
        if self._ray is None:
            return
        for slot in self.slots:
            if slot.actor is not None:
                self._kill(slot)
            slot.state = SlotState.DEAD
        if self._owns_session:
            self._ray.shutdown()
            self._owns_session = False
