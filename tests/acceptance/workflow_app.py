"""A workflow app that acceptance tests run in real `conveyor worker` processes: each step
writes which process ran it to acceptance.workflow_effects."""

from __future__ import annotations

import os

import psycopg

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS acceptance;
CREATE TABLE IF NOT EXISTS acceptance.workflow_effects (
    run  text    NOT NULL,
    step text    NOT NULL,
    pid  integer NOT NULL
);
"""


def effect(run: str, step: str) -> int:
    """Record that this process ran `step` of `run`; return the process id."""
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO acceptance.workflow_effects VALUES (%s, %s, %s)", (run, step, os.getpid())
        )
    return os.getpid()


@app.workflow(name="acceptance.nap")
async def nap(ctx: conveyor.WorkflowContext, seconds: float) -> dict[str, int]:
    before = await ctx.step("before", effect, ctx.run_id, "before")
    await ctx.sleep(seconds)
    after = await ctx.step("after", effect, ctx.run_id, "after")
    return {"before": before, "after": after}
