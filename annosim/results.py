"""The results folder (DESIGN section 4, Contract): run.json, rounds.csv, prompts.jsonl,
errors.jsonl, written unit by unit so that a killed run loses at most the unit in flight.

Crash safety: each unit (case x label x setting x protocol) is appended as prompts, then rows,
then one line in the commit journal ``units.jsonl``, each flushed to disk. Opening a folder
drops whatever lines follow the last committed unit, so a rerun resumes exactly where the
last complete unit ended and never duplicates one. A file lock refuses a second concurrent run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from annosim.errors import ResultsFolderError

ROUND_COLUMNS: tuple[str, ...] = (
    "case",
    "label",
    "label_name",
    "setting",
    "protocol",
    "round",
    "annotated_slices",
    "clicks",
    "dice",
    "nsd",
    "hd95",
    "fp_slices",
    "gt_slices",
    "model_seconds",
)
#: Columns that measure time and legitimately differ between identical runs.
TIMING_COLUMNS: tuple[str, ...] = ("model_seconds",)
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
    "orientation",
)

RUN_JSON = "run.json"
ROUNDS_CSV = "rounds.csv"
PROMPTS_JSONL = "prompts.jsonl"
ERRORS_JSONL = "errors.jsonl"
UNITS_JSONL = "units.jsonl"
LOCK = ".annosim.lock"


@dataclass(frozen=True)
class UnitKey:
    """One unit of work: an object in one setting under one protocol."""

    case: str
    label: int
    setting: str
    protocol: str


def format_value(value: Any) -> str:
    """CSV cell text: floats at full precision (``repr``), everything else ``str``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item"):  # numpy scalar
        return format_value(value.item())
    return str(value)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{path} is new ({new[key]!r})")
            elif key not in new:
                out.append(f"{path} was {old[key]!r}, now absent")
            else:
                out.extend(_diff(old[key], new[key], path))
        return out
    if old != new:
        return [f"{prefix}: {old!r} -> {new!r}"]
    return []


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that comparisons see what the file holds."""
    return json.loads(json.dumps(value, default=str))


class ResultsFolder:
    """A results folder opened for writing by one run (use as a context manager).

    >>> with ResultsFolder(out).open(config, meta) as store:   # doctest: +SKIP
    ...     if not store.is_done(key):
    ...         store.write_unit(key, rows, prompts)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: FileLock | None = None
        self._done: dict[UnitKey, int] = {}
        self.n_errors = 0

    # -- opening ------------------------------------------------------------------------------
    def open(self, config: dict[str, Any], meta: dict[str, Any]) -> "ResultsFolder":
        """Create or resume the folder for ``config`` (the IDENTITY_KEYS) plus ``meta``.

        Raises ResultsFolderError when the folder holds another configuration or is locked.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ResultsFolderError(f"{self.path}: exists and is not a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ResultsFolderError(
                f"{self.path}: results folder is in use by another annosim run"
            ) from None
        self._lock = lock
        try:
            self._open_locked(_jsonable(config), _jsonable(meta))
        except BaseException:
            self.close()
            raise
        return self

    def _open_locked(self, config: dict[str, Any], meta: dict[str, Any]) -> None:
        run_json = self.path / RUN_JSON
        if run_json.exists():
            try:
                old = json.loads(run_json.read_text())
            except (OSError, ValueError) as exc:
                raise ResultsFolderError(f"{run_json}: unreadable ({exc})") from None
            old_cfg = {k: old.get(k) for k in IDENTITY_KEYS}
            diffs = _diff(old_cfg, {k: config.get(k) for k in IDENTITY_KEYS})
            if diffs:
                shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
                raise ResultsFolderError(
                    f"{self.path}: results folder was made by a different configuration "
                    f"({shown}); use another --out folder"
                )
            old.setdefault("resumed", []).append(meta.get("started"))
            self._write_json(run_json, old)
        else:
            leftovers = [n for n in (ROUNDS_CSV, PROMPTS_JSONL, UNITS_JSONL) if (self.path / n).exists()]
            if leftovers:
                raise ResultsFolderError(
                    f"{self.path}: holds {', '.join(leftovers)} but no run.json; "
                    "refusing to mix results, use another --out folder"
                )
            self._write_json(run_json, {**config, **meta})
        self._repair()
        # errors.jsonl describes the latest invocation: failed units are retried on rerun.
        (self.path / ERRORS_JSONL).write_text("")

    def _repair(self) -> None:
        """Drop rows and prompts that follow the last committed unit; load the journal."""
        units: list[dict[str, Any]] = []
        journal = self.path / UNITS_JSONL
        if journal.exists():
            data = journal.read_bytes()
            good = data[: data.rfind(b"\n") + 1]
            for line in good.splitlines():
                units.append(json.loads(line))
            if len(good) != len(data):
                self._truncate(journal, len(good))
        n_rows = sum(u["rows"] for u in units)
        n_prompts = sum(u["prompts"] for u in units)
        rounds = self.path / ROUNDS_CSV
        if not rounds.exists() or rounds.stat().st_size == 0:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(ROUND_COLUMNS)
            rounds.write_text(buf.getvalue())
        self._keep_lines(rounds, 1 + n_rows)
        prompts = self.path / PROMPTS_JSONL
        prompts.touch()
        self._keep_lines(prompts, n_prompts)
        self._done = {
            UnitKey(u["case"], int(u["label"]), u["setting"], u["protocol"]): int(u["rows"])
            for u in units
        }

    @staticmethod
    def _keep_lines(path: Path, n: int) -> None:
        data = path.read_bytes()
        pos = 0
        for _ in range(n):
            nxt = data.find(b"\n", pos)
            if nxt < 0:
                raise ResultsFolderError(
                    f"{path}: has fewer lines than {UNITS_JSONL} records; the folder is damaged"
                )
            pos = nxt + 1
        if pos != len(data):
            ResultsFolder._truncate(path, pos)

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _write_json(path: Path, obj: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)

    # -- state ----------------------------------------------------------------------------------
    def is_done(self, key: UnitKey) -> bool:
        """Whether ``key`` was committed by this or an earlier run."""
        return key in self._done

    @property
    def done_units(self) -> set[UnitKey]:
        return set(self._done)

    # -- writing --------------------------------------------------------------------------------
    def write_unit(self, key: UnitKey, rows: list[dict[str, Any]], prompts: list[dict[str, Any]]) -> None:
        """Append one unit's prompts and rows, then commit it in the journal."""
        if self._lock is None:
            raise RuntimeError("results folder is not open")
        if key in self._done:
            raise RuntimeError(f"unit {key} already written")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow([format_value(row[c]) for c in ROUND_COLUMNS])
        text_prompts = "".join(json.dumps(p) + "\n" for p in prompts)
        self._append(self.path / PROMPTS_JSONL, text_prompts)
        self._append(self.path / ROUNDS_CSV, buf.getvalue())
        record = {
            "case": key.case,
            "label": key.label,
            "setting": key.setting,
            "protocol": key.protocol,
            "rows": len(rows),
            "prompts": len(prompts),
        }
        self._append(self.path / UNITS_JSONL, json.dumps(record) + "\n")
        self._done[key] = len(rows)

    def write_error(self, case: str, label: int | None, stage: str, error: str) -> None:
        """Append one line to errors.jsonl."""
        rec = {"case": case, "label": label, "stage": stage, "error": error}
        self._append(self.path / ERRORS_JSONL, json.dumps(rec) + "\n")
        self.n_errors += 1

    @staticmethod
    def _append(path: Path, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- closing ----------------------------------------------------------------------------------
    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "ResultsFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def provenance() -> dict[str, Any]:
    """The informational part of run.json every writer shares: annosim and library versions,
    start time (UTC) and host."""
    import datetime as _dt
    import importlib
    import platform
    import socket
    import sys

    from annosim import __version__

    versions: dict[str, Any] = {"annosim": __version__, "python": platform.python_version()}
    for mod in ("numpy", "scipy", "torch", "sam2", "monai", "SimpleITK", "nibabel"):
        try:
            m = sys.modules.get(mod) or importlib.import_module(mod)
        except Exception:
            versions[mod] = None
            continue
        versions[mod] = getattr(m, "__version__", None) or getattr(m, "Version", lambda: None)()
    return {
        "annosim_version": __version__,
        "versions": versions,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }


def read_rounds(path: str | Path) -> list[dict[str, str]]:
    """Rows of ``rounds.csv`` in a results folder (strings, as written)."""
    with open(Path(path) / ROUNDS_CSV, newline="") as fh:
        return list(csv.DictReader(fh))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Objects of a JSON-lines file (empty list when absent)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


