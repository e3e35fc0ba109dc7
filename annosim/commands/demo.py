"""``annosim demo``: the whole pipeline on built-in data, on a CPU, with no weights."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", default="annosim-demo", show_default=True, type=click.Path(file_okay=False),
              help="Results folder.")
@click.option("--model", default="classical", show_default=True, help="Model to run (see annosim models).")
@click.option("--protocol", default="he2024", show_default=True, help="Protocol (see annosim protocols).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def demo(ctx: click.Context, out: str, model: str, protocol: str, quiet: bool) -> None:
    """Run he2024 with the classical model on a built-in chest CT (CPU, no weights).

    The chest CT ships with the slicerio package; both settings run, and a results folder with
    an HTML report is written.
    """
    from annosim.demo_data import demo_spec
    from annosim.config import make_spec
    from annosim.engine.driver import run_benchmark

    out_dir = Path(out)
    click.echo(f"annosim demo: {protocol} with model {model!r} on slicerio's CTChest4 -> {out_dir}/")
    spec = make_spec(demo_spec(), out_dir, model=model, protocols=(protocol,), save_predictions=True)
    report = run_benchmark(spec, progress=False if quiet else None, echo=click.echo)
    html = _write_report(out_dir)
    if html is not None:
        click.echo(f"report: {html}")
    ctx.exit(report.exit_code)


def _write_report(run_dir: Path) -> Path | None:
    """The HTML report of the demo run (None when the report module is unavailable)."""
    try:
        from annosim.report.build import build_report
    except ImportError:
        return None
    return build_report([run_dir], run_dir / "report").html
