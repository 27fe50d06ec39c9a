"""`conveyor worker`: run jobs in this process, or in N processes under a small supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import click
import psycopg

from conveyor.app import Conveyor
from conveyor.cli_context import load_app
from conveyor.cli_database import diagnose
from conveyor.errors import ConveyorError
from conveyor.http_auth import Credentials

_CHILD_ENV = "CONVEYOR_WORKER_CHILD"
#: Which of --processes N a child is (0..N-1): its metrics port is --metrics-port + this.
_INDEX_ENV = "CONVEYOR_WORKER_INDEX"


@click.command()
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
