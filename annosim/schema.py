"""The records a run produces and the names of the results folder: one home for every column,
setting, orientation, error stage and file name that a writer and a reader share.

A results folder holds (see the README's "Results folder"):

``run.json``       configuration and provenance
``rounds.csv``     one :class:`RoundRow` per (case, label, setting, protocol, round)
``prompts.jsonl``  one prompt record per prompt, in the order given
``errors.jsonl``   one :class:`ErrorRecord` per failed case or unit of the latest invocation
``units.jsonl``    the commit journal, one line per finished unit

The metric columns of ``rounds.csv`` come from the metric registry
(:mod:`annosim.metric_registry`); :func:`round_columns` puts them between the fixed columns.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: The two settings of an object: the whole volume, or only the slices holding its truth.
SETTINGS: tuple[str, ...] = ("full", "fg-only")
#: Array orientations: the radiological view, or the order stored on disk.
ORIENTATIONS: tuple[str, ...] = ("canonical", "as-stored")

#: How reports average best-of-rounds Dice (``annosim report --aggregate``; default first): over
#: each structure's objects, or as the reference script of He et al. 2024 (annosim.report.aggregate).
AGGREGATIONS: tuple[str, ...] = ("per-object", "reference")

#: ``annosim report --viewers``: replay viewer pages for the QC objects, every object with saved
#: predictions, or none (:mod:`annosim.report.viewer_pages`).
VIEWER_CHOICES: tuple[str, ...] = ("qc", "all", "none")

#: Stages of an error line: where in the run it was raised.
STAGES: tuple[str, ...] = (
    "read",  # reading or checking the case's files
    "memory",  # the case's memory estimate does not fit
    "labels",  # a requested label is absent, or the label map is empty
    "model",  # raised inside a model method
    "protocol",  # raised by the protocol's own code
    "metric",  # raised while scoring a round
    "prediction",  # score: the prediction file of a case is missing or unreadable
    "worker",  # the worker process running the case died
    "timeout",  # the case ran past --case-timeout
)

RUN_JSON = "run.json"
ROUNDS_CSV = "rounds.csv"
PROMPTS_JSONL = "prompts.jsonl"
ERRORS_JSONL = "errors.jsonl"
UNITS_JSONL = "units.jsonl"
PREDICTIONS_DIR = "predictions"
LOCK = ".annosim.lock"

#: Columns that identify a row of rounds.csv.
KEY_COLUMNS: tuple[str, ...] = ("case", "label", "label_name", "setting", "protocol", "round")
#: Columns that identify one object in one setting under one protocol (a unit).
OBJECT_KEY: tuple[str, ...] = ("case", "label", "setting", "protocol")
#: The annotation effort so far, written before the metric columns.
EFFORT_COLUMNS: tuple[str, ...] = ("annotated_slices", "clicks")
#: Columns that measure time and legitimately differ between identical runs (written last).
TIMING_COLUMNS: tuple[str, ...] = ("model_seconds",)
#: Integer columns among the fixed ones.
INT_COLUMNS: tuple[str, ...] = ("label", "round", "annotated_slices", "clicks")
#: Text columns.
TEXT_COLUMNS: tuple[str, ...] = ("case", "label_name", "setting", "protocol")

#: run.json keys that define a configuration; a folder is resumed only when all are equal.
IDENTITY_KEYS: tuple[str, ...] = (
    "protocols",
    "model",
    "data",
    "settings",
    "labels",
    "seed",
    "nsd_tolerance",
    "surface_metrics",
    "metrics",
    "orientation",
)


def round_columns(metric_columns: Sequence[str]) -> tuple[str, ...]:
    """Columns of rounds.csv, in order, for the given metric columns.

    >>> round_columns(("dice",))
    ('case', 'label', 'label_name', 'setting', 'protocol', 'round', 'annotated_slices', 'clicks', 'dice', 'model_seconds')
    """
    return KEY_COLUMNS + EFFORT_COLUMNS + tuple(metric_columns) + TIMING_COLUMNS


@dataclass(frozen=True)
class UnitKey:
    """One unit of work: an object (case, label) in one setting under one protocol."""

    case: str
    label: int
    setting: str
    protocol: str


@dataclass
class RoundRow:
    """One row of rounds.csv: a round of one unit, its effort, its metrics and its model time."""

    case: str
    label: int
    label_name: str
    setting: str
    protocol: str
    round: int
    annotated_slices: int
    clicks: int
    metrics: dict[str, float | int]
    model_seconds: float

    def record(self) -> dict[str, Any]:
        """The row as a flat dict of column -> value."""
        return {
            "case": self.case,
            "label": int(self.label),
            "label_name": self.label_name,
            "setting": self.setting,
            "protocol": self.protocol,
            "round": int(self.round),
            "annotated_slices": int(self.annotated_slices),
            "clicks": int(self.clicks),
            **self.metrics,
            "model_seconds": float(self.model_seconds),
        }


def prompt_record(key: UnitKey, round_: int, fields: dict[str, Any]) -> dict[str, Any]:
    """One line of prompts.jsonl: the unit, the round, then the prompt's own fields (``kind``,
    ``z`` and ``y, x, positive`` or ``y0, x0, y1, x1``)."""
    return {"case": key.case, "label": int(key.label), "setting": key.setting, "protocol": key.protocol,
            "round": int(round_), **fields}


@dataclass(frozen=True)
class ErrorRecord:
    """One line of errors.jsonl: a case (``label`` None) or a unit that failed, and where."""

    case: str
    label: int | None
    stage: str
    error: str

    def record(self) -> dict[str, Any]:
        return {"case": self.case, "label": self.label, "stage": self.stage, "error": self.error}


@dataclass
class UnitResult:
    """What one unit produced: its rows and prompt records, or the error that stopped it (rows
    of the rounds finished before an error are dropped with the unit)."""

    key: UnitKey
    rows: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    error: ErrorRecord | None = None


_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def safe_component(text: str) -> str:
    """``text`` when it can be one file-name component as it is (letters, digits, ``._+-``, at
    most 100 characters, not starting with a dot); otherwise a stable safe name: its safe
    characters (``_`` for the rest, at most 48) and 12 hex digits of its SHA-256.

    >>> safe_component("case_01"), safe_component("../../x")
    ('case_01', 'x-9cdf6a50100a')
    """
    if _SAFE_COMPONENT.fullmatch(text):
        return text
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")[:48] or "case"
    return f"{stem}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def under(root: "str | os.PathLike[str]", path: Path) -> Path:
    """``path`` when it resolves (symbolic links followed) inside ``root``; ValueError otherwise."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{path}: resolves outside the results folder {root}; not written")
    return path


def prediction_path(run_dir: "str | os.PathLike[str]", key: UnitKey) -> Path:
    """Where ``annosim run --save-predictions`` keeps one unit's predictions:
    ``predictions/<case>/<protocol>__<label>__<setting>.npz`` with one bool (Z, Y, X) array
    ``round_K`` per round K, in the run's orientation. Each component goes through
    :func:`safe_component` (a case id like ``../x`` or ``/abs`` gets a stable safe name) and the
    path is checked to stay under ``run_dir`` (ValueError otherwise)."""
    name = f"{safe_component(key.protocol)}__{int(key.label)}__{safe_component(key.setting)}.npz"
    return under(run_dir, Path(run_dir) / PREDICTIONS_DIR / safe_component(str(key.case)) / name)
