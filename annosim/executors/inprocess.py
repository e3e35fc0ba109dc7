"""Cases one after the other in the driver's process (``--workers 1``, the default)."""

from __future__ import annotations

from typing import Any, Sequence

from annosim.config import ResolvedRun
from annosim.data.layouts import CaseRef
from annosim.executors.base import CaseWorker, Message, Sink, deliver


class InProcess:
    """Runs cases in this process through the same :class:`CaseWorker` as every other backend
    (no retries, no timeout: those need a separate process)."""

    def __init__(self, run: ResolvedRun) -> None:
        self.run_spec = run
        self.worker: CaseWorker | None = None

    def start(self) -> dict[str, Any]:
        """Load the model; returns its description for run.json."""
        self.worker = CaseWorker(self.run_spec)
        return self.worker.info

    def run(self, refs: Sequence[CaseRef], sink: Sink) -> None:
        assert self.worker is not None, "start() first"

        def send(msg: Message) -> None:
            deliver(msg, sink)

        for ref in refs:
            sink.case_started(ref)
            self.worker.run_case(ref, sink.done_for(ref.case_id), send)
            sink.case_done(ref)

    def close(self) -> None:
        self.worker = None

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
