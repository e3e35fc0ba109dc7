"""``annosim experiment run|plan|show`` and ``annosim reproduce``: experiment files and built-in recipes."""

from __future__ import annotations

from pathlib import Path

import click

from annosim.commands.run import csv_list
from annosim.params import parse_key_values


def execution_options(func):
    """Where units run, as ``annosim run`` takes it (see :class:`annosim.config.ExecutionSpec`)."""
    for opt in reversed([
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Run cases on this machine or on a Ray cluster."),
        click.option("--address", default=None, help="Ray cluster address."),
        click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes or Ray actors."),
        click.option("--devices", default=None, help="Local devices, one worker each, e.g. cuda:0,cuda:1."),
        click.option("--gpus-per-case", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="GPUs each Ray worker reserves."),
        click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
                     help="Extra attempts of a case whose worker died."),
        click.option("--case-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds a case may run."),
        click.option("--no-memory-check", is_flag=True, help="Run cases whose memory estimate exceeds what is free."),
    ]):
        func = opt(func)
    return func


def _execution(executor, address, workers, devices, gpus_per_case, retries, case_timeout, no_memory_check):
    from annosim.config import ExecutionSpec

    return ExecutionSpec(executor=executor, address=address, workers=workers, devices=csv_list(devices) or (),
                         gpus_per_case=gpus_per_case, retries=retries, case_timeout=case_timeout,
                         memory_check=not no_memory_check)


def _data_root(path: str) -> Path:
    from annosim.errors import ConfigError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--data-root {path}: folder not found")
    return root.resolve()


def _select(exp, datasets: str | None, model: str | None, checkpoint: str | None, model_args: tuple[str, ...]):
    from annosim.experiments.locate import with_checkpoint, with_datasets, with_model

    args = parse_key_values(model_args, "--model-arg")
    if model:
        exp = with_model(exp, model, checkpoint, args)
    elif checkpoint or args:
        exp = with_checkpoint(exp, checkpoint, args)
    names = csv_list(datasets)
    return with_datasets(exp, names) if names else exp


def _run(ctx, exp, data_root, out, ex, quiet, no_qc) -> None:
    from annosim.experiments.runner import run_experiment

    result = run_experiment(exp, _data_root(data_root), Path(out), ex, progress=False if quiet else None,
                            qc=False if no_qc else None, echo=click.echo)
    for line in result.missing:
        click.echo(f"missing: {line}")
    ctx.exit(result.exit_code)


_SELECT = [
    click.option("--datasets", default=None, help="Only these datasets of the file (names, comma-separated)."),
    click.option("--model", default=None, help="Replace the file's models by this one (e.g. classical)."),
    click.option("--checkpoint", default=None, type=click.Path(), help="Local weights of the model."),
    click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
                 help="Constructor argument of the model (repeatable)."),
]


def select_options(func):
    for opt in reversed(_SELECT):
        func = opt(func)
    return func


@click.group()
def experiment() -> None:
    """Experiment files: datasets x models x protocols and the report, in one TOML file."""


@experiment.command("run")
@click.argument("file")
@click.option("--data-root", required=True, help="Folder holding the datasets under their usual names.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the results tree and report.")
@select_options
@execution_options
@click.option("--no-qc", is_flag=True, help="No QC images in the report.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def run(ctx, file, data_root, out, datasets, model, checkpoint, model_args, executor, address, workers, devices,
        gpus_per_case, retries, case_timeout, no_memory_check, no_qc, quiet) -> None:
    """Run every dataset x model x protocol of FILE (a path, or a built-in recipe name) and write the report."""
    from annosim.experiments.spec import load_experiment

    exp = _select(load_experiment(file), datasets, model, checkpoint, model_args)
    ex = _execution(executor, address, workers, devices, gpus_per_case, retries, case_timeout, no_memory_check)
    _run(ctx, exp, data_root, out, ex, quiet, no_qc)


@experiment.command("plan")
@click.argument("file")
@click.option("--data-root", required=True, help="Folder holding the datasets under their usual names.")
@select_options
@click.option("--probe", is_flag=True, help="Time one object of each dataset's first case (runs the model).")
def plan(file, data_root, datasets, model, checkpoint, model_args, probe) -> None:
    """Print what `experiment run` would do: cases found and missing, structures, models' needs, units, estimates."""
    from annosim.experiments.runner import plan_experiment
    from annosim.experiments.spec import load_experiment

    exp = _select(load_experiment(file), datasets, model, checkpoint, model_args)
    click.echo(plan_experiment(exp, _data_root(data_root), probe=probe))


@experiment.command("show")
@click.argument("name")
def show(name) -> None:
    """Print the built-in recipe NAME (he2024, cvpr25) as an experiment file to copy and edit."""
    from annosim.experiments.spec import recipe_text

    click.echo(recipe_text(name), nl=False)


@click.command()
@click.argument("name")
@click.option("--data-root", required=True, help="Folder holding the datasets under their usual names.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of the results tree and report.")
@select_options
@execution_options
@click.option("--no-qc", is_flag=True, help="No QC images in the report.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def reproduce(ctx, name, data_root, out, datasets, model, checkpoint, model_args, executor, address, workers,
              devices, gpus_per_case, retries, case_timeout, no_memory_check, no_qc, quiet) -> None:
    """Run the built-in recipe NAME (he2024: He et al. 2024; cvpr25) on the datasets under --data-root."""
    from annosim.experiments.spec import parse_experiment, recipe_text

    exp = _select(parse_experiment(recipe_text(name), f"recipe {name}"), datasets, model, checkpoint, model_args)
    ex = _execution(executor, address, workers, devices, gpus_per_case, retries, case_timeout, no_memory_check)
    _run(ctx, exp, data_root, out, ex, quiet, no_qc)
