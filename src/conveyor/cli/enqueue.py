"""`conveyor enqueue TASK`: enqueue a job by task name, with or without the app that defines it."""

from __future__ import annotations

import json
from typing import Any

import click

from conveyor import JobSpec, codec
from conveyor.app import Conveyor
from conveyor.cli.context import app_from
from conveyor.correlation import validate as validate_correlation_id
from conveyor.errors import DatabaseUnavailableError


@click.command()
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
    app = app_from(ctx)
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": delay,
        "unique_key": unique_key,
        "max_attempts": max_attempts,
        "correlation_id": correlation_id,
    }
    if ctx.obj.get("app"):
        spec = app.get_task(task).with_options(**options).spec(**args)
    else:
        spec = _spec_by_name(app, task, args, options)
    try:
        (job_id,) = app.enqueue_many([spec])
    except DatabaseUnavailableError as exc:
        # The enqueue's own message says that nothing was written; the root group would
        # replace it with the diagnosis of the connection, which does not.
        raise click.ClickException(str(exc)) from None
    click.echo(job_id)


def _spec_by_name(
    app: Conveyor, task: str, args: dict[str, Any], options: dict[str, Any]
) -> JobSpec:
    """A job of a task this process does not know: only what the command line says."""
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
