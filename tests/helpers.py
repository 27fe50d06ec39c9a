"""Helpers shared by the tests: fast worker settings, polling with a deadline, the test
database's URLs and sessions, and the real components a test needs."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

import conveyor


def end_other_sessions(conn: psycopg.Connection[Any]) -> None:
    """Terminate every other session on `conn`'s database and wait until they are gone, so
    what a previous test leaked (a worker's leader lock, a transaction holding row locks)
    cannot reach into the next one."""
    conn.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
    )


def in_ci() -> bool:
    """True under CI (CI=true), where .ci/run installs every component the tests drive."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def component_missing(reason: str) -> NoReturn:
    """A real component the test drives is absent: fail under CI, where a skip would hide
    that the component is no longer tested; skip elsewhere, with `reason`."""
    if in_ci():
        pytest.fail(f"{reason}; under CI=true this fails instead of skipping", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, hint: str) -> str:
    """The path of the command `name`; missing, see component_missing(). `hint` says how to
    install it."""
    path = shutil.which(name)
    if path is None:
        component_missing(f"{name} not found on PATH ({hint})")
    return path


def clean_tables(url: str) -> None:
    """End the database's other sessions, then empty every conveyor table (the schema
    stays)."""
    with psycopg.connect(url, autocommit=True) as conn:
        end_other_sessions(conn)
        conn.execute(
            "TRUNCATE conveyor.job, conveyor.job_done, conveyor.worker, conveyor.idempotency_key,"
            " conveyor.queue, conveyor.cron_schedule, conveyor.cron_slot, conveyor.flow_child,"
            " conveyor.alert_episode, conveyor.alert_notification, conveyor.alert_watermark,"
            " conveyor.endpoint, conveyor.workflow_runs, conveyor.workflow_steps,"
            " conveyor.workflow_events, conveyor.workflow_fanouts, conveyor.workflow_children,"
            " conveyor.leader, conveyor.api_token, conveyor.api_idempotency"
        )


def fast_config(**overrides: Any) -> conveyor.WorkerConfig:
    """Worker settings with short intervals, for tests."""
    options: dict[str, Any] = {
        "concurrency": 4,
        "poll_interval": 0.2,
        "promote_interval": 0.1,
        "rescue_interval": 0.2,
        "lease_seconds": 2.0,
        "shutdown_grace": 2.0,
    }
    options.update(overrides)
    return conveyor.WorkerConfig(**options)


@asynccontextmanager
async def running_worker(
    app: conveyor.Conveyor, config: conveyor.WorkerConfig | None = None
) -> AsyncIterator[conveyor.Worker]:
    """Run a worker in this event loop for the duration of the block."""
    worker = conveyor.Worker(app, config or fast_config())
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), 10)
        yield worker
    finally:
        worker.stop()
        # Shutdown bounds each of its waits; this only catches a worker that hangs anyway.
        _, running = await asyncio.wait([task], timeout=60)
        if running:
            where = io.StringIO()
            task.print_stack(file=where)
            task.cancel()
            raise AssertionError(f"the worker did not stop within 60 s:\n{where.getvalue()}")
        task.result()


#: How long a poll waits before it fails. A bound on failure, not a timing assertion: a
#: passing test returns as soon as its condition holds. 10 s ran out once for a worker's first
#: leader gauges while five suites shared the two cores (test_exposition_passes_promtool).
POLL_TIMEOUT = 30.0


async def eventually(
    condition: Callable[[], Any], *, timeout: float = POLL_TIMEOUT, interval: float = 0.02
) -> Any:
    """Poll `condition` (sync or async) until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_until(
    condition: Callable[[], Any], *, timeout: float = POLL_TIMEOUT, interval: float = 0.05
) -> Any:
    """Sync twin of eventually()."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def job_states(connection: psycopg.Connection[Any]) -> dict[str, int]:
    """Count of jobs per state."""
    rows = connection.execute("SELECT state, count(*) FROM conveyor.jobs GROUP BY state")
    return {state: count for state, count in rows}


#: npm's words for a registry it cannot reach (vs a failure of the install itself)
_NPM_UNREACHABLE = re.compile(
    r"\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH"
    r"|ERR_SOCKET_TIMEOUT)\b"
)


def npm_install(folder: Path, command: list[str], *, timeout: float) -> None:
    """Run an npm install command in `folder`; an unreachable registry is a missing component
    (a skip outside CI, a failure under CI=true), any other failure fails the test. Give it a
    timeout within the test's own, so an unreachable registry is reported as such."""
    name = " ".join(command[:2])
    try:
        installed = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        component_missing(f"{name} timed out: the npm registry is unreachable from here")
    if installed.returncode != 0:
        unreachable = _NPM_UNREACHABLE.search(installed.stderr)
        if unreachable:
            component_missing(f"the npm registry is unreachable from here ({unreachable.group()})")
        pytest.fail(f"{name} failed:\n{installed.stdout}\n{installed.stderr}")
