"""The in-memory case: one CT volume with its label map, as the protocol sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Case:
    """One case, read and reoriented.

    Attributes
    ----------
    case_id : str
        Stable identifier (file stem or the dataset's own id).
    image : ndarray, float32, shape (Z, Y, X)
        Hounsfield units.
    label : ndarray, integer, shape (Z, Y, X)
        Label map, 0 = background.
    spacing : tuple of 3 floats
        Voxel size (sz, sy, sx) in mm.
    label_names : dict[int, str]
        Names of label values (may list values absent from this case).
    orientation : str
        ``"canonical"`` or ``"as-stored"``.
    geometry : object
        What :func:`annosim.data.orientation.write_mask` needs to put a ``(Z, Y, X)`` mask back on
        the original file grid.
    sources : dict[str, str]
        Paths the case was read from (``image``, ``label``...), for messages and run.json.
    notes : list of str
        Facts about the reading worth showing the user that are not errors (e.g. label files
        whose structures overlap: the later file wins there).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    label_names: dict[int, str]
    orientation: str = "canonical"
    geometry: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def present_labels(self) -> list[int]:
        """Sorted non-zero label values present in the label map."""
        values = np.unique(self.label)
        return [int(v) for v in values if v != 0]

    def name_of(self, value: int) -> str:
        """Name of a label value, ``label_<value>`` when unnamed."""
        return self.label_names.get(int(value), f"label_{int(value)}")


def control_character_problem(text: str) -> str | None:
    """Why ``text`` cannot be a case id or label name (it holds a control character such as a
    newline or tab, which would break CSV rows, JSON lines and file names), or None."""
    bad = [ch for ch in text if ord(ch) < 32 or 127 <= ord(ch) < 160]
    if bad:
        return f"holds the control character {bad[0]!r}"
    return None


def check_case_names(case_id: str, label_names: dict[int, str], source: str | None) -> None:
    """InputError naming ``source`` for a case id or label name holding a control character."""
    from annosim.errors import InputError

    why = control_character_problem(case_id)
    if why:
        raise InputError(source, f"case id {case_id!r} {why}; rename the case")
    for value, name in label_names.items():
        why = control_character_problem(str(name))
        if why:
            raise InputError(source, f"label name {name!r} (value {value}) {why}; rename the label")
