"""``annosim run``: a validated spec run over a dataset into a resumable results folder.

The driver validates the spec, checks that ``--out`` can be written, opens the dataset, starts
the executor, and writes every unit the workers send as soon as it arrives; failures go to
``errors.jsonl`` and the run goes on. It exits non-zero at the end when anything failed.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from annosim.config import ResolvedRun, RunSpec, orientation_of, validate
from annosim.data.layouts import CaseRef, open_dataset
from annosim.data.preflight import check_command_line_files, check_label_names
from annosim.errors import ConfigError, ResultsFolderError, RunInterrupted
from annosim.files import check_out_folder, fingerprint_changes, input_fingerprint
from annosim.models.registry import model_identity
from annosim.results import ResultsFolder, provenance, write_failure
from annosim.schema import ErrorRecord, UnitKey, UnitResult, prediction_path, round_columns


@dataclass
class RunReport:
    """What a run did: units written now, units resumed, errors, and the summary table."""

    out: Path
    written: int = 0
    skipped: int = 0
    errors: int = 0
    summary: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def run_identity(run: ResolvedRun, dataset_desc: dict[str, Any]) -> dict[str, Any]:
    """The configuration part of run.json (a folder resumes only under the same one)."""
    spec, ev = run.spec, run.spec.evaluation
    return {
        "protocols": [{**p.describe(), "orientation": orientation_of(p, ev.orientation)} for p in run.protocols],
        "model": model_identity(spec.model.name, spec.model.args),
        "data": dataset_desc,
        "settings": list(ev.settings),
        "labels": None if spec.data.labels is None else list(spec.data.labels),
        "seed": ev.seed,
        "nsd_tolerance": ev.nsd_tolerance,
        "surface_metrics": ev.surface_metrics,
        "metrics": run.metrics.describe(),
        "orientation": ev.orientation,
    }


def check_out_dir(out: Path) -> None:
    """ConfigError (one line) unless ``out`` is, or can be created as, a writable folder
    (see :func:`annosim.files.check_out_folder`; nothing is left behind)."""
    check_out_folder(out, "--out")


def save_unit_predictions(out: Path, key: UnitKey, predictions: list[np.ndarray]) -> str:
    """Write one unit's kept predictions (``round_K`` bool (Z, Y, X)) atomically; returns the
    file's path relative to ``out`` (recorded in the journal). ResultsFolderError when the path
    would resolve outside ``out`` (a symbolic link inside it pointing away)."""
    try:
        path = prediction_path(out, key)
    except ValueError as exc:
        raise ResultsFolderError(str(exc)) from None
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, **{f"round_{i + 1}": p for i, p in enumerate(predictions)})
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_failure(path, exc) from exc
    return path.relative_to(out).as_posix()


class StoreSink:
    """The driver's :class:`annosim.executors.base.Sink`: writes units and error lines into the
    open results folder and keeps the counts and the progress bar.

    Order: units are committed in manifest order (case order, then the order a case sends its
    units) whatever the executor. Units of the first unfinished case are written as they arrive;
    those of later cases wait in a reorder buffer (rows and prompts only: predictions go to disk
    at once) until every earlier case is done. A driver killed meanwhile loses only the buffered
    units, which a rerun recomputes; the committed units always form a prefix in manifest order.
    """

    def __init__(self, store: ResultsFolder, report: RunReport, save_predictions: bool, bar: Any,
                 order: Sequence[str] = (), inputs: dict[str, list[dict[str, Any]]] | None = None,
                 verify_data: bool = False) -> None:
        self.store, self.report, self.save_predictions, self.bar = store, report, save_predictions, bar
        #: Fingerprints of each case's input files (taken when the case starts), recorded per unit.
        self.inputs = dict(inputs or {})
        self.verify_data = verify_data
        self._seen: set[ErrorRecord] = set()
        self._order = list(order)
        self._head = 0  # index in _order of the first case not yet done
        self._finished: set[str] = set()
        self._buffer: dict[str, list[tuple[UnitResult, dict[str, Any]]]] = {}

    def done_for(self, case_id: str) -> frozenset[UnitKey]:
        buffered = {r.key for r, _ in self._buffer.get(case_id, [])}
        return frozenset(k for k in self.store.done_units if k.case == case_id) | buffered

    def unit(self, result: UnitResult, predictions: list[np.ndarray]) -> None:
        if result.error is not None:
            self.error(result.error, quiet=True)
            return
        case = result.key.case
        if result.key in self.done_for(case):  # a retried case sent it again
            return
        extra: dict[str, Any] = {}
        if case in self.inputs:
            extra["inputs"] = self.inputs[case]
        if self.save_predictions:
            extra["predictions"] = save_unit_predictions(self.report.out, result.key, predictions)
        if self._head < len(self._order) and case != self._order[self._head] and case in self._order:
            self._buffer.setdefault(case, []).append((result, extra))
            return
        self._commit(result, extra)

    def _commit(self, result: UnitResult, extra: dict[str, Any]) -> None:
        self.store.write_unit(result.key, result.rows, result.prompts, extra)
        self.report.written += 1
        self.bar.set_postfix(objects=self.report.written + self.report.skipped, errors=self.report.errors,
                             refresh=False)

    def _advance(self) -> None:
        """Commit the buffered units of every case whose predecessors are all done."""
        while self._head < len(self._order) and self._order[self._head] in self._finished:
            self._head += 1
            if self._head < len(self._order):
                for result, extra in self._buffer.pop(self._order[self._head], []):
                    self._commit(result, extra)

    def finish(self) -> None:
        """Commit whatever is still buffered, in manifest order (the executor returned)."""
        for case in self._order[self._head:]:
            for result, extra in self._buffer.pop(case, []):
                self._commit(result, extra)
        self._head = len(self._order)

    def error(self, record: ErrorRecord, quiet: bool = False) -> None:
        if record in self._seen:  # a retried case reported it again
            return
        self._seen.add(record)
        self.store.write_error(record)
        self.report.errors += 1
        if not quiet:
            self.bar.write(f"annosim: {record.case}: {record.error}", file=sys.stderr)

    def case_started(self, ref: CaseRef) -> None:
        if ref.case_id not in self.inputs:
            self.inputs[ref.case_id] = input_fingerprint([ref.image, *ref.labels], self.verify_data)
        self.bar.set_description(ref.case_id[:24])

    def case_done(self, ref: CaseRef) -> None:
        self._finished.add(ref.case_id)
        self._advance()
        self.bar.update(1)

    def note(self, text: str) -> None:
        self.bar.write(f"annosim: {text}", file=sys.stderr)


def changed_cases(store: ResultsFolder, refs: Sequence[CaseRef], content: bool,
                  ) -> tuple[dict[str, list[str]], dict[str, list[dict[str, Any]]]]:
    """Cases with committed units whose input files differ from what their units recorded
    (case id -> one phrase per changed file), and the fingerprints taken now (case id -> list)."""
    recorded: dict[str, list[dict[str, Any]]] = {}
    for key, unit in store.units.items():
        if isinstance(unit.get("inputs"), list):
            recorded.setdefault(key.case, unit["inputs"])
    changed: dict[str, list[str]] = {}
    now: dict[str, list[dict[str, Any]]] = {}
    for ref in refs:
        if ref.case_id in recorded:
            now[ref.case_id] = input_fingerprint([ref.image, *ref.labels], content)
            diffs = fingerprint_changes(recorded[ref.case_id], now[ref.case_id])
            if diffs:
                changed[ref.case_id] = diffs
    return changed, now


def _refuse_or_drop_changed(store: ResultsFolder, refs: Sequence[CaseRef], d: Any
                            ) -> dict[str, list[dict[str, Any]]]:
    """Refuse a rerun whose inputs changed (naming the files) unless ``--allow-changed-data``,
    then drop the changed cases' units so that they are recomputed, never mixed."""
    changed, now = changed_cases(store, refs, d.verify_data)
    if not changed:
        return now
    files = [f for diffs in changed.values() for f in diffs]
    shown = "; ".join(files[:6]) + (f"; ... and {len(files) - 6} more" if len(files) > 6 else "")
    if not d.allow_changed_data:
        raise ResultsFolderError(
            f"{store.path}: input files changed since their units were written ({shown}); refusing to mix "
            "results: rerun with --allow-changed-data to recompute those cases, or give a new --out folder")
    store.drop_cases(set(changed))
    print(f"annosim: {len(changed)} case(s) with changed inputs are recomputed ({shown})", file=sys.stderr)
    return now


def _present_cases(refs: list[CaseRef]) -> list[CaseRef]:
    """``refs`` without the cases whose files are missing (``DataSpec.skip_missing``); prints
    how many were skipped and the first missing paths (:func:`annosim.data.inspect.missing_files`)."""
    from annosim.data.inspect import missing_files

    bad, lines = missing_files(refs, hint=False)
    if bad:
        print(f"annosim: {len(bad)} of {len(refs)} cases skipped: their files are missing", file=sys.stderr)
        for line in lines:
            print(f"annosim: {line}", file=sys.stderr)
    return [r for r in refs if r.case_id not in bad]


def run_benchmark(
    spec: RunSpec | ResolvedRun,
    *,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> RunReport:
    """Run ``spec`` into ``spec.out``, resuming what is already there; returns a RunReport.

    Everything that can be checked without reading a case is checked first (ConfigError, with
    nothing created). Whatever executor runs the cases, only this process writes the folder.
    """
    from tqdm import tqdm

    from annosim.executors import make_executor

    run = spec if isinstance(spec, ResolvedRun) else validate(spec)
    spec = run.spec
    check_out_dir(spec.out)
    d = spec.data
    dataset = open_dataset(d.spec, layout=d.layout, data_root=d.data_root, split=d.split, label_names=d.label_names)
    refs = list(dataset.cases)
    if d.skip_missing:
        refs = _present_cases(refs)
    refs = refs[: d.limit] if d.limit else refs
    check_command_line_files(dataset)
    check_label_names(refs, d.labels)
    identity = run_identity(run, dataset.describe())
    report = RunReport(Path(spec.out))
    ex = spec.execution
    with make_executor(run, len(refs)) as executor:
        meta = {**provenance(), "model_info": executor.start()}
        meta["execution"] = {  # where the first invocation ran (not part of the configuration)
            "executor": ex.executor, "workers": ex.workers, "devices": list(ex.devices),
            "gpus_per_case": ex.gpus_per_case, "retries": ex.retries, "case_timeout": ex.case_timeout,
        }
        columns = round_columns(run.metrics.columns)
        with ResultsFolder(spec.out, columns).open(identity, meta) as store:
            for notice in store.notices:
                print(f"annosim: {notice}", file=sys.stderr)
            inputs = _refuse_or_drop_changed(store, refs, d)
            report.skipped = len(store.done_units)
            bar = tqdm(total=len(refs), unit="case", disable=progress is False if progress is not None else None,
                       dynamic_ncols=True, file=sys.stderr)
            sink = StoreSink(store, report, spec.evaluation.save_predictions, bar, [r.case_id for r in refs],
                             inputs, d.verify_data)
            try:
                executor.run(refs, sink)
                sink.finish()
            except KeyboardInterrupt:
                raise RunInterrupted(
                    f"interrupted: {report.written} units saved now, {report.written + report.skipped} in all in "
                    f"{report.out}; rerun the same command to resume"
                ) from None
            finally:
                bar.close()
    report.summary = summarize(report.out)
    echo(format_summary(report.summary))
    echo(
        f"results: {report.out}  ({report.written} units written, {report.skipped} resumed, "
        f"{report.errors} errors{' -> errors.jsonl' if report.errors else ''})"
    )
    return report


def summarize(out: Path) -> list[dict[str, Any]]:
    """Mean best-of-rounds Dice per (protocol, structure, setting) over the folder's rows."""
    from annosim.report.results_io import read_run
    from annosim.report.stats import object_table

    rounds = read_run(out).rounds
    if rounds.empty:
        return []
    objects = object_table(rounds.assign(carried=False))
    groups = objects.groupby(["protocol", "label_name", "setting"], sort=True)["best_dice"]
    return [{"protocol": p, "label_name": n, "setting": s, "n": int(len(v)), "best_dice": float(v.mean())}
            for (p, n, s), v in groups]


def format_summary(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`summarize` rows, one line per structure, settings as columns."""
    if not rows:
        return "no results"
    settings = sorted({r["setting"] for r in rows}, key=lambda s: (s != "full", s))
    table: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        table.setdefault((r["protocol"], r["label_name"]), {})[r["setting"]] = f"{r['best_dice']:.3f} (n={r['n']})"
    width = max(len(n) for _, n in table) + 2
    lines = [f"{'structure':<{width}}" + "".join(f"{s:>16}" for s in settings) + "   protocol"]
    for (proto, name), cells in sorted(table.items()):
        lines.append(f"{name:<{width}}" + "".join(f"{cells.get(s, '-'):>16}" for s in settings) + f"   {proto}")
    return "\n".join(lines)

