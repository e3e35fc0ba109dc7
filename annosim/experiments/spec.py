"""Experiment files: a TOML file declaring datasets x models x protocols and the report to make.

An experiment is read with the standard library's ``tomllib`` and checked as a whole before
anything runs; every mistake is a :class:`annosim.errors.ConfigError` of one line naming the
file, the key (``datasets[2].spec``) and the problem. The format (see the README, "Experiment
files") has these top-level keys:

``name``, ``description``  strings
``seed``, ``settings``, ``nsd_tolerance``, ``surface_metrics``, ``metrics``, ``orientation``,
``save_predictions``  as ``annosim run`` takes them (:class:`annosim.config.EvaluationSpec`)
``[[datasets]]``  ``name``, ``spec`` (required), ``layout``, ``split``, ``folders``, ``marker``,
                  ``label_names``, ``labels``, ``source``
``[[models]]``    ``name`` (required), ``label``, ``checkpoint``, ``args``
``[[protocols]]`` ``name`` (required), ``params``
``[report]``      ``aggregations``, ``table``, ``x``, ``qc``, ``[[report.figures]]`` with ``name``,
                  ``title``, ``datasets``

A dataset's ``spec`` is ``annosim:FILE`` (a datalist shipped in ``annosim/experiments/datalists``),
a path relative to the dataset's folder, or an absolute path. The dataset's folder is the first of
``folders`` (relative to ``--data-root``; default ``["."]``) that exists and holds ``marker``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from annosim.errors import ConfigError
from annosim.schema import AGGREGATIONS, SETTINGS

#: Prefix of a spec that names a datalist shipped with annosim.
PACKAGED = "annosim:"
#: Published tables a report can set beside the runs.
TABLES: tuple[str, ...] = ("he2024",)

_TOP = {"name", "description", "seed", "settings", "nsd_tolerance", "surface_metrics", "metrics", "orientation",
        "save_predictions", "datasets", "models", "protocols", "report"}
_DATASET = {"name", "spec", "layout", "split", "folders", "marker", "label_names", "labels", "source"}
_MODEL = {"name", "label", "checkpoint", "args"}
_PROTOCOL = {"name", "params"}
_REPORT = {"aggregations", "table", "x", "qc", "figures"}
_FIGURE = {"name", "title", "datasets"}


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: where to find it under ``--data-root`` and how to read it."""

    name: str
    spec: str
    layout: str | None = None
    split: str | None = None
    #: Candidate folders under ``--data-root``, tried in order.
    folders: tuple[str, ...] = (".",)
    #: A path that must exist inside the folder for the dataset to count as found.
    marker: str | None = None
    #: Label value -> name, overriding the dataset's own names.
    label_names: dict[str, str] | None = None
    #: Structures to evaluate (names or values; ``None``: every label present).
    labels: tuple[str, ...] | None = None
    #: Where the dataset is published (shown when it is missing).
    source: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One model: a built-in name or plugin spec, its weights and constructor arguments."""

    name: str
    label: str
    checkpoint: str | None = None
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolEntry:
    """One protocol and its parameters."""

    name: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FigureGroup:
    """One figure of the report: the curves of these datasets together."""

    name: str
    title: str
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class ReportEntry:
    """The report to make after the runs."""

    aggregations: tuple[str, ...] = AGGREGATIONS
    table: str = "he2024"
    x: str = "round"
    qc: bool = True
    figures: tuple[FigureGroup, ...] = ()


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file (nothing checked against the data yet)."""

    source: str
    name: str
    datasets: tuple[DatasetEntry, ...]
    models: tuple[ModelEntry, ...]
    protocols: tuple[ProtocolEntry, ...]
    description: str = ""
    seed: int = 0
    settings: tuple[str, ...] = SETTINGS
    nsd_tolerance: float = 2.0
    surface_metrics: bool = True
    metrics: tuple[str, ...] = ()
    orientation: str | None = None
    save_predictions: bool = False
    report: ReportEntry = field(default_factory=ReportEntry)


class _Reader:
    """Typed access to one table of the file; every problem names the file and the key."""

    def __init__(self, source: str, table: Any, where: str, allowed: set[str]) -> None:
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail("", f"expected a table, got {type(table).__name__}")
        self.table = table
        for key in table:
            if key not in allowed:
                self.fail(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def fail(self, key: str, problem: str) -> None:
        path = f"{self.where}.{key}" if self.where and key else (self.where or key)
        raise ConfigError(f"{self.source}: {path}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def strings(self, key: str, default: Any = None) -> tuple[str, ...] | None:
        value = self.get(key, list, None)
        if value is None:
            return default
        out = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.fail(key, f"expected a list of strings, got {item!r}")
            out.append(str(item))
        return tuple(out)

    def mapping(self, key: str) -> dict[str, str] | None:
        value = self.get(key, dict, None)
        if value is None:
            return None
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                self.fail(f"{key}.{k}", f"expected a string or number, got {type(v).__name__}")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _items(source: str, data: dict, key: str, required: bool) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {key}: expected an array of tables ([[{key}]])")
    if required and not value:
        raise ConfigError(f"{source}: {key}: missing (declare at least one [[{key}]])")
    return value


def _name_ok(source: str, where: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
        raise ConfigError(f"{source}: {where}: {name!r} is not a valid name (letters, digits, . _ + -)")
    return name


def _dataset(source: str, i: int, table: Any) -> DatasetEntry:
    r = _Reader(source, table, f"datasets[{i}]", _DATASET)
    spec = r.get("spec", str, required=True)
    if not spec.strip():
        r.fail("spec", "empty")
    if spec.startswith(PACKAGED) and packaged_datalist(spec) is None:
        r.fail("spec", f"no datalist {spec[len(PACKAGED):]!r} is shipped with annosim "
                       f"(known: {', '.join(packaged_datalists())})")
    name = _name_ok(source, f"datasets[{i}].name", r.get("name", str, required=True))
    folders = r.strings("folders", (".",))
    if not folders:
        r.fail("folders", "empty list")
    return DatasetEntry(name=name, spec=spec, layout=r.get("layout", str), split=r.get("split", str),
                        folders=folders, marker=r.get("marker", str), label_names=r.mapping("label_names"),
                        labels=r.strings("labels"), source=r.get("source", str, ""))


def _model(source: str, i: int, table: Any) -> ModelEntry:
    r = _Reader(source, table, f"models[{i}]", _MODEL)
    name = r.get("name", str, required=True)
    label = _name_ok(source, f"models[{i}].label", r.get("label", str, default_label(name)))
    return ModelEntry(name=name, label=label, checkpoint=r.get("checkpoint", str), args=r.mapping("args") or {})


def default_label(name: str) -> str:
    """A folder-safe label of a model spec: ``path/to/m.py:Class`` -> ``m.py-Class``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", base).strip("-") or "model"


def _protocol(source: str, i: int, table: Any) -> ProtocolEntry:
    r = _Reader(source, table, f"protocols[{i}]", _PROTOCOL)
    return ProtocolEntry(name=r.get("name", str, required=True), params=r.mapping("params") or {})


def _report(source: str, table: Any, datasets: set[str]) -> ReportEntry:
    r = _Reader(source, table, "report", _REPORT)
    aggs = r.strings("aggregations", AGGREGATIONS)
    for a in aggs:
        if a not in AGGREGATIONS:
            r.fail("aggregations", f"unknown aggregation {a!r} (expected {', '.join(AGGREGATIONS)})")
    table_name = r.get("table", str, "he2024")
    if table_name not in TABLES:
        r.fail("table", f"unknown published table {table_name!r} (expected {', '.join(TABLES)})")
    x = r.get("x", str, "round")
    if x != "round":
        from annosim.report.figures import X_CHOICES  # matplotlib: only when another x is asked for

        if x not in X_CHOICES:
            r.fail("x", f"expected one of {', '.join(X_CHOICES)}, got {x!r}")
    groups = []
    figs = r.table.get("figures", [])
    if not isinstance(figs, list):
        r.fail("figures", "expected an array of tables ([[report.figures]])")
    for j, fig in enumerate(figs, start=1):
        f = _Reader(source, fig, f"report.figures[{j}]", _FIGURE)
        names = f.strings("datasets") or ()
        for n in names:
            if n not in datasets:
                f.fail("datasets", f"{n!r} is not a dataset of this file ({', '.join(sorted(datasets))})")
        gname = _name_ok(source, f"report.figures[{j}].name", f.get("name", str, required=True))
        groups.append(FigureGroup(gname, f.get("title", str, gname), names))
    return ReportEntry(aggregations=aggs, table=table_name, x=x, qc=r.get("qc", bool, True), figures=tuple(groups))


def parse_experiment(text: str, source: str) -> Experiment:
    """An :class:`Experiment` from TOML ``text``; ``source`` names the file in messages."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(f"{source}: reading experiment files needs Python 3.11+ (tomllib) or the "
                              "tomli package") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    top = _Reader(source, data, "", _TOP)
    datasets = tuple(_dataset(source, i + 1, t) for i, t in enumerate(_items(source, data, "datasets", True)))
    models = tuple(_model(source, i + 1, t) for i, t in enumerate(_items(source, data, "models", True)))
    protocols = tuple(_protocol(source, i + 1, t) for i, t in enumerate(_items(source, data, "protocols", True)))
    for what, names in (("datasets", [d.name for d in datasets]), ("models", [m.label for m in models]),
                        ("protocols", [p.name for p in protocols])):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            key = "name" if what != "models" else "label"
            raise ConfigError(f"{source}: {what}: {key} {dup[0]!r} is declared twice")
    settings = top.strings("settings", SETTINGS)
    for s in settings:
        if s not in SETTINGS:
            top.fail("settings", f"unknown setting {s!r} (expected {', '.join(SETTINGS)})")
    return Experiment(
        source=source, name=top.get("name", str, Path(source).stem), datasets=datasets, models=models,
        protocols=protocols, description=top.get("description", str, ""), seed=top.get("seed", int, 0),
        settings=settings, nsd_tolerance=float(top.get("nsd_tolerance", (int, float), 2.0)),
        surface_metrics=top.get("surface_metrics", bool, True), metrics=top.strings("metrics", ()),
        orientation=top.get("orientation", str), save_predictions=top.get("save_predictions", bool, False),
        report=_report(source, data.get("report", {}), {d.name for d in datasets}),
    )


def read_experiment(path: str | Path) -> Experiment:
    """Parse the experiment file at ``path`` (ConfigError naming it when unreadable)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read experiment file ({exc.__class__.__name__}: {exc})") from None
    return parse_experiment(text, str(p))


# -- packaged data ------------------------------------------------------------------------------------

def packaged_datalists() -> list[str]:
    """File names of the datalists shipped in ``annosim/experiments/datalists``."""
    folder = resources.files("annosim.experiments").joinpath("datalists")
    return sorted(f.name for f in folder.iterdir() if f.name.endswith(".json"))


def packaged_datalist(spec: str) -> Path | None:
    """The file behind ``annosim:NAME`` (None when no such datalist is shipped)."""
    name = spec[len(PACKAGED):] if spec.startswith(PACKAGED) else spec
    if name not in packaged_datalists():
        return None
    return Path(str(resources.files("annosim.experiments").joinpath("datalists", name)))


def recipe_names() -> list[str]:
    """Names of the experiment files shipped in ``annosim/experiments/recipes`` (``he2024``...)."""
    folder = resources.files("annosim.experiments").joinpath("recipes")
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".toml"))


def recipe_text(name: str) -> str:
    """The TOML text of the built-in recipe ``name`` (ConfigError listing the known ones)."""
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; built-in recipes: {', '.join(recipe_names())}")
    return resources.files("annosim.experiments").joinpath("recipes", f"{name}.toml").read_text(encoding="utf-8")


def load_experiment(file_or_recipe: str) -> Experiment:
    """An experiment file by path, or a built-in recipe by name when no such file exists."""
    if Path(file_or_recipe).exists() or file_or_recipe.endswith(".toml"):
        return read_experiment(file_or_recipe)
    return parse_experiment(recipe_text(file_or_recipe), f"recipe {file_or_recipe}")
