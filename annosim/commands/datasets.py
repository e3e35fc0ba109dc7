"""``annosim datasets``: look at a dataset before benchmarking on it."""

from __future__ import annotations

import json

import click

from annosim.data.inspect import case_summary, format_summary, missing_files
from annosim.data.layouts import LAYOUTS, open_dataset
from annosim.data.orientation import ORIENTATIONS
from annosim.errors import AnnosimError, InputError


@click.group()
def datasets() -> None:
    """Dataset tools."""


@datasets.command("inspect")
@click.argument("spec")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None, help="Force the layout (default: detected).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Folder the datalist/CSV paths are relative to (default: the file's folder).")
@click.option("--split", default=None, help="training, testing, fold:K ... (default: testing when present).")
@click.option("--label-names", default=None, help='Names: JSON text, a JSON file, or "1=liver,2=tumour".')
@click.option("--orientation", type=click.Choice(ORIENTATIONS), default="canonical", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per case instead of text.")
@click.pass_context
def inspect(
    ctx: click.Context,
    spec: str,
    layout: str | None,
    data_root: str | None,
    split: str | None,
    label_names: str | None,
    orientation: str,
    as_json: bool,
) -> None:
    """Print every case of SPEC: shape, spacing, orientation, HU range, and per label present its
    name, voxel count and slice extent (first/last slice along Z, number of slices holding it).

    SPEC is an MSD or nnU-Net folder, a datalist .json, a .csv manifest, or "IMAGE LABEL".
    Missing files are summarised first (how many, under which folder, the first few); a case
    that cannot be read is reported on stderr and the others are still shown; the exit status
    is then 2.
    """
    ds = open_dataset(spec, layout=layout, data_root=data_root, split=split, label_names=label_names)
    info = ds.describe()
    if not as_json:
        click.echo(
            f"dataset {info['name']}: layout {info['layout']}, split {info['split'] or '-'}, "
            f"{info['n_cases']} case(s), root {info['root']}"
        )
    failed = 0
    debug = bool(ctx.find_root().obj and ctx.find_root().obj.get("debug"))
    absent, lines = missing_files(list(ds))
    for line in lines:
        click.echo(f"annosim: {line}", err=True)
    failed += len(absent)
    for ref in ds:
        if ref.case_id in absent:
            continue
        try:
            case = ref.load(orientation)
        except AnnosimError as exc:
            if debug:
                raise
            failed += 1
            click.echo(f"annosim: error: case {ref.case_id}: {exc}", err=True)
            continue
        summary = case_summary(case)
        click.echo(json.dumps(summary) if as_json else format_summary(summary))
    if failed:
        # An AnnosimError: one more line on stderr and exit status 2 (see annosim.cli.main).
        raise InputError(None, f"{failed} of {len(ds)} case(s) could not be read")
