"""The results folder: run.json, rounds.csv, prompts.jsonl, errors.jsonl and the journal
units.jsonl (names in :mod:`annosim.schema`), written unit by unit so that a killed run loses at
most the unit in flight.

Crash safety: each unit (case x label x setting x protocol) is appended as prompts, then rows,
then one line in the commit journal ``units.jsonl``, each flushed to disk. Opening a folder
drops whatever lines follow the last committed unit, so a rerun resumes exactly where the
last complete unit ended and never duplicates one. A file lock refuses a second concurrent run.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from annosim.errors import InputError, ResultsFolderError, WriteFailed
from annosim.journal import data_rows, drop_notice, scan_folder, truncate_to
from annosim.schema import (
    ERRORS_JSONL,
    IDENTITY_KEYS,
    LOCK,
    PROMPTS_JSONL,
    ROUNDS_CSV,
    RUN_JSON,
    TIMING_COLUMNS,
    UNITS_JSONL,
    ErrorRecord,
    UnitKey,
    round_columns,
)
from annosim.metrics.registry import BUILTIN

#: Columns of rounds.csv with the built-in metrics only.
ROUND_COLUMNS: tuple[str, ...] = round_columns([m.column for m in BUILTIN])

__all__ = ["ROUND_COLUMNS", "ResultsFolder", "UnitKey", "TIMING_COLUMNS", "format_value", "provenance", "read_jsonl", "read_rounds"]


def format_value(value: Any) -> str:
    """CSV cell text: floats at full precision (``repr``), everything else ``str``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item"):  # numpy scalar
        return format_value(value.item())
    return str(value)


def write_failure(path: str | Path, exc: OSError) -> WriteFailed:
    """The one-line stop for a failed write of ``path`` (no space, read-only, permission...)."""
    why = exc.strerror or str(exc)
    fix = ("free space and rerun the same command to resume" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
           else "make the folder writable and rerun the same command to resume")
    return WriteFailed(f"{path}: cannot write ({why}); nothing committed was lost; {fix}")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into :func:`write_failure`'s one line."""
    try:
        yield
    except Timeout:  # another run holds the lock (filelock's Timeout is an OSError)
        raise
    except OSError as exc:
        raise write_failure(path, exc) from exc


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
    if isinstance(old, list) and isinstance(new, list) and old != new:
        named = all(isinstance(x, dict) and "name" in x for x in old + new)
        if named and len({x["name"] for x in old}) == len(old) and len({x["name"] for x in new}) == len(new):
            return _diff({x["name"]: x for x in old}, {x["name"]: x for x in new}, prefix)
        if len(old) == len(new) and all(isinstance(x, dict) for x in old + new):
            return [d for i, (a, b) in enumerate(zip(old, new)) for d in _diff(a, b, f"{prefix}[{i}]")]
    if old != new:
        return [f"{prefix}: {old!r} -> {new!r}"]
    return []


def identity_diffs(old: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Differences between two run.json configurations, over the IDENTITY_KEYS only."""
    return _diff({k: old.get(k) for k in IDENTITY_KEYS}, {k: _jsonable(config).get(k) for k in IDENTITY_KEYS})


def different_configuration(path: Path, diffs: list[str]) -> ResultsFolderError:
    """The refusal of a folder made by another configuration, listing the differing keys."""
    shown = "\n  ".join(diffs[:12]) + (f"\n  ... and {len(diffs) - 12} more" if len(diffs) > 12 else "")
    return ResultsFolderError(f"{path}: results folder was made by a different configuration:\n  {shown}\n"
                              "rerun the command that made it to resume, or give a new --out folder")


def refusal_of(path: str | Path, config: dict[str, Any]) -> ResultsFolderError | None:
    """What :meth:`ResultsFolder.open` would refuse for ``config`` because ``path`` holds finished
    units of another configuration (None: it would open); nothing is written."""
    path = Path(path)
    run_json, journal = path / RUN_JSON, path / UNITS_JSONL
    if not run_json.is_file() or not journal.is_file() or b"\n" not in journal.read_bytes():
        return None
    try:
        old = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        return ResultsFolderError(f"{run_json}: unreadable ({exc})")
    diffs = identity_diffs(old, config)
    return different_configuration(path, diffs) if diffs else None


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so that comparisons see what the file holds."""
    return json.loads(json.dumps(value, default=str))


class ResultsFolder:
    """A results folder opened for writing by one run (use as a context manager).

    >>> with ResultsFolder(out).open(config, meta) as store:   # doctest: +SKIP
    ...     if not store.is_done(key):
    ...         store.write_unit(key, rows, prompts)
    """

    def __init__(self, path: str | Path, columns: tuple[str, ...] | None = None) -> None:
        self.path = Path(path)
        #: Columns of rounds.csv (default: the built-in metrics').
        self.columns = columns or ROUND_COLUMNS
        self._lock: FileLock | None = None
        self._done: dict[UnitKey, int] = {}
        #: Journal records of the committed units.
        self.units: dict[UnitKey, dict[str, Any]] = {}
        #: One-line notices from opening (what a damaged tail lost).
        self.notices: list[str] = []

    # -- opening ------------------------------------------------------------------------------
    def open(self, config: dict[str, Any], meta: dict[str, Any]) -> "ResultsFolder":
        """Create or resume the folder for ``config`` (the IDENTITY_KEYS) plus ``meta``.

        Raises ResultsFolderError when the folder holds another configuration or is locked.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ResultsFolderError(f"{self.path}: exists and is not a folder")
        lock = FileLock(str(self.path / LOCK))
        try:
            with writing(self.path):
                self.path.mkdir(parents=True, exist_ok=True)
                lock.acquire(timeout=0)
        except Timeout:
            raise ResultsFolderError(
                f"{self.path}: results folder is in use by another annosim run"
            ) from None
        self._lock = lock
        try:
            with writing(self.path):
                self._open_locked(_jsonable(config), _jsonable(meta))
        except BaseException:
            self.close()
            raise
        return self

    def _open_locked(self, config: dict[str, Any], meta: dict[str, Any]) -> None:
        run_json = self.path / RUN_JSON
        if not (self.path / UNITS_JSONL).exists() and data_rows(self.path):
            scan_folder(self.path, self.columns)  # refuses, pointing to annosim repair
        if run_json.exists():
            try:
                old = json.loads(run_json.read_text())
            except (OSError, ValueError) as exc:
                raise ResultsFolderError(f"{run_json}: unreadable ({exc})") from None
            diffs = identity_diffs(old, config)
            if diffs and self._committed_units():
                raise different_configuration(self.path, diffs)
            if diffs:  # nothing finished there: the folder is taken over by this configuration
                for name in (ROUNDS_CSV, PROMPTS_JSONL, UNITS_JSONL):
                    (self.path / name).unlink(missing_ok=True)
                self._write_json(run_json, {**config, **meta})
            else:
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

    def _committed_units(self) -> bool:
        """Whether the journal holds at least one complete line (a finished unit)."""
        journal = self.path / UNITS_JSONL
        return journal.exists() and b"\n" in journal.read_bytes()

    def _repair(self) -> None:
        """Cut every file back to the last intact committed unit (a one-line notice says what was
        dropped) and load the journal; see :mod:`annosim.journal`."""
        rounds = self.path / ROUNDS_CSV
        if not rounds.exists() or rounds.stat().st_size == 0:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(self.columns)
            rounds.write_text(buf.getvalue())
        ext = scan_folder(self.path, self.columns)
        notice = drop_notice(self.path, ext)
        if notice:
            self.notices.append(notice)
        truncate_to(self.path, ext.sizes)
        (self.path / PROMPTS_JSONL).touch()
        self._done = {
            UnitKey(u["case"], int(u["label"]), u["setting"], u["protocol"]): int(u["rows"])
            for u in ext.units
        }
        self.units = {UnitKey(u["case"], int(u["label"]), u["setting"], u["protocol"]): u for u in ext.units}

    @staticmethod
    def _write_json(path: Path, obj: Any) -> None:
        """Replace ``path`` atomically; no temporary file is left behind when writing fails."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise write_failure(path, exc) from exc

    def drop_cases(self, cases: set[str]) -> None:
        """Remove every committed unit of ``cases`` (their input files changed) so that they are
        recomputed; the files are rewritten without them, the journal last."""
        from annosim.journal import without_cases

        with writing(self.path):
            without_cases(self.path, scan_folder(self.path, self.columns), cases)
        self._done = {k: v for k, v in self._done.items() if k.case not in cases}
        self.units = {k: v for k, v in self.units.items() if k.case not in cases}

    # -- state ----------------------------------------------------------------------------------
    def is_done(self, key: UnitKey) -> bool:
        """Whether ``key`` was committed by this or an earlier run."""
        return key in self._done

    @property
    def done_units(self) -> set[UnitKey]:
        return set(self._done)

    # -- writing --------------------------------------------------------------------------------
    def write_unit(self, key: UnitKey, rows: list[dict[str, Any]], prompts: list[dict[str, Any]],
                   extra: dict[str, Any] | None = None) -> None:
        """Append one unit's prompts and rows, then commit it in the journal (its record gets
        ``extra``: the predictions file, the input fingerprints)."""
        if self._lock is None:
            raise RuntimeError("results folder is not open")
        if key in self._done:
            raise RuntimeError(f"unit {key} already written")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow([format_value(row[c]) for c in self.columns])
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
            **(extra or {}),
        }
        self._append(self.path / UNITS_JSONL, json.dumps(record) + "\n")
        self._done[key] = len(rows)
        self.units[key] = record

    def write_error(self, record: ErrorRecord) -> None:
        """Append one line to errors.jsonl."""
        self._append(self.path / ERRORS_JSONL, json.dumps(record.record()) + "\n")

    @staticmethod
    def _append(path: Path, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8")
        with writing(path):
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
    """The informational part of run.json every writer shares: annosim and library versions
    (from the installed distributions' metadata, ``None`` when not installed), start time (UTC)
    and host."""
    import datetime as _dt
    import platform
    import socket
    from importlib import metadata

    from annosim import __version__

    versions: dict[str, Any] = {"annosim": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scipy", "torch", "sam2", "monai", "SimpleITK", "nibabel"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
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
    """Objects of a JSON-lines file, one per non-empty line; ``[]`` when the file is absent.
    InputError naming the file and line for a line that is not a JSON object."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {lineno} is not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(path, f"line {lineno} is not a JSON object")
            out.append(obj)
    return out


def repair(path: str | Path) -> str:
    """``annosim repair``: rebuild the journal of the results folder ``path`` from its complete
    units, or move the folder aside when it cannot be; returns the one line that says which.
    Refused while another run holds the folder."""
    from annosim.journal import repair_folder

    path = Path(path)
    if not path.is_dir():
        raise ResultsFolderError(f"{path}: results folder not found")
    lock = FileLock(str(path / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ResultsFolderError(f"{path}: results folder is in use by another annosim run") from None
    try:
        return repair_folder(path)
    finally:
        lock.release()
