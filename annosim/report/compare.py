"""``annosim compare``: paired comparison of two runs on the same objects.

Pairing
-------
Each object's statistic is its best-of-rounds Dice (carried forward to the protocol's
``max_rounds``). Objects are paired by case id and structure **name** (``--pair-by name``, the
default) or by label value (``--pair-by value``), within the same setting, and within the same
protocol when both runs ran the same protocols (else each must have run exactly one, and those
two are compared). Both modes refuse, with one line naming the clash, two runs whose label maps
disagree: a label value named differently in the two runs (label 3 = ``kidney_left`` in A,
``heart`` in B), or one name carried by two label values within a run.

Case ids are file stems or the dataset's own ids, so two runs of different images may share one
(two ``"IMAGE LABEL"`` pair runs whose images are both ``ct.nii.gz`` give case ``ct``). Where the
datasets named in run.json differ, the image behind each common case id is compared (path, else
size and SHA-256 when both files are readable here) and every case id that may name two different
images is listed in the notes.

Statistics
----------
B - A per structure x setting x protocol, per setting x protocol over all structures, then one
all-settings row per protocol (``structure = setting = "all"``) in which each object's
differences are first averaged over its settings, so that the ``full`` and ``fg-only`` results
of one object count once, not as two independent pairs (``n`` counts objects). With several
protocols a last row also averages each object over its protocols. Each row: n, means, mean
difference, seeded percentile bootstrap CI of the mean difference, and the two-sided Wilcoxon
signed-rank p-value (scipy's default ``zero_method="wilcox"``: tied pairs dropped; p = 1 when
every pair is tied).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from annosim.errors import ConfigError, InputError
from annosim.report import stats, tables
from annosim.report.results_io import RunResults, read_run

ALL = "all"
#: ``--pair-by`` choices.
PAIR_BY: tuple[str, ...] = ("name", "value")


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
    maxr = {p: run.max_rounds(p) for p in run.rounds["protocol"].unique()}
    full = stats.carry_forward(run.rounds, maxr)
    objs = stats.object_table(full)
    return objs[["case", "label", "label_name", "setting", "protocol", "best_dice"]]


def _names(run: RunResults) -> dict[int, list[str]]:
    """Label value -> the names the run's rows give it (sorted)."""
    pairs = run.rounds[["label", "label_name"]].drop_duplicates()
    return {int(v): sorted(g["label_name"].astype(str)) for v, g in pairs.groupby("label")}


def check_label_names(a: RunResults, b: RunResults) -> None:
    """Refuse (ConfigError, one line) two runs whose label maps disagree: a value named
    differently in A and B, or one name given to two values within one run."""
    na, nb = _names(a), _names(b)
    for v in sorted(set(na) & set(nb)):
        if na[v] != nb[v]:
            raise ConfigError(f"label {v} is {'/'.join(na[v])!r} in {a.path} but {'/'.join(nb[v])!r} in {b.path}: "
                              "the runs name their labels differently; fix the names (--label-names) before comparing")
    for run, names in ((a, na), (b, nb)):
        values: dict[str, list[int]] = {}
        for v, ns in names.items():
            for n in ns:
                values.setdefault(n, []).append(v)
        for n, vs in sorted(values.items()):
            if len(vs) > 1:
                raise ConfigError(f"{run.path}: labels {', '.join(map(str, vs))} are all named {n!r}, "
                                  "so objects cannot be paired by name; use --pair-by value")


def _case_images(run: RunResults) -> dict[str, str] | None:
    """Case id -> image path of the dataset named in run.json, or None when it cannot be opened."""
    from annosim.report.qc import open_run_dataset

    try:
        dataset = open_run_dataset(run.meta)
    except Exception:  # noqa: BLE001 - any failure only means "cannot check here"
        return None
    return {str(ref.case_id): os.path.realpath(ref.image) for ref in dataset.cases}


def _same_file(p: str, q: str) -> bool | None:
    """Whether two image paths hold the same bytes (size, then SHA-256); None when one is not a
    readable file here (a DICOM folder, a missing file)."""
    from annosim.files import sha256_file

    if p == q:
        return True
    try:
        if not (os.path.isfile(p) and os.path.isfile(q)):
            return None
        return os.path.getsize(p) == os.path.getsize(q) and sha256_file(p) == sha256_file(q)
    except OSError:
        return None


def case_id_notes(a: RunResults, b: RunResults, cases: list[str]) -> list[str]:
    """Notes on case ids common to both runs that may name different images (empty when the
    runs read the same dataset, or every common id has the same image file)."""
    da, db = a.meta.get("data") or {}, b.meta.get("data") or {}
    keys = ("spec", "layout", "root", "split")
    if not cases or (isinstance(da, dict) and isinstance(db, dict) and all(da.get(k) == db.get(k) for k in keys)):
        return []
    ia, ib = _case_images(a), _case_images(b)
    if ia is None or ib is None:
        return [f"Ambiguous case ids: the runs read different datasets ({json.dumps(da, default=str)} vs "
                f"{json.dumps(db, default=str)}) that cannot both be opened here, so it is not known whether "
                f"the {len(cases)} common case id(s) ({', '.join(cases[:5])}{'...' if len(cases) > 5 else ''}) "
                "name the same images."]
    same = {c: (_same_file(ia[c], ib[c]) if c in ia and c in ib else None) for c in cases}
    bad = [c for c in cases if same[c] is not True]
    if not bad:
        return []
    why = {False: "different files", None: "not readable here to check"}
    shown = "; ".join(f"{c!r}: {ia.get(c, '?')} vs {ib.get(c, '?')} ({why[same[c]]})" for c in bad[:3])
    return [f"Ambiguous case ids: {len(bad)} case id(s) name different image paths in A and B ({shown}"
            f"{'; ...' if len(bad) > 3 else ''}); their pairs may compare different images."]


def pair_objects(a: RunResults, b: RunResults, pair_by: str = "name") -> tuple[pd.DataFrame, dict[str, int]]:
    """Paired best-of-rounds Dice of two runs.

    Returns the pairs (``case, structure, label_a, label_b, setting, protocol, best_a, best_b,
    diff``) and counts of objects found in only one run (``only_a``, ``only_b``).
    """
    if pair_by not in PAIR_BY:
        raise ConfigError(f"--pair-by {pair_by}: expected one of {', '.join(PAIR_BY)}")
    check_label_names(a, b)
    ba, bb = best_of_rounds(a), best_of_rounds(b)
    pa, pb = sorted(ba["protocol"].unique()), sorted(bb["protocol"].unique())
    key = ["case", "label_name" if pair_by == "name" else "label", "setting"]
    if pa == pb:
        key.append("protocol")
    elif len(pa) == 1 and len(pb) == 1:
        label = f"{pa[0]} vs {pb[0]}"
        ba = ba.assign(protocol=label)
        bb = bb.assign(protocol=label)
    else:
        raise ConfigError(f"cannot pair runs with protocols {pa} and {pb}: they must run the same "
                          "protocols, or one protocol each")
    # by name the label values keep both sides (label_a, label_b); by value the names agree
    drop_b = [c for c in ("label_name", "protocol") if c not in key]
    merged = ba.merge(bb.drop(columns=drop_b), on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    if pair_by == "value":
        merged = merged.rename(columns={"label": "label_a"}).assign(label_b=merged["label"])
    counts = {"only_a": int((merged["_merge"] == "left_only").sum()),
              "only_b": int((merged["_merge"] == "right_only").sum())}
    pairs = merged[merged["_merge"] == "both"].drop(columns="_merge")
    pairs = pairs.rename(columns={"best_dice_a": "best_a", "best_dice_b": "best_b", "label_name": "structure"})
    pairs["label_a"] = pairs["label_a"].astype(np.int64)
    pairs["label_b"] = pairs["label_b"].astype(np.int64)
    pairs["diff"] = pairs["best_b"] - pairs["best_a"]
    cols = ["case", "structure", "label_a", "label_b", "setting", "protocol", "best_a", "best_b", "diff"]
    return pairs[cols].sort_values(["structure", "setting", "protocol", "case"]).reset_index(drop=True), counts


def _row(structure: str, setting: str, protocol: str, sub: pd.DataFrame, n_boot: int, seed: int) -> dict:
    d = sub["diff"].to_numpy(np.float64)
    lo, hi = stats.bootstrap_ci(d, n_boot, seed)
    return dict(structure=structure, setting=setting, protocol=protocol, n=int(d.size),
                mean_a=float(sub["best_a"].mean()), mean_b=float(sub["best_b"].mean()),
                mean_diff=float(d.mean()) if d.size else float("nan"), boot_lo=lo, boot_hi=hi,
                wilcoxon_p=wilcoxon_p(d), n_better=int((d > 0).sum()), n_worse=int((d < 0).sum()),
                n_tied=int((d == 0).sum()))


def per_object(pairs: pd.DataFrame, over: tuple[str, ...] = ("setting",)) -> pd.DataFrame:
    """Pairs averaged over ``over`` within each object (case, structure and the remaining keys):
    ``best_a``, ``best_b`` and ``diff`` are the means over the object's settings (and protocols)."""
    key = [c for c in ("case", "structure", "setting", "protocol") if c not in over]
    return pairs.groupby(key, sort=True)[["best_a", "best_b", "diff"]].mean().reset_index()


def paired_comparison(pairs: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Statistics of the pairs per structure x setting x protocol, then per setting x protocol
    over all structures (``structure = "all"``), then per protocol over all settings with each
    object's settings averaged first (``all``/``all``); with several protocols a last row
    averages each object over settings and protocols (protocol ``all``)."""
    rows = []
    for (s, st, p), sub in pairs.groupby(["structure", "setting", "protocol"], sort=True):
        rows.append(_row(s, st, p, sub, n_boot, seed))
    for (st, p), sub in pairs.groupby(["setting", "protocol"], sort=True):
        rows.append(_row(ALL, st, p, sub, n_boot, seed))
    for p, sub in per_object(pairs, ("setting",)).groupby("protocol", sort=True):
        rows.append(_row(ALL, ALL, p, sub, n_boot, seed))
    if pairs["protocol"].nunique() > 1:
        rows.append(_row(ALL, ALL, ALL, per_object(pairs, ("setting", "protocol")), n_boot, seed))
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
                 n_boot: int = 10000, seed: int = 0, pair_by: str = "name") -> CompareOutputs:
    """Compare two results folders; write ``comparison.{csv,md,tex}`` and ``pairs.csv`` into
    ``out`` when given."""
    a, b = read_run(run_a), read_run(run_b)
    pairs, counts = pair_objects(a, b, pair_by)
    if pairs.empty:
        raise InputError(b.path, f"no object in common with {a.path} (paired by label {pair_by})")
    table = paired_comparison(pairs, n_boot, seed)
    how = ("case and structure name" if pair_by == "name" else "case and label value")
    notes = [
        f"A = {a.path.name} (model {_model_text(a)}), B = {b.path.name} (model {_model_text(b)}); "
        "differences are B - A of each object's best-of-rounds Dice.",
        f"Objects paired by {how} within each setting (and protocol).",
        "all/all rows: each object's settings are averaged first, so n counts objects, not object x setting pairs.",
        f"95% CI: percentile bootstrap of the mean difference ({n_boot} resamples, seed {seed}); "
        "p: two-sided Wilcoxon signed-rank test (tied pairs dropped).",
        f"Objects in only one run (not compared): {counts['only_a']} only in A, {counts['only_b']} only in B.",
    ]
    notes += case_id_notes(a, b, sorted(pairs["case"].unique()))
    files: dict[str, Path] = {}
    if out is not None:
        out = Path(out)
        files = tables.write_table(table, tables.comparison_display(table), out, "comparison",
                                   f"Paired comparison: {b.path.name} - {a.path.name}", notes)
        files["pairs"] = out / "pairs.csv"
        pairs.to_csv(files["pairs"], index=False)
    return CompareOutputs(table, pairs, counts, files, notes)
