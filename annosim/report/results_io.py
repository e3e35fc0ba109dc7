"""Reading results folders into tables the report works on.

A results folder holds ``run.json``, ``rounds.csv``, ``prompts.jsonl`` and ``errors.jsonl`` (the
names and columns of :mod:`annosim.schema`; the metric columns listed in run.json's ``metrics``);
an optional ``predictions/`` folder holds the per-round predictions that QC images outline.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annosim.journal import committed_prefix
from annosim.errors import InputError
from annosim.metrics.registry import Metric, column_info
from annosim.results import ROUND_COLUMNS, read_jsonl  # noqa: F401 (ROUND_COLUMNS re-exported)
from annosim.schema import (
    EFFORT_COLUMNS,
    ERRORS_JSONL,
    INT_COLUMNS,
    KEY_COLUMNS,
    OBJECT_KEY,
    PROMPTS_JSONL,
    ROUNDS_CSV,
    RUN_JSON,
    TEXT_COLUMNS,
    UnitKey,
    prediction_path as _prediction_path,
)

#: Columns that must be present (``protocol`` may be filled in from run.json).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in KEY_COLUMNS + EFFORT_COLUMNS if c != "protocol")


@dataclass
class RunResults:
    """One results folder, read.

    Attributes
    ----------
    path : Path
        The folder.
    meta : dict
        ``run.json`` as read.
    rounds : DataFrame
        ``rounds.csv`` (typed columns) plus ``dataset``, ``model``, ``variant`` (from run.json)
        and ``run`` (the folder name).
    errors : list of dict
        ``errors.jsonl`` records.
    """

    path: Path
    meta: dict[str, Any]
    rounds: pd.DataFrame
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        """The dataset name used in tables."""
        return str(self.rounds["dataset"].iloc[0]) if len(self.rounds) else dataset_name(self.meta, self.path)

    @property
    def model(self) -> str:
        """The model label used in tables (:func:`model_label`)."""
        return model_label(self.meta)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The run's metric entries (run.json ``metrics``; the built-ins for older folders)."""
        return metric_entries(self.meta)

    def prompts(self) -> list[dict[str, Any]]:
        """Records of ``prompts.jsonl`` (empty when the file is absent)."""
        return read_jsonl(self.path / PROMPTS_JSONL)

    def max_rounds(self, protocol: str) -> int:
        """Rounds each object of ``protocol`` is carried forward to: the protocol's
        ``max_rounds`` recorded in run.json, else (a folder without it) the most rounds any
        object of that protocol reached."""
        for p in self.meta.get("protocols", []) or []:
            if isinstance(p, dict) and p.get("name") == protocol:
                value = p.get("max_rounds")
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return int(value)
        sub = self.rounds.loc[self.rounds["protocol"] == protocol, "round"]
        return int(sub.max()) if len(sub) else 1

    def orientation(self, protocol: str) -> str:
        """Orientation the run used for ``protocol``: run.json ``orientation``, else the
        protocol's own, else ``canonical``."""
        if self.meta.get("orientation"):
            return str(self.meta["orientation"])
        for p in self.meta.get("protocols", []) or []:
            if isinstance(p, dict) and p.get("name") == protocol and p.get("orientation"):
                return str(p["orientation"])
        return "canonical"


def metric_entries(meta: dict[str, Any]) -> tuple[Metric, ...]:
    """Metric entries of a results folder from its run.json (the built-ins when not recorded)."""
    described = meta.get("metrics")
    return column_info(described if isinstance(described, list) else None)


def dataset_name(meta: dict[str, Any], path: Path | None = None) -> str:
    """Dataset name from run.json: ``data.name``, else the stem of ``data.root``/``data.spec``."""
    data = meta.get("data") or {}
    if isinstance(data, str):
        data = {"spec": data}
    if data.get("name"):
        return str(data["name"])
    for key in ("root", "spec"):
        if data.get(key):
            name = Path(str(data[key]).split("::")[0].rstrip("/")).name
            for suffix in (".json", ".csv", ".nii.gz", ".nii"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
            if name:
                return name
    return Path(path).name if path is not None else "dataset"


def model_label(meta: dict[str, Any]) -> str:
    """The model's name in tables: run.json ``model.name``, shortened to ``file.py:Class`` for a
    plugin given by path, with the ``mode`` model argument in parentheses when there is one.

    >>> model_label({"model": {"name": "vista3d", "args": {"mode": "auto+point"}}})
    'vista3d (auto+point)'
    >>> model_label({"model": {"name": "/home/me/plugins.py:Grow", "args": {}}})
    'plugins.py:Grow'
    """
    model = meta.get("model") or {}
    if not isinstance(model, dict):
        model = {"name": model}
    name = str(model.get("name") or "model")
    module, sep, attr = name.rpartition(":")
    if sep and module.endswith(".py") and ("/" in module or "\\" in module):
        name = f"{Path(module).name}:{attr}"
    args = model.get("args") if isinstance(model.get("args"), dict) else {}
    mode = args.get("mode")
    return f"{name} ({mode})" if mode not in (None, "") else name


def _variants(meta: dict[str, Any]) -> dict[str, str]:
    """Protocol name -> variant name, from run.json (only protocols that name a variant)."""
    out: dict[str, str] = {}
    for p in meta.get("protocols", []) or []:
        if isinstance(p, dict) and p.get("name") and p.get("variant"):
            out[str(p["name"])] = str(p["variant"])
    return out


def read_run(path: str | Path, dataset: str | None = None) -> RunResults:
    """Read a results folder.

    Parameters
    ----------
    path : folder with ``run.json`` and ``rounds.csv``.
    dataset : overrides the dataset name recorded in run.json.

    Raises
    ------
    InputError
        Missing or malformed ``run.json``/``rounds.csv``.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "not a folder (expected an annosim results folder)")
    run_json = path / RUN_JSON
    if not run_json.exists():
        raise InputError(path, "no run.json: not an annosim results folder")
    try:
        meta = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(run_json, f"not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise InputError(run_json, "expected a JSON object")
    rounds = read_rounds(path / ROUNDS_CSV, meta)
    rounds["dataset"] = dataset or dataset_name(meta, path)
    rounds["model"] = model_label(meta)
    variants = _variants(meta)
    rounds["variant"] = [variants.get(p, "") for p in rounds["protocol"]]
    rounds["run"] = path.name
    return RunResults(path=path, meta=meta, rounds=rounds, errors=read_jsonl(path / ERRORS_JSONL))


def read_rounds(path: Path, meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """``rounds.csv`` as a DataFrame with typed columns (ints; floats, NaN where undefined).

    The metric columns are those run.json lists (``meta``); columns beyond the known ones are
    read as floats. A missing ``protocol`` column is filled with the single protocol named in
    run.json. Duplicate (case, label, setting, protocol, round) rows are an error.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "missing (no rounds were recorded)")
    metrics = metric_entries(meta or {})
    int_cols = INT_COLUMNS + tuple(m.column for m in metrics if m.integer)
    try:
        data = committed_prefix(path.parent, path.name)  # during a run: only committed units
        header = next(csv.reader(io.StringIO(data.decode("utf-8"), newline="")), [])
        df = pd.read_csv(io.BytesIO(data), dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                         na_values={c: ["nan", "NaN", ""] for c in header if c not in TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot be parsed as CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in REQUIRED_COLUMNS + tuple(m.column for m in metrics) if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}")
    if "protocol" not in df.columns:
        protocols = [p.get("name") for p in (meta or {}).get("protocols", []) or [] if isinstance(p, dict)]
        if len(protocols) != 1:
            raise InputError(path, "no protocol column and run.json does not name exactly one protocol")
        df.insert(KEY_COLUMNS.index("protocol"), "protocol", str(protocols[0]))
    for c in TEXT_COLUMNS:
        df[c] = df[c].astype(str)
    try:
        for c in df.columns:
            if c in TEXT_COLUMNS:
                continue
            if c in int_cols:
                df[c] = pd.to_numeric(df[c], errors="raise").astype(np.int64)
            else:
                df[c] = pd.to_numeric(df[c], errors="raise").astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"non-numeric value in a numeric column ({exc})") from None
    if (df["round"] < 1).any():
        raise InputError(path, "round numbers must start at 1")
    dup = df.duplicated(list(OBJECT_KEY) + ["round"])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise InputError(path, f"duplicate row for case {row['case']} label {row['label']} "
                               f"setting {row['setting']} round {row['round']}")
    return df.sort_values(list(OBJECT_KEY) + ["round"]).reset_index(drop=True)


def read_runs(paths: list[str | Path], dataset: str | None = None) -> list[RunResults]:
    """Read several folders; two runs with the same model label (:func:`model_label`) but
    different model parameters get the folder name appended to their label so that tables keep
    them apart."""
    runs = [read_run(p, dataset) for p in paths]
    by_name: dict[str, list[RunResults]] = {}
    for r in runs:
        by_name.setdefault(r.model, []).append(r)
    for name, group in by_name.items():
        params = {json.dumps(r.meta.get("model", {}), sort_keys=True, default=str) for r in group}
        if len(params) > 1:
            for r in group:
                r.rounds["model"] = f"{name} ({r.path.name})"
    return runs


# -- predictions saved by ``annosim run --save-predictions`` ------------------------------------

def prediction_path(run_dir: Path, case: str, label: int, setting: str, protocol: str) -> Path:
    """Where ``annosim run --save-predictions`` keeps one object's predictions
    (:func:`annosim.schema.prediction_path`)."""
    return _prediction_path(run_dir, UnitKey(str(case), int(label), setting, protocol))


def load_predictions(run_dir: Path, case: str, label: int, setting: str, protocol: str) -> dict[int, np.ndarray]:
    """Saved predictions of one object, ``{round: bool (Z, Y, X)}``; empty when not saved."""
    try:
        p = prediction_path(run_dir, case, label, setting, protocol)
    except ValueError as exc:  # a link inside the folder pointing out of it
        raise InputError(None, str(exc)) from None
    if not p.exists():
        return {}
    out: dict[int, np.ndarray] = {}
    try:
        with np.load(p, allow_pickle=False) as npz:
            for key in npz.files:
                if key.startswith("round_") and key[6:].isdigit():
                    out[int(key[6:])] = np.asarray(npz[key]).astype(bool)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(p, f"unreadable predictions ({exc})") from None
    return out
