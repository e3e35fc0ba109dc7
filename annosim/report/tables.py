"""Tables as CSV (full precision), Markdown, LaTeX (booktabs) and HTML fragments.

The CSV files hold the raw numbers (every float as Python's ``repr``); the Markdown, LaTeX and
HTML renderings hold display strings (3 decimals, intervals in brackets) built by
:func:`summary_display`, :func:`table1_display`, :func:`sensitivity_display` and
:func:`comparison_display`.
"""

from __future__ import annotations

import html as _html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from annosim.metrics.native_object import OBJECT_NATIVE
from annosim.metrics.registry import BUILTIN, Metric

from annosim.report.aggregate import REFERENCE
from annosim.report.sensitivity import Sensitivity, uses_gt
from annosim.report.table1 import PAPER_METHODS

DASH = "-"
#: One (group, sub-column) pair per column of a display table; group "" = not grouped.
Header = list[tuple[str, str]]
#: Group title of the published columns in the Table-1 view's two-row header.
PAPER_GROUP = "He et al. 2024, Table 1 (published)"
#: Cells rendered right-aligned in HTML: numbers, intervals, pairs, NoC cells.
_NUMERIC = re.compile(r"^(?=.*[0-9])[-+\[\]0-9.,/ ]+(\((all reached|[0-9]+ of [0-9]+ never reached)\))?$")
#: Columns of the summary that the paper reports (Table 1: mean best-of-rounds Dice; its
#: figures: the 1.96 SEM band), shown first; the others are folded away in the HTML page.
PAPER_SUMMARY_COLUMNS: tuple[str, ...] = ("Dataset", "Structure", "Setting", "Model", "Protocol", "n",
                                          "Best Dice", "95% CI (1.96 SEM)")
#: Columns that identify a summary row (repeated in the folded table).
KEY_COLUMNS: tuple[str, ...] = ("Dataset", "Structure", "Setting", "Model", "Protocol")


def fmt(value: object, digits: int = 3) -> str:
    """A number with ``digits`` decimals; integers as such; NaN/None as ``-``."""
    if value is None:
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return DASH if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    return str(value)


def fmt_ci(lo: float, hi: float, digits: int = 3) -> str:
    """An interval as ``[lo, hi]`` (``-`` when undefined)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return DASH
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_pair(a: float, b: float, digits: int = 3) -> str:
    """Two numbers as ``a/b``, the paper's with/without background removal cell."""
    return f"{fmt(a, digits)}/{fmt(b, digits)}"


def fmt_noc(noc: float, failed: object, n: object) -> str:
    """A NoC cell in words: ``3.00 (all reached)`` or ``8.00 (1 of 4 never reached)``."""
    k = int(failed) if failed is not None and not (isinstance(failed, float) and math.isnan(failed)) else 0
    return f"{fmt(noc, 2)} (all reached)" if k == 0 else f"{fmt(noc, 2)} ({k} of {fmt(n)} never reached)"


def model_parameters(model: dict) -> str:
    """A run's model arguments for the Runs table: ``key=value, ...`` (a checkpoint digest
    shortened to 12 hex digits); ``-`` when there are none. ``model``: run.json's ``model`` minus
    ``name``."""
    parts = [f"{k}={v}" for k, v in sorted((model.get("args") or {}).items())]
    for k, v in sorted(model.items()):
        if k == "args":
            continue
        text = str(v)
        parts.append(f"{k.replace('_', ' ')} {text[:12] if re.fullmatch('[0-9a-f]{64}', text) else text}")
    return ", ".join(parts) or DASH


def _protocol_label(protocol: str, variant: str) -> str:
    return protocol if not variant or variant in protocol else f"{protocol} ({variant})"


def summary_display(summary: pd.DataFrame, metrics: tuple[Metric, ...] = BUILTIN) -> pd.DataFrame:
    """Display strings of a summary (:func:`annosim.report.stats.summarize`); one column per
    summarised metric of ``metrics`` after the Dice statistics."""
    rows = []
    for _, r in summary.iterrows():
        row = {
            "Dataset": r["dataset"],
            "Structure": r["structure"],
            "Setting": r["setting"],
            "Model": r["model"],
            "Protocol": _protocol_label(r["protocol"], r.get("variant", "")),
            "n": fmt(r["n"]),
            "Carried fwd": fmt(r["early_stopped"]),
            "Best Dice": fmt(r["best_dice"]),
            "95% CI (1.96 SEM)": fmt_ci(r["best_ci_lo"], r["best_ci_hi"]),
            "95% CI (bootstrap)": fmt_ci(r["best_boot_lo"], r["best_boot_hi"]),
            "First": fmt(r["first_dice"]),
            "Final": fmt(r["final_dice"]),
            "Mean over rounds": fmt(r["auc_dice"]),
            "NoC@80": fmt_noc(r["noc80"], r["noc80_failed"], r["n"]),
            "NoC@90": fmt_noc(r["noc90"], r["noc90_failed"], r["n"]),
        }
        for m in metrics:
            if m.column != "dice" and m.column in summary.columns:
                row[m.label or m.column] = fmt(r[m.column], m.digits)
        native = [f"{m.label} {fmt(r[m.name], m.digits)}" for m in OBJECT_NATIVE
                  if m.name in summary.columns and isinstance(r[m.name], float) and math.isfinite(r[m.name])]
        if any(m.name in summary.columns for m in OBJECT_NATIVE):
            row["Source's own (object level)"] = "; ".join(native) or DASH
        rows.append(row)
    return pd.DataFrame(rows)


def summary_notes(summary: pd.DataFrame, n_boot: int, seed: int) -> list[str]:
    """Footnotes of the summary table (carry-forward counts, definitions)."""
    carried = int(summary["early_stopped"].sum()) if len(summary) else 0
    total = int(summary["n"].sum()) if len(summary) else 0
    return [
        f"Objects that stopped early are carried forward (last round repeated up to the last round): "
        f"{carried} of {total} objects; 'Carried fwd' counts them per row.",
        "Best Dice: mean over objects of the best Dice over rounds (the paper's Table 1 statistic). "
        "First/Final: round 1 / last round. Mean over rounds: mean Dice over rounds 1..R (carried forward).",
        f"95% CI: mean +/- 1.96 SEM (as the paper plots) and percentile bootstrap ({n_boot} resamples, seed {seed}).",
        "NoC@t: rounds (annotated slices) until Dice >= t; an object that never reaches t counts as the last "
        "round, and the parentheses say how many objects never reached it. FP slices, NSD, HD95: final round "
        "(HD95 over objects with a non-empty prediction).",
    ]


def split_summary(display: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A summary display cut in two: the paper's columns (:data:`PAPER_SUMMARY_COLUMNS`) and the
    rest, each row repeated with its :data:`KEY_COLUMNS`."""
    main = [c for c in PAPER_SUMMARY_COLUMNS if c in display.columns]
    keys = [c for c in KEY_COLUMNS if c in display.columns]
    rest = keys + [c for c in display.columns if c not in main]
    return display[main], display[rest]


def paper_summary(summary: pd.DataFrame) -> tuple[pd.DataFrame, Header]:
    """The summary as the paper shows it: one row per structure (and dataset, model, protocol when
    the report holds several), one column per setting, each cell the mean best-of-rounds Dice
    with its 95% CI (mean +/- 1.96 SEM); ``n`` objects per row (``a/b`` when settings differ)."""
    settings = [s for s in ("full", "fg-only") if s in set(summary["setting"])]
    settings += sorted(set(summary["setting"]) - set(settings))
    keys = [k for k in ("dataset", "model", "protocol") if summary[k].nunique() > 1] if len(summary) else []
    rows: dict[tuple, dict[str, str]] = {}
    for _, r in summary.iterrows():
        key = tuple(r[k] for k in keys) + (r["structure"],)
        row = rows.setdefault(key, {**{k.capitalize(): str(r[k]) for k in keys}, "Structure": str(r["structure"]),
                                    "n": "", **{s: DASH for s in settings}})
        ci = fmt_ci(r["best_ci_lo"], r["best_ci_hi"])
        row[r["setting"]] = fmt(r["best_dice"]) + ("" if ci == DASH else f" {ci}")
        row["n"] = "/".join(dict.fromkeys([*filter(None, row["n"].split("/")), fmt(r["n"])]))
    display = pd.DataFrame(list(rows.values()),
                           columns=[k.capitalize() for k in keys] + ["Structure", "n", *settings])
    group = "Best-of-rounds Dice [95% CI]"
    header: Header = [("", c) for c in display.columns[: len(keys) + 2]] + [(group, s) for s in settings]
    return display, header


def _run_groups(view: pd.DataFrame, order: list[tuple[str, str]] | None) -> list[tuple[str, str, str]]:
    """(model, protocol, variant) of a Table-1 view's run columns: those in ``order`` (pairs of
    model and protocol) first, in that order, then the others in the view's order."""
    seen = list(dict.fromkeys(zip(view["model"], view["protocol"], view["variant"].fillna(""))))
    rank = {mp: i for i, mp in enumerate(order or [])}
    return sorted(seen, key=lambda g: (rank.get((g[0], g[1]), len(rank)), seen.index(g)))


def _group_labels(groups: list[tuple[str, str, str]]) -> list[str]:
    """Column-group titles: the model label, with the protocol when the view holds several."""
    several = len({(p, v) for _, p, v in groups}) > 1
    return [f"{m} / {_protocol_label(p, v)}" if several else str(m) for m, p, v in groups]


def table1_display(view: pd.DataFrame, order: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Display strings of a Table-1 view (:func:`annosim.report.table1.table1_view`), wide.

    One row per (dataset, structure, published dataset); one column group per run model (and
    protocol, when the view holds several): ``<model> n`` and ``<model> fg-only/full`` (mean
    best-of-rounds Dice with / without background removal, as the paper's SAM2 cells); then
    the published columns. ``order``: (model, protocol) pairs giving the groups' order. A view
    with the reference aggregation (``shift_*`` columns) gets ``<model> shift`` after each
    group's pair: reference minus per-object, fg-only/full, signed.
    """
    groups = _run_groups(view, order)
    titles = _group_labels(groups)
    index = {g: i for i, g in enumerate(groups)}
    shifts = "shift_fg_only" in view.columns
    rows: dict[tuple, dict[str, str]] = {}
    for _, r in view.iterrows():
        key = (r["dataset"], r["label_name"], r["paper_dataset"])
        if key not in rows:
            row = {"Dataset": r["dataset"], "Structure": r["structure"], "Paper dataset": r["paper_dataset"] or DASH}
            for t in titles:
                row[f"{t} n"] = DASH
                row[f"{t} fg-only/full"] = DASH
                if shifts:
                    row[f"{t} shift"] = DASH
            for col, title in PAPER_METHODS.items():
                if not col.startswith("sam2"):
                    row[f"{title} (paper)"] = fmt(r[col])
            row["SAM2 fg-only/full (paper)"] = fmt_pair(r["sam2_fg_only"], r["sam2_full"])
            rows[key] = row
        t = titles[index[(r["model"], r["protocol"], r["variant"] if isinstance(r["variant"], str) else "")]]
        rows[key][f"{t} n"] = fmt(r["n"])
        rows[key][f"{t} fg-only/full"] = fmt_pair(r["run_fg_only"], r["run_full"])
        if shifts:
            rows[key][f"{t} shift"] = "/".join(DASH if not math.isfinite(v) else f"{v:+.3f}"
                                               for v in (float(r["shift_fg_only"]), float(r["shift_full"])))
    return pd.DataFrame(list(rows.values()))


def table1_header(display: pd.DataFrame) -> Header:
    """Two-row header of a Table-1 display (:func:`table1_display`): each run model's ``n`` and
    ``fg-only/full`` columns under the model, the published columns under :data:`PAPER_GROUP`."""
    header: Header = []
    for i, col in enumerate(display.columns):
        col = str(col)
        if i < 3:
            header.append(("", col))
        elif col.endswith(" (paper)"):
            header.append((PAPER_GROUP, col[: -len(" (paper)")]))
        else:
            group, _, sub = col.rpartition(" ")
            header.append((group, sub))
    return header


def table1_notes(view: pd.DataFrame) -> list[str]:
    """Footnotes of the Table-1 view (what the run columns hold, which protocol they used)."""
    groups = _run_groups(view, None)
    protos = sorted({_protocol_label(p, v) for _, p, v in groups})
    reference = "aggregation" in view.columns and (view["aggregation"] == REFERENCE).any()
    statistic = ("the reference script's statistic (annosim report --aggregate reference: rank columns, "
                 "entries never filled counted as 0, mean over cases; see the reference-aggregation table), "
                 "shift: reference minus annosim's per-object mean" if reference else
                 "per-object aggregation (mean over the structure's objects)")
    notes = ["This run: best-of-rounds Dice with background slices removed (fg-only) / whole volume "
             f"(full), {statistic}; one column group per model (its 'mode' argument in parentheses); n: objects. "
             f"The published columns (marked (paper), or grouped under '{PAPER_GROUP}') are the numbers "
             "of He et al. 2024, Table 1 ('-': not reported)."]
    if len(protos) == 1:
        notes.append(f"Protocol of this run's columns: {protos[0]}.")
    notes.append("Published SAM2 numbers come from the reference script (protocol variant he2024-vista, "
                 "aggregated as annosim report --aggregate reference does); compare like for like.")
    return notes


def sensitivity_display(sens: Sensitivity) -> pd.DataFrame:
    """Display strings of a protocol sensitivity table (:func:`annosim.report.sensitivity.protocol_sensitivity`)."""
    rows = []
    for _, r in sens.table.iterrows():
        row = {"Dataset": r["dataset"], "Structure": r["structure"], "Setting": r["setting"], "Model": r["model"],
               "n": fmt(r["n"]), "Excluded": fmt(r["excluded"])}
        for c in sens.columns:
            row[sens.labels[c]] = fmt(r[c])
        row["Spread (max-min)"] = fmt(r["spread"])
        row["Highest"] = r["highest"] or DASH
        row["Lowest"] = r["lowest"] or DASH
        rows.append(row)
    return pd.DataFrame(rows)


def sensitivity_notes(sens: Sensitivity) -> list[str]:
    """Footnotes of the sensitivity table, ending with the ground-truth use of each protocol."""
    notes = [
        "Mean best-of-rounds Dice per protocol, computed only over the objects (case, structure) present under "
        "every protocol of the row: n is the same for every protocol column of a row; Excluded counts objects "
        "run under some of those protocols only. '-': the model did not run that protocol on this structure "
        "and setting.",
        "Spread: highest minus lowest protocol mean of the row.",
        "Ground-truth information each protocol uses (all are oracles: the truth places their prompts):",
    ]
    gt = uses_gt(list(dict.fromkeys(sens.protocols.values())))
    notes += [f"{name}: {text}" for name, text in gt.items()]
    return notes


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    """Display strings of a paired comparison (:func:`annosim.report.compare.paired_comparison`)."""
    rows = []
    for _, r in table.iterrows():
        rows.append({
            "Structure": r["structure"],
            "Setting": r["setting"],
            "Protocol": r["protocol"],
            "n pairs": fmt(r["n"]),
            "A": fmt(r["mean_a"]),
            "B": fmt(r["mean_b"]),
            "B - A": fmt(r["mean_diff"]),
            "95% CI (bootstrap)": fmt_ci(r["boot_lo"], r["boot_hi"]),
            "Wilcoxon p": fmt(r["wilcoxon_p"], 4),
            "B better / worse / tied": f"{r['n_better']}/{r['n_worse']}/{r['n_tied']}",
        })
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, notes: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped), then the notes."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _spans(header: Header) -> list[tuple[str, int, int]]:
    """Runs of equal non-empty groups in a header: (group, first column, count)."""
    spans: list[tuple[str, int, int]] = []
    for i, (group, _) in enumerate(header):
        if group and spans and spans[-1][0] == group and spans[-1][1] + spans[-1][2] == i:
            spans[-1] = (group, spans[-1][1], spans[-1][2] + 1)
        elif group:
            spans.append((group, i, 1))
    return spans


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "", notes: list[str] | None = None,
             header: Header | None = None) -> str:
    """A ``table`` environment with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``).

    ``header``: one (group, sub-column) pair per column; groups become a first header row of
    ``\\multicolumn`` cells with ``\\cmidrule`` under them, and sub-columns the second row.
    """
    spec = "l" * min(2, len(df.columns)) + "r" * max(0, len(df.columns) - 2)
    out = [r"\begin{table}[ht]", r"\centering", r"\small"]
    if caption:
        out.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        out.append(r"\label{" + label + "}")
    out += [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    if header and any(g for g, _ in header):
        top, rules, col = [], [], 0
        for group, start, count in _spans(header):
            top += [""] * (start - col) + [r"\multicolumn{%d}{c}{%s}" % (count, latex_escape(group))]
            rules.append(r"\cmidrule(lr){%d-%d}" % (start + 1, start + count))
            col = start + count
        top += [""] * (len(header) - col)
        out += [" & ".join(top) + r" \\", " ".join(rules),
                " & ".join(latex_escape(sub) for _, sub in header) + r" \\", r"\midrule"]
    else:
        out += [" & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        out.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    for n in notes or []:
        out.append(r"\par\footnotesize " + latex_escape(n))
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_html(df: pd.DataFrame, notes: list[str] | None = None, header: Header | None = None) -> str:
    """An HTML ``<table>`` (escaped cells) followed by the notes as a list.

    ``header``: one (group, sub-column) pair per column; a group spans its columns in a first
    header row, ungrouped columns span both rows.
    """
    esc = _html.escape
    if header and any(g for g, _ in header):
        spans = {start: (group, count) for group, start, count in _spans(header)}
        top, i = [], 0
        while i < len(header):
            if i in spans:
                group, count = spans[i]
                top.append(f'<th colspan="{count}" class="group">{esc(group)}</th>')
                i += count
            else:
                top.append(f'<th rowspan="2">{esc(header[i][1])}</th>')
                i += 1
        sub = "".join(f"<th>{esc(s)}</th>" for g, s in header if g)
        head = "".join(top) + f"</tr><tr>{sub}"
    else:
        head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)
    def td(v: object) -> str:
        text = str(v)
        cls = ' class="n"' if _NUMERIC.match(text) else ""
        return f"<td{cls}>{_html.escape(text)}</td>"

    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    out = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    if notes:
        out += '<ul class="notes">' + "".join(f"<li>{_html.escape(n)}</li>" for n in notes) + "</ul>"
    return out


def write_table(raw: pd.DataFrame, display: pd.DataFrame, out_dir: Path, stem: str,
                caption: str = "", notes: list[str] | None = None, header: Header | None = None) -> dict[str, Path]:
    """Write ``stem.csv`` (raw, full precision), ``stem.md`` and ``stem.tex`` (display; the
    LaTeX with the two-row ``header`` when given, see :func:`to_latex`).

    Returns the paths by extension.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "tex": out_dir / f"{stem}.tex"}
    raw.to_csv(paths["csv"], index=False, float_format=None)
    md = (f"**{caption}**\n\n" if caption else "") + to_markdown(display, notes)
    paths["md"].write_text(md, encoding="utf-8")
    paths["tex"].write_text(to_latex(display, caption, f"tab:{stem}", notes, header), encoding="utf-8")
    return paths


def write_summary(summary: pd.DataFrame, display: pd.DataFrame, out_dir: Path, caption: str,
                  notes: list[str]) -> dict[str, Path]:
    """``summary.csv`` (raw), ``summary.md`` (every column), ``summary.tex`` (the paper-style
    table, :func:`paper_summary`) and ``summary_full.tex`` (every column). Paths by key
    ``csv``, ``md``, ``tex``, ``full_tex``."""
    paths = write_table(summary, display, out_dir, "summary", caption, notes)
    paths["full_tex"] = paths["tex"].with_name("summary_full.tex")
    paths["full_tex"].write_text(to_latex(display, caption, "tab:summary-full", notes), encoding="utf-8")
    paper, header = paper_summary(summary)
    paper_notes = ["Mean over objects of the best Dice over rounds (He et al. 2024, Table 1), with its 95% CI "
                   "(mean +/- 1.96 SEM); n: objects. Every column: summary_full.tex."]
    paths["tex"].write_text(to_latex(paper, "Mean best-of-rounds Dice per structure and setting", "tab:summary",
                                     paper_notes, header), encoding="utf-8")
    return paths
