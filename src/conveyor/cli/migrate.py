"""`conveyor migrate`: create or upgrade the conveyor schema."""

from __future__ import annotations

import click

from conveyor.cli.context import app_from


@click.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the conveyor schema (safe to run twice, or concurrently)."""
    applied = app_from(ctx).migrate()
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("schema is up to date")
