"""The Table-1 view: a run's best-of-rounds Dice beside the numbers He et al. 2024 published.

The published figures (Table 1 of the paper) are packaged as ``he2024_table1.csv``: one row per
(dataset, structure), one column per method; ``sam2_fg_only``/``sam2_full`` are SAM2 with and
without background removal (the ``fg-only`` and ``full`` settings). Empty cells are numbers the
paper does not give.

The run's numbers use annosim's per-object aggregation, or with ``reference`` given (``annosim
report --aggregate reference``) the reference script's rank-column statistic
(:mod:`annosim.report.aggregate`), beside the per-object means and the shift between the two.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pandas as pd

from annosim.report.aggregate import PER_OBJECT, REFERENCE

#: Published method columns, in the paper's order, with their display names.
PAPER_METHODS: dict[str, str] = {
    "auto3dseg": "Auto3DSeg",
    "nnunet": "nnU-Net",
    "totalsegmentator": "TotalSegmentator",
    "vista3d_auto": "VISTA3D auto",
    "vista3d_point": "VISTA3D point",
    "vista3d_auto_point": "VISTA3D auto+point",
    "sam2_fg_only": "SAM2 fg-only",
    "sam2_full": "SAM2 full",
}
#: Dataset names of the paper, keyed by normalised aliases (see :func:`paper_dataset`).
_DATASET_ALIASES: dict[str, str] = {
    "msd03": "MSD03", "task03": "MSD03", "task03liver": "MSD03", "msdliver": "MSD03",
    "msd06": "MSD06", "task06": "MSD06", "task06lung": "MSD06", "msdlung": "MSD06",
    "msd07": "MSD07", "task07": "MSD07", "task07pancreas": "MSD07", "msdpancreas": "MSD07",
    "msd08": "MSD08", "task08": "MSD08", "task08hepaticvessel": "MSD08", "msdhepaticvessel": "MSD08",
    "msd09": "MSD09", "task09": "MSD09", "task09spleen": "MSD09", "msdspleen": "MSD09",
    "btcv": "BTCV", "btcvabdomen": "BTCV",
    "abdomenct1k": "AbdomenCT-1K",
}
#: Aliases that also name a dataset when followed by more (the VISTA datalists' stems
#: ``BTCV-Abdomen_5_folds``, ``AbdomenCT-1K_5_folds``); plain ``btcv`` does not (BTCV-Cervix).
_PREFIX_ALIASES = ("btcvabdomen", "abdomenct1k")
#: Label names whose paper name the general rule (see :func:`paper_structure`) does not give.
_STRUCTURE_ALIASES: dict[str, str] = {
    "ivc": "inferior vena cava",
    "postcava": "inferior vena cava",
    "vena cava inferior": "inferior vena cava",
    "portal vein": "portal vein and splenic vein",
    "portal and splenic vein": "portal vein and splenic vein",
    "gall bladder": "gallbladder",
    "oesophagus": "esophagus",
    "liver tumor": "hepatic tumor",
    "liver tumour": "hepatic tumor",
    "hepatic tumour": "hepatic tumor",
    "pancreas tumor": "pancreatic tumor",
    "pancreatic tumour": "pancreatic tumor",
    "lung tumour": "lung tumor",
    "lung nodule": "lung tumor",
    "kidneys": "kidney",
}


def load_paper_table() -> pd.DataFrame:
    """The published Table 1 (``dataset, structure`` and the :data:`PAPER_METHODS` columns)."""
    with resources.files("annosim.report").joinpath("he2024_table1.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def paper_structure(label_name: str) -> str:
    """The paper's name for a label name: ``kidney_right`` -> ``right kidney``.

    Underscores and hyphens become spaces, a trailing ``left``/``right`` moves to the front, case
    is lowered, and a few synonyms map to the paper's wording (``ivc`` -> ``inferior vena cava``).

    >>> paper_structure("adrenal_gland_right")
    'right adrenal gland'
    >>> paper_structure("portal_vein_and_splenic_vein")
    'portal vein and splenic vein'
    """
    words = re.sub(r"[_\-\s]+", " ", str(label_name)).strip().lower().split(" ")
    if len(words) > 1 and words[-1] in ("left", "right"):
        words = [words[-1]] + words[:-1]
    name = " ".join(words)
    return _STRUCTURE_ALIASES.get(name, name)


def paper_dataset(name: str) -> str | None:
    """The paper's dataset matching a dataset name (``btcv``, ``Task09_Spleen``...), or None."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    if key in _DATASET_ALIASES:
        return _DATASET_ALIASES[key]
    for alias, ds in _DATASET_ALIASES.items():
        if key.startswith(alias) and (alias.startswith(("task", "msd")) or alias in _PREFIX_ALIASES):
            return ds
    return None


def table1_view(summary: pd.DataFrame, paper_datasets: list[str] | None = None,
                reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The run's mean best-of-rounds Dice beside the published numbers.

    Parameters
    ----------
    summary : the output of :func:`annosim.report.stats.summarize`.
    paper_datasets : which published datasets to put beside each run dataset; ``None``: the
        dataset of the same name (:func:`paper_dataset`), else every published dataset that
        reports the structure.
    reference : the output of :func:`annosim.report.aggregate.reference_aggregate`; when given,
        ``run_fg_only``/``run_full`` hold the reference statistic of the column whose nominal
        structure is the row's.

    Returns
    -------
    One row per (run dataset, structure, model, protocol, published dataset) with ``structure``
    in the paper's wording, ``label_name`` (the run's), ``n``, ``run_fg_only`` and ``run_full``
    (mean best-of-rounds Dice, NaN where the setting was not run), ``paper_dataset`` and the
    published columns (NaN where the paper has no row for that structure); ``aggregation``
    (``per-object`` or ``reference``) says which statistic ``run_*`` hold. With ``reference``
    also ``per_object_fg_only/full``, ``shift_fg_only/full`` (reference minus per-object) and
    ``reference_column_fg_only/full`` (the column's rank, NaN where the setting was not run).
    """
    paper = load_paper_table()
    keys = ["dataset", "structure", "model", "protocol", "variant"]
    s = summary.copy()
    wide = s.pivot_table(index=keys, columns="setting", values="best_dice", aggfunc="first")
    ns = s.pivot_table(index=keys, columns="setting", values="n", aggfunc="first")
    ref: dict[tuple, tuple[float, int]] = {}
    if reference is not None:
        for _, r in reference[reference["column"] > 0].iterrows():
            ref[(r["dataset"], r["structure"], r["model"], r["protocol"], r["setting"])] = (
                float(r["reference_dice"]), int(r["column"]))
    rows = []
    for idx, vals in wide.iterrows():
        dataset, label_name, model, protocol, variant = idx
        name = paper_structure(label_name)
        if paper_datasets is not None:
            candidates = list(paper_datasets)
        else:
            ds = paper_dataset(dataset)
            candidates = [ds] if ds else sorted(set(paper.loc[paper["structure"] == name, "dataset"]))
            if not candidates:
                candidates = [ds or ""]
        for pds in candidates:
            match = paper[(paper["dataset"] == pds) & (paper["structure"] == name)]
            row = dict(dataset=dataset, structure=name, label_name=label_name, model=model,
                       protocol=protocol, variant=variant,
                       n=int(np.nanmax(ns.loc[idx].to_numpy(np.float64))),
                       run_fg_only=float(vals.get("fg-only", np.nan)),
                       run_full=float(vals.get("full", np.nan)),
                       paper_dataset=pds, aggregation=REFERENCE if reference is not None else PER_OBJECT)
            if reference is not None:
                for setting, tag in (("fg-only", "fg_only"), ("full", "full")):
                    value, column = ref.get((dataset, label_name, model, protocol, setting), (np.nan, np.nan))
                    row[f"per_object_{tag}"] = row[f"run_{tag}"]
                    row[f"shift_{tag}"] = value - row[f"run_{tag}"]
                    row[f"reference_column_{tag}"] = column
                    row[f"run_{tag}"] = value
            for col in PAPER_METHODS:
                row[col] = float(match[col].iloc[0]) if len(match) else float("nan")
            rows.append(row)
    cols = ["dataset", "structure", "label_name", "model", "protocol", "variant", "n", "aggregation",
            "run_fg_only", "run_full"]
    if reference is not None:
        cols += [f"{kind}_{tag}" for kind in ("per_object", "shift", "reference_column") for tag in ("fg_only", "full")]
    cols += ["paper_dataset", *PAPER_METHODS]
    return pd.DataFrame(rows, columns=cols)
