"""Idempotency: a claimed key skips a repeated side effect; a failed attempt never burns it;
atomic tasks commit their writes with the job's completion."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, job_states, running_worker


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute("CREATE TABLE IF NOT EXISTS public.ledger (n int, note text)")
    conn.execute("TRUNCATE public.ledger")
    return conn


async def test_second_job_with_the_same_key_gets_the_stored_result(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    effects: list[int] = []

    def send(n: int) -> str:
        effects.append(n)
        return f"sent {n}"

    @app.task(name="pay")
    def pay(order_id: int, ctx: conveyor.JobContext) -> str:
        first = ctx.once(f"pay:{order_id}", send, order_id)
        again = ctx.once(f"pay:{order_id}", send, order_id)  # same attempt: no second call
        assert first == again
        return str(first)

    pay.enqueue(order_id=1)
    async with running_worker(app, conveyor.WorkerConfig(concurrency=1, poll_interval=0.1)):
        await eventually(lambda: job_states(conn).get("completed") == 1)
        pay.enqueue(order_id=1)
        await eventually(lambda: job_states(conn).get("completed") == 2)
    assert effects == [1]
    results = conn.execute("SELECT result FROM conveyor.jobs ORDER BY id").fetchall()
    assert results == [("sent 1",), ("sent 1",)]


async def test_a_failed_attempt_does_not_burn_the_key(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    effects: list[int] = []

    @app.task(name="flaky_pay", backoff=conveyor.RetryPolicy(base=0.05, jitter=0))
    async def flaky_pay(order_id: int, ctx: conveyor.JobContext) -> None:
        async def send() -> int:
            effects.append(ctx.attempt)
            return ctx.attempt

        await ctx.aonce(f"pay:{order_id}", send)
        if ctx.attempt == 1:
            raise ConnectionError("crashed after the side effect")

    flaky_pay.enqueue(order_id=2)
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)
    assert effects == [1, 2]
    stored = conn.execute("SELECT key, result FROM conveyor.idempotency_key").fetchall()
    assert stored == [("pay:2", 2)]


async def test_once_from_an_async_handler_is_refused(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="wrong", max_attempts=1)
    async def wrong(ctx: conveyor.JobContext) -> None:
        ctx.once("k", lambda: None)

    wrong.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    errors = conn.execute("SELECT errors FROM conveyor.jobs").fetchone()
    assert errors is not None and "use aonce()" in errors[0][0]["message"]


async def test_atomic_task_commits_its_writes_with_the_completion(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any]
) -> None:
    @app.task(name="book", atomic=True, backoff=conveyor.RetryPolicy(base=0.05, jitter=0))
    async def book(n: int, ctx: conveyor.JobContext) -> None:
        await ctx.conn.execute("INSERT INTO public.ledger VALUES (%s, %s)", (n, ctx.attempt))
        if ctx.attempt == 1:
            raise RuntimeError("fails after writing")

    @app.task(name="book_sync", atomic=True)
    def book_sync(n: int, ctx: conveyor.JobContext) -> str:
        return str(
            ctx.once(
                f"book:{n}",
                lambda: (
                    ctx.conn.execute("INSERT INTO public.ledger VALUES (%s, 'sync')", (n,)).rowcount
                ),
            )
        )

    book.enqueue(n=1)
    book_sync.enqueue(n=2)
    book_sync.enqueue(n=2)
    async with running_worker(app):
        await eventually(lambda: job_states(ledger).get("completed") == 3)
    rows = ledger.execute("SELECT n, note FROM public.ledger ORDER BY n").fetchall()
    assert rows == [(1, "2"), (2, "sync")], "the failed attempt's write rolled back"
