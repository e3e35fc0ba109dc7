"""The run specification: what ``annosim run`` was asked to do, validated once before any work.

A :class:`RunSpec` groups the data, the model, the evaluation and the execution; the CLI (and
experiment files) build one, :func:`validate` checks it as a whole and resolves its protocols and
metrics, and everything downstream (driver, executors, workers) receives the validated spec.
Mistakes found here are :class:`annosim.errors.ConfigError`: one line, exit 2, nothing created.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from annosim.errors import ConfigError
from annosim.metrics.registry import MetricSet
from annosim.plugins import absolute_spec
from annosim.protocols.base import Protocol
from annosim.protocols.registry import get_protocol
from annosim.schema import ORIENTATIONS, SETTINGS

#: Values of ``--executor``.
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class DataSpec:
    """Which cases and labels: the dataset spec and how to read it."""

    spec: str
    layout: str | None = None
    data_root: str | None = None
    split: str | None = None
    label_names: str | None = None
    #: Label names or values to evaluate (``None``: every label present).
    labels: tuple[str, ...] | None = None
    #: Only the first N cases.
    limit: int | None = None
    #: Record (and on a rerun compare) the sha256 of every input file, not only size and mtime.
    verify_data: bool = False
    #: On a rerun, recompute the cases whose input files changed instead of refusing the run.
    allow_changed_data: bool = False
    #: Skip (and report) the cases whose image or label file is missing instead of recording
    #: each as an error (experiment files: a split whose dataset is partly downloaded).
    skip_missing: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """The model: a built-in name, ``file.py:Class`` or ``module:Class``, and its arguments."""

    name: str = "classical"
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationSpec:
    """How objects are evaluated; defaults match the paper's protocol."""

    protocols: tuple[str, ...] = ("he2024",)
    #: ``param=value`` for every protocol, ``name.param=value`` for one.
    protocol_args: dict[str, str] = field(default_factory=dict)
    settings: tuple[str, ...] = SETTINGS
    seed: int = 0
    nsd_tolerance: float = 2.0
    surface_metrics: bool = True
    #: User metrics, ``module:function`` or ``file.py:function`` (added to the built-ins).
    metrics: tuple[str, ...] = ()
    #: ``None``: each protocol's own orientation, else canonical.
    orientation: str | None = None
    save_predictions: bool = False


@dataclass(frozen=True)
class ExecutionSpec:
    """Where cases run (see :mod:`annosim.executors`)."""

    executor: str = "local"
    #: Ray cluster address (``None``: the running Ray session, else a new local one).
    address: str | None = None
    #: Worker processes (local) or actors (Ray); ``None``: 1 locally (one per device), the
    #: cluster's room with Ray.
    workers: int | None = None
    #: Local devices, one worker each (``cuda:0``...); passed as the model's ``device`` argument.
    devices: tuple[str, ...] = ()
    #: GPUs a Ray worker reserves (fractions share a GPU).
    gpus_per_case: float = 0.0
    #: Extra attempts of a case whose worker died.
    retries: int = 1
    #: Seconds a case may run before it is stopped and recorded (``None``: no limit).
    case_timeout: float | None = None
    #: Refuse a case whose memory estimate exceeds the memory available.
    memory_check: bool = True


@dataclass(frozen=True)
class RunSpec:
    """Everything one ``annosim run`` needs."""

    data: DataSpec
    out: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    execution: ExecutionSpec = field(default_factory=ExecutionSpec)

    def for_workers(self) -> "RunSpec":
        """The spec as worker processes get it: ``file.py`` parts of the model and metric specs
        made absolute (workers may run in another working directory)."""
        return replace(
            self,
            model=replace(self.model, name=absolute_spec(self.model.name)),
            evaluation=replace(self.evaluation, metrics=tuple(absolute_spec(m) for m in self.evaluation.metrics)),
        )


_GROUPS: dict[str, type] = {"data": DataSpec, "model": ModelSpec, "evaluation": EvaluationSpec,
                            "execution": ExecutionSpec}
#: Flat keyword -> (group, field), for :func:`make_spec`.
_FLAT = {
    **{f"data_{f.name}" if f.name == "spec" else f.name: ("data", f.name) for f in fields(DataSpec)},
    "model": ("model", "name"),
    "model_args": ("model", "args"),
    **{f.name: ("evaluation", f.name) for f in fields(EvaluationSpec)},
    **{f.name: ("execution", f.name) for f in fields(ExecutionSpec)},
}


def make_spec(data: str, out: str | Path, **flat: Any) -> RunSpec:
    """A RunSpec from flat keywords (``model=``, ``model_args=``, ``protocols=``, ``workers=``...,
    the field names of the groups), as the command line gives them.

    >>> make_spec("ct.nii.gz seg.nii.gz", "out", protocols=("he2024",), workers=2).execution.workers
    2
    """
    groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
    for key, value in flat.items():
        if key not in _FLAT:
            raise TypeError(f"make_spec() got an unexpected keyword {key!r}")
        group, name = _FLAT[key]
        groups[group][name] = value
    return RunSpec(
        data=DataSpec(spec=data, **groups["data"]),
        out=Path(out),
        model=ModelSpec(**groups["model"]),
        evaluation=EvaluationSpec(**groups["evaluation"]),
        execution=ExecutionSpec(**groups["execution"]),
    )


def build_protocols(names: Sequence[str], args: dict[str, str]) -> list[Protocol]:
    """Protocols by name; ``args`` keys are ``param`` (every protocol) or ``name.param``."""
    protos = []
    for name in names:
        own = {k.split(".", 1)[1]: v for k, v in args.items() if k.startswith(name + ".")}
        common = {k: v for k, v in args.items() if "." not in k}
        protos.append(get_protocol(name, **{**common, **own}))
    if len({p.name for p in protos}) != len(protos):
        raise ConfigError("a protocol is named twice in --protocol")
    stray = sorted({k.split(".", 1)[0] for k in args if "." in k} - set(names))
    if stray:
        raise ConfigError(f"--protocol-arg names protocol(s) {', '.join(stray)} that --protocol does not run")
    return protos


def orientation_of(proto: Protocol, requested: str | None) -> str:
    """Orientation a protocol runs in: the user's choice, else the protocol's, else canonical."""
    if requested is not None:
        return requested
    return proto.orientation or "canonical"


@dataclass(frozen=True)
class ResolvedRun:
    """A validated spec with what validation built: the protocols and the metric set."""

    spec: RunSpec
    protocols: tuple[Protocol, ...]
    metrics: MetricSet


def check_execution(ex: ExecutionSpec, model: ModelSpec) -> None:
    """Refuse inconsistent scale-out options (ConfigError)."""
    if ex.executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {ex.executor!r}")
    if ex.workers is not None and ex.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {ex.workers}")
    if ex.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {ex.retries}")
    if ex.case_timeout is not None and not ex.case_timeout > 0:
        raise ConfigError(f"--case-timeout must be a positive number of seconds, got {ex.case_timeout}")
    if not ex.gpus_per_case >= 0:
        raise ConfigError(f"--gpus-per-case must be 0 or more, got {ex.gpus_per_case}")
    if any(not d.strip() for d in ex.devices):
        raise ConfigError("--devices: empty device name")
    if ex.executor == "local":
        if ex.address:
            raise ConfigError("--address is for --executor ray")
        if ex.gpus_per_case:
            raise ConfigError("--gpus-per-case is a Ray resource (--executor ray); locally use --devices")
    elif ex.devices:
        raise ConfigError("--devices is for --executor local; Ray assigns GPUs with --gpus-per-case")
    if ex.devices and "device" in model.args:
        raise ConfigError("give the device either with --devices or with --model-arg device=..., not both")


def validate(spec: RunSpec, *, check_model: bool = True) -> ResolvedRun:
    """Check ``spec`` as a whole; ConfigError (one line) for the first problem found.

    Checks settings, orientation, execution options, protocols and their parameters, metrics,
    and (``check_model``) that the model class exists and implements every prompt method the
    protocols need. Nothing is created and no case is read.
    """
    ev = spec.evaluation
    if not ev.settings:
        raise ConfigError("--settings: expected full, fg-only or both")
    for s in ev.settings:
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}; expected {', '.join(SETTINGS)}")
    if ev.orientation is not None and ev.orientation not in ORIENTATIONS:
        raise ConfigError(f"--orientation must be one of {', '.join(ORIENTATIONS)}, got {ev.orientation!r}")
    if spec.data.limit is not None and spec.data.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {spec.data.limit}")
    check_execution(spec.execution, spec.model)
    protocols = build_protocols(ev.protocols, ev.protocol_args)
    if not protocols:
        raise ConfigError("--protocol: name at least one protocol")
    for proto in protocols:
        if proto.orientation_fixed and ev.orientation not in (None, proto.orientation):
            raise ConfigError(f"protocol {proto.name!r} runs in the {proto.orientation} orientation only, "
                              f"not --orientation {ev.orientation}")
    native = [n for p in protocols for n in p.native_metrics]
    metrics = MetricSet.with_user(ev.metrics, native=native)
    if check_model:
        from annosim.models.registry import missing_methods

        for proto in protocols:
            missing = missing_methods(spec.model.name, proto.requires)
            if missing:
                raise ConfigError(
                    f"protocol {proto.name!r} needs the model method {missing[0]}(), which model "
                    f"{spec.model.name!r} does not implement"
                )
    return ResolvedRun(spec, tuple(protocols), metrics)
