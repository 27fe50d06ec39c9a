"""`conveyor worker` and `conveyor deliver`: run jobs (or only deliveries to HTTP endpoints) in
this process, or in N processes under a supervisor (conveyor.worker.supervisor); this module
parses and checks the options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from conveyor import database
from conveyor.app import Conveyor
from conveyor.cli.context import load_app
from conveyor.http_auth import Credentials

_OPTIONS = [
    click.option("--queues", default="default", show_default=True, help="Comma-separated queues."),
    click.option(
        "--concurrency",
        default=10,
        show_default=True,
        type=click.IntRange(min=1),
        help="Jobs one process runs at once.",
    ),
    click.option(
        "--processes",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="Worker processes to start under a supervisor.",
    ),
    click.option(
        "--shutdown-grace",
        default=30.0,
        show_default=True,
        type=float,
        help="Seconds running jobs get to finish after SIGTERM or SIGINT.",
    ),
    click.option(
        "--lease",
        "lease_seconds",
        default=30.0,
        show_default=True,
        type=float,
        help="Seconds a claimed job's lease lasts; renewed every third of it.",
    ),
    click.option(
        "--allow-network",
        "allow_networks",
        multiple=True,
        metavar="CIDR",
        help="Let deliveries reach this non-public network (e.g. 10.0.0.0/8); repeat for more."
        " CONVEYOR_ALLOW_NETWORKS (comma-separated) adds more.",
    ),
    click.option(
        "--http2/--no-http2",
        default=True,
        show_default=True,
        help="Offer HTTP/2 to https routes (the server picks); --no-http2 sends them over"
        " HTTP/1.1, which costs less worker CPU per delivery.",
    ),
    click.option(
        "--ca-file",
        envvar="CONVEYOR_DELIVERY_CA_FILE",
        type=click.Path(exists=True, dir_okay=False),
        help="PEM file of CA certificates https deliveries trust besides the system's.",
    ),
    click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve Prometheus metrics at /metrics on this port (with --processes N, process i"
        " uses this port + i).",
    ),
    click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="Where metrics listen; other than loopback only with a token or basic auth.",
    ),
    click.option(
        "--metrics-token", envvar="CONVEYOR_METRICS_TOKEN", help="Bearer token to require."
    ),
    click.option("--metrics-username", envvar="CONVEYOR_METRICS_USERNAME", help="Basic auth user."),
    click.option(
        "--metrics-password", envvar="CONVEYOR_METRICS_PASSWORD", help="Basic auth password."
    ),
    click.option(
        "--pgbouncer/--no-pgbouncer",
        default=None,
        help="The database URL goes through PgBouncer in transaction mode: no server-side"
        " prepared statements, LISTEN only on --listen-url. CONVEYOR_PGBOUNCER=1 when not given.",
    ),
    click.option(
        "--listen-url",
        metavar="URL",
        help="A direct URL (around the pooler) to LISTEN on for new jobs; behind PgBouncer"
        " without it the worker polls. CONVEYOR_LISTEN_URL when not given.",
    ),
    click.option(
        "--pickup-poll-interval",
        default=0.2,
        show_default=True,
        type=float,
        help="Seconds between looks for new jobs when polling replaces LISTEN (PgBouncer"
        " without --listen-url).",
    ),
    click.option(
        "--health-stall",
        "health_stall_seconds",
        default=10.0,
        show_default=True,
        type=float,
        help="/healthz (on the metrics port) fails once the event loop has not turned for this"
        " many seconds.",
    ),
    click.option(
        "--health-database",
        "health_database_seconds",
        default=60.0,
        show_default=True,
        type=float,
        help="/healthz fails once the database has not answered for this many seconds.",
    ),
    click.option(
        "--durable-transitions/--relaxed-transitions",
        default=None,
        help="Whether the worker's own claims, completions, failures and lease renewals wait"
        " for their WAL flush (durable, the default). --relaxed-transitions: faster; a Postgres"
        " crash can lose the last moments of them, and those jobs run again (docs/worker.md)."
        " CONVEYOR_RELAXED_TRANSITIONS=1 when not given.",
    ),
    click.option(
        "--cron-interval",
        default=1.0,
        show_default=True,
        type=float,
        help="Seconds between looks for due cron slots.",
    ),
]


def _worker_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@click.command()
@click.argument("target", metavar="MODULE:APP")
@_worker_options
@click.pass_context
def worker(ctx: click.Context, /, target: str, **options: Any) -> None:
    """Run jobs of the app's tasks, and deliver the jobs of HTTP endpoints in its queues.
    SIGTERM/SIGINT: finish running jobs within the grace period and put the rest back; a
    second signal exits at once."""
    _run(ctx, load_app(target), **options)


@click.command()
@_worker_options
@click.pass_context
def deliver(ctx: click.Context, /, **options: Any) -> None:
    """Deliver the jobs of HTTP endpoints (conveyor endpoint add) in these queues: a worker
    that needs no application module. Private addresses are refused unless --allow-network
    names them. Signals as for `conveyor worker`."""
    _run(ctx, Conveyor(), **options)


def _run(
    ctx: click.Context,
    app: Conveyor,
    *,
    queues: str,
    concurrency: int,
    processes: int,
    shutdown_grace: float,
    lease_seconds: float,
    allow_networks: tuple[str, ...],
    http2: bool,
    ca_file: str | None,
    cron_interval: float,
    durable_transitions: bool | None,
    pgbouncer: bool | None,
    listen_url: str | None,
    pickup_poll_interval: float,
    health_stall_seconds: float,
    health_database_seconds: float,
    metrics_port: int | None,
    metrics_host: str,
    metrics_token: str | None,
    metrics_username: str | None,
    metrics_password: str | None,
) -> None:
    # The worker runtime (prometheus, alerter, cron, the HTTP client) loads only when a worker
    # is to run.
    from conveyor.worker import WorkerConfig, supervisor

    app.set_default_database_url(ctx.obj.get("database_url"))
    app.set_pooler(pgbouncer=pgbouncer, listen_url=listen_url)
    _ = app.pgbouncer  # a bad CONVEYOR_PGBOUNCER is refused here, before any process starts
    trouble = database.diagnose(app.database_url)
    if trouble is not None and trouble.lasting:
        # waiting cannot fix a wrong URL; a server that is down or full may come back, and the
        # worker waits for it with backoff
        raise click.ClickException(str(trouble))
    credentials = Credentials(metrics_token, metrics_username, metrics_password)
    if metrics_port is not None and metrics_port > 0:
        metrics_port += supervisor.process_index()
    config = WorkerConfig.from_options(
        queues=queues,
        concurrency=concurrency,
        shutdown_grace=shutdown_grace,
        lease_seconds=lease_seconds,
        cron_interval=cron_interval,
        durable_transitions=durable_transitions,
        pickup_poll_interval=pickup_poll_interval,
        health_stall_seconds=health_stall_seconds,
        health_database_seconds=health_database_seconds,
        allow_networks=allow_networks,
        http2=http2,
        ca_file=ca_file,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        metrics_credentials=credentials if credentials.required else None,
    )
    # The app, the options and the URL are checked before the supervisor starts any process:
    # a child that refused to start would be restarted, and refuse again, forever.
    sys.exit(
        supervisor.run(
            app,
            config,
            processes=processes,
            argv=sys.argv[1:],
            database_ready=trouble is None,
        )
    )
