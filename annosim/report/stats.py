"""Statistics of a results table: carry-forward, per-object summaries, CIs, curves, NoC.

Terms
-----
object
    One (case, label, setting, protocol): a row group of ``rounds.csv``.
carry-forward
    An object that stopped early (no clicks left) keeps its last round's values for every later
    round up to the protocol's last round; such rows are flagged ``carried``.
best-of-rounds Dice
    The highest Dice over an object's rounds: the statistic of the paper's Table 1.
NoC@tau
    The first round (= number of annotated slices) whose Dice reaches ``tau``; an object that
    never reaches it counts as ``max_rounds`` and is counted in ``noc*_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annosim.metrics.native_object import OBJECT_BY_NAME, ObjectRounds, object_values
from annosim.metrics.registry import BUILTIN, Metric
from annosim.schema import INT_COLUMNS, OBJECT_KEY

#: z of the two-sided 95% normal interval, as the paper plots (mean +/- 1.96 SEM).
Z95 = 1.96
#: Columns that identify one group of a summary (a row of the paper's Table 1, per setting).
GROUP_KEY: tuple[str, ...] = ("dataset", "label_name", "setting", "model", "protocol")


@dataclass(frozen=True)
class StatsConfig:
    """Options of the summary statistics.

    Attributes
    ----------
    n_boot : int
        Bootstrap resamples for percentile CIs (default 10000).
    seed : int
        Seed of the bootstrap generator (default 0); every group uses a fresh generator seeded
        with it, so a group's CI does not depend on the other groups.
    level : float
        Confidence level of both intervals' bootstrap (default 0.95).
    noc_thresholds : tuple of float
        Dice thresholds of NoC (default 0.80 and 0.90).
    """

    n_boot: int = 10000
    seed: int = 0
    level: float = 0.95
    noc_thresholds: tuple[float, ...] = (0.80, 0.90)


def mean_sem_ci(values: np.ndarray, z: float = Z95) -> tuple[float, float, float, float]:
    """Mean, SEM and the normal interval ``mean -/+ z * SEM`` of 1-D ``values``.

    SEM is the sample standard deviation (ddof=1) over sqrt(n); with n < 2 it is NaN, and so are
    the bounds. NaNs in ``values`` are ignored.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 4
    mean = float(x.mean())
    sem = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return mean, sem, mean - z * sem, mean + z * sem


def bootstrap_ci(values: np.ndarray, n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of 1-D ``values`` (NaNs ignored).

    Draws ``n_boot`` resamples of size n with replacement as
    ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))`` and returns the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (numpy's default linear interpolation)
    of the resampled means. ``(nan, nan)`` for an empty input; ``(x, x)`` for one value.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def carry_forward(rounds: pd.DataFrame, max_rounds: dict[str, int] | int | None = None) -> pd.DataFrame:
    """Extend every object to its protocol's last round, repeating its last recorded row.

    Parameters
    ----------
    rounds : rows of one or more ``rounds.csv`` (columns of the README's "Results folder" plus any of
        ``dataset, model, variant, run``).
    max_rounds : last round per protocol name, one number for all, or ``None`` (the most rounds
        reached by any object of the same protocol).

    Returns
    -------
    DataFrame with one row per (object, round 1..max_rounds) and a bool column ``carried`` (True
    for rows that repeat an earlier round). Rounds missing *between* recorded rounds are filled
    the same way. Objects with more rounds than ``max_rounds`` keep all of theirs.
    """
    key = [c for c in ("run",) + OBJECT_KEY if c in rounds.columns]
    if rounds.empty:
        out = rounds.copy()
        out["carried"] = pd.Series(dtype=bool)
        return out
    pieces = []
    for proto, sub in rounds.groupby("protocol", sort=False):
        if isinstance(max_rounds, dict):
            r_max = int(max_rounds.get(str(proto), sub["round"].max()))
        elif max_rounds is None:
            r_max = int(sub["round"].max())
        else:
            r_max = int(max_rounds)
        r_max = max(r_max, int(sub["round"].max()))
        objects = sub[key].drop_duplicates()
        grid = objects.merge(pd.DataFrame({"round": np.arange(1, r_max + 1)}), how="cross")
        real = sub[key + ["round"]].assign(_source=sub["round"].to_numpy())
        grid = grid.merge(real, on=key + ["round"], how="left")
        grid["carried"] = grid["_source"].isna()
        # Each row takes its values from the object's last recorded round up to it (whole rows:
        # a NaN hd95 of that round stays NaN). Rounds before the first recorded one are dropped.
        grid["_source"] = grid.groupby(key, sort=False)["_source"].ffill()
        grid = grid[grid["_source"].notna()]
        values = sub.rename(columns={"round": "_source"})
        merged = grid.merge(values.assign(_source=values["_source"].astype(float)), on=key + ["_source"],
                            how="left").drop(columns="_source")
        if "model_seconds" in merged.columns:
            merged.loc[merged["carried"], "model_seconds"] = 0.0
        merged = merged.sort_values(key + ["round"])
        pieces.append(merged)
    out = pd.concat(pieces, ignore_index=True)
    out = out[list(rounds.columns) + ["carried"]]
    for c in INT_COLUMNS + tuple(m.column for m in BUILTIN if m.integer):
        if c in out.columns:
            out[c] = out[c].astype(np.int64)
    return out.reset_index(drop=True)


def noc(dice_by_round: np.ndarray, tau: float) -> tuple[int, bool]:
    """NoC@tau of one object: (first 1-based round with Dice >= tau, reached?).

    ``dice_by_round`` is 1-D over rounds 1..R (carried forward). Not reached: (R, False).
    """
    d = np.asarray(dice_by_round, dtype=np.float64)
    hit = np.flatnonzero(d >= tau)
    if hit.size:
        return int(hit[0]) + 1, True
    return int(d.size), False


def object_table(full: pd.DataFrame, noc_thresholds: tuple[float, ...] = (0.80, 0.90),
                 metrics: tuple[Metric, ...] = BUILTIN) -> pd.DataFrame:
    """One row per object from a carried-forward table (:func:`carry_forward`).

    Columns: the group and object keys, ``rounds`` (rounds actually recorded), ``max_rounds``,
    ``early_stopped``, ``first_dice`` (round 1), ``final_dice`` (last round, carried),
    ``best_dice`` (max over rounds), ``best_round``, ``auc_dice`` (mean Dice over rounds 1..R),
    ``final_<column>`` for every other metric of ``metrics`` (``final_nsd``, ``final_hd95``,
    ``final_fp_slices``, ``final_gt_slices``...), ``clicks`` (final), ``annotated_slices``
    (final), ``model_seconds`` (sum), and ``noc80``/``noc80_reached`` etc.
    """
    key = [c for c in ("dataset", "model", "run") + OBJECT_KEY if c in full.columns]
    f = full.sort_values(key + ["round"], kind="mergesort").reset_index(drop=True)
    g = f.groupby(key, sort=True)
    # whole first/last rows (groupby.first/last would skip a NaN HD95)
    first = f.drop_duplicates(key, keep="first").set_index(key).sort_index()
    last = f.drop_duplicates(key, keep="last").set_index(key).sort_index()
    n_rounds = g["round"].size()
    real = (~f["carried"].astype(bool)).groupby([f[c] for c in key], sort=True).sum()
    out = pd.DataFrame(index=last.index)
    out["label_name"] = last["label_name"]
    out["variant"] = last["variant"] if "variant" in last.columns else ""
    out["rounds"] = real.astype(np.int64)
    out["max_rounds"] = n_rounds.astype(np.int64)
    out["early_stopped"] = out["rounds"] < out["max_rounds"]
    out["first_dice"] = first["dice"].astype(np.float64)
    out["final_dice"] = last["dice"].astype(np.float64)
    out["best_dice"] = g["dice"].max()
    out["best_round"] = f.loc[g["dice"].idxmax().to_numpy(), "round"].to_numpy(np.int64)
    out["auc_dice"] = g["dice"].mean()
    for m in metrics:
        if m.column != "dice" and m.column in last.columns:
            out[f"final_{m.column}"] = last[m.column].astype(np.int64 if m.integer else np.float64)
    for c in ("clicks", "annotated_slices"):
        out[c] = last[c].astype(np.int64)
    out["model_seconds"] = g["model_seconds"].sum()
    for tau in noc_thresholds:
        tag = f"noc{int(round(tau * 100))}"
        hit = f[f["dice"] >= tau].groupby(key, sort=True)["round"].min().reindex(out.index)
        out[tag] = hit.fillna(out["max_rounds"]).astype(np.int64)
        out[f"{tag}_reached"] = hit.notna()
    native = native_object_table(f, key)
    for c in native.columns:
        out[c] = native[c].reindex(out.index).to_numpy(np.float64)
    return out.reset_index()


def native_object_table(full: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The object-level native metrics (:mod:`annosim.metrics.native_object`) of every object
    of a carried-forward table whose protocol lists them: one row per object (index ``key``),
    one column per metric name, NaN on objects of protocols that do not list it.

    Each entry sees the object's columns over rounds 1..R and, per round, their mean over the
    objects of the same case, protocol and setting (in the same run).
    """
    from annosim.protocols.registry import native_object_metrics

    names_of = {str(p): native_object_metrics(str(p)) for p in full["protocol"].unique()}
    wanted = list(dict.fromkeys(n for ns in names_of.values() for n in ns))
    if not wanted:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=key))
    sub = full[full["protocol"].astype(str).map(lambda p: bool(names_of[p]))]
    columns = sorted({c for n in wanted for c in OBJECT_BY_NAME[n].columns if c in sub.columns})
    case_key = [c for c in key if c != "label"]
    case_mean = sub.groupby(case_key + ["round"], sort=False)[columns].transform("mean")
    rows, index = [], []
    for k, grp in sub.assign(**{f"_case_{c}": case_mean[c] for c in columns}).groupby(key, sort=True):
        grp = grp.sort_values("round")
        data = ObjectRounds({c: grp[c].to_numpy(np.float64) for c in columns},
                            {c: grp[f"_case_{c}"].to_numpy(np.float64) for c in columns})
        proto = str(grp["protocol"].iloc[0])
        rows.append(object_values(names_of[proto], data))
        index.append(k)
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=key), columns=wanted)


def summarize(objects: pd.DataFrame, config: StatsConfig = StatsConfig(),
              metrics: tuple[Metric, ...] = BUILTIN) -> pd.DataFrame:
    """Summary per dataset x structure x setting x model x protocol (README, Reports).

    Columns: ``dataset, structure (label_name), setting, model, protocol, variant, n,
    early_stopped`` (objects carried forward), ``best_dice`` (mean best-of-rounds Dice, the
    paper's Table 1 statistic), ``best_sem, best_ci_lo, best_ci_hi`` (mean -/+ 1.96 SEM),
    ``best_boot_lo, best_boot_hi`` (seeded percentile bootstrap), ``first_dice, final_dice,
    auc_dice`` (mean Dice over rounds), ``noc80, noc80_failed, noc90, noc90_failed``, then
    for every other metric of ``metrics`` its final round reduced as the metric says: ``mean``
    (``fp_slices``, ``nsd``) or ``nanmean`` with a count of undefined values (``hd95`` over objects
    with a non-empty prediction and ``hd95_undefined``; user metrics likewise); each
    object-level native metric of the group's protocol, averaged (or summed, as the entry says)
    over the objects where it is defined.
    """
    group = [c for c in GROUP_KEY if c in objects.columns]
    rows = []
    for k, sub in objects.groupby(group, sort=True):
        row = dict(zip(group, k if isinstance(k, tuple) else (k,)))
        row["variant"] = sub["variant"].iloc[0] if "variant" in sub.columns else ""
        best = sub["best_dice"].to_numpy(np.float64)
        mean, sem, lo, hi = mean_sem_ci(best)
        blo, bhi = bootstrap_ci(best, config.n_boot, config.seed, config.level)
        row.update(
            n=int(len(sub)),
            early_stopped=int(sub["early_stopped"].sum()),
            best_dice=mean, best_sem=sem, best_ci_lo=lo, best_ci_hi=hi,
            best_boot_lo=blo, best_boot_hi=bhi,
            first_dice=float(sub["first_dice"].mean()),
            final_dice=float(sub["final_dice"].mean()),
            auc_dice=float(sub["auc_dice"].mean()),
        )
        for tau in config.noc_thresholds:
            tag = f"noc{int(round(tau * 100))}"
            row[tag] = float(sub[tag].mean())
            row[f"{tag}_failed"] = int((~sub[f"{tag}_reached"].astype(bool)).sum())
        for name, m in OBJECT_BY_NAME.items():
            if name in sub.columns and np.isfinite(sub[name].to_numpy(np.float64)).any():
                values = sub[name].to_numpy(np.float64)
                row[name] = float(np.nansum(values) if m.summary == "sum" else np.nanmean(values))
        for m in metrics:
            col = f"final_{m.column}"
            if m.column == "dice" or m.summary == "none" or col not in sub.columns:
                continue
            values = sub[col].to_numpy(np.float64)
            if m.summary == "mean":
                row[m.column] = float(values.mean())
            else:
                row[m.column] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
                row[f"{m.column}_undefined"] = int((~np.isfinite(values)).sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.rename(columns={"label_name": "structure"})


def curves(full: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per round with its 95% band, for the figures (paper's Figs. 2-4).

    One row per (dataset, structure, setting, model, protocol, round) with ``n``, ``mean``,
    ``sem``, ``lo`` and ``hi`` (mean -/+ 1.96 SEM; NaN with one object) and ``carried`` (objects
    carried forward into that round).
    """
    group = [c for c in GROUP_KEY if c in full.columns] + ["round"]
    rows = []
    for k, sub in full.groupby(group, sort=True):
        mean, sem, lo, hi = mean_sem_ci(sub["dice"].to_numpy(np.float64))
        row = dict(zip(group, k))
        row["variant"] = sub["variant"].iloc[0] if "variant" in sub.columns else ""
        row.update(n=int(len(sub)), mean=mean, sem=sem, lo=lo, hi=hi, carried=int(sub["carried"].sum()))
        rows.append(row)
    return pd.DataFrame(rows).rename(columns={"label_name": "structure"})
