"""The checkout workflow of the crash test (test_workflow_crash.py), run by real `conveyor worker`
processes: reserve (atomic: its effect commits with the step's record) → a short sleep → wait
for "order.shipped" → email (an ordinary step: its effect commits on its own). Every step
execution writes a row naming the process that ran it to acceptance.checkout_effects."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import psycopg

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS acceptance;
CREATE TABLE IF NOT EXISTS acceptance.checkout_effects (
    order_id integer NOT NULL,
    step     text    NOT NULL,
    pid      integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""
#: The sleep between reserve and the wait: short, so 200 runs fit in the test's minute.
NAP_SECONDS = 0.2


async def reserve(tx: psycopg.AsyncConnection[Any], order_id: int) -> int:
    """Hold stock, in the transaction that records the step: exactly once."""
    await tx.execute(
        "INSERT INTO acceptance.checkout_effects (order_id, step, pid) VALUES (%s, 'reserve', %s)",
        (order_id, os.getpid()),
    )
    return os.getpid()


class Mailer:
    """One autocommit connection per process for the e-mails' effects (a connection per
    e-mail would crowd a shared server), reopened when it broke."""

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.lock = asyncio.Lock()

    async def record(self, order_id: int, carrier: str) -> None:
        async with self.lock:
            if self.conn is None or self.conn.closed or self.conn.broken:
                self.conn = await psycopg.AsyncConnection.connect(app.database_url, autocommit=True)
            await self.conn.execute(
                "INSERT INTO acceptance.checkout_effects (order_id, step, pid)"
                " VALUES (%s, 'email:' || %s, %s)",
                (order_id, carrier, os.getpid()),
            )


mailer = Mailer()


async def send_email(order_id: int, carrier: str) -> int:
    """Send the e-mail (its effect commits before the step is recorded: at least once); a
    little work after it widens the window in which a kill repeats it."""
    await mailer.record(order_id, carrier)
    await asyncio.sleep(0.1)
    return os.getpid()


# Many attempts and a short backoff: a run's job may be hit by several of the test's kills, and
# each rescue counts an attempt.
@app.workflow(
    name="crash.checkout",
    max_attempts=1000,
    backoff=conveyor.RetryPolicy(base=0.1, max_delay=1.0),
)
async def checkout(ctx: conveyor.WorkflowContext, order_id: int) -> dict[str, Any]:
    reserved_by = await ctx.step("reserve", reserve, order_id, atomic=True)
    await ctx.sleep(NAP_SECONDS)
    shipped = await ctx.wait_for_event(
        "order.shipped", key=str(order_id), timeout=timedelta(hours=1), raise_on_timeout=True
    )
    # a connection refused by a busy (or restarting) server is retried, not the run's end
    emailed_by = await ctx.step(
        "email", send_email, order_id, shipped["carrier"], max_attempts=20, backoff=0.2
    )
    return {"reserved_by": reserved_by, "emailed_by": emailed_by}
