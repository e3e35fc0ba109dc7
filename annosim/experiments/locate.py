"""Where each dataset of an experiment lies under ``--data-root``, and the run specs it gives.

A dataset is *found* when one of its ``folders`` (relative to ``--data-root``) exists and holds
its ``marker``; its spec then becomes a :class:`annosim.config.DataSpec` with ``skip_missing``
set, so that cases of the split missing from the folder are reported and skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from annosim.config import DataSpec, EvaluationSpec, ExecutionSpec, ModelSpec, RunSpec
from annosim.errors import ConfigError
from annosim.experiments.spec import (PACKAGED, DatasetEntry, Experiment, ModelEntry, ProtocolEntry, default_label,
                                      packaged_datalist)


@dataclass(frozen=True)
class Located:
    """A dataset entry and the folder it was found in (``None``: not found; ``looked``: where)."""

    entry: DatasetEntry
    root: Path | None
    looked: tuple[Path, ...]

    @property
    def found(self) -> bool:
        return self.root is not None

    def missing_line(self) -> str:
        """One line: where the dataset was looked for and where it is published."""
        what = f" holding {self.entry.marker}" if self.entry.marker else ""
        where = ", ".join(str(p) for p in self.looked)
        line = f"{self.entry.name}: not found (looked for a folder{what}: {where})"
        return line + (f"; published at {self.entry.source}" if self.entry.source else "")


@dataclass(frozen=True)
class Unit:
    """One results folder of an experiment: dataset x model x protocol."""

    dataset: Located
    model: ModelEntry
    protocol: ProtocolEntry
    spec: RunSpec


def locate(entry: DatasetEntry, data_root: Path) -> Located:
    """The first of ``entry.folders`` under ``data_root`` that exists and holds ``entry.marker``."""
    looked = []
    for folder in entry.folders:
        path = Path(os.path.normpath(data_root / folder))
        looked.append(path)
        if path.is_dir() and (entry.marker is None or (path / entry.marker).exists()):
            return Located(entry, path, tuple(looked))
        if entry.marker is None and path.is_file():
            return Located(entry, path.parent, tuple(looked))
    return Located(entry, None, tuple(looked))


def datalist_copy(out: Path, spec: str) -> Path:
    """Where an experiment's results tree keeps its copy of the shipped datalist ``annosim:NAME``
    (``out/datalists/NAME``), so that run.json names a file that stays put when annosim moves."""
    return Path(out) / "datalists" / spec[len(PACKAGED):]


def copy_datalists(exp: Experiment, out: Path) -> None:
    """Write (or refresh) the tree's copies of the shipped datalists the experiment names."""
    for e in exp.datasets:
        if e.spec.startswith(PACKAGED):
            source = packaged_datalist(e.spec)
            assert source is not None  # checked when the file was read
            dest = datalist_copy(out, e.spec)
            data = source.read_bytes()
            if not dest.is_file() or dest.read_bytes() != data:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)


def data_spec(found: Located, out: Path | None = None) -> DataSpec:
    """The DataSpec of a found dataset: a shipped datalist is read from the tree's copy under
    ``out`` (annosim's own file when ``out`` is None), its paths relative to the dataset's folder;
    other specs are relative to that folder."""
    e, root = found.entry, found.root
    assert root is not None
    if e.spec.startswith(PACKAGED):
        path = packaged_datalist(e.spec) if out is None else datalist_copy(out, e.spec)
        assert path is not None  # checked when the file was read
        spec, data_root = str(path), str(root)
    else:
        spec_path = Path(os.path.expanduser(e.spec))
        spec = str(spec_path if spec_path.is_absolute() else Path(os.path.normpath(root / spec_path)))
        listed = e.layout in ("datalist", "csv") or (
            e.layout is None and Path(spec).suffix in (".json", ".csv") and Path(spec).name != "dataset.json")
        data_root = str(root) if listed else None  # a datalist's or manifest's paths are relative to the folder
    names = json.dumps(e.label_names) if e.label_names else None
    return DataSpec(spec=spec, layout=e.layout, data_root=data_root, split=e.split, label_names=names,
                    labels=e.labels, skip_missing=True)


def model_spec(m: ModelEntry) -> ModelSpec:
    """A ModelSpec: the entry's args plus its checkpoint as an absolute path."""
    args = dict(m.args)
    if m.checkpoint:
        args["checkpoint"] = str(Path(m.checkpoint).expanduser().resolve())
    return ModelSpec(name=m.name, args=args)


def evaluation_spec(exp: Experiment, p: ProtocolEntry) -> EvaluationSpec:
    """The EvaluationSpec of one protocol of ``exp``."""
    return EvaluationSpec(protocols=(p.name,), protocol_args=dict(p.params), settings=exp.settings, seed=exp.seed,
                          nsd_tolerance=exp.nsd_tolerance, surface_metrics=exp.surface_metrics,
                          metrics=exp.metrics, orientation=exp.orientation, save_predictions=exp.save_predictions)


def run_folder(out: Path, dataset: str, model: str, protocol: str) -> Path:
    """``out/runs/<dataset>__<model label>__<protocol>``: one ordinary results folder (a folder's
    name is the run's name in reports, so each is unique)."""
    return Path(out) / "runs" / f"{dataset}__{model}__{protocol}"


def units(exp: Experiment, data_root: Path, out: Path, execution: ExecutionSpec = ExecutionSpec(),
          copies: bool = True) -> tuple[list[Located], list[Unit]]:
    """Every dataset located, and the units (one RunSpec each) of the datasets found; ``copies``:
    shipped datalists are read from the tree's copies (:func:`copy_datalists`)."""
    located = [locate(d, Path(data_root)) for d in exp.datasets]
    out_units = []
    for found in located:
        if not found.found:
            continue
        data = data_spec(found, out if copies else None)
        for m in exp.models:
            for p in exp.protocols:
                spec = RunSpec(data=data, out=run_folder(out, found.entry.name, m.label, p.name), model=model_spec(m),
                               evaluation=evaluation_spec(exp, p), execution=execution)
                out_units.append(Unit(found, m, p, spec))
    return located, out_units


def check_experiment(exp: Experiment, execution: ExecutionSpec = ExecutionSpec()) -> None:
    """Check models, protocols and their pairs before anything runs; ConfigError naming the file,
    the key and the problem."""
    from annosim.config import build_protocols, check_execution, validate
    from annosim.models.registry import missing_methods, model_class

    src = exp.source
    protocols = []
    for j, p in enumerate(exp.protocols, start=1):
        try:
            protocols.append(build_protocols([p.name], p.params)[0])
        except ConfigError as exc:
            raise ConfigError(f"{src}: protocols[{j}]: {exc}") from None
    for i, m in enumerate(exp.models, start=1):
        try:
            model_class(m.name)
        except ConfigError as exc:
            raise ConfigError(f"{src}: models[{i}].name: {exc}") from None
        if m.checkpoint and not Path(m.checkpoint).expanduser().exists():
            raise ConfigError(f"{src}: models[{i}].checkpoint: file {m.checkpoint} not found")
        try:
            check_execution(execution, model_spec(m))
        except ConfigError as exc:
            raise ConfigError(f"{src}: models[{i}]: {exc}") from None
        for j, proto in enumerate(protocols, start=1):
            missing = missing_methods(m.name, proto.requires)
            if missing:
                raise ConfigError(f"{src}: models[{i}].name: protocols[{j}] {proto.name!r} needs the model method "
                                  f"{missing[0]}(), which model {m.name!r} does not implement")
    probe = RunSpec(data=DataSpec(spec="."), out=Path("."), model=model_spec(exp.models[0]),
                    evaluation=evaluation_spec(exp, exp.protocols[0]), execution=execution)
    try:
        validate(probe, check_model=False)
    except ConfigError as exc:
        raise ConfigError(f"{src}: {exc}") from None


def with_model(exp: Experiment, name: str, checkpoint: str | None = None, args: dict[str, str] | None = None
               ) -> Experiment:
    """``exp`` with its models replaced by one (``--model``, ``--checkpoint``, ``--model-arg``)."""
    return replace(exp, models=(ModelEntry(name=name, label=default_label(name), checkpoint=checkpoint,
                                           args=dict(args or {})),))


def with_checkpoint(exp: Experiment, checkpoint: str | None, args: dict[str, str]) -> Experiment:
    """``exp`` with a checkpoint and extra arguments given to each of its models."""
    models = tuple(replace(m, checkpoint=checkpoint or m.checkpoint, args={**m.args, **args}) for m in exp.models)
    return replace(exp, models=models)


def with_datasets(exp: Experiment, names: tuple[str, ...]) -> Experiment:
    """``exp`` restricted to the datasets ``names`` (``--datasets``), in the file's order."""
    known = [d.name for d in exp.datasets]
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"--datasets {bad[0]}: not a dataset of {exp.source} (its datasets: {', '.join(known)})")
    return replace(exp, datasets=tuple(d for d in exp.datasets if d.name in names),
                   report=replace(exp.report, figures=tuple(
                       replace(f, datasets=tuple(n for n in f.datasets if n in names)) for f in exp.report.figures)))
