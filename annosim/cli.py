"""The ``annosim`` command line: one group, one module of subcommands per concern.

Errors derived from :class:`annosim.errors.AnnosimError` are printed as one line (no traceback
unless ``--debug``) and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from annosim import __version__
from annosim.errors import AnnosimError, RunInterrupted

#: (module under annosim.commands, attribute) of every subcommand, in help order.
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("demo", "demo"),
    ("run", "run"),
    ("experiment", "experiment"),
    ("experiment", "reproduce"),
    ("datasets", "datasets"),
    ("protocols", "protocols"),
    ("models", "models"),
    ("report", "report"),
    ("compare", "compare"),
    ("view", "view"),
    ("score", "score"),
    ("repair", "repair"),
)


class _Group(click.Group):
    """Loads subcommand modules lazily so that ``annosim --help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [attr for _, attr in _COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module, attr in _COMMANDS:
            if attr == cmd_name:
                try:
                    mod = importlib.import_module(f"annosim.commands.{module}")
                except ModuleNotFoundError as exc:
                    if exc.name == f"annosim.commands.{module}":
                        return None
                    raise
                return getattr(mod, attr, None)
        return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="annosim")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Benchmark interactive 3D segmentation models on CT by simulating the annotator."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        # With standalone_mode=False click returns ctx.exit()'s code instead of raising.
        status = cli.main(args=args, prog_name="annosim", standalone_mode=False)
        if isinstance(status, int):
            return status
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C outside a run's unit loop (see RunInterrupted)
        click.echo("annosim: interrupted (Ctrl-C); a run keeps the units it saved: rerun the same command "
                   "to resume", err=True)
        return 130
    except RunInterrupted as exc:
        click.echo(f"annosim: {exc}", err=True)
        return 130
    except AnnosimError as exc:
        if debug:
            raise
        click.echo(f"annosim: error: {exc}", err=True)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
