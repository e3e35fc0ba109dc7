"""Small file utilities shared by the readers, the models and the results folder."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from annosim.errors import ConfigError, InputError


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


def check_out_folder(out: str | Path, option: str = "--out") -> None:
    """ConfigError (one line naming ``option``) unless ``out`` is, or can be created as, a
    writable folder. Nothing is left behind: a temporary folder is created and removed in
    ``out`` or its nearest existing ancestor."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"{option} {out}: exists and is not a folder")
        probe_in = out
    else:
        probe_in = out.parent
        while not probe_in.exists() and probe_in != probe_in.parent:
            probe_in = probe_in.parent
        if not probe_in.is_dir():
            raise ConfigError(f"{option} {out}: {probe_in} is not a folder")
    try:
        tempfile.TemporaryDirectory(dir=probe_in, prefix=".annosim-probe-").cleanup()
    except OSError as exc:
        raise ConfigError(f"{option} {out}: cannot create a folder in {probe_in} ({exc.strerror or exc})") from None


def _load_reason(exc: BaseException) -> str:
    """The useful part of a ``torch.load`` failure, on one short line."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:  # torch's long weights_only preamble: keep the cause
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        return f"torch.load(weights_only=True) refused it: {cause[:120]}"
    if isinstance(exc, EOFError) or not text:
        return f"{type(exc).__name__}: the file ends early" if isinstance(exc, EOFError) else type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}"


def unloadable_checkpoint(path: str | Path, exc: BaseException, valid: str) -> InputError:
    """The one-line error for a checkpoint ``torch.load`` cannot read: "not a loadable
    checkpoint", its size and sha256 digest, the cause, and ``valid`` (what a valid one is)."""
    p = Path(path)
    try:
        size, digest = f"{p.stat().st_size} bytes", f"sha256 {sha256_file(p)}"
    except OSError as err:
        size, digest = "size unknown", f"unreadable ({err.strerror or err})"
    return InputError(p, f"not a loadable checkpoint ({size}, {digest}; {_load_reason(exc)}); "
                         f"a valid one is {valid}")


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
