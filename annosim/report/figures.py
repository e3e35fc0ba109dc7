"""Figures like the paper's Figs. 2-4: mean Dice against the annotation effort.

One figure per (dataset, model, protocol); one panel per setting (``fg-only`` first, as the
paper's "with background removal", then ``full``); one line per structure.

x axis (``annosim report --x``):

``round`` (default)
    The round, i.e. the pass: 1..R, R = the protocol's ``max_rounds`` from run.json. The paper's
    "number of annotated frames" is this pass number (the reference script plots its iteration
    index), so the default figure is the paper's. Objects that stopped early are carried forward
    (their last Dice repeated up to R).
``slices`` / ``clicks``
    Distinct annotated slices (column ``annotated_slices``) or cumulative clicks (``clicks``) of
    ``rounds.csv``. These differ per object, so each object's Dice is binned at every integer x
    from x0 to x1 of its line: the Dice of the object's last recorded round with effort <= x (its
    last value carried forward). x0 is the largest first-round effort of the line's objects, so
    that every point averages the same objects; x1 the largest final effort.

Every x has ``n`` objects; ``active`` of them are still annotating there (x = round: a recorded,
not carried, round; slices/clicks: x <= the object's final effort). Each tick label shows the
number of objects still active under the x value (summed over the panel's structures); markers
are hollow where some objects are carried. The band is the 95% CI mean -/+ 1.96 SEM over objects,
drawn only where n >= 2; with one object per structure no band is drawn and the axis does not
say "95% CI".
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from annosim.report import stats  # noqa: E402

SETTING_ORDER = ("fg-only", "full")
SETTING_TITLES = {"fg-only": "fg-only (background slices removed)", "full": "full (whole volume)"}
#: ``--x`` choice -> the rounds.csv column that gives the x value (and names it in curves.csv).
X_COLUMNS: dict[str, str] = {"round": "round", "slices": "annotated_slices", "clicks": "clicks"}
X_CHOICES: tuple[str, ...] = tuple(X_COLUMNS)
X_LABELS: dict[str, str] = {
    "round": "round (pass; the paper's \"number of annotated frames\")",
    "slices": "distinct annotated slices",
    "clicks": "clicks (cumulative)",
}
#: What one x step is, in headings ("Mean Dice per click").
X_NOUNS: dict[str, str] = {"round": "round", "slices": "distinct annotated slice", "clicks": "click"}
#: Line group of a curve (one line of a panel).
LINE_KEY: tuple[str, ...] = ("dataset", "structure", "setting", "model", "protocol")


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text))
    return re.sub(r"-*_-*", "_", text).strip("-") or "x"


def _ordered_settings(settings: list[str]) -> list[str]:
    known = [s for s in SETTING_ORDER if s in settings]
    return known + sorted(s for s in settings if s not in SETTING_ORDER)


def _check_x(x: str) -> str:
    if x not in X_COLUMNS:
        raise ValueError(f"unknown x axis {x!r}; expected one of {', '.join(X_CHOICES)}")
    return X_COLUMNS[x]


def _effort_curves(full: pd.DataFrame, column: str) -> pd.DataFrame:
    """Binned curves over the integer effort ``column`` (``annotated_slices`` or ``clicks``)."""
    real = full[~full["carried"].astype(bool)].rename(columns={"label_name": "structure"})
    group = [c for c in LINE_KEY if c in real.columns]
    okey = group + [c for c in ("run", "case", "label") if c in real.columns]
    rows = []
    for k, line in real.groupby(group, sort=True):
        objs = [o.sort_values("round") for _, o in line.groupby(okey, sort=True)]
        efforts = [o[column].to_numpy(np.int64) for o in objs]
        x0 = max(int(e[0]) for e in efforts)
        x1 = max(int(e[-1]) for e in efforts)
        grid = np.arange(x0, x1 + 1)
        # value at x = Dice of the object's last round with effort <= x (efforts are cumulative)
        dice = np.stack([o["dice"].to_numpy(np.float64)[np.searchsorted(e, grid, side="right") - 1]
                         for o, e in zip(objs, efforts)])
        active = np.stack([grid <= e[-1] for e in efforts])
        variant = line["variant"].iloc[0] if "variant" in line.columns else ""
        for j, xv in enumerate(grid):
            mean, sem, lo, hi = stats.mean_sem_ci(dice[:, j])
            n_active = int(active[:, j].sum())
            rows.append({**dict(zip(group, k)), "variant": variant, column: int(xv), "n": len(objs),
                         "active": n_active, "carried": len(objs) - n_active,
                         "mean": mean, "sem": sem, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def figure_curves(full: pd.DataFrame, x: str = "round") -> pd.DataFrame:
    """Mean Dice per x value with its 95% band, one row per (line, x).

    ``full`` is the carried-forward table of :func:`annosim.report.stats.carry_forward` (rounds
    1..max_rounds per object, column ``carried``). Columns: ``dataset, structure, setting, model,
    protocol, variant``, the x column (``round``, ``annotated_slices`` or ``clicks``), ``n``
    (objects), ``active`` (objects still annotating at x), ``carried`` (= n - active), ``mean``,
    ``sem``, ``lo``, ``hi`` (mean -/+ 1.96 SEM; NaN when n < 2). See the module docstring for how
    slices/clicks are binned.
    """
    column = _check_x(x)
    if column == "round":
        out = stats.curves(full)
        out["active"] = out["n"] - out["carried"]
        cols = [c for c in out.columns if c not in ("active", "carried", "mean", "sem", "lo", "hi")]
        return out[cols + ["active", "carried", "mean", "sem", "lo", "hi"]]
    return _effort_curves(full, column)


def _ticks(lo: int, hi: int, most: int = 20) -> list[int]:
    step = max(1, int(np.ceil((hi - lo + 1) / most)))
    return list(range(lo, hi + 1, step))


def plot_curves(curves: pd.DataFrame, title: str = "", x: str = "round") -> plt.Figure:
    """Draw one figure from the rows of :func:`figure_curves` of one (dataset, model, protocol).

    x: ``round`` / ``annotated_slices`` / ``clicks`` (integers); y: mean Dice in [0, 1]. Tick
    labels read ``"x\\nA"``, A = objects still active at x in that panel (all structures).
    """
    column = _check_x(x)
    settings = _ordered_settings(sorted(curves["setting"].unique()))
    structures = sorted(curves["structure"].unique())
    x_lo, x_hi = int(curves[column].min()), int(curves[column].max())
    ncol = 1 + (len(structures) - 1) // 24
    legend_w = 2.2 * ncol
    height = max(4.4, 0.17 * min(len(structures), 24) + 1.2)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings) + legend_w, height),
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab20" if len(structures) > 10 else "tab10")
    handles = {}
    banded = False
    for ax, setting in zip(axes[0], settings):
        sub = curves[curves["setting"] == setting]
        for i, name in enumerate(structures):
            c = sub[sub["structure"] == name].sort_values(column)
            if c.empty:
                continue
            color = cmap(i % cmap.N)
            style = ("-", "--", ":")[(i // cmap.N) % 3]  # colours repeat after 20 structures; styles tell them apart
            xs, ys = c[column].to_numpy(), c["mean"].to_numpy(np.float64)
            steps = "steps-post" if column != "round" else "default"
            (line,) = ax.plot(xs, ys, lw=1.5, ls=style, color=color, label=name, drawstyle=steps)
            carried = c["carried"].to_numpy() > 0
            if column == "round" or len(xs) <= 30:
                ax.plot(xs[~carried], ys[~carried], ls="none", marker="o", ms=3.5, color=color)
                ax.plot(xs[carried], ys[carried], ls="none", marker="o", ms=3.5, mfc="white", mec=color)
            lo, hi = c["lo"].to_numpy(np.float64), c["hi"].to_numpy(np.float64)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                banded = True
                ax.fill_between(xs[ok], np.clip(lo[ok], 0, 1), np.clip(hi[ok], 0, 1), color=color,
                                alpha=0.18, lw=0, step="post" if column != "round" else None)
            handles[name] = line
        active = sub.groupby(column)["active"].sum()
        total = int(sub.drop_duplicates(["structure"])["n"].sum())
        ticks = _ticks(x_lo, x_hi)
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t}\n{int(active.get(t, 0))}" for t in ticks], fontsize=8)
        ax.set_title(SETTING_TITLES.get(setting, setting), fontsize=10)
        ax.set_xlabel(f"{X_LABELS[x]}\nunder each tick: objects still annotating (of {total})", fontsize=9)
        ax.set_xlim(x_lo - 0.3 - 0.2 * (column != "round"), x_hi + 0.3 + 0.2 * (column != "round"))
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
    n_max = int(curves["n"].max())
    ylabel = "mean Dice (band: 95% CI, mean +/- 1.96 SEM)" if banded else ("Dice (one object: no interval)"
                                                                           if n_max == 1 else "mean Dice")
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    right = 1 - legend_w / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.legend(list(handles.values()), list(handles.keys()), loc="center left", bbox_to_anchor=(right, 0.5),
               fontsize=8, frameon=False, ncol=ncol)
    return fig


def caption(curves: pd.DataFrame, x: str = "round") -> str:
    """One sentence saying what a figure of these curves shows (for the HTML page)."""
    band = (curves["n"] >= 2).any()
    what = {"round": "per round (the pass, which the paper calls the number of annotated frames)",
            "slices": "per distinct annotated slice (each object's last Dice carried forward between its rounds)",
            "clicks": "per click (each object's last Dice carried forward between its rounds)"}[x]
    text = f"Mean Dice {what}; early-stopped objects carried forward (hollow markers; tick labels count the objects still annotating)"
    return text + ("; band: 95% CI, mean +/- 1.96 SEM, where n >= 2." if band else "; one object per line: no interval.")


def write_figures(curves: pd.DataFrame, out_dir: Path, dpi: int = 120, x: str = "round") -> list[dict[str, object]]:
    """Write one PNG and one SVG per (dataset, model, protocol) into ``out_dir``.

    ``curves`` are rows of :func:`figure_curves` for the same ``x``. Files are named
    ``dice_vs_<x>_<dataset>_<model>_<protocol>``. Returns one record per figure: ``dataset,
    model, protocol, variant, png, svg, caption``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for (dataset, model, protocol), sub in curves.groupby(["dataset", "model", "protocol"], sort=True):
        variant = str(sub["variant"].iloc[0]) if "variant" in sub.columns else ""
        proto = protocol if not variant or variant in protocol else f"{protocol} ({variant})"
        fig = plot_curves(sub, f"{dataset} - {model} - {proto}: mean Dice per {X_NOUNS[x]}", x)
        stem = slug(f"dice_vs_{x}_{dataset}_{model}_{protocol}")
        png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
        fig.savefig(png, dpi=dpi)
        fig.savefig(svg)
        plt.close(fig)
        records.append(dict(dataset=dataset, model=model, protocol=protocol, variant=variant, png=png, svg=svg,
                            caption=f"{dataset} - {model} - {proto}: " + caption(sub, x)))
    return records


def write_group_figures(curves: pd.DataFrame, groups: tuple[tuple[str, str, tuple[str, ...]], ...], out_dir: Path,
                        dpi: int = 120, x: str = "round") -> list[dict[str, object]]:
    """One PNG and SVG per group and (model, protocol): the curves of the group's datasets in one
    figure, one line per ``dataset: structure`` (the paper's Figs. 2-4 group datasets so).

    ``groups``: ``(name, title, datasets)``; files are ``<name>_<x>_<model>_<protocol>``. A group
    whose datasets have no curve is left out. Returns records as :func:`write_figures` does, with
    ``dataset`` set to the group's name.
    """
    out_dir = Path(out_dir)
    records = []
    for name, title, datasets in groups:
        mine = curves[curves["dataset"].isin(datasets)]
        if mine.empty:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        for (model, protocol), sub in mine.groupby(["model", "protocol"], sort=True):
            sub = sub.assign(structure=[f"{d}: {s}" for d, s in zip(sub["dataset"], sub["structure"])])
            fig = plot_curves(sub, f"{title} - {model} - {protocol}: mean Dice per {X_NOUNS[x]}", x)
            stem = slug(f"{name}_{x}_{model}_{protocol}")
            png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
            fig.savefig(png, dpi=dpi)
            fig.savefig(svg)
            plt.close(fig)
            variant = str(sub["variant"].iloc[0]) if "variant" in sub.columns else ""
            records.append(dict(dataset=name, model=model, protocol=protocol, variant=variant, png=png, svg=svg,
                                caption=f"{title} ({', '.join(d for d in datasets if d in set(mine['dataset']))}) - "
                                        f"{model} - {protocol}: " + caption(sub, x)))
    return records
