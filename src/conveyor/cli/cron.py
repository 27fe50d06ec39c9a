"""`conveyor cron list`: every cron schedule with its last and next run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from conveyor.cli.context import app_from


@click.group()
def cron() -> None:
    """Cron schedules."""


@cron.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cron_list(ctx: click.Context, as_json: bool) -> None:
    """Each schedule with its last and next run. Lists what workers recorded; with the global
    option (conveyor --app MODULE:APP cron list) it adds the app's schedules no worker has
    started yet."""
    schedules = app_from(ctx).client().cron_schedules()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in schedules], indent=2))
        return
    if not schedules:
        click.echo(
            "(no cron schedules: workers record them when they start; or run"
            " conveyor --app MODULE:APP cron list)"
        )
        return
    rows = [["schedule", "task", "cron", "catch-up", "last run", "next run"]]
    for s in schedules:
        last = "never"
        if s.last_slot is not None:
            last = f"{_local(s.last_slot, s.timezone)} (job {s.last_job_id}"
            last += f", {s.last_job_state})" if s.last_job_state else ", pruned)"
        upcoming = _local(s.next_slot, s.timezone) if s.next_slot else "never"
        if s.overdue:
            upcoming += " (overdue: no worker running it)"
        elif not s.registered:
            upcoming += " (no worker has started it yet)"
        rows.append([s.name, s.task, f"{s.cron} {s.timezone}", s.catch_up, last, upcoming])
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, row[-1]]))


def _local(instant: datetime, timezone: str) -> str:
    """`instant` on the schedule's wall clock, with the zone's abbreviation."""
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
