"""Where cases run: in the driver's process, in local worker processes, or on a Ray cluster.

=========================  ===================================================================
:class:`InProcess`         one case after the other in the driver (the default: ``--workers 1``)
:class:`ProcessPool`       ``--workers N`` / ``--devices cuda:0,cuda:1``: local ``spawn`` processes
:class:`RayPool`           ``--executor ray``: one Ray actor per worker, one task per case
=========================  ===================================================================

Every backend runs cases through the one :class:`CaseWorker` (:mod:`.base`) and reports through
typed messages; only the driver writes the results folder. Adding a backend: a class with
``start``, ``run(refs, sink)`` and ``close`` (:class:`Executor`), chosen in :func:`make_executor`.
"""

from __future__ import annotations

from annosim.config import ResolvedRun
from annosim.executors.base import CaseWorker, Executor, Sink, accepts_device
from annosim.executors.inprocess import InProcess
from annosim.executors.local import ProcessPool
from annosim.executors.ray import RayPool

__all__ = ["CaseWorker", "Executor", "InProcess", "ProcessPool", "RayPool", "Sink", "accepts_device",
           "make_executor"]


def make_executor(run: ResolvedRun, n_cases: int) -> Executor:
    """The executor the run's execution spec asks for, sized for ``n_cases`` cases."""
    ex = run.spec.execution
    if ex.executor == "ray":
        return RayPool(run, n_cases)
    devices = list(ex.devices)
    n = ex.workers or (len(devices) if devices else 1)
    if n == 1 and not devices and ex.case_timeout is None:
        return InProcess(run)
    n = max(1, min(n, n_cases))
    return ProcessPool(run, [devices[i % len(devices)] if devices else None for i in range(n)])
