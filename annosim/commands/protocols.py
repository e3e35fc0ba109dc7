"""``annosim protocols``: the registered protocols, what each does and which ground-truth
information (oracle) it uses."""

from __future__ import annotations

import json
from typing import Any

import click


def protocol_table() -> list[dict[str, Any]]:
    """One dict per registered protocol: name, summary, uses_gt, source, prompt kinds, maximum
    rounds, native metrics (the source's own, beside annosim's common ones) and default params."""
    from annosim.protocols.registry import list_protocols

    rows = []
    for entry in list_protocols():
        proto = entry.build({})
        rows.append(
            {
                "name": entry.name,
                "summary": entry.summary,
                "uses_gt": entry.uses_gt,
                "source": entry.source,
                "prompts": list(proto.prompt_kinds),
                "max_rounds": proto.max_rounds,
                "native_metrics": list(proto.native_metrics),
                "native_object_metrics": list(proto.native_object_metrics),
                "params": proto.describe().get("params", {}),
            }
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per protocol instead of text.")
def protocols(as_json: bool) -> None:
    """List protocols (--protocol NAME; parameters with --protocol-arg key=value)."""
    rows = protocol_table()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    width = max(len(r["name"]) for r in rows) + 2
    pad = " " * width
    for r in rows:
        click.echo(f"{r['name']:<{width}}{r['summary']}")
        click.echo(f"{pad}uses truth: {r['uses_gt']}")
        click.echo(f"{pad}prompts: {', '.join(r['prompts'])}; up to {r['max_rounds']} round(s)")
        metrics = ", ".join(["annosim's common metrics", *r["native_metrics"], *r["native_object_metrics"]])
        click.echo(f"{pad}metrics: {metrics}")
        if r["params"]:
            values = ", ".join(f"{k}={v}" for k, v in r["params"].items())
            click.echo(f"{pad}parameters: {values}")
        click.echo(f"{pad}source: {r['source']}")
