"""`conveyor`: migrate, run workers, inspect and act on jobs, and a demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import psycopg

from conveyor import logs
from conveyor._store.enqueue import JobSpec
from conveyor.app import Conveyor
from conveyor.cli_alerts import alerts
from conveyor.cli_context import CommandGroup, _app_from, load_app
from conveyor.cli_dashboard import dashboard
from conveyor.cli_database import diagnose
from conveyor.cli_jobs import cancel, jobs, retry
from conveyor.cli_queues import queue
from conveyor.correlation import validate as validate_correlation_id
from conveyor.errors import ConveyorError
from conveyor.http_auth import Credentials
from conveyor.job import JobState

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_CHILD_ENV = "CONVEYOR_WORKER_CHILD"
#: Which of --processes N a child is (0..N-1): its metrics port is --metrics-port + this.
_INDEX_ENV = "CONVEYOR_WORKER_INDEX"


@click.group(cls=CommandGroup)
@click.option("--database-url", envvar="CONVEYOR_DATABASE_URL", help="Postgres URL.")
@click.option("--app", "app_target", metavar="MODULE:APP", help="Use this app's settings.")
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
@click.argument("target", metavar="MODULE:APP")
@click.option("--queues", default="default", show_default=True, help="Comma-separated queues.")
@click.option(
    "--concurrency",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs one process runs at once.",
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes to start under a supervisor.",
)
@click.option(
    "--shutdown-grace",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds running jobs get to finish after SIGTERM or SIGINT.",
)
@click.option(
    "--lease",
    "lease_seconds",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds a claimed job's lease lasts; renewed every third of it.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics at /metrics on this port (with --processes N, process i"
    " uses this port + i).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Where metrics listen; other than loopback only with a token or basic auth.",
)
@click.option("--metrics-token", envvar="CONVEYOR_METRICS_TOKEN", help="Bearer token to require.")
@click.option("--metrics-username", envvar="CONVEYOR_METRICS_USERNAME", help="Basic auth user.")
@click.option("--metrics-password", envvar="CONVEYOR_METRICS_PASSWORD", help="Basic auth password.")
@click.pass_context
@click.option(
    "--cron-interval",
    default=1.0,
    show_default=True,
    type=float,
    help="Seconds between looks for due cron slots.",
)
def worker(
    ctx: click.Context,
    target: str,
    queues: str,
    concurrency: int,
    processes: int,
    shutdown_grace: float,
    lease_seconds: float,
    cron_interval: float,
    metrics_port: int | None,
    metrics_host: str,
    metrics_token: str | None,
    metrics_username: str | None,
    metrics_password: str | None,
) -> None:
    """Run jobs of the app's tasks. SIGTERM/SIGINT: finish running jobs within the grace period
    and put the rest back; a second signal exits at once."""
    from conveyor.worker import Worker, WorkerConfig

    app = load_app(target)
    app.set_default_database_url(ctx.obj.get("database_url"))
    trouble = diagnose(app.database_url)
    if trouble is not None and trouble.lasting:
        # waiting cannot fix a wrong URL; a server that is down or full may come back, and the
        # worker waits for it with backoff
        raise click.ClickException(str(trouble))
    index = int(os.environ.get(_INDEX_ENV, "0"))
    try:
        credentials = Credentials(metrics_token, metrics_username, metrics_password)
        if metrics_port is not None and metrics_port > 0:
            metrics_port += index
        config = WorkerConfig.from_options(
            queues=queues,
            concurrency=concurrency,
            shutdown_grace=shutdown_grace,
            lease_seconds=lease_seconds,
            cron_interval=cron_interval,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            metrics_credentials=credentials if credentials.required else None,
        )
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    # The app, the options and the URL are checked before the supervisor starts any process:
    # a child that refused to start would be restarted, and refuse again, forever.
    if processes > 1 and not os.environ.get(_CHILD_ENV):
        sys.exit(_supervise(processes))
    if trouble is None and index == 0:  # once per --processes group
        _warn_of_jobs_elsewhere(app, config.queues)
    try:
        code = asyncio.run(_run_worker(Worker(app, config)))
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    _exit_now_if_handlers_linger(code)
    sys.exit(code)


def _warn_of_jobs_elsewhere(app: Conveyor, queues: tuple[str, ...]) -> None:
    """Warn of jobs of the app's tasks waiting in queues this worker does not serve: most often
    jobs enqueued from SQL without the task's queue, which wait in 'default'."""
    try:
        waiting = app.client().waiting_elsewhere(app.tasks, queues)
    except (ConveyorError, psycopg.Error):
        return  # the worker's own start-up check reports what is wrong
    finally:
        app.close()  # the worker opens pools of its own; this one would sit idle
    for found in waiting:
        logging.getLogger("conveyor.worker").warning(
            "%d job(s) of task %r wait in queue %r, which this worker does not serve"
            " (--queues %s): a worker for that queue runs them",
            found.count,
            found.task,
            found.queue,
            ",".join(queues),
        )


async def _run_worker(worker: Any) -> int:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            logging.getLogger("conveyor.worker").info(
                "%s: finishing running jobs (send again to exit at once)",
                signal.Signals(signum).name,
            )
            worker.stop()
        else:
            logging.getLogger("conveyor.worker").warning("second signal: exiting at once")
            os._exit(130)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await worker.run()
    return 70 if worker.broken else 0


def _exit_now_if_handlers_linger(code: int) -> None:
    """End the process at once when sync handlers outlived the shutdown.

    Their jobs are already back in their queues, but Python joins pool threads at exit, so a
    handler blocked in a call nothing can interrupt (a socket read, time.sleep) would keep the
    process alive long past the grace period, still doing work another worker may now redo.
    """
    deadline = time.monotonic() + 1.0
    lingering = 0
    for thread in threading.enumerate():
        if thread.name.startswith("conveyor-job"):  # the worker's handler threads
            thread.join(max(0.0, deadline - time.monotonic()))
            lingering += thread.is_alive()
    if lingering:
        logging.getLogger("conveyor.worker").warning(
            "%d sync handler(s) still blocked after shutdown; exiting without them", lingering
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(processes: int) -> int:
    """Run N worker processes; forward signals; restart a child that dies unexpectedly."""
    args = [sys.executable, "-m", "conveyor", *sys.argv[1:]]
    env = {**os.environ, _CHILD_ENV: "1"}

    # Children get their own session, so a terminal's Ctrl-C (sent to the whole foreground
    # group) reaches them once, through this supervisor, not twice (which means "exit now").
    def spawn(index: int) -> subprocess.Popen[bytes]:
        child_env = {**env, _INDEX_ENV: str(index)}
        return subprocess.Popen(args, env=child_env, start_new_session=True)

    children = [spawn(n) for n in range(processes)]
    state = {"signals": 0}

    def forward(signum: int, _frame: Any) -> None:
        state["signals"] += 1
        for child in children:
            if child.poll() is None:
                child.send_signal(signum if state["signals"] == 1 else signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        if state["signals"]:
            codes = [child.wait() for child in children]
            return max(codes, default=0) if any(codes) else 0
        for n, child in enumerate(children):
            code = child.poll()
            if code is not None and not state["signals"]:
                click.echo(
                    f"worker process {child.pid} exited ({code}); starting another", err=True
                )
                children[n] = spawn(n)
        time.sleep(0.5)


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


cli.add_command(jobs)
cli.add_command(retry)
cli.add_command(cancel)
cli.add_command(queue)
cli.add_command(dashboard)
cli.add_command(alerts)
