"""``annosim experiment run|plan``: an experiment's units through the ordinary run path, then one report.

Each unit (dataset x model x protocol) is one :class:`annosim.config.RunSpec` run by
:func:`annosim.engine.driver.run_benchmark` into its own results folder, so each resumes and
refuses a changed configuration exactly as ``annosim run`` does. Datasets not found are reported
and skipped; the exit status is 0 when every dataset found ran without an error.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from annosim.config import ExecutionSpec
from annosim.experiments.locate import Unit, check_experiment, copy_datalists, units
from annosim.experiments.spec import Experiment


@dataclass
class ExperimentReport:
    """What an experiment run did: folders run, datasets missing, errors, reports written."""

    folders: list[Path]
    missing: list[str]
    errors: int = 0
    reports: list[Path] | None = None
    #: No dataset of the experiment was found under the data root (nothing ran: exit status 1).
    nothing_found: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if self.errors or self.nothing_found else 0


def _say(text: str) -> None:
    print(f"annosim: {text}", file=sys.stderr)


def run_experiment(exp: Experiment, data_root: Path, out: Path, execution: ExecutionSpec = ExecutionSpec(), *,
                   progress: bool | None = None, qc: bool | None = None,
                   echo: Callable[[str], None] = print) -> ExperimentReport:
    """Run every unit of ``exp`` found under ``data_root`` into ``out/runs/...``, then write the
    report(s) into ``out/report`` (one folder per aggregation when there are several)."""
    from annosim.engine.driver import run_benchmark
    from annosim.files import check_out_folder

    check_experiment(exp, execution)
    check_out_folder(out, "--out")
    located, todo = units(exp, data_root, out, execution)
    result = ExperimentReport([], [loc.missing_line() for loc in located if not loc.found],
                              nothing_found=not todo)
    for line in result.missing:
        _say(f"skipped: {line}")
    if todo:
        copy_datalists(exp, out)
    refuse_changed(todo)
    for unit in todo:
        echo(f"== {unit.dataset.entry.name} / {unit.model.label} / {unit.protocol.name} -> {unit.spec.out}")
        rep = run_benchmark(unit.spec, progress=progress, echo=echo)
        result.folders.append(unit.spec.out)
        result.errors += rep.errors
    if result.folders:
        result.reports = write_reports(exp, todo, out, qc)
        for path in result.reports:
            echo(f"report: {path}")
    else:
        _say("no dataset of the experiment was found: nothing ran, no report")
    return result


def refuse_changed(todo: list[Unit]) -> None:
    """Refuse, before any unit runs, a results folder of the tree that holds finished units of
    another configuration (:class:`annosim.errors.ResultsFolderError`, as ``annosim run`` would)."""
    from annosim.config import validate
    from annosim.data.layouts import open_dataset
    from annosim.engine.driver import run_identity
    from annosim.results import refusal_of

    for unit in todo:
        if not (unit.spec.out / "run.json").is_file():
            continue
        d = unit.spec.data
        ds = open_dataset(d.spec, layout=d.layout, data_root=d.data_root, split=d.split, label_names=d.label_names)
        refusal = refusal_of(unit.spec.out, run_identity(validate(unit.spec), ds.describe()))
        if refusal is not None:
            raise refusal


def write_reports(exp: Experiment, todo: list[Unit], out: Path, qc: bool | None = None) -> list[Path]:
    """One report over every unit's folder per aggregation of ``exp.report`` (figures grouped as the
    file asks, datasets named as the file names them); returns the report.html paths."""
    from annosim.report.build import ReportConfig, build_report
    from annosim.report.results_io import read_run

    folders = [u.spec.out for u in todo if not read_run(u.spec.out).rounds.empty]
    if not folders:
        _say("no rows recorded in any results folder: no report")
        return []
    names = {str(u.spec.out): u.dataset.entry.name for u in todo}
    groups = tuple((g.name, g.title, g.datasets) for g in exp.report.figures)
    paths = []
    aggs = exp.report.aggregations
    for agg in aggs:
        where = out / "report" / agg if len(aggs) > 1 else out / "report"
        cfg = ReportConfig(aggregate=agg, x=exp.report.x, qc=exp.report.qc if qc is None else qc,
                           dataset_names=names, figure_groups=groups)
        paths.append(build_report(folders, where, cfg).html)
    return paths


def plan_experiment(exp: Experiment, data_root: Path, *, probe: bool = False,
                    execution: ExecutionSpec = ExecutionSpec()) -> str:
    """What ``experiment run`` would do, without running: per dataset the cases found and missing,
    the structures and their label values, each model's needs, the units, and per case an estimate
    of memory (from file headers and the model's estimate) and, with ``probe``, of time (one timed
    object on the first case)."""
    from annosim.data.inspect import missing_files
    from annosim.data.layouts import open_dataset

    check_experiment(exp, execution)
    located, todo = units(exp, data_root, Path(tempfile.gettempdir()) / "annosim-plan", execution, copies=False)
    lines = [f"experiment {exp.name} ({exp.source}): {len(exp.datasets)} datasets, {len(exp.models)} model(s), "
             f"{len(exp.protocols)} protocol(s), settings {', '.join(exp.settings)}, data root {data_root}"]
    lines += [f"model {m.label}: {model_needs(m.name, m.checkpoint)}" for m in exp.models]
    total = 0
    for loc in located:
        if not loc.found:
            lines.append(f"dataset {loc.missing_line()}")
            continue
        mine = [u for u in todo if u.dataset is loc]
        d = mine[0].spec.data
        ds = open_dataset(d.spec, layout=d.layout, data_root=d.data_root, split=d.split, label_names=d.label_names)
        bad, why = missing_files(list(ds.cases), hint=False)
        present = [r for r in ds.cases if r.case_id not in bad]
        structures = _structures(present, loc.entry.labels)
        n_units = len(present) * len(structures) * len(exp.settings) * len(exp.models) * len(exp.protocols)
        total += n_units
        lines.append(f"dataset {loc.entry.name}: found at {loc.root}; split {ds.split or '-'}: {len(present)} of "
                     f"{len(ds.cases)} cases present, {len(bad)} missing")
        lines += [f"  {w}" for w in why]
        if present:
            lines.append(f"  cases: {', '.join(r.case_id for r in present)}")
        lines.append("  structures: " + (", ".join(f"{v}={n}" for v, n in structures) or "(names unknown)"))
        lines.append(f"  units: {n_units} ({len(present)} cases x {len(structures)} structures x {len(exp.settings)} "
                     f"settings x {len(exp.models)} models x {len(exp.protocols)} protocols; at most: a case "
                     "lacking a structure has fewer)")
        if present:
            lines += [f"  {line}" for line in _estimates(mine, present[0], len(structures), probe)]
    lines.append(f"total: {total} units in {len(todo)} results folders; "
                 f"{sum(not loc.found for loc in located)} dataset(s) missing")
    return "\n".join(lines)


def _structures(refs: list, wanted: tuple[str, ...] | None) -> list[tuple[int, str]]:
    """(value, name) of the structures the run evaluates, from the dataset's names (no volume read)."""
    names: dict[int, str] = {}
    for r in refs:
        names.update({int(v): str(n) for v, n in r.label_names.items() if int(v) != 0})
    if wanted:
        keep = set(wanted)
        names = {v: n for v, n in names.items() if n in keep or str(v) in keep}
    return sorted(names.items())


def model_needs(name: str, checkpoint: str | None) -> str:
    """What a model needs before it runs: its extra, and its weights (present or not)."""
    import importlib.util

    from annosim.models.registry import BUILTINS

    if checkpoint:
        state = "present" if Path(checkpoint).expanduser().is_file() else "MISSING"
        return f"weights {checkpoint} ({state})"
    builtin = BUILTINS.get(name)
    if builtin is None:
        return "plugin model (runs the code it names)"
    parts = []
    if builtin.extra:
        module = {"sam2": "sam2", "monai": "monai", "nninteractive": "nnInteractive"}.get(builtin.extra, builtin.extra)
        ok = importlib.util.find_spec(module) is not None
        state = "installed" if ok else f"NOT installed: pip install 'annosim[{builtin.extra}]'"
        parts.append(f"extra {builtin.extra} ({state})")
    if name.startswith("sam2"):
        from annosim.models.sam2_checkpoints import cache_dir, get_variant

        cached = cache_dir() / get_variant(name).filename
        state = "present" if cached.is_file() else "absent: downloaded on first use, or give --checkpoint"
        parts.append(f"weights {cached} ({state})")
    elif builtin.extra:
        parts.append("weights downloaded on first use (or give --checkpoint)")
    else:
        parts.append("no weights")
    return "; ".join(parts)


def _estimates(mine: list[Unit], first, n_structures: int, probe: bool) -> list[str]:
    """Memory (headers + the model's estimate) and, with ``probe``, time of the first case."""
    from annosim.memory import estimate_from_header, gib

    out = []
    for model_label in dict.fromkeys(u.model.label for u in mine):
        unit = next(u for u in mine if u.model.label == model_label)
        if probe:  # the model itself, built as the run builds it: its own estimate_memory
            from annosim.models.registry import load_model

            model = load_model(unit.spec.model.name, unit.spec.model.args)
        else:
            model = _MemoryStandIn(unit.model.name, unit.spec.model.args)
        est = estimate_from_header(first.image, first.labels[0], model)
        mem = "unknown (header unreadable)" if est is None else f"{gib(est.total)} ({est.parts()})"
        out.append(f"{model_label}: memory for case {first.case_id} ~ {mem}"
                   + ("" if probe else " (SAM2 assumed on CUDA; --probe asks the model itself)"
                      if unit.model.name.startswith("sam2") else ""))
        if probe:
            del model
            seconds = _probe(unit, first.case_id)
            per_case = seconds * n_structures * len(unit.spec.evaluation.settings) * len(
                [u for u in mine if u.model.label == model_label])
            out.append(f"{model_label}: probe {seconds:.1f} s an object (case {first.case_id}, one setting, model "
                       f"loading included) -> about {per_case:.1f} s a case")
    return out


class _MemoryStandIn:
    """The model part of a memory estimate without building the model (which loads weights):
    for SAM2 names the formula :meth:`SAM2Model.estimate_memory` uses
    (:func:`annosim.memory.sam2_case_bytes`) at the model's ``image_size`` and ``cache_dtype``
    arguments, on CUDA where it runs by default; annosim's default estimate otherwise."""

    def __init__(self, name: str, args: dict[str, str]) -> None:
        self.name, self.args = name, args
        self.device = str(args.get("device", "cuda")) if name.startswith("sam2") else "host"

    def estimate_memory(self, shape: tuple[int, int, int]) -> int | None:
        if not self.name.startswith("sam2"):
            return None
        from annosim.memory import sam2_case_bytes, sam2_itemsizes

        device = "cuda" if self.device.startswith("cuda") else "cpu"
        bf16 = str(self.args.get("cache_dtype", "native")) in ("bfloat16", "bf16")
        return sam2_case_bytes(shape[0], int(self.args.get("image_size", 1024)), sam2_itemsizes(device, bf16))


def _probe(unit: Unit, case_id: str) -> float:
    """Seconds to run one object (the first structure) of case ``case_id`` in one setting through
    the ordinary run path, into a temporary folder."""
    from annosim.engine.driver import run_benchmark

    with tempfile.TemporaryDirectory(prefix="annosim-probe-") as tmp:
        ev = replace(unit.spec.evaluation, settings=unit.spec.evaluation.settings[:1])
        spec = replace(unit.spec, out=Path(tmp) / "probe", evaluation=ev, data=replace(unit.spec.data, limit=1))
        t0 = time.perf_counter()
        run_benchmark(spec, progress=False, echo=lambda _: None)
        elapsed = time.perf_counter() - t0
        from annosim.report.results_io import read_run

        n = len(read_run(spec.out).rounds.drop_duplicates(["case", "label", "setting"]))
    return elapsed / max(n, 1)

