"""``annosim run``: a benchmark over a dataset into a resumable results folder.

The driver reads cases one at a time, runs every (protocol, label, setting) unit that the
results folder does not hold yet, writes each unit as soon as it is done, records failures in
``errors.jsonl`` and goes on. It exits non-zero at the end when anything failed.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from annosim.data.case import Case
from annosim.data.layouts import CaseRef, open_dataset
from annosim.errors import AnnosimError, ConfigError, InputError
from annosim.memory import estimate_case, estimate_from_header, memory_refusal
from annosim.models.base import SliceModelBase
from annosim.models.registry import model_identity, model_info
from annosim.protocols.base import Protocol, RoundOutcome
from annosim.protocols.registry import get_protocol
from annosim.results import ResultsFolder, UnitKey, provenance, read_rounds
from annosim.runner import SETTINGS, UnitResult, iter_case_units, resolve_labels

ORIENTATIONS = ("canonical", "as-stored")


@dataclass
class RunConfig:
    """Everything ``annosim run`` needs; defaults match the paper's protocol."""

    data: str
    out: Path
    model: str = "classical"
    model_args: dict[str, str] = field(default_factory=dict)
    protocols: tuple[str, ...] = ("he2024",)
    protocol_args: dict[str, str] = field(default_factory=dict)
    settings: tuple[str, ...] = SETTINGS
    labels: tuple[str, ...] | None = None
    seed: int = 0
    nsd_tolerance: float = 2.0
    surface_metrics: bool = True
    orientation: str | None = None
    layout: str | None = None
    data_root: str | None = None
    split: str | None = None
    label_names: str | None = None
    save_predictions: bool = False
    limit: int | None = None
    #: Where cases run: ``local`` (this machine) or ``ray`` (see :mod:`annosim.executors`).
    executor: str = "local"
    #: Ray cluster address (``None``: the running Ray session, else a new local one).
    address: str | None = None
    #: Worker processes (local) or actors (Ray); ``None``: 1 locally (or one per device), the
    #: cluster's CPUs (or GPUs / ``gpus_per_case``) with Ray.
    workers: int | None = None
    #: Local devices, one worker each (``cuda:0``...); passed as the model's ``device`` argument.
    devices: tuple[str, ...] = ()
    #: GPUs a Ray worker reserves (fractions share a GPU).
    gpus_per_case: float = 0.0
    #: Extra attempts of a case whose worker died (killed, crashed, node lost).
    retries: int = 1
    #: Seconds a case may run before it is stopped and recorded (``None``: no limit).
    case_timeout: float | None = None
    #: Refuse a case whose memory estimate exceeds the memory available (see annosim.memory).
    memory_check: bool = True


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


# ---------------------------------------------------------------------------------------------
def build_protocols(names: Sequence[str], args: dict[str, str]) -> list[Protocol]:
    """Protocols by name; ``args`` keys are ``param`` (every protocol) or ``name.param``."""
    protos = []
    for name in names:
        own = {k.split(".", 1)[1]: v for k, v in args.items() if k.startswith(name + ".")}
        common = {k: v for k, v in args.items() if "." not in k}
        protos.append(get_protocol(name, **{**common, **own}))
    if len({p.name for p in protos}) != len(protos):
        raise ConfigError("a protocol is named twice in --protocol")
    return protos


def check_model_supports(model: Any, protocols: Sequence[Protocol]) -> None:
    """Refuse before the run starts when a protocol needs an optional method the model lacks."""
    for proto in protocols:
        for method in proto.requires:
            impl = getattr(type(model), method, None)
            if impl is None or impl is getattr(SliceModelBase, method, None):
                raise ConfigError(
                    f"protocol {proto.name!r} needs the model method {method}(), which model "
                    f"{getattr(model, 'name', type(model).__name__)!r} does not implement"
                )


def orientation_of(proto: Protocol, requested: str | None) -> str:
    """Orientation a protocol runs in: the user's choice, else the protocol's, else canonical."""
    if requested is not None:
        if requested not in ORIENTATIONS:
            raise ConfigError(f"--orientation must be one of {ORIENTATIONS}, got {requested!r}")
        return requested
    return proto.orientation or "canonical"


def run_identity(cfg: RunConfig, dataset_desc: dict[str, Any], protocols: Sequence[Protocol]) -> dict[str, Any]:
    """The configuration part of run.json (a folder resumes only under the same one)."""
    return {
        "protocols": [{**p.describe(), "orientation": orientation_of(p, cfg.orientation)} for p in protocols],
        "model": model_identity(cfg.model, cfg.model_args),
        "data": dataset_desc,
        "settings": list(cfg.settings),
        "labels": None if cfg.labels is None else list(cfg.labels),
        "seed": cfg.seed,
        "nsd_tolerance": cfg.nsd_tolerance,
        "surface_metrics": cfg.surface_metrics,
        "orientation": cfg.orientation,
    }


def run_meta(model: Any) -> dict[str, Any]:
    """The informational part of run.json: versions, start time, host, model details.

    ``model``: the model itself, or its description (a dict) when workers hold the model.
    """
    return {**provenance(), "model_info": dict(model) if isinstance(model, dict) else model_info(model)}


def save_unit_predictions(out: Path, unit: UnitResult, predictions: list[np.ndarray]) -> None:
    """``predictions/<case>/<protocol>__<label>__<setting>.npz``: ``round_K`` bool (Z, Y, X)."""
    folder = out / "predictions" / unit.case
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{unit.protocol}__{unit.label}__{unit.setting}.npz"
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{f"round_{i + 1}": p for i, p in enumerate(predictions)})
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
def process_case(
    ref: CaseRef,
    model: Any,
    protocols: Sequence[Protocol],
    cfg: RunConfig,
    is_done: Callable[[UnitKey], bool],
    emit: Callable[[UnitResult, list[np.ndarray]], None],
    on_error: Callable[[str, int | None, str, str], None],
) -> None:
    """Run every pending unit of one case; ``emit`` receives each finished unit as it ends.

    Problems with the case's files, its memory estimate or its labels become ``on_error`` lines
    (stages ``read``, ``memory``, ``labels``) naming the file; the case is then skipped.
    """
    by_orientation: dict[str, list[Protocol]] = defaultdict(list)
    for proto in protocols:
        by_orientation[orientation_of(proto, cfg.orientation)].append(proto)
    try:
        check_input_paths(ref)
    except InputError as exc:
        on_error(ref.case_id, None, "read", str(exc))
        return
    kept = max((int(p.describe().get("params", {}).get("rounds", 8)) for p in protocols), default=8)
    kept = kept if cfg.save_predictions else 0
    checked = False
    if cfg.memory_check:
        est = estimate_from_header(ref.image, ref.labels[0] if ref.labels else None, model, kept_predictions=kept)
        why = None if est is None else memory_refusal(ref.image, est, model)
        if why:
            on_error(ref.case_id, None, "memory", why)
            return
        checked = est is not None
    for orientation, protos in by_orientation.items():
        try:
            case: Case = ref.load(orientation)
        except AnnosimError as exc:
            on_error(ref.case_id, None, "read", str(exc))
            return
        except MemoryError:
            on_error(ref.case_id, None, "read", f"{ref.image}: out of memory while reading")
            return
        except Exception as exc:  # a library error the readers did not anticipate
            files = ", ".join([ref.image, *ref.labels])
            on_error(ref.case_id, None, "read", f"{files}: cannot read case ({type(exc).__name__}: {exc})")
            return
        first = orientation == next(iter(by_orientation))
        if first and cfg.memory_check and not checked:
            est = estimate_case(case.image.shape, model, kept_predictions=kept, loaded=True)
            why = memory_refusal(ref.image, est, model)
            if why:
                on_error(ref.case_id, None, "memory", why)
                return
        values, problems = resolve_labels(case, cfg.labels)
        if first:
            for msg in problems:
                on_error(case.case_id, None, "labels", msg)
            if not values and not problems and cfg.labels is None:
                source = case.sources.get("label", case.case_id)
                on_error(case.case_id, None, "labels", f"{source}: label map holds no labels (every voxel is 0)")
                return

        def pending(label: int, setting: str, protocol: str) -> bool:
            return is_done(UnitKey(case.case_id, int(label), setting, protocol))

        todo = [
            (p.name, v, s) for p in protos for v in values for s in cfg.settings if not pending(v, s, p.name)
        ]
        if not todo:
            continue
        predictions: list[np.ndarray] = []

        def keep(label: int, setting: str, outcome: RoundOutcome) -> None:
            if cfg.save_predictions:
                predictions.append(outcome.prediction)

        try:
            for unit in iter_case_units(
                case,
                model,
                protos,
                settings=cfg.settings,
                labels=values,
                seed=cfg.seed,
                nsd_tolerance=cfg.nsd_tolerance,
                surface_metrics=cfg.surface_metrics,
                skip=pending,
                on_round=keep,
            ):
                emit(unit, predictions[:])
                predictions.clear()
        except AnnosimError as exc:
            on_error(case.case_id, None, "model", str(exc))
        except (RuntimeError, ValueError, MemoryError) as exc:
            on_error(case.case_id, None, "model", f"{type(exc).__name__}: {exc}")


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


def summarize(out: Path) -> list[dict[str, Any]]:
    """Mean best-of-rounds Dice per (protocol, label, setting) over the folder's rows."""
    best: dict[tuple[str, str, str, str], float] = {}
    for r in read_rounds(out):
        key = (r["protocol"], r["label_name"], r["setting"], r["case"])
        best[key] = max(best.get(key, -1.0), float(r["dice"]))
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (proto, name, setting, _), value in best.items():
        groups[(proto, name, setting)].append(value)
    return [
        {"protocol": p, "label_name": n, "setting": s, "n": len(v), "best_dice": float(np.mean(v))}
        for (p, n, s), v in sorted(groups.items())
    ]


def format_summary(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`summarize` rows, one line per structure, settings as columns."""
    if not rows:
        return "no results"
    settings = sorted({r["setting"] for r in rows}, key=lambda s: (s != "full", s))
    table: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for r in rows:
        table[(r["protocol"], r["label_name"])][r["setting"]] = f"{r['best_dice']:.3f} (n={r['n']})"
    width = max(len(n) for _, n in table) + 2
    lines = [f"{'structure':<{width}}" + "".join(f"{s:>16}" for s in settings) + "   protocol"]
    for (proto, name), cells in sorted(table.items()):
        lines.append(f"{name:<{width}}" + "".join(f"{cells.get(s, '-'):>16}" for s in settings) + f"   {proto}")
    return "\n".join(lines)


def run_benchmark(
    cfg: RunConfig,
    *,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> RunReport:
    """Run ``cfg`` into ``cfg.out``, resuming what is already there; returns a RunReport.

    Cases run where ``cfg.executor``/``workers``/``devices`` say (:mod:`annosim.executors`);
    whatever runs them, only this process writes the results folder.
    """
    from tqdm import tqdm

    from annosim.executors import Sink, check_execution_options, make_executor

    for s in cfg.settings:
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}; expected {', '.join(SETTINGS)}")
    check_execution_options(cfg)
    dataset = open_dataset(
        cfg.data, layout=cfg.layout, data_root=cfg.data_root, split=cfg.split, label_names=cfg.label_names
    )
    refs = list(dataset.cases)[: cfg.limit] if cfg.limit else list(dataset.cases)
    protocols = build_protocols(cfg.protocols, cfg.protocol_args)
    identity = run_identity(cfg, dataset.describe(), protocols)
    report = RunReport(Path(cfg.out))
    with make_executor(cfg, len(refs)) as executor:
        info = executor.start()
        meta = run_meta(info)
        meta["execution"] = {  # where the first invocation ran (not part of the configuration)
            "executor": cfg.executor, "workers": cfg.workers, "devices": list(cfg.devices),
            "gpus_per_case": cfg.gpus_per_case, "retries": cfg.retries, "case_timeout": cfg.case_timeout,
        }
        with ResultsFolder(cfg.out).open(identity, meta) as store:
            report.skipped = len(store.done_units)
            bar = tqdm(total=len(refs), unit="case", disable=progress is False if progress is not None else None,
                       dynamic_ncols=True, file=sys.stderr)
            seen_errors: set[tuple[str, int | None, str, str]] = set()

            def emit(unit: UnitResult, predictions: list[np.ndarray]) -> None:
                if unit.error:
                    on_error(unit.case, unit.label, unit.stage, unit.error, quiet=True)
                    return
                key = UnitKey(unit.case, unit.label, unit.setting, unit.protocol)
                if store.is_done(key):  # a retried case sent it again
                    return
                if cfg.save_predictions:
                    save_unit_predictions(report.out, unit, predictions)
                store.write_unit(key, unit.rows, unit.prompts)
                report.written += 1
                bar.set_postfix(objects=report.written + report.skipped, errors=report.errors, refresh=False)

            def on_error(case: str, label: int | None, stage: str, message: str, quiet: bool = False) -> None:
                if (case, label, stage, message) in seen_errors:  # a retried case reported it again
                    return
                seen_errors.add((case, label, stage, message))
                store.write_error(case, label, stage, message)
                report.errors += 1
                if not quiet:
                    bar.write(f"annosim: {case}: {message}", file=sys.stderr)

            def done_for(case_id: str) -> frozenset[UnitKey]:
                return frozenset(k for k in store.done_units if k.case == case_id)

            sink = Sink(
                done_for=done_for,
                emit=emit,
                on_error=on_error,
                case_started=lambda ref: bar.set_description(ref.case_id[:24]),
                case_done=lambda ref: bar.update(1),
                note=lambda text: bar.write(f"annosim: {text}", file=sys.stderr),
            )
            try:
                executor.run(refs, sink)
            finally:
                bar.close()
    report.summary = summarize(report.out)
    echo(format_summary(report.summary))
    echo(
        f"results: {report.out}  ({report.written} units written, {report.skipped} resumed, "
        f"{report.errors} errors{' -> errors.jsonl' if report.errors else ''})"
    )
    return report


def config_replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with some fields changed."""
    return dataclasses.replace(cfg, **changes)
