"""The app that acceptance tests run in real `conveyor worker` processes.

Tasks do what their arguments say. Every execution first writes a row to
acceptance.executions on its own connection, committed at once whatever becomes of the job, so
a test can count how often a job really ran, on which attempt and in which process. A job held
open with a `gate` runs until the test opens that gate (a row in acceptance.gates).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

from psycopg_pool import ConnectionPool

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS acceptance;
CREATE TABLE IF NOT EXISTS acceptance.executions (
    job_id  bigint      NOT NULL,
    attempt integer     NOT NULL,
    n       integer,
    pid     integer     NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS acceptance.gates (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS acceptance.effects (
    job_id   bigint      NOT NULL,
    n        integer     NOT NULL,
    pid      integer     NOT NULL
);
CREATE TABLE IF NOT EXISTS acceptance.spans (
    job_id   bigint      NOT NULL,
    tenant   text        NOT NULL,
    started  timestamptz NOT NULL,
    finished timestamptz NOT NULL
);
"""

_pool: ConnectionPool[Any] | None = None
_pool_lock = threading.Lock()


def _side_connection() -> Any:
    global _pool
    with _pool_lock:
        if _pool is None:
            # Not named conveyor-*: tests that cut the worker's connections leave this one be.
            _pool = ConnectionPool(
                app.database_url,
                min_size=1,
                max_size=4,
                kwargs={"autocommit": True, "application_name": "acceptance-side-effects"},
            )
    return _pool.connection()


def _note_execution(ctx: conveyor.JobContext, n: int | None = None) -> None:
    with _side_connection() as conn:
        conn.execute(
            "INSERT INTO acceptance.executions (job_id, attempt, n, pid) VALUES (%s, %s, %s, %s)",
            (ctx.job.id, ctx.attempt, n, os.getpid()),
        )


def _gate_open(gate: str) -> bool:
    if not gate:
        return False
    with _side_connection() as conn:
        row = conn.execute("SELECT 1 FROM acceptance.gates WHERE name = %s", (gate,)).fetchone()
    return row is not None


@app.task(name="record")
def record(n: int, ctx: conveyor.JobContext) -> int:
    """Note one execution and return `n`."""
    _note_execution(ctx, n)
    return n


@app.task(name="sleepy", max_attempts=3)
async def sleepy(seconds: float, ctx: conveyor.JobContext, gate: str = "") -> int:
    """Hold the job for `seconds`, or until `gate` opens; return this process's id."""
    await asyncio.to_thread(_note_execution, ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_gate_open, gate):
            break
        await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return os.getpid()


@app.task(name="sleepy_sync", max_attempts=3)
def sleepy_sync(seconds: float, ctx: conveyor.JobContext, gate: str = "") -> int:
    """Sync twin of sleepy. Without a gate it blocks in one long call, as a handler stuck in
    I/O does, where the worker cannot interrupt it."""
    _note_execution(ctx)
    if not gate:
        time.sleep(seconds)
        return os.getpid()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _gate_open(gate):
        time.sleep(0.1)
    return os.getpid()


@app.task(name="crash_once", max_attempts=3)
def crash_once(ctx: conveyor.JobContext) -> int:
    """Kill this worker process on the first attempt (as the OOM killer would); then succeed."""
    _note_execution(ctx)
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@app.task(name="tenant_work", queue="tenants")
def tenant_work(tenant: str, seconds: float, ctx: conveyor.JobContext) -> None:
    """Work for `seconds` on behalf of `tenant`; record when it ran (database clock)."""
    with _side_connection() as conn:
        started = conn.execute("SELECT clock_timestamp()").fetchone()
        time.sleep(seconds)
        conn.execute(
            "INSERT INTO acceptance.spans VALUES (%s, %s, %s, clock_timestamp())",
            (ctx.job.id, tenant, started[0] if started else None),
        )


@app.task(name="summarize")
def summarize(ctx: conveyor.JobContext) -> dict[str, Any]:
    """A flow parent: the sum of its children's results, and the processes that ran them."""
    children = ctx.children()
    ctx.progress(100, f"summed {len(children)} children")
    return {"sum": sum(c.result or 0 for c in children), "pid": os.getpid()}


@app.task(name="chaos_work", queue="chaos", max_attempts=25, atomic=True)
def chaos_work(n: int, ms: float, ctx: conveyor.JobContext) -> int:
    """Note the execution (committed at once, whatever happens next), work for `ms`, then
    write the job's side effect through ctx.once in the job's own transaction: it commits
    with the job's completion or not at all, so it happens exactly once."""
    _note_execution(ctx, n)
    time.sleep(ms / 1000)

    def effect() -> int:
        ctx.conn.execute(
            "INSERT INTO acceptance.effects (job_id, n, pid) VALUES (%s, %s, %s)",
            (ctx.job.id, n, os.getpid()),
        )
        return n

    return int(ctx.once(f"chaos:{n}", effect))


@app.task(name="fail", max_attempts=1)
def fail(message: str) -> None:
    """Fail for good with `message`."""
    raise ValueError(message)
