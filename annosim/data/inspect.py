"""Per-case summaries: what ``annosim datasets inspect`` prints before a long benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from annosim.data.case import Case

#: Above this label value, per-slice counts go through np.unique instead of a dense table.
_DENSE_MAX_VALUE = 4096


@dataclass(frozen=True)
class LabelStats:
    """One label value present in a case.

    ``first_slice``/``last_slice`` are indices along Z (axis 0) of the oriented volume, inclusive;
    ``n_slices`` counts the slices holding at least one voxel (fewer than
    ``last - first + 1`` when the structure has gaps).
    """

    value: int
    name: str
    voxels: int
    first_slice: int
    last_slice: int
    n_slices: int


def label_stats(label: np.ndarray, names: dict[int, str] | None = None) -> list[LabelStats]:
    """Voxel count and Z extent of every non-zero value in a ``(Z, Y, X)`` integer label map, by value."""
    names = names or {}
    z = label.shape[0]
    flat = label.reshape(z, -1)
    if label.size and int(label.max()) <= _DENSE_MAX_VALUE:
        all_values = np.arange(int(label.max()) + 1)
        codes = flat.astype(np.int64)
    else:
        all_values, codes = np.unique(flat, return_inverse=True)
        codes = codes.reshape(flat.shape).astype(np.int64)
    n = len(all_values)
    offsets = (np.arange(z, dtype=np.int64) * n)[:, None]
    per_slice = np.bincount((codes + offsets).ravel(), minlength=z * n).reshape(z, n)  # (Z, values)
    out = []
    for index in np.flatnonzero(per_slice.sum(axis=0)):
        value = int(all_values[index])
        if value == 0:
            continue
        slices = np.flatnonzero(per_slice[:, index])
        out.append(
            LabelStats(
                value=value,
                name=names.get(value, f"label_{value}"),
                voxels=int(per_slice[:, index].sum()),
                first_slice=int(slices[0]),
                last_slice=int(slices[-1]),
                n_slices=int(slices.size),
            )
        )
    return out


def case_summary(case: Case) -> dict:
    """JSON-able summary of a loaded case: shape, spacing, orientation, HU range, labels present."""
    image = case.image
    return {
        "case": case.case_id,
        "image": case.sources.get("image", ""),
        "label": case.sources.get("label", ""),
        "shape": [int(n) for n in image.shape],
        "spacing": [float(s) for s in case.spacing],
        "orientation": case.orientation,
        "axcodes": "".join(case.geometry.axcodes) if hasattr(case.geometry, "axcodes") else "",
        "hu_min": float(image.min()),
        "hu_max": float(image.max()),
        "labels": [asdict(s) for s in label_stats(case.label, case.label_names)],
        "notes": list(case.notes),
    }


def _num(value: float) -> str:
    """Shortest text that reads back as the same float32 (HU) or float64 (spacing) value."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def format_summary(summary: dict) -> str:
    """Text block for one case summary (as made by :func:`case_summary`)."""
    shape = " x ".join(str(n) for n in summary["shape"])
    spacing = " x ".join(f"{s:.6g}" for s in summary["spacing"])
    lines = [
        f"case {summary['case']}",
        f"  image: {summary['image']}",
        f"  label: {summary['label']}",
        f"  shape (Z, Y, X): {shape}   spacing (mm): {spacing}   "
        f"orientation: {summary['orientation']} ({summary['axcodes']})",
        f"  HU range: {_num(summary['hu_min'])} .. {_num(summary['hu_max'])}",
    ]
    labels = summary["labels"]
    if not labels:
        lines.append("  labels: none present")
    else:
        width = max(len("name"), *(len(s["name"]) for s in labels))
        lines.append(f"  {'value':>5}  {'name':<{width}}  {'voxels':>10}  {'first':>5}  {'last':>5}  {'slices':>6}")
        for s in labels:
            lines.append(
                f"  {s['value']:>5}  {s['name']:<{width}}  {s['voxels']:>10}  "
                f"{s['first_slice']:>5}  {s['last_slice']:>5}  {s['n_slices']:>6}"
            )
    for note in summary.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def missing_files(cases: list, shown: int = 5, hint: bool = True) -> tuple[set[str], list[str]]:
    """Case ids whose image or label files do not exist, and summary lines: one line per kind
    ("N of M images not found under ROOT ...", ``hint``: with a pointer to ``--data-root``) then
    the first ``shown`` missing paths.

    ``cases``: :class:`annosim.data.layouts.CaseRef` items. Nothing is read.
    """
    import os

    missing: dict[str, list[str]] = {"image": [], "label": []}
    bad: set[str] = set()
    for ref in cases:
        for kind, paths in (("image", [ref.image]), ("label", ref.labels)):
            gone = [p for p in paths if not os.path.exists(p)]
            if gone:
                missing[kind].append(gone[0])
                bad.add(ref.case_id)
    lines = []
    if bad:
        parents = sorted({os.path.dirname(p) for paths in missing.values() for p in paths})
        root = os.path.commonpath(parents) if parents else ""
        for kind, paths in missing.items():
            if paths:
                lines.append(f"{len(paths)} of {len(cases)} {kind}s not found under {root}")
        if hint:
            lines[-1] += "; pass --data-root FOLDER if the paths are relative to another folder"
        listed = [p for paths in missing.values() for p in paths]
        lines += [f"  not found: {p}" for p in listed[:shown]]
        if len(listed) > shown:
            lines.append(f"  ... and {len(listed) - shown} more")
    return bad, lines
