"""Paths inside dataset specs: resolving them (contained in the dataset root for downloaded
dataset files, as given for the user's own manifest and command line), expanding label lists and
globs, and case ids from image paths (see :mod:`annosim.data.layouts`)."""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path
from typing import Protocol, TypeVar

from annosim.errors import InputError


class _Identified(Protocol):
    """What :func:`_unique_ids` reads and sets on a case reference."""

    case_id: str
    image: str


_Ref = TypeVar("_Ref", bound=_Identified)

_IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def _inside(root: Path, rel: object, source: Path, where: str) -> str:
    """``rel`` resolved against ``root`` (lexically: symlinks inside the root are fine); must stay inside."""
    if not isinstance(rel, str) or not rel.strip():
        raise InputError(source, f"{where}: path is missing or not a string")
    root_n = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.join(root_n, os.path.expanduser(rel.strip())))
    if os.path.commonpath([root_n, path]) != root_n:
        raise InputError(
            source, f"{where}: path {rel!r} points outside the dataset root {root_n} (set --data-root to widen it)"
        )
    return path


def _user_path(base: Path, rel: object, source: Path | None, where: str) -> str:
    """``rel`` from the user's own command or CSV manifest: absolute as is, relative to ``base``."""
    if not isinstance(rel, str) or not rel.strip():
        raise InputError(source, f"{where}: path is missing or not a string")
    return os.path.normpath(os.path.join(os.path.abspath(base), os.path.expanduser(rel.strip())))


def _expand_label_spec(text: str, base: Path, source: Path | None, where: str, check_root: bool) -> list[str]:
    """``a.nrrd,b.nrrd`` or a glob -> paths (globs sorted); each inside ``base`` when ``check_root``."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        path = (_inside if check_root else _user_path)(base, part, source or base, where)
        if any(ch in part for ch in "*?["):
            matches = sorted(glob.glob(path))
            if not matches:
                raise InputError(part, "no label files match this pattern")
            out.extend(matches)
        else:
            out.append(path)
    if not out:
        raise InputError(source, f"{where}: no label file given")
    return out


def case_id_from_path(path: str | Path) -> str:
    """Case identifier from an image path: its name without the image suffix (``img0001.nii.gz`` -> ``img0001``)."""
    name = Path(path).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _unique_ids(refs: list[_Ref], root: Path) -> list[_Ref]:
    """Replace colliding case ids by the image path relative to the root (``/`` -> ``_``; outside
    the root: relative to the colliding images' common folder)."""
    counts = Counter(r.case_id for r in refs)
    clashing = [r.image for r in refs if counts[r.case_id] > 1]
    common = os.path.commonpath([os.path.dirname(p) for p in clashing]) if clashing else ""
    for ref in refs:
        if counts[ref.case_id] > 1:
            rel = os.path.relpath(ref.image, os.path.abspath(root))
            if rel.startswith(".."):  # a manifest's absolute path elsewhere: relative to the clashing ones' folder
                rel = os.path.relpath(ref.image, common)
            ref.case_id = case_id_from_path(rel.replace(os.sep, "_").replace("/", "_"))
    seen: Counter[str] = Counter()
    for ref in refs:
        seen[ref.case_id] += 1
        if seen[ref.case_id] > 1:
            ref.case_id = f"{ref.case_id}#{seen[ref.case_id]}"
    return refs
