"""`conveyor cron list/add/remove`: every cron schedule with its last and next run; schedules
stored in the database for HTTP endpoints."""

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


@cron.command("add")
@click.argument("name")
@click.argument("expression", metavar="CRON")
@click.option("--endpoint", required=True, help="The HTTP endpoint to POST a job to each time.")
@click.option("--timezone", default="UTC", show_default=True, help="An IANA time zone.")
@click.option(
    "--catch-up",
    type=click.Choice(["skip", "once"]),
    default="skip",
    show_default=True,
    help="Times missed while no worker ran: drop them, or deliver once for the latest.",
)
@click.pass_context
def cron_add(
    ctx: click.Context, name: str, expression: str, endpoint: str, timezone: str, catch_up: str
) -> None:
    """Store schedule NAME: at every time of CRON (e.g. "*/5 * * * *") POST a job to an
    endpoint. Every worker runs it, `conveyor deliver` included; no app module needed."""
    app_from(ctx).client().add_cron_schedule(
        name, expression, endpoint=endpoint, timezone=timezone, catch_up=catch_up
    )
    click.echo(f"added cron schedule {name}: {expression} {timezone} -> endpoint {endpoint}")


@cron.command("remove")
@click.argument("name")
@click.pass_context
def cron_remove(ctx: click.Context, name: str) -> None:
    """Forget schedule NAME (an app's comes back when its workers start)."""
    app_from(ctx).client().remove_cron_schedule(name)
    click.echo(f"removed cron schedule {name}")
