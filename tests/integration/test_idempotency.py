"""Idempotency: a claimed key skips a repeated side effect; a failed attempt never burns it;
atomic tasks commit their writes together with the job's completion, or not at all."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, fast_config, job_states, running_worker

QUICK_RETRY = conveyor.RetryPolicy(base=0.05, jitter=0)


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """An application table the handlers write to."""
    conn.execute("CREATE TABLE IF NOT EXISTS public.ledger (n int, note text)")
    conn.execute("TRUNCATE public.ledger")
    return conn


async def _run_until(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], **states: int
) -> conveyor.Worker:
    """Run a worker until the jobs are exactly in `states` (state name → count)."""
    # generous ceilings (not waits): on a loaded machine, jobs that lost a key race retry with
    # backoff, and a 2 s lease can expire under a stalled event loop
    async with running_worker(app, fast_config(lease_seconds=10)) as worker:
        await eventually(lambda: job_states(conn) == states, timeout=30)
    return worker


def _results(conn: psycopg.Connection[Any]) -> list[Any]:
    return [r[0] for r in conn.execute("SELECT result FROM conveyor.jobs ORDER BY id")]


def _keys(conn: psycopg.Connection[Any]) -> list[tuple[str, Any]]:
    rows = conn.execute("SELECT key, result FROM conveyor.idempotency_key ORDER BY key")
    return [(key, result) for key, result in rows]


def _ledger(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    return [(n, note) for n, note in conn.execute("SELECT n, note FROM public.ledger ORDER BY n")]


def _register_pay(app: conveyor.Conveyor, kind: str, effects: list[int]) -> conveyor.Task[Any]:
    """A task that sends a payment once per order: sync with once(), async with aonce()."""
    if kind == "sync":

        @app.task(name="pay")
        def pay(order_id: int, ctx: conveyor.JobContext) -> str:
            def send() -> str:
                effects.append(order_id)
                return f"sent {order_id}"

            first = ctx.once(f"pay:{order_id}", send)
            assert ctx.once(f"pay:{order_id}", send) == first, "same attempt: no second call"
            return str(first)

        return pay

    @app.task(name="pay")
    async def apay(order_id: int, ctx: conveyor.JobContext) -> str:
        async def send() -> str:
            effects.append(order_id)
            return f"sent {order_id}"

        first = await ctx.aonce(f"pay:{order_id}", send)
        assert await ctx.aonce(f"pay:{order_id}", send) == first, "same attempt: no second call"
        return str(first)

    return apay


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_second_job_with_the_same_key_gets_the_stored_result(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], kind: str
) -> None:
    effects: list[int] = []
    pay = _register_pay(app, kind, effects)
    pay.enqueue(order_id=1)
    async with running_worker(app) as worker:
        await eventually(lambda: job_states(conn) == {"completed": 1})
        pay.enqueue(order_id=1)
        pay.enqueue(order_id=2)
        await eventually(lambda: job_states(conn) == {"completed": 3})
    assert sorted(effects) == [1, 2]
    assert _results(conn) == ["sent 1", "sent 1", "sent 2"]
    assert _keys(conn) == [("pay:1", "sent 1"), ("pay:2", "sent 2")]
    assert worker.completed == 3


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_raises_after_once_does_not_burn_the_key(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], kind: str
) -> None:
    effects: list[int] = []

    def crash_on_first_attempt(ctx: conveyor.JobContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("crashed after the side effect")

    if kind == "sync":

        @app.task(name="flaky_pay", backoff=QUICK_RETRY)
        def flaky_pay(order_id: int, ctx: conveyor.JobContext) -> int:
            def send() -> int:
                effects.append(ctx.attempt)
                return ctx.attempt

            sent: int = ctx.once(f"pay:{order_id}", send)
            crash_on_first_attempt(ctx)
            return sent

        task = flaky_pay
    else:

        @app.task(name="flaky_pay", backoff=QUICK_RETRY)
        async def aflaky_pay(order_id: int, ctx: conveyor.JobContext) -> int:
            async def send() -> int:
                effects.append(ctx.attempt)
                return ctx.attempt

            sent: int = await ctx.aonce(f"pay:{order_id}", send)
            crash_on_first_attempt(ctx)
            return sent

        task = aflaky_pay

    task.enqueue(order_id=2)
    await _run_until(app, conn, completed=1)
    assert effects == [1, 2], "the retry ran the side effect again"
    assert _keys(conn) == [("pay:2", 2)], "after success the key is stored"
    task.enqueue(order_id=2)
    await _run_until(app, conn, completed=2)
    assert effects == [1, 2], "a later job with the key reuses the stored result"
    assert _results(conn) == [2, 2]


async def test_once_in_an_async_handler_is_refused_with_the_fix(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="wrong", max_attempts=1)
    async def wrong(ctx: conveyor.JobContext) -> None:
        ctx.once("k", lambda: None)

    wrong.enqueue()
    await _run_until(app, conn, failed=1)
    errors = conn.execute("SELECT errors FROM conveyor.jobs").fetchone()
    assert errors is not None and "use aonce()" in errors[0][0]["message"]


# -- atomic tasks -----------------------------------------------------------------------------


def _register_book(
    app: conveyor.Conveyor, kind: str, *, fail_attempts: int, max_attempts: int = 3
) -> conveyor.Task[Any]:
    """An atomic task writing two ledger rows, then raising on its first `fail_attempts`."""
    if kind == "sync":

        @app.task(name="book", atomic=True, backoff=QUICK_RETRY, max_attempts=max_attempts)
        def book(n: int, ctx: conveyor.JobContext) -> int:
            for part in ("a", "b"):
                ctx.conn.execute(
                    "INSERT INTO public.ledger VALUES (%s, %s)", (n, f"{part}{ctx.attempt}")
                )
            if ctx.attempt <= fail_attempts:
                raise RuntimeError("fails after writing")
            return ctx.attempt

        return book

    @app.task(name="book", atomic=True, backoff=QUICK_RETRY, max_attempts=max_attempts)
    async def abook(n: int, ctx: conveyor.JobContext) -> int:
        for part in ("a", "b"):
            await ctx.conn.execute(
                "INSERT INTO public.ledger VALUES (%s, %s)", (n, f"{part}{ctx.attempt}")
            )
        if ctx.attempt <= fail_attempts:
            raise RuntimeError("fails after writing")
        return ctx.attempt

    return abook


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_atomic_task_commits_its_writes_with_the_completion(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any], kind: str
) -> None:
    _register_book(app, kind, fail_attempts=0).enqueue(n=1)
    await _run_until(app, ledger, completed=1)
    assert _ledger(ledger) == [(1, "a1"), (1, "b1")]
    assert _results(ledger) == [1]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_atomic_task_that_raises_rolls_back_its_writes_and_is_retried(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any], kind: str
) -> None:
    job_id = _register_book(app, kind, fail_attempts=1).enqueue(n=1)
    await _run_until(app, ledger, completed=1)
    assert _ledger(ledger) == [(1, "a2"), (1, "b2")], "the failed attempt's writes rolled back"
    job = app.client().get_job(job_id)
    assert (job.attempt, [e["type"] for e in job.errors]) == (2, ["RuntimeError"])


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_atomic_task_that_fails_for_good_leaves_no_partial_write(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any], kind: str
) -> None:
    _register_book(app, kind, fail_attempts=2, max_attempts=2).enqueue(n=1)
    await _run_until(app, ledger, failed=1)
    assert _ledger(ledger) == []


_STEAL_LEASE = "UPDATE conveyor.job SET lease_token = gen_random_uuid() WHERE id = %s"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_atomic_writes_roll_back_when_the_job_was_taken_over_meanwhile(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any], db: str, kind: str
) -> None:
    # As if the lease expired mid-run and another worker claimed the job: the completion is
    # refused, and the handler's writes must go with it.
    returned: list[int] = []
    if kind == "sync":

        @app.task(name="taken", atomic=True)
        def taken(ctx: conveyor.JobContext) -> None:
            ctx.conn.execute("INSERT INTO public.ledger VALUES (%s, 'taken')", (ctx.attempt,))
            with psycopg.connect(db, autocommit=True) as other:
                other.execute(_STEAL_LEASE, (ctx.job.id,))
            returned.append(ctx.job.id)

        job_id = taken.enqueue()
    else:

        @app.task(name="taken", atomic=True)
        async def ataken(ctx: conveyor.JobContext) -> None:
            await ctx.conn.execute("INSERT INTO public.ledger VALUES (%s, 'taken')", (ctx.attempt,))
            async with await psycopg.AsyncConnection.connect(db, autocommit=True) as other:
                await other.execute(_STEAL_LEASE, (ctx.job.id,))
            returned.append(ctx.job.id)

        job_id = ataken.enqueue()

    async with running_worker(app, fast_config(lease_seconds=30)) as worker:
        await eventually(lambda: returned)
    # The worker has stopped: the attempt's transaction is over one way or the other.
    assert _ledger(ledger) == []
    assert worker.completed == 0
    assert app.client().get_job(job_id).state == conveyor.JobState.RUNNING


async def test_concurrent_atomic_jobs_with_one_key_run_the_side_effect_once(
    app: conveyor.Conveyor, ledger: psycopg.Connection[Any]
) -> None:
    @app.task(name="credit", atomic=True)
    def credit(order_id: int, ctx: conveyor.JobContext) -> Any:
        def write() -> int:
            ctx.conn.execute("INSERT INTO public.ledger VALUES (%s, 'credit')", (ctx.job.id,))
            return ctx.job.id

        return ctx.once(f"credit:{order_id}", write)

    ids = app.enqueue_many([credit.spec(order_id=9) for _ in range(4)])
    await _run_until(app, ledger, completed=4)
    rows = _ledger(ledger)
    assert len(rows) == 1 and rows[0][0] in ids
    assert _results(ledger) == [rows[0][0]] * 4
    assert _keys(ledger) == [("credit:9", rows[0][0])]
