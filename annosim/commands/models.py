"""``annosim models``: the built-in model names."""

from __future__ import annotations

import click


@click.command()
def models() -> None:
    """List built-in models (any path/to/file.py:Class or package.module:Class also works)."""
    from annosim.models.registry import BUILTINS

    width = max(len(n) for n in BUILTINS) + 2
    for name, m in BUILTINS.items():
        extra = f"  [extra: {m.extra}]" if m.extra else ""
        click.echo(f"{name:<{width}}{m.summary}{extra}")
