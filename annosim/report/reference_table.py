"""Display of the reference-aggregation table (``annosim report --aggregate reference``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annosim.report.aggregate import ALL_COLUMNS
from annosim.report.tables import DASH, fmt


def reference_display(table: pd.DataFrame) -> pd.DataFrame:
    """Display strings of :func:`annosim.report.aggregate.with_per_object`'s table (3 decimals, signed shift)."""
    rows = []
    for _, r in table.iterrows():
        shift = r["shift"]
        rows.append({
            "Dataset": r["dataset"], "Setting": r["setting"], "Model": r["model"],
            "Protocol": r["protocol"] if not r["variant"] or r["variant"] in r["protocol"]
            else f"{r['protocol']} ({r['variant']})",
            "Column": "all" if int(r["column"]) == ALL_COLUMNS else str(int(r["column"])),
            "Structure (nominal)": r["structure"],
            "Reference Dice": fmt(r["reference_dice"]),
            "Per-object Dice": fmt(r["per_object_dice"]),
            "Shift": DASH if not np.isfinite(shift) else f"{shift:+.3f}",
            "n cases": fmt(int(r["n_cases"])),
            "Other / zero": DASH if int(r["column"]) == ALL_COLUMNS else f"{int(r['n_other'])}/{int(r['n_zero'])}",
            "Structures in the column": r["placed"] or DASH,
        })
    return pd.DataFrame(rows)
