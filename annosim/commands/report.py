"""``annosim report``: from results folders to tables, figures and an HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from annosim.errors import ConfigError
from annosim.schema import AGGREGATIONS, VIEWER_CHOICES
from annosim.files import check_out_folder
from annosim.report.figures import X_CHOICES


def _labels(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), default="annosim-report", show_default=True,
              help="Folder for the tables, figures, QC images and report.html.")
@click.option("--dataset-name", default=None, help="Dataset name shown in tables (default: run.json data.name).")
@click.option("--paper-dataset", "paper_datasets", multiple=True,
              help="Published dataset(s) of He et al. 2024 Table 1 to show beside the run (BTCV, MSD03, "
                   "MSD06, MSD07, MSD08, MSD09, AbdomenCT-1K). Default: the dataset of the same name, else "
                   "every published dataset that reports the structure.")
@click.option("--n-boot", type=click.IntRange(100), default=10000, show_default=True,
              help="Bootstrap resamples of the percentile CIs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--qc/--no-qc", default=True, show_default=True,
              help="QC images (worst/median/best object per structure); needs the run's dataset readable.")
@click.option("--qc-labels", default=None, help="Comma-separated structures (names or values) that get QC images.")
@click.option("--aggregate", "aggregation", type=click.Choice(AGGREGATIONS), default=AGGREGATIONS[0],
              show_default=True,
              help="Statistic of the Table-1 view: mean over each structure's objects, or the reference script's "
                   "(rank columns among the labels present per case, unfilled entries 0, mean over cases), also "
                   "written as reference_aggregate.{csv,md,tex}.")
@click.option("--x", "x_axis", type=click.Choice(X_CHOICES), default="round", show_default=True,
              help="x axis of the figures: the round (pass, the paper's 'number of annotated frames'), distinct "
                   "annotated slices, or clicks.")
@click.option("--viewers", type=click.Choice(VIEWER_CHOICES), default="qc", show_default=True,
              help="Replay viewer pages (annosim view) for the QC objects, every object with saved predictions, "
                   "or none; the objects table links each object to its page.")
def report(run_dirs: tuple[str, ...], out: str, dataset_name: str | None, paper_datasets: tuple[str, ...],
           n_boot: int, seed: int, qc: bool, qc_labels: str | None, aggregation: str, x_axis: str,
           viewers: str) -> None:
    """Tables, figures, Table-1 view and one HTML page from one or more results folders.

    Writes summary.{csv,md,tex}, table1.{csv,md,tex} (one column group per model),
    sensitivity.{csv,md,tex} (when a model ran several protocols), objects.csv, curves.csv,
    figures/*.{png,svg}, qc/*/*.png and report.html into --out.
    """
    check_out_folder(out, "--out")
    from annosim.report.build import ReportConfig, build_report
    from annosim.report.stats import StatsConfig
    from annosim.report.table1 import load_paper_table

    known = set(load_paper_table()["dataset"])
    bad = [d for d in paper_datasets if d not in known]
    if bad:
        raise ConfigError(f"--paper-dataset {', '.join(bad)}: expected one of {', '.join(sorted(known))}")
    cfg = ReportConfig(stats=StatsConfig(n_boot=n_boot, seed=seed), dataset_name=dataset_name,
                       paper_datasets=list(paper_datasets) or None, qc=qc, qc_labels=_labels(qc_labels),
                       aggregate=aggregation, x=x_axis, viewers=viewers)
    res = build_report([Path(p) for p in run_dirs], out, cfg)
    click.echo(f"report: {res.html}")
    for note in res.qc_notes:
        click.echo(f"note: {note}", err=True)

