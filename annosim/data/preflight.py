"""Cheap checks of a dataset before a run creates anything: the files named on the command line
exist, and every requested label name is the name of a label in at least one case.

Names are gathered without reading any volume: the dataset's names and ``--label-names``,
``labels.json`` beside the label file, the segment names in a ``.seg.nrrd`` header, and the
structure names of merged label files. Where a case's names cannot be known that way, the check
gives up (the case runner still reports a missing label per case).
Both checks raise :class:`annosim.errors.ConfigError`: exit status 2, nothing created.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

from annosim.data.layouts import CaseRef, Dataset
from annosim.data.readers import is_seg_nrrd, labels_json_names, structure_name
from annosim.errors import ConfigError

#: Names listed at most in a "not a label name" message.
MAX_LISTED = 40


def check_command_line_files(dataset: Dataset) -> None:
    """ConfigError for a missing file of an ``"IMAGE LABEL"`` spec (files the user typed)."""
    if dataset.layout != "pair":
        return
    for ref in dataset.cases:
        for what, path in [("image", ref.image), *(("label", p) for p in ref.labels)]:
            if not os.path.exists(path):
                raise ConfigError(f"--data: {what} file {path} not found")


def _seg_nrrd_names(path: str) -> set[str] | None:
    """Segment names of a ``.seg.nrrd`` header (``Segment<i>_Name``); None when unreadable."""
    try:
        import nrrd

        header = nrrd.read_header(path)
    except Exception:  # missing or damaged file: reported when the case is read
        return None
    return {str(v) for k, v in header.items() if k.startswith("Segment") and k.endswith("_Name")}


def case_label_names(ref: CaseRef) -> tuple[set[str], tuple[str, ...]] | None:
    """Names a case's labels may have, read without loading volumes: ``(names, prefixes)``;
    a name starting with one of ``prefixes`` (``<stem>_``, a merged file holding several
    values) may also occur. None when the names cannot be known without reading the volumes."""
    names = set(ref.label_names.values()) | set(labels_json_names(ref.labels[0]).values())
    prefixes: list[str] = []
    for path in ref.labels:
        if is_seg_nrrd(path):
            seg = _seg_nrrd_names(path)
            if seg is None:
                return None
            names |= seg
        elif len(ref.labels) > 1:
            names.add(structure_name(path))
            prefixes.append(structure_name(path) + "_")
    return names, tuple(prefixes)


def check_label_names(refs: Sequence[CaseRef], requested: Sequence[str] | None) -> None:
    """ConfigError when a requested label name (values are not checked) is the name of no
    case's label, with the closest names ("did you mean") and the names present."""
    wanted = [t.strip() for t in requested or () if not t.strip().lstrip("-").isdigit()]
    if not wanted or not refs:
        return
    names: set[str] = set()
    prefixes: set[str] = set()
    for ref in refs:
        found = case_label_names(ref)
        if found is None:
            return
        names |= found[0]
        prefixes |= set(found[1])
    for token in wanted:
        if token in names or any(token.startswith(p) for p in prefixes):
            continue
        n = len(refs)
        where = "the case" if n == 1 else f"any of the {n} cases"
        if not names:
            raise ConfigError(
                f"--labels {token}: {where} has no label names; give label values (e.g. --labels 1) "
                "or names with --label-names '1=NAME'"
            )
        close = difflib.get_close_matches(token, sorted(names), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        listed = sorted(names)
        shown = ", ".join(listed[:MAX_LISTED]) + (f", ... ({len(listed)} in all)" if len(listed) > MAX_LISTED else "")
        raise ConfigError(f"--labels {token}: no label of {where} has this name; {hint}names present: {shown}")
