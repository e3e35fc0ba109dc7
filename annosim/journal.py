"""The commit journal ``units.jsonl`` checked against the data files of a results folder.

The journal is the truth: unit ``i`` owns the next ``rows`` records of ``rounds.csv`` (CSV
records, not lines: a quoted field may hold a newline) and the next ``prompts`` lines of
``prompts.jsonl``, each of which must parse and carry the unit's (case, label, setting,
protocol). :func:`scan_folder` finds the committed extent of every file; a damaged tail (a torn
write, a garbled last line, a garbled last unit) is cut back to the last intact unit, while damage
further back, or a missing or unreadable journal beside data, is refused with a pointer to
``annosim repair RUN_DIR`` (:func:`repair_folder`). Nothing here writes except
:func:`repair_folder` and :func:`truncate_to`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from annosim.errors import ResultsFolderError
from annosim.schema import OBJECT_KEY, PROMPTS_JSONL, ROUNDS_CSV, RUN_JSON, UNITS_JSONL

#: Fields every journal record holds.
UNIT_FIELDS: tuple[str, ...] = OBJECT_KEY + ("rows", "prompts")


def repair_hint(path: Path) -> str:
    return f"run `annosim repair {path}` to rebuild it from the complete units"


@dataclass
class Extent:
    """Committed part of a folder: the intact units (journal records, in order), the byte length
    of each file's committed part, and one-line descriptions of what follows it."""

    units: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    #: Per file, where each unit's part starts (a list one longer than ``units``: the last is the end).
    bounds: dict[str, list[int]] = field(default_factory=dict)


# -- records with byte offsets -------------------------------------------------------------------
def csv_records(data: bytes, start: int = 0) -> Iterator[tuple[list[str] | None, int]]:
    """(record, end offset) of each CSV record of ``data`` from byte ``start``; ``None`` for a
    record that does not parse or is not ended by a newline (then iteration stops)."""
    pos = [start]

    def lines() -> Iterator[str]:
        while pos[0] < len(data):
            nxt = data.find(b"\n", pos[0])
            end = len(data) if nxt < 0 else nxt + 1
            chunk = data[pos[0]:end]
            pos[0] = end
            yield chunk.decode("utf-8")

    reader = csv.reader(lines(), strict=True)
    while pos[0] < len(data):
        try:
            rec = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError):
            yield None, pos[0]
            return
        if data[pos[0] - 1:pos[0]] != b"\n":
            yield None, pos[0]
            return
        yield rec, pos[0]


def jsonl_records(data: bytes, start: int = 0) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """(object, end offset) of each line of ``data`` from ``start``; ``None`` for a line that is
    not a JSON object or not ended by a newline (then iteration stops)."""
    pos = start
    while pos < len(data):
        nxt = data.find(b"\n", pos)
        if nxt < 0:
            yield None, len(data)
            return
        try:
            obj = json.loads(data[pos:nxt].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict):
            yield None, nxt + 1
            return
        pos = nxt + 1
        yield obj, pos


def _valid_unit(obj: dict[str, Any] | None) -> bool:
    return (isinstance(obj, dict) and all(k in obj for k in UNIT_FIELDS)
            and isinstance(obj["rows"], int) and isinstance(obj["prompts"], int)
            and obj["rows"] >= 0 and obj["prompts"] >= 0 and isinstance(obj["label"], int))


def _key_of(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(obj["case"]), str(obj["label"]), str(obj["setting"]), str(obj["protocol"]))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise ResultsFolderError(f"{path}: unreadable ({exc.strerror or exc})") from None


def data_rows(folder: Path) -> int:
    """Records after the header of rounds.csv plus lines of prompts.jsonl (0 when absent)."""
    rounds = _read(folder / ROUNDS_CSV)
    n = sum(1 for _ in csv_records(rounds)) - 1 if rounds else 0
    return max(n, 0) + _read(folder / PROMPTS_JSONL).count(b"\n")


# -- scanning -------------------------------------------------------------------------------------
def scan_folder(folder: Path, columns: tuple[str, ...]) -> Extent:
    """The committed extent of ``folder`` whose rounds.csv has ``columns`` (its header must be
    present or the file empty). ResultsFolderError (one line, with the repair hint) when the
    journal is missing or unreadable beside data, or damage lies before the last unit."""
    folder = Path(folder)
    journal_path = folder / UNITS_JSONL
    if not journal_path.exists():
        n = data_rows(folder)
        if n:
            raise ResultsFolderError(f"{folder}: {UNITS_JSONL} is missing but the data files hold {n} records; "
                                     f"refusing to guess which units are complete: {repair_hint(folder)}")
    journal = _read(journal_path)
    ext = Extent()
    units: list[dict[str, Any]] = []
    ends: list[int] = []
    n_lines = journal.count(b"\n")
    for obj, end in jsonl_records(journal):
        if obj is None or not _valid_unit(obj):
            if len(units) + 1 < n_lines:  # damage before the last complete line
                raise ResultsFolderError(f"{journal_path}: line {len(units) + 1} is not a unit record; "
                                         f"{repair_hint(folder)}")
            break
        units.append(obj)
        ends.append(end)
    rounds = _read(folder / ROUNDS_CSV)
    header_end = 0
    if rounds:
        first = next(csv_records(rounds), (None, 0))
        if first[0] is None or tuple(first[0]) != tuple(columns):
            shown = ", ".join(first[0]) if first[0] else "unreadable"
            raise ResultsFolderError(f"{folder / ROUNDS_CSV}: its columns ({shown}) are not this run's "
                                     f"({', '.join(columns)})")
        header_end = first[1]
    prompts = _read(folder / PROMPTS_JSONL)
    r_pos, p_pos, r_ends, p_ends, bad = header_end, 0, [], [], None
    key_cols = [columns.index(c) for c in OBJECT_KEY] if all(c in columns for c in OBJECT_KEY) else []
    for i, unit in enumerate(units):
        key = _key_of(unit)
        it_r = csv_records(rounds, r_pos)
        for _ in range(unit["rows"]):
            rec, end = next(it_r, (None, r_pos))
            if rec is None or len(rec) != len(columns) or tuple(rec[j] for j in key_cols) != key:
                bad = f"row {_rank(rounds, header_end, r_pos)} of {ROUNDS_CSV} does not belong to unit {i + 1}"
                break
            r_pos = end
        if bad is None:
            it_p = jsonl_records(prompts, p_pos)
            for _ in range(unit["prompts"]):
                obj, end = next(it_p, (None, p_pos))
                if obj is None or not all(k in obj for k in OBJECT_KEY) or _key_of(obj) != key:
                    bad = f"a line of {PROMPTS_JSONL} does not belong to unit {i + 1}"
                    break
                p_pos = end
        if bad is not None:
            if i + 1 < len(units):
                raise ResultsFolderError(f"{folder}: {bad} of {len(units)} in {UNITS_JSONL} (damage before the "
                                         f"last unit); {repair_hint(folder)}")
            ext.dropped.append(f"the last committed unit ({', '.join(key)}): {bad}")
            units = units[:i]
            ends = ends[:i]
            r_pos, p_pos = (r_ends[-1], p_ends[-1]) if r_ends else (header_end, 0)
            break
        r_ends.append(r_pos)
        p_ends.append(p_pos)
    ext.units = units
    ext.sizes = {UNITS_JSONL: ends[-1] if ends else 0, ROUNDS_CSV: r_pos, PROMPTS_JSONL: p_pos}
    n = len(units)
    ext.bounds = {UNITS_JSONL: [0, *ends[:n]], ROUNDS_CSV: [header_end, *r_ends[:n]],
                  PROMPTS_JSONL: [0, *p_ends[:n]]}
    for name, data in ((UNITS_JSONL, journal), (ROUNDS_CSV, rounds), (PROMPTS_JSONL, prompts)):
        extra = len(data) - ext.sizes[name]
        if extra > 0:
            ext.dropped.append(f"{extra} bytes of {name}")
    return ext


def _rank(data: bytes, start: int, pos: int) -> int:
    """1-based number of the record that starts at ``pos`` (counting records after the header)."""
    return 1 + sum(1 for rec, end in csv_records(data, start) if end <= pos and rec is not None)


def drop_notice(folder: Path, ext: Extent) -> str | None:
    """The one-line notice of what opening ``folder`` cut away (None when nothing)."""
    if not ext.dropped:
        return None
    return (f"{folder}: dropped what followed the last intact committed unit ({'; '.join(ext.dropped)}); "
            "it will be recomputed")


def truncate_to(folder: Path, sizes: dict[str, int]) -> None:
    """Cut each file of ``sizes`` back to its committed length (fsync'd)."""
    for name, size in sizes.items():
        path = folder / name
        if path.exists() and path.stat().st_size > size:
            with open(path, "r+b") as fh:
                fh.truncate(size)
                fh.flush()
                os.fsync(fh.fileno())


# -- repair ---------------------------------------------------------------------------------------
def _groups(records: list[tuple[tuple[str, ...], int]]) -> list[tuple[tuple[str, ...], int, int]]:
    """Consecutive runs of equal keys: (key, count, end offset)."""
    out: list[tuple[tuple[str, ...], int, int]] = []
    for key, end in records:
        if out and out[-1][0] == key:
            out[-1] = (key, out[-1][1] + 1, end)
        else:
            out.append((key, 1, end))
    return out


def rebuild_units(folder: Path) -> tuple[list[dict[str, Any]], dict[str, int]] | str:
    """Journal records rebuilt from the complete units of the data files, and the committed
    sizes; or the reason they cannot be (a string). The last unit of the files is kept only when
    the old journal confirms it (its completeness cannot be proven otherwise)."""
    rounds = _read(folder / ROUNDS_CSV)
    records = list(csv_records(rounds))
    if not records or records[0][0] is None:
        return f"{ROUNDS_CSV} has no readable header"
    header = records[0][0]
    if not all(c in header for c in OBJECT_KEY):
        return f"{ROUNDS_CSV} lacks the columns {', '.join(OBJECT_KEY)}"
    idx = [header.index(c) for c in OBJECT_KEY]
    rows = []
    for rec, end in records[1:]:
        if rec is None or len(rec) != len(header):
            break  # a damaged tail
        rows.append((tuple(rec[j] for j in idx), end))
    prompts = []
    for obj, end in jsonl_records(_read(folder / PROMPTS_JSONL)):
        if obj is None or not all(k in obj for k in OBJECT_KEY):
            break
        prompts.append((_key_of(obj), end))
    row_groups, prompt_groups = _groups(rows), _groups(prompts)
    if len({g[0] for g in row_groups}) != len(row_groups):
        return f"a unit's rows are not contiguous in {ROUNDS_CSV}"
    old = {}
    for obj, _ in jsonl_records(_read(folder / UNITS_JSONL)):
        if obj is None:
            break
        if _valid_unit(obj):
            old[_key_of(obj)] = obj
    units: list[dict[str, Any]] = []
    sizes = {ROUNDS_CSV: records[0][1], PROMPTS_JSONL: 0}
    pi = 0
    for gi, (key, n_rows, r_end) in enumerate(row_groups):
        n_prompts, p_end = 0, sizes[PROMPTS_JSONL]
        if pi < len(prompt_groups) and prompt_groups[pi][0] == key:
            n_prompts, p_end = prompt_groups[pi][1], prompt_groups[pi][2]
            pi += 1
        prev = old.get(key)
        confirmed = prev is not None and prev["rows"] == n_rows and prev["prompts"] == n_prompts
        if gi == len(row_groups) - 1 and not confirmed:
            break
        record = dict(prev) if confirmed else {}
        record.update({"case": key[0], "label": int(key[1]), "setting": key[2], "protocol": key[3],
                       "rows": n_rows, "prompts": n_prompts})
        units.append(record)
        sizes = {ROUNDS_CSV: r_end, PROMPTS_JSONL: p_end}
    if pi < len(prompt_groups) - 1:
        return f"prompts of a unit without rows in {PROMPTS_JSONL}"
    return units, sizes


def repair_folder(folder: Path) -> str:
    """Rebuild the journal of ``folder`` from its complete units (cutting the data files back to
    them), or move the folder aside when that is impossible; returns what was done (one line).
    The caller holds the folder's lock."""
    folder = Path(folder)
    if not (folder / RUN_JSON).is_file():
        raise ResultsFolderError(f"{folder}: no {RUN_JSON}; not an annosim results folder")
    result = rebuild_units(folder)
    if isinstance(result, str):
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        aside = folder.with_name(f"{folder.name}.damaged-{stamp}")
        os.replace(folder, aside)
        return (f"{folder}: cannot rebuild the journal ({result}); moved the folder to {aside}; "
                "rerun the command to start over")
    units, sizes = result
    tmp = folder / (UNITS_JSONL + ".tmp")
    text = "".join(json.dumps(u) + "\n" for u in units)
    tmp.write_text(text)
    os.replace(tmp, folder / UNITS_JSONL)
    truncate_to(folder, sizes)
    n_rows, n_prompts = sum(u["rows"] for u in units), sum(u["prompts"] for u in units)
    return (f"{folder}: journal rebuilt with {len(units)} complete units ({n_rows} rows, {n_prompts} prompts); "
            "rerun the same command to resume")


def committed_prefix(folder: Path, name: str) -> bytes:
    """The committed part of ``folder/name`` (rounds.csv with its header, or prompts.jsonl) as
    the journal has it, read only; the whole file when the folder has no journal."""
    folder = Path(folder)
    data = _read(folder / name)
    if name not in (ROUNDS_CSV, PROMPTS_JSONL) or not (folder / UNITS_JSONL).exists():
        return data
    count = "rows" if name == ROUNDS_CSV else "prompts"
    n = 0
    for obj, _ in jsonl_records(_read(folder / UNITS_JSONL)):
        if obj is None or not _valid_unit(obj):
            break
        n += obj[count]
    if name == ROUNDS_CSV:
        n += 1  # the header
        end = 0
        for i, (rec, stop) in enumerate(csv_records(data)):
            if i >= n or rec is None:
                break
            end = stop
        return data[:end]
    end = 0
    for i, (obj, stop) in enumerate(jsonl_records(data)):
        if i >= n or obj is None:
            break
        end = stop
    return data[:end]


def without_cases(folder: Path, ext: Extent, cases: set[str]) -> None:
    """Rewrite the three files of ``folder`` (committed as ``ext`` says) without the units of
    ``cases``: each file is written to a temporary file and moved over the old one, the journal
    last. ``cases`` empty: nothing is written."""
    keep = [i for i, u in enumerate(ext.units) if str(u["case"]) not in cases]
    if len(keep) == len(ext.units):
        return
    for name in (ROUNDS_CSV, PROMPTS_JSONL, UNITS_JSONL):
        data, b = _read(folder / name), ext.bounds[name]
        parts = [data[: b[0]]] + [data[b[i]: b[i + 1]] for i in keep]
        tmp = folder / (name + ".tmp")
        try:
            tmp.write_bytes(b"".join(parts))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
