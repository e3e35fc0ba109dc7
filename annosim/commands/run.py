"""``annosim run``: benchmark a model with one or more protocols on a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from annosim.params import parse_key_values
from annosim.schema import ORIENTATIONS


def dataset_options(func):
    """The options that name a dataset (shared by run, datasets inspect and score)."""
    for opt in reversed(
        [
            click.option("--layout",
                         type=click.Choice(["msd", "nnunet", "datalist", "csv", "btcv", "abdomenct1k", "pair"]),
                         default=None, help="Dataset layout (detected automatically by default)."),
            click.option("--data-root", default=None, help="Root for relative paths of datalist/CSV files."),
            click.option("--split", default=None, help="Datalist split: testing, training or fold:K."),
            click.option("--label-names", default=None,
                         help='Label names: JSON text or file, or "1=liver,2=tumour".'),
        ]
    ):
        func = opt(func)
    return func


def csv_list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


@click.command()
@click.option("--data", "data", required=True,
              help='Dataset spec: MSD/nnU-Net folder, datalist .json, .csv manifest, or "IMAGE LABEL".')
@dataset_options
@click.option("--model", "model", default="classical", show_default=True,
              help="Built-in name (annosim models), path/to/file.py:Class or package.module:Class.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Constructor argument of the model (repeatable).")
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=True), help="Local model weights.")
@click.option("--protocol", "protocols", default="he2024", show_default=True,
              help="Protocol name, or several separated by commas (annosim protocols).")
@click.option("--protocol-arg", "protocol_args", multiple=True, metavar="KEY=VALUE",
              help="Protocol parameter, e.g. rounds=4 or he2024.select_from=gt (repeatable).")
@click.option("--settings", default="full,fg-only", show_default=True,
              help="full (whole volume), fg-only (slices holding the object), or both.")
@click.option("--labels", default=None, help="Labels by names or values, comma-separated (default: all present).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random clicks.")
@click.option("--nsd-tolerance", default=2.0, show_default=True, type=float, help="NSD tolerance in mm.")
@click.option("--no-surface-metrics", is_flag=True, help="Skip NSD and HD95 (written as nan).")
@click.option("--metric", "metrics", multiple=True, metavar="MODULE:FUNCTION",
              help="Extra metric, a function (pred, gt, spacing) -> float given as package.module:function "
                   "or path/to/file.py:function (repeatable); its column is named after the function.")
@click.option("--orientation", type=click.Choice(ORIENTATIONS), default=None,
              help="Array orientation (default: canonical; he2024-vista: as-stored).")
@click.option("--save-predictions", is_flag=True, help="Keep every round's 3D prediction (predictions/*.npz).")
@click.option("--limit", type=int, default=None, help="Only the first N cases.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run cases on this machine or on a Ray cluster (one Ray task per case).")
@click.option("--address", default=None, help="Ray cluster address (default: a running session or a new local one).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (local) or Ray actors, each holding one model [default: 1 locally, "
                   "one per device with --devices, the cluster's room with Ray].")
@click.option("--devices", default=None,
              help="Local devices, one worker each, e.g. cuda:0,cuda:1 (given to the model as device=).")
@click.option("--gpus-per-case", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPUs each Ray worker reserves (0.5: two workers share a GPU).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Extra attempts of a case whose worker died (killed, crashed, node lost).")
@click.option("--case-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a case may run; a slower one is stopped and recorded in errors.jsonl.")
@click.option("--no-memory-check", is_flag=True,
              help="Run cases even when their memory estimate exceeds the memory available.")
@click.option("--verify-data", is_flag=True,
              help="Record a sha256 of every input file (not only size and mtime) and compare it on reruns.")
@click.option("--allow-changed-data", is_flag=True,
              help="On a rerun, recompute the cases whose input files changed instead of refusing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def run(ctx: click.Context, data, layout, data_root, split, label_names, model, model_args, checkpoint,
        protocols, protocol_args, settings, labels, seed, nsd_tolerance, no_surface_metrics, metrics, orientation,
        save_predictions, limit, out, executor, address, workers, devices, gpus_per_case, retries,
        case_timeout, no_memory_check, verify_data, allow_changed_data, quiet) -> None:
    """Run PROTOCOL(s) with MODEL on every case of a dataset into a resumable results folder."""
    from annosim.config import make_spec
    from annosim.engine.driver import run_benchmark

    margs = parse_key_values(model_args, "--model-arg")
    if checkpoint:
        margs["checkpoint"] = str(Path(checkpoint).expanduser().resolve())
    spec = make_spec(
        data, out,
        layout=layout, data_root=data_root, split=split, label_names=label_names, labels=csv_list(labels),
        limit=limit, verify_data=verify_data, allow_changed_data=allow_changed_data,
        model=model, model_args=margs,
        protocols=csv_list(protocols) or ("he2024",),
        protocol_args=parse_key_values(protocol_args, "--protocol-arg"),
        settings=csv_list(settings) or (),
        seed=seed, nsd_tolerance=nsd_tolerance, surface_metrics=not no_surface_metrics, metrics=tuple(metrics),
        orientation=orientation, save_predictions=save_predictions,
        executor=executor, address=address, workers=workers, devices=csv_list(devices) or (),
        gpus_per_case=gpus_per_case, retries=retries, case_timeout=case_timeout, memory_check=not no_memory_check,
    )
    report = run_benchmark(spec, progress=False if quiet else None, echo=click.echo)
    ctx.exit(report.exit_code)
