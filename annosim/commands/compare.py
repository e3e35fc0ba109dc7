"""``annosim compare``: paired comparison of two results folders (B - A)."""

from __future__ import annotations

import click

from annosim.files import check_out_folder
from annosim.report.compare import PAIR_BY


@click.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder for comparison.{csv,md,tex} and pairs.csv (default: print only).")
@click.option("--pair-by", type=click.Choice(PAIR_BY), default="name", show_default=True,
              help="Pair objects by case and structure name, or by case and label value.")
@click.option("--n-boot", type=click.IntRange(100), default=10000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
def compare(run_a: str, run_b: str, out: str | None, pair_by: str, n_boot: int, seed: int) -> None:
    """Paired comparison of two runs (B - A) on their common objects: best-of-rounds Dice,
    Wilcoxon signed-rank p-value and bootstrap CI of the mean difference, per structure, per
    setting and over all settings (each object's settings averaged first)."""
    if out is not None:
        check_out_folder(out, "--out")
    from annosim.report.compare import compare_runs
    from annosim.report.tables import comparison_display, to_markdown

    res = compare_runs(run_a, run_b, out, n_boot=n_boot, seed=seed, pair_by=pair_by)
    click.echo(to_markdown(comparison_display(res.table), res.notes), nl=False)
    if res.files:
        click.echo(f"written: {', '.join(str(p) for p in res.files.values())}")
