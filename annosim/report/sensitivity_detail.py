"""Per protocol of every protocol-sensitivity row (:mod:`annosim.report.sensitivity`): the
protocol's native headline metric (its source's own number, ``Protocol.native_headline``)
beside annosim's Dice (best-of-rounds, final, mean over rounds), and Dice at budgets matched
across the row's protocols (annotated slices, clicks), with paired differences from the row's
first protocol and seeded bootstrap CIs; and the table's display strings.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from annosim.report.sensitivity import _column_names, _label, _registry_order
from annosim.report.tables import DASH, fmt, fmt_ci

#: Effort columns a budget is matched on, with the detail table's column suffix.
BUDGETS: tuple[tuple[str, str], ...] = (("annotated_slices", "slices"), ("clicks", "clicks"))


def headline_column(protocol: str) -> tuple[str, str]:
    """``(column in the object table, label)`` of a protocol's native headline metric: an
    object-level entry by its name, a per-round entry at its final round (``final_<column>``);
    ``("", "")`` when the protocol declares none."""
    from annosim.metrics.native import NATIVE
    from annosim.metrics.native_object import OBJECT_BY_NAME
    from annosim.protocols.registry import native_headline

    name = native_headline(protocol)
    if name in OBJECT_BY_NAME:
        m = OBJECT_BY_NAME[name]
        return name, m.label or name
    per_round = {m.name: m for m in NATIVE}
    if name in per_round:
        return f"final_{per_round[name].column}", f"final {per_round[name].label or name}"
    return "", ""


def dice_at_budget(rounds: pd.DataFrame, effort: str, budget: pd.Series) -> pd.Series:
    """Dice of each (case, label, _column) at the last round whose cumulative ``effort``
    (``clicks`` or ``annotated_slices``) is within the object's ``budget`` (a Series indexed by
    (case, label)); objects whose first round already exceeds it are absent."""
    b = budget.rename("_budget").reset_index()
    r = rounds.merge(b, on=["case", "label"], how="inner")
    r = r[r[effort] <= r["_budget"]]
    last = r.sort_values("round").drop_duplicates(["case", "label", "_column"], keep="last")
    return last.set_index(["case", "label", "_column"])["dice"]


def _paired(diff: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float, float]:
    from annosim.report.stats import bootstrap_ci

    d = diff[np.isfinite(diff)]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(d, n_boot, seed, level)
    return float(d.mean()), lo, hi


def protocol_detail(full: pd.DataFrame, objects: pd.DataFrame, n_boot: int = 10000, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """Per protocol of every sensitivity row: its native headline metric and annosim's Dice
    (best-of-rounds, final, mean over rounds) on the row's common objects, and Dice at budgets
    matched across the row's protocols, with paired differences from the row's first protocol.

    ``full`` is the carried-forward rounds table (:func:`annosim.report.stats.carry_forward`),
    ``objects`` the object table. The matched budget of an object is the smallest final
    ``annotated_slices`` (``clicks``) any protocol of the row spent on it; each protocol's Dice
    there is the Dice of its last round within that budget (undefined when its first round
    already exceeds it). Differences ``protocol - reference`` are paired by object: their mean
    and a seeded percentile bootstrap CI (``n_boot``, ``seed``, ``level``).
    """
    obj = objects.copy()
    obj["_column"] = _column_names(obj)
    rnd = full.copy()
    rnd["_column"] = _column_names(rnd)
    order = _registry_order()
    rows: list[dict[str, object]] = []
    for (dataset, model), sub in obj.groupby(["dataset", "model"], sort=True):
        cols = sorted(sub["_column"].unique(), key=lambda c: (order.get(c.split(" [", 1)[0], len(order)), c))
        if len(cols) < 2:
            continue
        for (structure, setting), grp in sub.groupby(["label_name", "setting"], sort=True):
            g = grp.set_index(["case", "label", "_column"])
            best = g["best_dice"].unstack("_column")
            here = [c for c in cols if c in best.columns and best[c].notna().any()]
            if len(here) < 2:
                continue
            common = best.index[best[here].notna().all(axis=1).to_numpy()]
            r = rnd[(rnd["dataset"] == dataset) & (rnd["model"] == model) & (rnd["label_name"] == structure)
                    & (rnd["setting"] == setting) & rnd["_column"].isin(here)]
            at: dict[str, pd.DataFrame] = {}
            for effort, tag in BUDGETS:
                budget = g[effort].unstack("_column").loc[common, here].min(axis=1)
                at[tag] = dice_at_budget(r, effort, budget).unstack("_column").reindex(index=common, columns=here)
            ref = here[0]
            for c in here:
                name = c.split(" [", 1)[0]
                col, label = headline_column(name)
                per = g.xs(c, level="_column").reindex(common)
                row: dict[str, object] = dict(dataset=dataset, structure=structure, setting=setting, model=model,
                                              protocol=_label(c, obj), n=int(len(common)), native=label,
                                              native_value=float(per[col].mean()) if col in per.columns else float("nan"),
                                              best_dice=float(per["best_dice"].mean()),
                                              final_dice=float(per["final_dice"].mean()),
                                              auc_dice=float(per["auc_dice"].mean()),
                                              clicks=float(per["clicks"].mean()),
                                              annotated_slices=float(per["annotated_slices"].mean()),
                                              reference=_label(ref, obj))
                for _, tag in BUDGETS:
                    vals = at[tag][c].to_numpy(np.float64)
                    row[f"dice_at_{tag}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
                    row[f"dice_at_{tag}_n"] = int(np.isfinite(vals).sum())
                diffs = {"best": best.loc[common, c] - best.loc[common, ref]}
                diffs.update({tag: at[tag][c] - at[tag][ref] for _, tag in BUDGETS})
                for key, d in diffs.items():
                    mean, lo, hi = _paired(d.to_numpy(np.float64), n_boot, seed, level)
                    row.update({f"diff_{key}": mean, f"diff_{key}_lo": lo, f"diff_{key}_hi": hi})
                rows.append(row)
    return pd.DataFrame(rows)


def detail_display(detail: pd.DataFrame) -> pd.DataFrame:
    """Display strings of :func:`annosim.report.sensitivity.protocol_detail`."""
    rows = []
    for _, r in detail.iterrows():
        ref = r["protocol"] == r["reference"]
        row = {"Dataset": r["dataset"], "Structure": r["structure"], "Setting": r["setting"], "Model": r["model"],
               "Protocol": r["protocol"], "n": fmt(r["n"]),
               "Source's own": f"{r['native']} {fmt(r['native_value'], 2)}" if r["native"] else DASH,
               "Best Dice": fmt(r["best_dice"]), "Final": fmt(r["final_dice"]), "Mean over rounds": fmt(r["auc_dice"]),
               "Slices": fmt(r["annotated_slices"], 1), "Clicks": fmt(r["clicks"], 1),
               "Dice @ matched slices": fmt(r["dice_at_slices"]), "Dice @ matched clicks": fmt(r["dice_at_clicks"])}
        for key, title in (("best", "best"), ("slices", "@ slices"), ("clicks", "@ clicks")):
            row[f"Diff {title} [95% CI]"] = "ref." if ref else (
                f"{fmt(r[f'diff_{key}'])} {fmt_ci(r[f'diff_{key}_lo'], r[f'diff_{key}_hi'])}"
                if math.isfinite(r[f"diff_{key}"]) else DASH)
        rows.append(row)
    return pd.DataFrame(rows)


def detail_notes(n_boot: int, seed: int) -> list[str]:
    """Footnotes of the per-protocol sensitivity table."""
    return [
        "Same objects as the sensitivity table (present under every protocol of the row). Source's own: the "
        "protocol's native headline metric as its source computes it (CVPR25 DSC AUC over the click rounds, "
        "0-4; RITM NoC@90 in IoU, failure 20); '-': the protocol declares none.",
        "Best/Final/Mean over rounds: annosim's 3D Dice over the setting's frames (objects carried forward). "
        "Slices, Clicks: mean final effort.",
        "Matched budget of an object: the fewest annotated slices (clicks) any protocol of the row spent on it; "
        "Dice @ matched: each protocol's Dice at its last round within that budget ('-' where its first round "
        "already exceeds it).",
        f"Diff: paired mean difference from the row's reference protocol (ref.) over the objects, with a "
        f"percentile bootstrap 95% CI ({n_boot} resamples, seed {seed}).",
    ]
