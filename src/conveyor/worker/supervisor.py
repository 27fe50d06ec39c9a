"""Runs a worker as operating-system processes: one worker in this process until SIGTERM or
SIGINT, or N child processes under a small supervisor that passes signals on and replaces a
child that dies.

`conveyor worker` parses and checks its options, then calls `run`. A child runs the same
command line again with CHILD_ENV set, so it loads and checks its app exactly as the first
process did; INDEX_ENV tells it which of the N it is (its metrics port is offset by it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from conveyor.app import Conveyor
from conveyor.errors import ConveyorError
from conveyor.worker.config import WorkerConfig
from conveyor.worker.worker import Worker

CHILD_ENV = "CONVEYOR_WORKER_CHILD"
#: Which of --processes N a child is (0..N-1): its metrics port is --metrics-port + this.
INDEX_ENV = "CONVEYOR_WORKER_INDEX"

_log = logging.getLogger("conveyor.worker")


def process_index() -> int:
    """Which of the supervisor's children this process is; 0 when it has no supervisor."""
    return int(os.environ.get(INDEX_ENV, "0"))


def run(
    app: Conveyor,
    config: WorkerConfig,
    *,
    processes: int,
    argv: Sequence[str],
    database_ready: bool,
) -> int:
    """Run the worker; return the exit status for the process.

    With more than one process asked for (and this not already a child), supervise that many
    children, each running `argv` (the command line after the program name) again. Otherwise
    run one worker here until a signal stops it. `database_ready` is whether the start-up
    connection worked: only then is it worth looking for jobs this worker will not run.
    """
    if processes > 1 and not os.environ.get(CHILD_ENV):
        return supervise(processes, argv)
    if database_ready and process_index() == 0:  # once per --processes group
        _warn_of_jobs_elsewhere(app, config.queues)
    code = asyncio.run(_run_until_signalled(Worker(app, config)))
    _exit_now_if_handlers_linger(code)
    return code


def supervise(processes: int, argv: Sequence[str]) -> int:
    """Run N worker processes; forward signals; restart a child that dies unexpectedly."""
    args = [sys.executable, "-m", "conveyor", *argv]
    env = {**os.environ, CHILD_ENV: "1"}

    # Children get their own session, so a terminal's Ctrl-C (sent to the whole foreground
    # group) reaches them once, through this supervisor, not twice (which means "exit now").
    def spawn(index: int) -> subprocess.Popen[bytes]:
        child_env = {**env, INDEX_ENV: str(index)}
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
                print(
                    f"worker process {child.pid} exited ({code}); starting another",
                    file=sys.stderr,
                    flush=True,
                )
                children[n] = spawn(n)
        time.sleep(0.5)


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
        _log.warning(
            "%d job(s) of task %r wait in queue %r, which this worker does not serve"
            " (--queues %s): a worker for that queue runs them",
            found.count,
            found.task,
            found.queue,
            ",".join(queues),
        )


async def _run_until_signalled(worker: Worker) -> int:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            _log.info(
                "%s: finishing running jobs (send again to exit at once)",
                signal.Signals(signum).name,
            )
            worker.stop()
        else:
            _log.warning("second signal: exiting at once")
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
        _log.warning(
            "%d sync handler(s) still blocked after shutdown; exiting without them", lingering
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
