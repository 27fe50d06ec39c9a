"""`conveyor alerts …`: the alert episodes the elected worker recorded."""

from __future__ import annotations

import json
from datetime import UTC

import click

from conveyor.cli.context import app_from


@click.group()
def alerts() -> None:
    """Alert episodes (rules are declared on the app: docs/alerts.md)."""


@alerts.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only pending and firing episodes.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=1), help="Most episodes."
)
@click.option("--json", "as_json", is_flag=True, help="Every field of every episode, as JSON.")
@click.pass_context
def alerts_list(ctx: click.Context, open_only: bool, limit: int, as_json: bool) -> None:
    """Open episodes first (pending, firing), then the latest resolved."""
    found = app_from(ctx).client().alert_episodes(open_only=open_only, limit=limit)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in found], indent=2, default=str))
        return
    if not found:
        click.echo("no alert episodes" + (" open" if open_only else ""))
        return
    for e in found:
        value = "" if e.last_value is None else f" value={e.last_value:g}"
        times = f"since {e.pending_since.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        if e.fired_at is not None:
            times += f", fired {e.fired_at.astimezone(UTC):%H:%M:%S}"
        if e.resolved_at is not None:
            times += f", resolved {e.resolved_at.astimezone(UTC):%H:%M:%S}"
        click.echo(f"{e.state:<9} {e.rule} [{e.subject}]{value} ({times} UTC)")
