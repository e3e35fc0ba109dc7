"""``annosim compare``: paired comparison of two runs on the same objects.

Each object's statistic is its best-of-rounds Dice. Objects are paired on (case, label,
setting, protocol) when both runs ran the same protocols, else on (case, label, setting) when
each ran exactly one. The difference is B - A. Per structure x setting, per setting over all
structures, and over everything: n pairs, means, mean difference, seeded percentile bootstrap CI
of the mean difference, and the two-sided Wilcoxon signed-rank p-value (scipy's default
``zero_method="wilcox"``: tied pairs are dropped; p = 1 when every pair is tied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from annosim.errors import ConfigError, InputError
from annosim.report import stats, tables
from annosim.report.results_io import RunResults, read_run

ALL = "all"


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (NaN for no pairs, 1.0 when
    every difference is zero)."""
    d = np.asarray(diff, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(sps.wilcoxon(d).pvalue)


def best_of_rounds(run: RunResults) -> pd.DataFrame:
    """One row per object: ``case, label, label_name, setting, protocol, best_dice``."""
    full = stats.carry_forward(run.rounds)
    objs = stats.object_table(full)
    return objs[["case", "label", "label_name", "setting", "protocol", "best_dice"]]


def pair_objects(a: RunResults, b: RunResults) -> tuple[pd.DataFrame, dict[str, int]]:
    """Paired best-of-rounds Dice of two runs.

    Returns the pairs (``case, label, structure, setting, protocol, best_a, best_b, diff``) and
    counts of objects found in only one run (``only_a``, ``only_b``).
    """
    ba, bb = best_of_rounds(a), best_of_rounds(b)
    pa, pb = sorted(ba["protocol"].unique()), sorted(bb["protocol"].unique())
    key = ["case", "label", "setting"]
    if pa == pb:
        key.append("protocol")
    elif len(pa) == 1 and len(pb) == 1:
        label = f"{pa[0]} vs {pb[0]}"
        ba = ba.assign(protocol=label)
        bb = bb.assign(protocol=label)
    else:
        raise ConfigError(f"cannot pair runs with protocols {pa} and {pb}: they must run the same "
                          "protocols, or one protocol each")
    merged = ba.merge(bb.drop(columns=["label_name"] + (["protocol"] if "protocol" not in key else [])),
                      on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    counts = {"only_a": int((merged["_merge"] == "left_only").sum()),
              "only_b": int((merged["_merge"] == "right_only").sum())}
    pairs = merged[merged["_merge"] == "both"].drop(columns="_merge")
    pairs = pairs.rename(columns={"best_dice_a": "best_a", "best_dice_b": "best_b", "label_name": "structure"})
    pairs["diff"] = pairs["best_b"] - pairs["best_a"]
    cols = ["case", "label", "structure", "setting", "protocol", "best_a", "best_b", "diff"]
    return pairs[cols].sort_values(["structure", "setting", "protocol", "case"]).reset_index(drop=True), counts


def _row(structure: str, setting: str, protocol: str, sub: pd.DataFrame, n_boot: int, seed: int) -> dict:
    d = sub["diff"].to_numpy(np.float64)
    lo, hi = stats.bootstrap_ci(d, n_boot, seed)
    return dict(structure=structure, setting=setting, protocol=protocol, n=int(d.size),
                mean_a=float(sub["best_a"].mean()), mean_b=float(sub["best_b"].mean()),
                mean_diff=float(d.mean()) if d.size else float("nan"), boot_lo=lo, boot_hi=hi,
                wilcoxon_p=wilcoxon_p(d), n_better=int((d > 0).sum()), n_worse=int((d < 0).sum()),
                n_tied=int((d == 0).sum()))


def paired_comparison(pairs: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Statistics of the pairs per structure x setting x protocol, then per setting x protocol
    over all structures (``structure = "all"``), then over everything (``all``/``all``)."""
    rows = []
    for (s, st, p), sub in pairs.groupby(["structure", "setting", "protocol"], sort=True):
        rows.append(_row(s, st, p, sub, n_boot, seed))
    for (st, p), sub in pairs.groupby(["setting", "protocol"], sort=True):
        rows.append(_row(ALL, st, p, sub, n_boot, seed))
    protos = sorted(pairs["protocol"].unique())
    rows.append(_row(ALL, ALL, protos[0] if len(protos) == 1 else ALL, pairs, n_boot, seed))
    return pd.DataFrame(rows)


def _model_text(run: RunResults) -> str:
    model = dict(run.meta.get("model") or {})
    name = model.pop("name", "?")
    params = {k: v for k, v in model.items() if v not in ({}, None, "")}
    return f"{name} {json.dumps(params, sort_keys=True, default=str)}" if params else str(name)


@dataclass
class CompareOutputs:
    """What :func:`compare_runs` computed and wrote."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    counts: dict[str, int]
    files: dict[str, Path]
    notes: list[str]


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path | None = None,
                 n_boot: int = 10000, seed: int = 0) -> CompareOutputs:
    """Compare two results folders; write ``comparison.{csv,md,tex}`` and ``pairs.csv`` into
    ``out`` when given."""
    a, b = read_run(run_a), read_run(run_b)
    pairs, counts = pair_objects(a, b)
    if pairs.empty:
        raise InputError(b.path, f"no object in common with {a.path}")
    table = paired_comparison(pairs, n_boot, seed)
    notes = [
        f"A = {a.path.name} (model {_model_text(a)}), B = {b.path.name} (model {_model_text(b)}); "
        "differences are B - A of each object's best-of-rounds Dice.",
        f"95% CI: percentile bootstrap of the mean difference ({n_boot} resamples, seed {seed}); "
        "p: two-sided Wilcoxon signed-rank test (tied pairs dropped).",
        f"Objects in only one run (not compared): {counts['only_a']} only in A, {counts['only_b']} only in B.",
    ]
    files: dict[str, Path] = {}
    if out is not None:
        out = Path(out)
        files = tables.write_table(table, tables.comparison_display(table), out, "comparison",
                                   f"Paired comparison: {b.path.name} - {a.path.name}", notes)
        files["pairs"] = out / "pairs.csv"
        pairs.to_csv(files["pairs"], index=False)
    return CompareOutputs(table, pairs, counts, files, notes)
