"""`conveyor`: migrate, run workers, inspect and act on jobs, and a demo."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from conveyor import logs
from conveyor.app import Conveyor
from conveyor.cli_alerts import alerts
from conveyor.cli_context import CommandGroup, _app_from
from conveyor.cli_dashboard import dashboard
from conveyor.cli_jobs import cancel, jobs, retry
from conveyor.cli_queues import queue
from conveyor.cli_worker import worker
from conveyor.correlation import validate as validate_correlation_id
from conveyor.errors import ConveyorError
from conveyor.job import JobState
from conveyor.spec import JobSpec

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@click.group(cls=CommandGroup)
@click.option(
    "--database-url",
    envvar="CONVEYOR_DATABASE_URL",
    help="Postgres URL (default: an embedded Postgres under ./.conveyor/).",
)
@click.option(
    "--app",
    "app_target",
    metavar="MODULE:APP",
    help="Take the database URL, tasks and schedules from this app.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log records of this level and above go to stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    envvar="CONVEYOR_LOG_FORMAT",
    help="auto: readable on a terminal, one JSON object per line otherwise.",
)
@click.version_option(package_name="conveyor")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    app_target: str | None,
    log_level: str,
    log_format: logs.LogFormat,
) -> None:
    """Durable background jobs on Postgres."""
    logs.configure(log_level, log_format)
    if log_level == "DEBUG":  # then the embedded Postgres's own steps are wanted too
        logging.getLogger("pgserver").setLevel(logging.DEBUG)
    ctx.ensure_object(dict)
    ctx.obj.update(database_url=database_url, app=app_target)


@cli.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the conveyor schema (safe to run twice, or concurrently)."""
    applied = _app_from(ctx).migrate()
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("schema is up to date")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Jobs per queue and state, oldest available job, and tasks no live worker knows."""
    result = _app_from(ctx).client().status()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    states = [str(s) for s in JobState]
    click.echo(f"{'queue':<16}" + "".join(f"{s:>11}" for s in states) + f"{'oldest':>10}")
    for q in result.queues:
        age = "-" if q.oldest_available_seconds is None else f"{q.oldest_available_seconds:.0f}s"
        click.echo(f"{q.queue:<16}" + "".join(f"{q.counts[s]:>11}" for s in states) + f"{age:>10}")
    if not result.queues:
        click.echo("(no jobs)")
    click.echo(f"live workers: {len(result.live_workers)}")
    for o in result.orphaned:
        click.echo(
            f"warning: {o.count} job(s) of task {o.task!r} in queue {o.queue!r} wait for a"
            " worker that knows this task (none live has registered it)"
        )


@cli.command()
@click.argument("task")
@click.option("--args", "args_json", default="{}", show_default=True, help="JSON object.")
@click.option("--queue", help="The job's queue (default: the task's with --app, else 'default').")
@click.option("--priority", type=int, help="Higher runs first within a queue (default 0).")
@click.option("--delay", type=float, help="Seconds to wait before the job may run.")
@click.option("--unique-key", help="While a job with this key is unfinished, return its id.")
@click.option(
    "--max-attempts", type=click.IntRange(min=1), help="Attempts before the job fails for good."
)
@click.option("--correlation-id", help="Ties the job to what caused it; shown in its logs.")
@click.pass_context
def enqueue(
    ctx: click.Context,
    task: str,
    args_json: str,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    unique_key: str | None,
    max_attempts: int | None,
    correlation_id: str | None,
) -> None:
    """Enqueue a job of TASK by name and print its id.

    The task need not be importable here. With the global option conveyor --app MODULE:APP, it
    must be one of the app's tasks: its arguments are checked and its defaults (queue,
    priority, max attempts, timeout) apply."""
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--args is not valid JSON ({exc})") from None
    if not isinstance(args, dict):
        raise click.BadParameter(
            f"--args must be a JSON object of keyword arguments like '{{\"order_id\": 1}}',"
            f" got {type(args).__name__}"
        )
    app = _app_from(ctx)
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": delay,
        "unique_key": unique_key,
        "max_attempts": max_attempts,
        "correlation_id": correlation_id,
    }
    try:
        if ctx.obj.get("app"):
            spec = app.get_task(task).with_options(**options).spec(**args)
        else:
            spec = _spec_by_name(app, task, args, options)
        (job_id,) = app.enqueue_many([spec])
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(job_id)


def _spec_by_name(
    app: Conveyor, task: str, args: dict[str, Any], options: dict[str, Any]
) -> JobSpec:
    """A job of a task this process does not know: only what the command line says."""
    from conveyor import codec

    return JobSpec(
        task=task,
        args_json=codec.encode_args(args, max_bytes=app.max_payload_bytes),
        queue=options["queue"],
        priority=options["priority"],
        delay=options["delay"],
        unique_key=options["unique_key"],
        max_attempts=options["max_attempts"],
        correlation_id=validate_correlation_id(options["correlation_id"]),
    )


@cli.group()
def cron() -> None:
    """Cron schedules."""


@cron.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cron_list(ctx: click.Context, as_json: bool) -> None:
    """Each schedule with its last and next run. Lists what workers recorded; with the global
    option (conveyor --app MODULE:APP cron list) it adds the app's schedules no worker has
    started yet."""
    schedules = _app_from(ctx).client().cron_schedules()
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


@cli.command()
@click.option(
    "--orders",
    default=40,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Orders the shop places.",
)
@click.option(
    "--fail-rate",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of first attempts the e-mail provider fails (they are retried).",
)
def demo(orders: int, fail_rate: float) -> None:
    """A small shop: orders enqueue receipts transactionally, a worker drains them."""
    from conveyor.demo import run_demo

    sys.exit(run_demo(orders=orders, fail_rate=fail_rate))


def main() -> None:
    """Entry point of the `conveyor` command."""
    cli(obj={})


cli.add_command(worker)
cli.add_command(jobs)
cli.add_command(retry)
cli.add_command(cancel)
cli.add_command(queue)
cli.add_command(dashboard)
cli.add_command(alerts)
