"""Small file utilities shared by the readers, the models and the results folder."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` through SHA-256 (never Python's ``hash()``, which changes
    between processes).

    >>> stable_seed(0, "case", 1) == stable_seed(0, "case", 1)
    True
    """
    key = "|".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def input_fingerprint(paths: "list[str]", content: bool = False) -> list[dict]:
    """Size (bytes), modification time (ns) and, with ``content``, sha256 of each input path, as
    the journal records them; a folder (a DICOM series) counts the files directly in it."""
    import os

    out: list[dict] = []
    for path in paths:
        entry: dict = {"path": str(path)}
        try:
            st = os.stat(path)
            if os.path.isdir(path):
                files = sorted(e.path for e in os.scandir(path) if e.is_file())
                stats = [os.stat(f) for f in files]
                entry.update(size=sum(x.st_size for x in stats), mtime_ns=max([x.st_mtime_ns for x in stats] or [0]))
                if content:
                    entry["sha256"] = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
            else:
                entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
                if content:
                    entry["sha256"] = sha256_file(path)
        except OSError:
            entry["missing"] = True
        out.append(entry)
    return out


def fingerprint_changes(recorded: "list[dict]", current: "list[dict]") -> list[str]:
    """What differs between two :func:`input_fingerprint` lists, one phrase per file
    (``seg.nii.gz: size 10 -> 12``); the sha256 decides when both hold one, else size and mtime."""
    now = {e["path"]: e for e in current}
    out: list[str] = []
    for old in recorded:
        new = now.get(old["path"])
        if new is None:
            out.append(f"{old['path']}: no longer an input of the case")
        elif new.get("missing") or old.get("missing"):
            if new.get("missing") != old.get("missing"):
                out.append(f"{old['path']}: {'now missing' if new.get('missing') else 'appeared'}")
        elif "sha256" in old and "sha256" in new:
            if old["sha256"] != new["sha256"]:
                out.append(f"{old['path']}: content changed (sha256)")
        elif old.get("size") != new.get("size"):
            out.append(f"{old['path']}: size {old.get('size')} -> {new.get('size')} bytes")
        elif old.get("mtime_ns") != new.get("mtime_ns"):
            out.append(f"{old['path']}: modified since its units were written")
    known = {e["path"] for e in recorded}
    out.extend(f"{e['path']}: new input of the case" for e in current if e["path"] not in known)
    return out
