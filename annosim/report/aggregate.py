"""How a table averages best-of-rounds Dice: annosim's per-object mean, or the statistic the
reference script of He et al. 2024 prints (``annosim report --aggregate reference``).

per-object (the default)
    For each (dataset, structure, setting, model, protocol): the mean over the objects that hold
    the structure of each object's best Dice over its rounds (``stats.summarize``).
reference
    What ``val_multigpu_sam2_point_iterative.py`` (Project-MONAI/VISTA) computes, re-enacted on
    the rows of ``rounds.csv``, separately per (dataset, setting, model, protocol):

    1. a tensor ``metric[n_cases, n_labels, max_iters]`` of NaN; ``n_labels`` is the size of the
       dataset's label set (here: every label value recorded for that dataset, setting, model
       and protocol), ``max_iters`` the protocol's rounds;
    2. per case, the label values present (0 included) are intersected with ``[0] + label_set``
       as a Python set and enumerated in the set's order, position 0 (background) skipped; the
       label at position i writes its Dice of round r into ``metric[case, i - 1, r - 1]``: the
       column is the label's rank among the labels *present in that case*, so a case that lacks
       a label moves every later label one column to the left;
    3. cases whose entries are all NaN are dropped;
    4. with ``max_iters > 1``: NaN -> 0, then the maximum over rounds; with ``max_iters == 1``:
       round 1 as it is (NaN kept);
    5. per column the mean over cases, ignoring NaN (after step 4 only the one-round case still
       has NaN); the script also prints the mean of those column means ("best avg").

    NaN paths: a label absent from a case (its trailing columns) becomes 0 and *counts* in the
    column's mean when the protocol has several rounds; rounds after an early stop are never
    filled and become 0 before the max, which leaves the max of non-negative Dice unchanged
    (round 1 is always filled); the per-round Dice itself is never NaN in the reference (every
    evaluated object has a non-empty truth), and a NaN Dice in rounds.csv would become 0 here as
    it would there. Column ``j`` therefore mixes structures; each column is named after its
    *nominal* structure, the one it holds in a case that has every label of the set (how the
    printed list is read against the label set), and the structures that landed in it are listed.

Differences that remain: the reference stores Dice as float32 (annosim computes in float64,
differences below 1e-7); an object that failed in annosim (``errors.jsonl``) has no rows and
counts as absent from its case, where the reference would have placed a Dice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from annosim.schema import AGGREGATIONS

#: The two aggregations (:data:`annosim.schema.AGGREGATIONS`).
PER_OBJECT, REFERENCE = AGGREGATIONS
#: Columns that identify one reference tensor.
TENSOR_KEY: tuple[str, ...] = ("dataset", "setting", "model", "protocol")
#: ``column`` value of the row holding the mean of the column means (the script's "best avg").
ALL_COLUMNS = 0
#: Columns of :func:`reference_aggregate`'s table, in order.
REFERENCE_COLUMNS: tuple[str, ...] = (
    "dataset", "setting", "model", "protocol", "variant", "column", "label", "structure",
    "reference_dice", "n_cases", "n_nominal", "n_other", "n_zero", "placed", "max_iters",
)


def reference_label_order(present: Iterable[int], label_set: Sequence[int]) -> list[int]:
    """The label values of one case in the order the reference script enumerates them.

    ``present``: label values with a recorded object in the case (0 is added, as the label map
    always has background); ``label_set``: the dataset's label values. Like the script, the
    sorted present values become a Python ``set``, intersected with the list ``[0] +
    label_set`` (ascending), and the result is iterated: ascending whenever every value is
    smaller than the set's hash table (8 slots up to 4 labels, 32 up to 19), not always beyond
    (``[0, 9, 5]`` for present 5 and 9). 0 is inserted first into an empty table, so it always
    comes first; the returned list starts with it.

    >>> reference_label_order([3, 1], [1, 2, 3])
    [0, 1, 3]
    >>> reference_label_order([5, 9], [5, 9])
    [0, 9, 5]
    """
    exist = sorted({0, *(int(v) for v in present)})
    candidates = [0, *sorted(int(v) for v in label_set if int(v) != 0)]
    return list(set(exist).intersection(candidates))


@dataclass(frozen=True)
class ReferenceTensor:
    """The reference's metric tensor for one (dataset, setting, model, protocol).

    Attributes
    ----------
    cases : case ids of the rows, in the order first seen (``run/case`` when several runs).
    labels : the label set (ascending values, 0 excluded).
    nominal : label value each column holds in a case that has every label (column ``j`` ->
        ``nominal[j]``).
    placed : int64 ``(n_cases, n_labels)``: the label value written into each entry, 0 where none.
    metric : float64 ``(n_cases, n_labels, max_iters)``: Dice per round, NaN where never filled.
    """

    cases: tuple[str, ...]
    labels: tuple[int, ...]
    nominal: tuple[int, ...]
    placed: np.ndarray
    metric: np.ndarray

    @property
    def max_iters(self) -> int:
        """Rounds of the tensor (its third axis)."""
        return int(self.metric.shape[2])


def metric_tensor(rounds: pd.DataFrame, max_iters: int) -> ReferenceTensor:
    """Fill the reference's tensor from the rows of one (dataset, setting, model, protocol).

    ``rounds``: raw ``rounds.csv`` rows (not carried forward) with ``case, label, round, dice``
    and optionally ``run``; ``max_iters``: the protocol's rounds (raised to the most rounds
    recorded if fewer).
    """
    case_ids = rounds["case"].astype(str)
    if "run" in rounds.columns and rounds["run"].nunique() > 1:
        case_ids = rounds["run"].astype(str) + "/" + case_ids
    cases = tuple(dict.fromkeys(case_ids))
    labels = tuple(sorted({int(v) for v in rounds["label"]}))
    n_iter = max(int(max_iters), int(rounds["round"].max()) if len(rounds) else 1)
    nominal = tuple(reference_label_order(labels, labels)[1:])
    case_index = {c: i for i, c in enumerate(cases)}
    placed = np.zeros((len(cases), len(labels)), dtype=np.int64)
    column_of: dict[tuple[str, int], int] = {}
    present = pd.DataFrame({"case": case_ids, "label": rounds["label"].astype(np.int64)}).drop_duplicates()
    for case, grp in present.groupby("case", sort=False):
        for col, value in enumerate(reference_label_order(grp["label"], labels)[1:]):
            column_of[(str(case), int(value))] = col
            placed[case_index[str(case)], col] = value
    rows = np.fromiter((case_index[c] for c in case_ids), dtype=np.int64, count=len(case_ids))
    cols = np.fromiter((column_of[(c, int(v))] for c, v in zip(case_ids, rounds["label"])), dtype=np.int64,
                       count=len(case_ids))
    metric = np.full((len(cases), len(labels), n_iter), np.nan, dtype=np.float64)
    metric[rows, cols, rounds["round"].to_numpy(np.int64) - 1] = rounds["dice"].to_numpy(np.float64)
    return ReferenceTensor(cases, labels, nominal, placed, metric)


def best_of_rounds(tensor: ReferenceTensor) -> tuple[np.ndarray, np.ndarray]:
    """The script's ``metric_best`` and the cases it keeps.

    Returns ``(best, kept)``: float64 ``(n_kept, n_labels)`` and bool ``(n_cases,)``. Cases whose
    entries are all NaN are dropped; with several rounds NaN becomes 0 before the maximum over
    rounds, with one round the round-1 entries are returned as they are (NaN kept).
    """
    m = tensor.metric
    kept = ~np.isnan(m).all(axis=(1, 2))
    m = m[kept]
    best = np.nan_to_num(m, nan=0.0).max(axis=2) if tensor.max_iters > 1 else m[:, :, 0]
    return best, kept


def nanmean(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean ignoring NaN (NaN where every value is NaN, without a warning) and the count of
    values that entered it, along ``axis``."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def _placed_text(values: np.ndarray, names: Mapping[int, str]) -> str:
    """``spleen x2, liver x1``: structures of one column by count (then label value)."""
    counts = Counter(int(v) for v in values if v != 0)
    return ", ".join(f"{names.get(v, str(v))} x{n}" for v, n in sorted(counts.items(), key=lambda t: (-t[1], t[0])))


def reference_aggregate(rounds: pd.DataFrame, max_rounds: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The reference script's statistic per (dataset, setting, model, protocol) and column.

    Parameters
    ----------
    rounds : raw ``rounds.csv`` rows of one or more runs (:func:`annosim.report.results_io.read_run`
        adds ``dataset, model, variant, run``), not carried forward.
    max_rounds : rounds of each protocol (``max_iters``); default: the most recorded.

    Returns
    -------
    One row per column (``column`` 1..n_labels) plus one row ``column == 0`` holding the mean of
    the column means; columns :data:`REFERENCE_COLUMNS`: ``label``/``structure`` (the column's
    nominal structure), ``reference_dice``, ``n_cases`` (values in the mean), ``n_nominal`` /
    ``n_other`` (cases that put the nominal / another structure there), ``n_zero`` (kept cases
    that never filled it, counted as 0 with several rounds), ``placed`` (structures that landed
    there, with counts) and ``max_iters``.
    """
    out: list[dict[str, object]] = []
    if rounds.empty:
        return pd.DataFrame(columns=list(REFERENCE_COLUMNS))
    for key, sub in rounds.groupby(list(TENSOR_KEY), sort=True):
        names = {int(v): str(n) for v, n in zip(sub["label"], sub["label_name"])}
        base = dict(zip(TENSOR_KEY, key))
        base["variant"] = str(sub["variant"].iloc[0]) if "variant" in sub.columns else ""
        protocol = str(base["protocol"])
        tensor = metric_tensor(sub, int((max_rounds or {}).get(protocol, 1)))
        best, kept = best_of_rounds(tensor)
        means, counts = nanmean(best, axis=0)
        placed = tensor.placed[kept]
        for j, label in enumerate(tensor.nominal):
            col = placed[:, j]
            out.append({**base, "column": j + 1, "label": int(label), "structure": names.get(int(label), str(label)),
                        "reference_dice": float(means[j]), "n_cases": int(counts[j]),
                        "n_nominal": int((col == label).sum()), "n_other": int(((col != label) & (col != 0)).sum()),
                        "n_zero": int((col == 0).sum()) if tensor.max_iters > 1 else 0,
                        "placed": _placed_text(col, names), "max_iters": tensor.max_iters})
        avg, n_avg = nanmean(means, axis=0)
        out.append({**base, "column": ALL_COLUMNS, "label": 0, "structure": "(mean of columns)",
                    "reference_dice": float(avg), "n_cases": int(kept.sum()), "n_nominal": 0, "n_other": 0,
                    "n_zero": 0, "placed": f"{int(n_avg)} column means", "max_iters": tensor.max_iters})
    return pd.DataFrame(out, columns=list(REFERENCE_COLUMNS))


def with_per_object(reference: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``reference`` (:func:`reference_aggregate`) with ``per_object_dice`` (the summary's mean
    best-of-rounds Dice of the column's nominal structure) and ``shift`` (reference minus
    per-object); both NaN on the ``column == 0`` rows."""
    keys = ["dataset", "setting", "model", "protocol", "structure"]
    per = summary[keys + ["best_dice"]].rename(columns={"best_dice": "per_object_dice"})
    out = reference.merge(per, on=keys, how="left")
    out.loc[out["column"] == ALL_COLUMNS, "per_object_dice"] = np.nan
    out["shift"] = out["reference_dice"] - out["per_object_dice"]
    return out


def reference_notes() -> list[str]:
    """Footnotes of the reference-aggregation table."""
    return [
        "Aggregation 'reference' (annosim report --aggregate reference): the statistic of the reference script "
        "(Project-MONAI/VISTA val_multigpu_sam2_point_iterative.py). Per case, each structure's Dice goes into "
        "the column of its rank among the structures present in that case, so a case lacking a structure moves "
        "the later ones one column left; entries never filled become 0 before the best-of-rounds max (one-round "
        "protocols: left out); each column is averaged over all cases.",
        "Column k is named after its nominal structure (the k-th of the label set, what it holds in a case with "
        "every label); 'Structures in the column' lists what landed there; Other / zero: cases that put another "
        "structure there / that counted 0. Column 'all': mean of the column means (the script's 'best avg').",
        "Per-object Dice: annosim's default, the mean best-of-rounds Dice over the objects of the structure; "
        "Shift: reference minus per-object.",
    ]
