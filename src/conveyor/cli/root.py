"""The `conveyor` command: its global options, its commands, and the one place where an error a
command did not handle becomes one line and exit status 1."""

from __future__ import annotations

import logging

import click

from conveyor import database, logs
from conveyor.cli.alerts import alerts
from conveyor.cli.api import api, token
from conveyor.cli.cron import cron
from conveyor.cli.dashboard import dashboard
from conveyor.cli.demo import demo
from conveyor.cli.endpoint import endpoint
from conveyor.cli.enqueue import enqueue
from conveyor.cli.jobs import cancel, jobs, retry
from conveyor.cli.migrate import migrate
from conveyor.cli.queues import queue
from conveyor.cli.status import status
from conveyor.cli.worker import deliver, worker
from conveyor.cli.workflows import workflows
from conveyor.errors import ConveyorError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConveyorGroup(click.Group):
    """Turns errors a command did not handle into one line naming the cause and the fix: a
    database whose schema is older than this Conveyor (a missing table, column or function:
    run `conveyor migrate`), a database that cannot be reached or was lost mid-command, and
    any ConveyorError. Every subcommand runs inside this invoke, so commands raise and let it
    report."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = database.describe(exc)
            if message is None and isinstance(exc, ConveyorError):
                message = str(exc)
            if message is None:  # a bug, or click's own exits: click reports them
                raise
            raise click.ClickException(message) from None


@click.group(
    cls=ConveyorGroup,
    commands=[
        alerts,
        api,
        cancel,
        cron,
        dashboard,
        deliver,
        demo,
        endpoint,
        enqueue,
        jobs,
        migrate,
        queue,
        retry,
        status,
        token,
        worker,
        workflows,
    ],
)
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


def main() -> None:
    """Entry point of the `conveyor` command."""
    cli(obj={})
