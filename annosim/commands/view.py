"""``annosim view``: the replay viewer of a run that kept its predictions."""

from __future__ import annotations

from pathlib import Path

import click

from annosim.errors import ConfigError
from annosim.files import check_out_folder
from annosim.schema import SETTINGS


def _settings(text: str | None) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))
    bad = [s for s in out if s not in SETTINGS]
    if bad:
        raise ConfigError(f"--setting {', '.join(bad)}: expected {' or '.join(SETTINGS)} (comma-separated for both)")
    return out


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=True),
              help="FILE.html for one object, or a folder for one page per object (plus index.html).")
@click.option("--case", default=None, help="Case id.")
@click.option("--structure", default=None, help="Structure name or label value.")
@click.option("--setting", "setting", default=None,
              help="full, fg-only, or full,fg-only to set both settings side by side (one run).")
@click.option("--protocol", default=None, help="Protocol name.")
def view(run_dirs: tuple[str, ...], out: str, case: str | None, structure: str | None, setting: str | None,
         protocol: str | None) -> None:
    """Self-contained HTML replay of objects of RUN_DIRS (one pane per run, linked slider).

    Needs the runs' predictions (annosim run --save-predictions) and their datasets readable.
    """
    from annosim.report.viewer import Selection, write_views

    target = Path(out)
    check_out_folder(str(target.parent) if target.suffix.lower() == ".html" else out, "--out")
    written = write_views([Path(d) for d in run_dirs], target,
                          Selection(case=case, structure=structure, settings=_settings(setting), protocol=protocol))
    for p in written:
        click.echo(f"viewer: {p}")
