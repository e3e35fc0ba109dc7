"""Figures like the paper's Figs. 2-4: mean Dice against the number of annotated slices.

One figure per (dataset, model, protocol); one panel per setting (``fg-only`` first, as the
paper's "with background removal", then ``full``); one line per structure with its 95% band
(mean -/+ 1.96 SEM over objects; no band with a single object). Objects that stopped early are
carried forward, so every line spans rounds 1..R.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SETTING_ORDER = ("fg-only", "full")
SETTING_TITLES = {"fg-only": "fg-only (background slices removed)", "full": "full (whole volume)"}


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text))
    return re.sub(r"-*_-*", "_", text).strip("-") or "x"


def _ordered_settings(settings: list[str]) -> list[str]:
    known = [s for s in SETTING_ORDER if s in settings]
    return known + sorted(s for s in settings if s not in SETTING_ORDER)


def plot_curves(curves: pd.DataFrame, title: str = "") -> plt.Figure:
    """Draw one figure from the rows of :func:`annosim.report.stats.curves` of one
    (dataset, model, protocol).

    x: round = number of annotated slices (1..R); y: mean Dice in [0, 1].
    """
    settings = _ordered_settings(sorted(curves["setting"].unique()))
    structures = sorted(curves["structure"].unique())
    r_max = int(curves["round"].max())
    ncol = 1 + (len(structures) - 1) // 24
    legend_w = 2.2 * ncol
    height = max(4.2, 0.17 * min(len(structures), 24) + 1.0)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings) + legend_w, height),
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab20" if len(structures) > 10 else "tab10")
    handles = {}
    for ax, setting in zip(axes[0], settings):
        sub = curves[curves["setting"] == setting]
        for i, name in enumerate(structures):
            c = sub[sub["structure"] == name].sort_values("round")
            if c.empty:
                continue
            color = cmap(i % cmap.N)
            style = ("-", "--", ":")[(i // cmap.N) % 3]  # colours repeat after 20 structures; styles tell them apart
            x = c["round"].to_numpy()
            (line,) = ax.plot(x, c["mean"].to_numpy(), marker="o", ms=3, lw=1.5, ls=style, color=color, label=name)
            lo, hi = c["lo"].to_numpy(np.float64), c["hi"].to_numpy(np.float64)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(x[ok], np.clip(lo[ok], 0, 1), np.clip(hi[ok], 0, 1), color=color,
                                alpha=0.18, lw=0)
            handles[name] = line
        ax.set_title(SETTING_TITLES.get(setting, setting), fontsize=10)
        ax.set_xlabel("number of annotated slices")
        ax.set_xlim(0.7, r_max + 0.3)
        ax.set_xticks(range(1, r_max + 1))
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("mean Dice (95% CI)")
    if title:
        fig.suptitle(title, fontsize=11)
    right = 1 - legend_w / fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.legend(list(handles.values()), list(handles.keys()), loc="center left", bbox_to_anchor=(right, 0.5),
               fontsize=8, frameon=False, ncol=ncol)
    return fig


def write_figures(curves: pd.DataFrame, out_dir: Path, dpi: int = 120) -> list[dict[str, object]]:
    """Write one PNG and one SVG per (dataset, model, protocol) into ``out_dir``.

    Returns one record per figure: ``dataset, model, protocol, variant, png, svg`` (paths).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for (dataset, model, protocol), sub in curves.groupby(["dataset", "model", "protocol"], sort=True):
        variant = str(sub["variant"].iloc[0]) if "variant" in sub.columns else ""
        proto = protocol if not variant or variant in protocol else f"{protocol} ({variant})"
        fig = plot_curves(sub, f"{dataset} - {model} - {proto}: mean Dice vs annotated slices")
        stem = slug(f"dice_vs_slices_{dataset}_{model}_{protocol}")
        png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
        fig.savefig(png, dpi=dpi)
        fig.savefig(svg)
        plt.close(fig)
        records.append(dict(dataset=dataset, model=model, protocol=protocol, variant=variant, png=png, svg=svg))
    return records
