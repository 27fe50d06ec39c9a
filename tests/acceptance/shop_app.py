"""An app for tests that run real `conveyor worker` processes (CONVEYOR_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import time

import psycopg

import conveyor

app = conveyor.Conveyor()

SIDE_EFFECTS = """
CREATE SCHEMA IF NOT EXISTS acceptance;
CREATE TABLE IF NOT EXISTS acceptance.executions (
    job_id bigint NOT NULL,
    n integer NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


@app.task(name="record", atomic=True)
async def record(n: int, ctx: conveyor.JobContext) -> int:
    """Write one row per execution, in the transaction that completes the job."""
    await ctx.conn.execute(
        "INSERT INTO acceptance.executions (job_id, n, pid) VALUES (%s, %s, %s)",
        (ctx.job.id, n, os.getpid()),
    )
    return n


@app.task(name="hold", max_attempts=3)
async def hold(seconds: float, ctx: conveyor.JobContext) -> int:
    """Note that it started (its own transaction), then hold the job for a while."""
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO acceptance.executions (job_id, n, pid) VALUES (%s, %s, %s)",
            (ctx.job.id, ctx.attempt, os.getpid()),
        )
    await asyncio.sleep(seconds)
    return os.getpid()


@app.task(name="hold_sync", max_attempts=3)
def hold_sync(seconds: float) -> int:
    """A sync handler that holds its job."""
    time.sleep(seconds)
    return os.getpid()
