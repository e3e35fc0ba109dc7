"""``annosim report``: results folders -> tables, figures, QC images and one HTML page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from annosim import __version__
from annosim.errors import ConfigError, InputError
from annosim.engine import score
from annosim.metrics.registry import Metric
from annosim.report import (aggregate, figures, qc, sensitivity, sensitivity_detail, stats, table1, tables,
                            viewer_pages)
from annosim.report.results_io import RunResults, load_predictions, read_runs
from annosim.report.reference_table import reference_display
from annosim.report.html import Page


@dataclass(frozen=True)
class ReportConfig:
    """Options of a report.

    Attributes
    ----------
    stats : StatsConfig
        Bootstrap resamples and seed, NoC thresholds.
    dataset_name : str or None
        Overrides the dataset name of every run (default: run.json ``data.name``).
    paper_datasets : list of str or None
        Published datasets to put beside the run in the Table-1 view (default: the dataset of
        the same name, else every published dataset that reports the structure).
    qc : bool
        Draw QC images (needs the dataset that run.json names to be readable).
    qc_labels : tuple of str
        Only these structures get QC images (default: all).
    aggregate : str
        Statistic of the Table-1 view (:data:`annosim.report.aggregate.AGGREGATIONS`):
        ``per-object`` (default) or ``reference`` (the reference script's rank columns, also
        written as ``reference_aggregate.{csv,md,tex}``).
    figure_dpi, qc_dpi : int
        Resolution of the PNG figures and QC images.
    x : str
        x axis of the figures: ``round`` (default), ``slices`` or ``clicks``
        (:data:`annosim.report.figures.X_CHOICES`).
    viewers : str
        Replay viewer pages (:data:`annosim.schema.VIEWER_CHOICES`): for the QC
        objects (default), for every object with saved predictions, or none.
    """

    stats: stats.StatsConfig = field(default_factory=stats.StatsConfig)
    dataset_name: str | None = None
    paper_datasets: list[str] | None = None
    qc: bool = True
    qc_labels: tuple[str, ...] = ()
    aggregate: str = aggregate.PER_OBJECT
    figure_dpi: int = 120
    qc_dpi: int = 80
    x: str = "round"
    viewers: str = "qc"
    #: Dataset name per results folder (its path as given), overriding ``dataset_name`` there.
    dataset_names: dict[str, str] = field(default_factory=dict)
    #: Figures drawing several datasets together, ``(name, title, datasets)`` (an experiment's
    #: ``[[report.figures]]``), written before the per-dataset figures.
    figure_groups: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


@dataclass
class ReportOutputs:
    """Paths written by :func:`build_report`."""

    out: Path
    html: Path
    tables: dict[str, dict[str, Path]]
    figures: list[dict[str, Any]]
    qc_images: list[Path]
    qc_notes: list[str]


def analyse(runs: list[RunResults], config: stats.StatsConfig) -> dict[str, pd.DataFrame]:
    """Carried-forward rounds, objects and summary of several runs together (the figures'
    curves are computed from the rounds by :func:`annosim.report.figures.figure_curves`)."""
    full = []
    for run in runs:
        if run.rounds.empty:
            continue
        maxr = {p: run.max_rounds(p) for p in run.rounds["protocol"].unique()}
        full.append(stats.carry_forward(run.rounds, maxr))
    if not full:
        raise InputError(runs[0].path if runs else None, "no rounds recorded in any results folder")
    allr = pd.concat(full, ignore_index=True)
    metrics = run_metrics(runs)
    objects = stats.object_table(allr, config.noc_thresholds, metrics)
    return {"rounds": allr, "objects": objects, "summary": stats.summarize(objects, config, metrics)}


def run_metrics(runs: list[RunResults]) -> tuple[Metric, ...]:
    """The metrics of several runs: each column once, in the order the runs list them."""
    seen: dict[str, Metric] = {}
    for run in runs:
        for m in run.metrics:
            seen.setdefault(m.column, m)
    return tuple(seen.values())


def _qc_images(runs: list[RunResults], objects: pd.DataFrame, out: Path,
               cfg: ReportConfig) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    """QC PNGs of the worst/median/best object per (run, protocol, structure, setting).

    Objects whose predictions were saved also get a replay viewer page (``viewer/<run>/*.html``,
    :mod:`annosim.report.viewer`), linked from the caption. Returns (caption, path, viewer page or
    None) triples and notes about what could not be drawn.
    """
    images: list[tuple[str, Path, Path | None]] = []
    notes: list[str] = []
    for run in runs:
        objs = objects[objects["run"] == run.path.name]
        if cfg.qc_labels:
            objs = objs[objs["label_name"].isin(cfg.qc_labels) | objs["label"].astype(str).isin(cfg.qc_labels)]
        if objs.empty:
            continue
        loader, why = qc.dataset_loader(run.meta)
        if loader is None:
            notes.append(f"{run.path.name}: no QC images - the dataset named in run.json cannot be opened here ({why}).")
            continue
        prompts = run.prompts()
        by_object: dict[tuple, list[dict]] = {}
        for p in prompts:
            by_object.setdefault((str(p["case"]), int(p["label"]), p["setting"], p.get("protocol", "")), []).append(p)
        picks = []
        for (proto, name, setting), grp in objs.groupby(["protocol", "label_name", "setting"], sort=True):
            for rank, row in qc.pick_objects(grp):
                picks.append((rank, row))
        saved_any, drawn = False, 0
        cache: dict[tuple[str, str], Any] = {}
        for rank, row in sorted(picks, key=lambda t: (str(t[1]["case"]), run.orientation(str(t[1]["protocol"])))):
            case, orientation = str(row["case"]), run.orientation(str(row["protocol"]))
            if (case, orientation) not in cache:
                cache.clear()  # one case in memory at a time
                try:
                    cache[(case, orientation)] = loader(case, orientation)
                except Exception as exc:  # noqa: BLE001 - a missing case must not stop the report
                    notes.append(f"{run.path.name}: case {case} could not be read for QC ({exc}).")
                    cache[(case, orientation)] = None
            case_obj = cache[(case, orientation)]
            if case_obj is None:
                continue
            label, setting, proto = int(row["label"]), str(row["setting"]), str(row["protocol"])
            rr = run.rounds[(run.rounds["case"] == case) & (run.rounds["label"] == label)
                            & (run.rounds["setting"] == setting) & (run.rounds["protocol"] == proto)]
            try:
                saved = load_predictions(run.path, case, label, setting, proto)
            except InputError as exc:
                notes.append(f"{run.path.name}: {exc}")
                saved = {}
            preds: dict[int, Any] = {int(k): saved.get(int(k)) for k in rr["round"]}
            if proto == score.PROTOCOL and all(v is None for v in preds.values()):
                try:
                    scored = score.load_scored_prediction(run.meta, case_obj, label)
                except InputError as exc:
                    notes.append(f"{run.path.name}: prediction of case {case} unreadable for QC ({exc}).")
                    scored = None
                if scored is not None:
                    if setting == "fg-only":
                        scored = scored & (case_obj.label == label).any(axis=(1, 2))[:, None, None]
                    preds = {int(k): scored for k in rr["round"]}
            saved_any = saved_any or any(v is not None for v in preds.values())
            obj_prompts = by_object.get((case, label, setting, proto), [])
            if not obj_prompts:
                obj_prompts = by_object.get((case, label, setting, ""), [])
            title = (f"{row['label_name']} - {setting} - {rank} (best Dice {row['best_dice']:.3f}) - "
                     f"case {case} - {row['model']} / {proto}")
            stem = figures.slug(f"{proto}_{row['label_name']}_{setting}_{rank}_{case}")
            path = out / "qc" / figures.slug(run.path.name) / f"{stem}.png"
            short = f"{row['label_name']} - {setting} - {rank} - case {case}"
            qc.render_object(qc.QCObject(short, case_obj.image, case_obj.label == label, rr, obj_prompts, preds,
                                         protocol=proto, geometry=case_obj.geometry), path, cfg.qc_dpi)
            page = viewer_pages.write_page(out, run, row, case_obj) if cfg.viewers != "none" else None
            images.append((title, path, page))
            drawn += 1
        if drawn and not saved_any:
            notes.append(f"{run.path.name}: predictions were not saved (annosim run --save-predictions), "
                         "so QC images show the truth outline and the clicks only.")
    return images, notes


def _run_rows(runs: list[RunResults]) -> pd.DataFrame:
    rows = []
    for r in runs:
        m = r.meta
        protos = []
        for p in m.get("protocols", []) or []:
            if isinstance(p, dict):
                protos.append(p.get("name", "?") + (f" ({p['variant']})" if p.get("variant") else ""))
        model = dict(m.get("model") or {})
        rows.append({
            "Run": r.path.name,
            "Dataset": r.dataset,
            "Model": r.model if model.pop("name", None) else "?",
            "Model parameters": tables.model_parameters(model),
            "Protocol": ", ".join(protos) or ", ".join(sorted(r.rounds["protocol"].unique())),
            "Settings": ", ".join(m.get("settings") or sorted(r.rounds["setting"].unique())),
            "Seed": str(m.get("seed", "-")),
            "Objects": str(len(r.rounds.drop_duplicates(["case", "label", "setting", "protocol"]))),
            "Errors": str(len(r.errors)),
            "annosim": str(m.get("annosim_version", "-")),
            "Started": str(m.get("started", "-")),
        })
    return pd.DataFrame(rows)


def _clear_images(out: Path) -> None:
    """Remove the PNG/SVG/HTML files an earlier report wrote under ``out/figures``, ``out/qc`` and
    ``out/viewer``, so
    that the page never mixes images of two reports."""
    for sub in ("figures", "qc", "viewer"):
        folder = out / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*"), reverse=True):
            if f.is_file() and f.suffix in (".png", ".svg", ".html"):
                f.unlink()
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()


def build_report(run_dirs: list[str | Path], out: str | Path, config: ReportConfig = ReportConfig()) -> ReportOutputs:
    """Write the report of ``run_dirs`` into ``out`` (created) and return what was written.

    Files: ``summary.{csv,md,tex}``, ``table1.{csv,md,tex}``, ``sensitivity.{csv,md,tex}`` and
    ``sensitivity_detail.{csv,md,tex}`` (when a model ran several protocols), ``objects.csv``
    (one row per object), ``curves.csv`` (figure data), ``figures/dice_vs_<x>_*.{png,svg}``,
    ``qc/<run>/*.png`` and ``report.html``.
    """
    if config.aggregate not in aggregate.AGGREGATIONS:
        raise ConfigError(f"aggregate {config.aggregate!r}: expected one of {', '.join(aggregate.AGGREGATIONS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_images(out)
    runs = read_runs(list(run_dirs), config.dataset_name)
    for run_dir, run in zip(run_dirs, runs):
        if str(run_dir) in config.dataset_names:
            run.rounds["dataset"] = config.dataset_names[str(run_dir)]
    res = analyse(runs, config.stats)
    summary = res["summary"]
    written: dict[str, dict[str, Path]] = {}
    notes = tables.summary_notes(summary, config.stats.n_boot, config.stats.seed)
    summary_shown = tables.summary_display(summary, run_metrics(runs))
    written["summary"] = tables.write_summary(summary, summary_shown, out,
                                              "Summary per dataset, structure, setting, model and protocol", notes)
    ref_table = None
    if config.aggregate == aggregate.REFERENCE:
        raw = pd.concat([r.rounds for r in runs if not r.rounds.empty], ignore_index=True)
        max_rounds: dict[str, int] = {}
        for r in runs:
            for p in r.rounds["protocol"].unique():
                max_rounds[str(p)] = max(max_rounds.get(str(p), 1), r.max_rounds(str(p)))
        ref_table = aggregate.with_per_object(aggregate.reference_aggregate(raw, max_rounds), summary)
        ref_notes = aggregate.reference_notes()
        failed = sum(1 for r in runs for e in r.errors if e.get("label") is not None)
        if failed:
            ref_notes.append(f"{failed} object(s) failed (errors.jsonl): they count as absent from their case here, "
                             "where the reference would have placed a Dice.")
        written["reference_aggregate"] = tables.write_table(
            ref_table, reference_display(ref_table), out, "reference_aggregate",
            "Reference aggregation (--aggregate reference): the reference script's statistic per column", ref_notes)
    else:
        for ext in ("csv", "md", "tex"):
            (out / f"reference_aggregate.{ext}").unlink(missing_ok=True)
    view = table1.table1_view(summary, config.paper_datasets, ref_table)
    order = list(dict.fromkeys(zip(res["rounds"]["model"], res["rounds"]["protocol"])))  # as the runs were given
    t1_display, t1_notes = tables.table1_display(view, order), tables.table1_notes(view)
    t1_header = tables.table1_header(t1_display)
    written["table1"] = tables.write_table(view, t1_display, out, "table1",
                                           "Table-1 view: this run beside He et al. 2024", t1_notes, t1_header)
    sens = sensitivity.protocol_sensitivity(res["objects"])
    sens_display, sens_notes = tables.sensitivity_display(sens), tables.sensitivity_notes(sens)
    if not sens.empty:
        written["sensitivity"] = tables.write_table(
            sens.table, sens_display, out, "sensitivity",
            "Protocol sensitivity: mean best-of-rounds Dice of the same model on the same objects, per protocol",
            sens_notes)
    detail = sensitivity_detail.protocol_detail(res["rounds"], res["objects"], config.stats.n_boot,
                                                config.stats.seed, config.stats.level)
    detail_display = sensitivity_detail.detail_display(detail)
    detail_notes = sensitivity_detail.detail_notes(config.stats.n_boot, config.stats.seed)
    if not detail.empty:
        written["sensitivity_detail"] = tables.write_table(
            detail, detail_display, out, "sensitivity_detail",
            "Per protocol: its source's own metric beside annosim's Dice, at matched budgets", detail_notes)
    for stem in ([] if not sens.empty else ["sensitivity"]) + ([] if not detail.empty else ["sensitivity_detail"]):
        for ext in ("csv", "md", "tex"):
            (out / f"{stem}.{ext}").unlink(missing_ok=True)
    objects_csv = out / "objects.csv"
    res["objects"].to_csv(objects_csv, index=False)
    curves_csv = out / "curves.csv"
    curves = figures.figure_curves(res["rounds"], config.x)
    curves.to_csv(curves_csv, index=False)
    figs = figures.write_group_figures(curves, config.figure_groups, out / "figures", config.figure_dpi, config.x)
    figs += figures.write_figures(curves, out / "figures", config.figure_dpi, config.x)
    qc_images: list[tuple[str, Path]] = []
    qc_notes: list[str] = []
    if config.qc:
        qc_images, qc_notes = _qc_images(runs, res["objects"], out, config)
    if config.viewers == "all":
        viewer_pages.write_all(out, runs, res["objects"], qc_notes)

    page = Page("annosim report", out)
    page.paragraph(f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by annosim "
                   f"{__version__} from {len(runs)} results folder(s).", "meta")
    page.heading("Runs", anchor="runs")
    page.raw(tables.to_html(_run_rows(runs)))
    page.heading("Summary", anchor="summary")
    paper_cols, other_cols = tables.split_summary(summary_shown)
    page.raw(tables.to_html(paper_cols, notes[:3]))
    page.folded("More columns: bootstrap CI, first/final/mean-over-rounds Dice, NoC, NSD, HD95, FP slices",
                tables.to_html(other_cols, notes))
    page.links([p for p in written["summary"].values()] + [objects_csv])
    page.heading(f"Mean Dice per {figures.X_NOUNS[config.x]}", anchor="figures")
    for f in figs:
        page.image(f["png"], str(f["caption"]), [f["svg"]])
    page.links([curves_csv])
    page.heading("Table-1 view (He et al. 2024)", anchor="table1")
    page.raw(tables.to_html(t1_display, t1_notes, t1_header))
    page.links(list(written["table1"].values()))
    if ref_table is not None:
        page.heading("Reference aggregation (--aggregate reference)", anchor="reference-aggregate")
        page.raw(tables.to_html(reference_display(ref_table), ref_notes))
        page.links(list(written["reference_aggregate"].values()))
    if not sens.empty:
        page.heading("Protocol sensitivity", anchor="sensitivity")
        page.paragraph("The same model on the same objects under each protocol it ran: the differences come "
                       "from the protocols alone.", "meta")
        page.raw(tables.to_html(sens_display, sens_notes))
        page.links(list(written["sensitivity"].values()))
    if not detail.empty:
        page.heading("Per protocol: the source's own metric, matched budgets", anchor="sensitivity-detail")
        page.raw(tables.to_html(detail_display, detail_notes))
        page.links(list(written["sensitivity_detail"].values()))
    page.heading("QC images: worst, median and best object of each structure", anchor="qc")
    page.paragraph("Truth outline green, prediction outline red (dashed), positive clicks cyan +, "
                   "negative clicks orange -, one panel per round on the slice annotated in that round, "
                   "in the canonical radiological view (as-stored runs turned for display).", "meta")
    for n in qc_notes:
        page.paragraph(n, "warn")
    if not config.qc:
        page.paragraph("QC images were not requested (--no-qc).", "meta")
    for caption, path, viewer_page in qc_images:
        page.image(path, caption, [viewer_page] if viewer_page else None)
    page.heading("Objects", anchor="objects")
    page.folded(f"Every object ({len(res['objects'])}), with its replay viewer where one was written "
                "(--viewers qc|all|none)", viewer_pages.objects_table(out, runs, res["objects"]))
    errors = [dict(run=r.path.name, **e) for r in runs for e in r.errors]
    page.heading("Errors", anchor="errors")
    if errors:
        page.raw(tables.to_html(pd.DataFrame(errors).astype(str)))
    else:
        page.paragraph("No case or object failed.")
    html_path = page.write(out / "report.html")
    return ReportOutputs(out, html_path, written, figs, [p for _, p, _ in qc_images], qc_notes)
