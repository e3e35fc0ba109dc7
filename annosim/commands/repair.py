"""``annosim repair RUN_DIR``: rebuild a results folder's journal from its complete units."""

from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
def repair(run_dir: str) -> None:
    """Rebuild units.jsonl of RUN_DIR from the complete units of rounds.csv and prompts.jsonl
    (the data files are cut back to them; the last unit is recomputed by the next run unless the
    old journal confirms it), or move the folder aside when that is impossible and say where."""
    from annosim.results import repair as repair_folder

    click.echo(f"annosim: {repair_folder(run_dir)}")
