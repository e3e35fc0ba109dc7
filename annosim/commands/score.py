"""``annosim score``: precomputed segmentations scored with the metrics of interactive runs."""

from __future__ import annotations

import click

from annosim.commands.run import csv_list, dataset_options
from annosim.schema import ORIENTATIONS


@click.command()
@click.option("--pred", "pred_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of label maps named by case id (<case>.nii.gz, .nrrd ...), on the image grid.")
@click.option("--data", "data_spec", required=True, help="Dataset spec (folder, datalist, CSV or 'IMAGE LABEL').")
@dataset_options
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Results folder to write.")
@click.option("--model-name", default="precomputed", show_default=True, help="Model name in the tables.")
@click.option("--labels", default=None, help="Comma-separated label names or values (default: all present).")
@click.option("--settings", default="full,fg-only", show_default=True, help="Settings to score.")
@click.option("--label-map", default=None, help='Prediction values differing from the dataset\'s: "2=3,4=10" '
                                                "(dataset value = prediction value).")
@click.option("--nsd-tolerance", type=float, default=2.0, show_default=True, help="NSD tolerance in mm.")
@click.option("--no-surface-metrics", is_flag=True, help="Skip NSD and HD95 (written as nan).")
@click.option("--metric", "metrics", multiple=True, metavar="MODULE:FUNCTION",
              help="Extra metric (pred, gt, spacing) -> float, as in annosim run (repeatable).")
@click.option("--orientation", type=click.Choice(ORIENTATIONS), default="canonical", show_default=True)
@click.pass_context
def score(ctx: click.Context, pred_dir: str, data_spec: str, layout, data_root, split, label_names, out: str,
          model_name: str, labels: str | None, settings: str, label_map: str | None, nsd_tolerance: float,
          no_surface_metrics: bool, metrics: tuple[str, ...], orientation: str) -> None:
    """Score precomputed automatic segmentations with the interactive runs' metrics.

    Writes a results folder with one round per (case, label, setting), protocol 'automatic',
    readable by `annosim report` and `annosim compare`. Cases without a prediction go to
    errors.jsonl and the exit status is 1.
    """
    from annosim.engine.driver import format_summary, summarize
    from annosim.engine.score import parse_label_map, score_predictions

    res = score_predictions(pred_dir, data_spec, out, model_name=model_name, settings=csv_list(settings) or (),
                            labels=list(csv_list(labels) or ()) or None, nsd_tolerance=nsd_tolerance,
                            surface=not no_surface_metrics, orientation=orientation, layout=layout,
                            data_root=data_root, split=split, label_names=label_names, label_map=parse_label_map(label_map),
                            metric_specs=metrics)
    for e in res.errors:
        click.echo(f"annosim: {e['case']}: {e['error']}", err=True)
    click.echo(format_summary(summarize(res.out)))
    click.echo(f"results: {res.out}  ({res.units} units written, {res.skipped} resumed, "
               f"{len(res.errors)} errors{' -> errors.jsonl' if res.errors else ''})")
    if res.errors:
        ctx.exit(1)
