"""Protocol sensitivity: the same model on the same objects, mean best-of-rounds Dice per protocol.

The paper's point is that published SAM2 numbers disagree because their protocols differ. When a
report holds several protocols for one model (``annosim run --protocol a,b,c``, or several
results folders of the same model), this table puts them side by side, over the objects that
every protocol ran on, so that the differences come from the protocols alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Columns of the sensitivity table that precede the protocol columns.
ROW_KEY: tuple[str, ...] = ("dataset", "structure", "setting", "model")
#: What :func:`uses_gt` says of a protocol the registry does not know.
UNKNOWN_GT = "not in annosim's protocol registry (unknown)"


@dataclass
class Sensitivity:
    """A protocol sensitivity table.

    Attributes
    ----------
    table : DataFrame
        One row per (dataset, structure, setting, model) run under two or more protocols:
        ``n`` (objects present under every protocol of the row), ``excluded`` (objects present
        under some of them only), one column per protocol (mean best-of-rounds Dice over the
        ``n`` common objects; NaN where the model did not run that protocol on this structure
        and setting, or ``n`` is 0), ``spread`` (highest minus lowest protocol mean),
        ``highest`` and ``lowest`` (the protocols giving them).
    columns : list of str
        The protocol columns in display order: the protocol name, plus `` [run folder]`` when
        the same model ran the same protocol in several results folders.
    labels : dict
        Column -> display label (protocol with its variant, e.g. ``he2024 (paper)``).
    protocols : dict
        Column -> protocol name (the registry key).
    """

    table: pd.DataFrame
    columns: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no model of the report ran two or more protocols."""
        return self.table.empty


def _registry_order() -> dict[str, int]:
    from annosim.protocols.registry import list_protocols

    return {info.name: i for i, info in enumerate(list_protocols())}


def uses_gt(protocols: list[str]) -> dict[str, str]:
    """The ground-truth information each protocol uses (``ProtocolInfo.uses_gt``), by name."""
    from annosim.protocols.registry import list_protocols

    known = {info.name: info.uses_gt for info in list_protocols()}
    return {p: known.get(p, UNKNOWN_GT) for p in protocols}


def _column_names(objects: pd.DataFrame) -> pd.Series:
    """Protocol column of every object row: the protocol name, with `` [run]`` appended where one
    (dataset, model, protocol) comes from more than one results folder."""
    if "run" not in objects.columns:
        return objects["protocol"].astype(str)
    n_runs = objects.groupby(["dataset", "model", "protocol"])["run"].transform("nunique")
    names = objects["protocol"].astype(str)
    return names.where(n_runs <= 1, names + " [" + objects["run"].astype(str) + "]")


def protocol_sensitivity(objects: pd.DataFrame) -> Sensitivity:
    """Mean best-of-rounds Dice per protocol, per (dataset, structure, setting, model).

    Parameters
    ----------
    objects : one row per object (:func:`annosim.report.stats.object_table`), with columns
        ``dataset, model, case, label, label_name, setting, protocol, best_dice`` and optionally
        ``run`` and ``variant``.

    Returns
    -------
    :class:`Sensitivity`; its table has a row per (dataset, structure, setting, model) that two
    or more protocols ran on, and is empty when there is none. Objects are (case, label) pairs:
    a protocol's mean is taken over the objects that every protocol of the row has a Dice for,
    so all protocol columns of a row average the same ``n`` objects.
    """
    obj = objects.copy()
    obj["_column"] = _column_names(obj)
    order = _registry_order()

    def sort_key(col: str) -> tuple[int, str]:
        name = col.split(" [", 1)[0]
        return (order.get(name, len(order)), col)

    per_model: dict[tuple[str, str], list[str]] = {}
    for (dataset, model), sub in obj.groupby(["dataset", "model"], sort=True):
        cols = sorted(sub["_column"].unique(), key=sort_key)
        if len(cols) >= 2:
            per_model[(str(dataset), str(model))] = cols
    labels = {c: _label(c, obj) for cols in per_model.values() for c in cols}

    rows: list[dict[str, object]] = []
    for (dataset, model), model_cols in per_model.items():
        sub = obj[(obj["dataset"] == dataset) & (obj["model"] == model)]
        for (structure, setting), grp in sub.groupby(["label_name", "setting"], sort=True):
            wide = grp.set_index(["case", "label", "_column"])["best_dice"].unstack("_column")
            cols = [c for c in model_cols if c in wide.columns and wide[c].notna().any()]
            if len(cols) < 2:
                continue
            present = wide[cols].notna().all(axis=1).to_numpy()
            means = wide.loc[present, cols].mean(axis=0)  # NaN for every column when n == 0
            row: dict[str, object] = dict(dataset=dataset, structure=structure, setting=setting, model=model,
                                          n=int(present.sum()), excluded=int((~present).sum()))
            row.update({c: float(means[c]) for c in cols})
            if present.any():
                vals = means.to_numpy(np.float64)
                row.update(spread=float(vals.max() - vals.min()),
                           highest=labels[cols[int(np.argmax(vals))]], lowest=labels[cols[int(np.argmin(vals))]])
            else:
                row.update(spread=float("nan"), highest="", lowest="")
            rows.append(row)
    columns = sorted({c for r in rows for c in r if c in labels}, key=sort_key)
    table = pd.DataFrame(rows, columns=[*ROW_KEY, "n", "excluded", *columns, "spread", "highest", "lowest"])
    return Sensitivity(table, columns, {c: labels[c] for c in columns},
                       {c: c.split(" [", 1)[0] for c in columns})


def _label(column: str, objects: pd.DataFrame) -> str:
    """Display label of a protocol column: the protocol with its variant (``he2024 (paper)``)."""
    name = column.split(" [", 1)[0]
    variant = ""
    if "variant" in objects.columns:
        v = objects.loc[objects["_column"] == column, "variant"]
        variant = str(v.iloc[0]) if len(v) and isinstance(v.iloc[0], str) else ""
    return column if not variant or variant in name else column.replace(name, f"{name} ({variant})", 1)
