"""A worker runs sync and async handlers, retries with backoff, and fails exhausted jobs."""

from __future__ import annotations

from typing import Any

import psycopg

import conveyor
from tests.helpers import eventually, fast_config, job_states, running_worker


async def test_runs_async_and_sync_handlers(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[str, int]] = []

    @app.task(name="async_add")
    async def async_add(a: int, b: int) -> int:
        seen.append(("async", a))
        return a + b

    @app.task(name="sync_add")
    def sync_add(a: int, b: int) -> int:
        seen.append(("sync", a))
        return a + b

    first = async_add.enqueue(a=1, b=2)
    second = sync_add.enqueue(a=3, b=4)
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 2)
    client = app.client()
    assert client.get_job(first).result == 3
    assert client.get_job(second).result == 7
    assert sorted(seen) == [("async", 1), ("sync", 3)]


async def test_failed_attempts_are_retried_then_complete(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="flaky", backoff=conveyor.RetryPolicy(base=0.05, jitter=0), max_attempts=3)
    def flaky(ctx: conveyor.JobContext) -> str:
        if ctx.attempt < 3:
            raise ConnectionError(f"down on attempt {ctx.attempt}")
        return "up"

    job_id = flaky.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)
    job = app.client().get_job(job_id)
    assert job.attempt == 3
    assert [e["type"] for e in job.errors] == ["ConnectionError", "ConnectionError"]
    assert [e["attempt"] for e in job.errors] == [1, 2]
    assert "Traceback" in job.errors[0]["traceback"]
    assert job.errors[0]["at"]


async def test_exhausted_job_lands_in_failed(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="broken", backoff=0.01, max_attempts=2)
    async def broken() -> None:
        raise ValueError("bad data")

    job_id = broken.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    job = app.client().get_job(job_id)
    assert job.state == conveyor.JobState.FAILED
    assert job.attempt == 2
    assert len(job.errors) == 2


async def test_fail_now_skips_remaining_attempts(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="invalid", max_attempts=5)
    async def invalid() -> None:
        raise conveyor.FailNow("order 42 does not exist")

    job_id = invalid.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    job = app.client().get_job(job_id)
    assert job.attempt == 1
    assert job.errors[0]["message"] == "order 42 does not exist"


async def test_fail_on_exception_types_fails_at_once(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="lookup", max_attempts=5, fail_on=[KeyError])
    def lookup() -> None:
        raise KeyError("missing")

    job_id = lookup.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    assert app.client().get_job(job_id).attempt == 1


async def test_retry_after_asks_for_a_later_attempt(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="later", max_attempts=3)
    def later(ctx: conveyor.JobContext) -> int:
        if ctx.attempt == 1:
            raise conveyor.Retry(after=0.3, reason="rate limited")
        return ctx.attempt

    job_id = later.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)
    job = app.client().get_job(job_id)
    assert job.result == 2
    assert job.errors[0]["type"] == "conveyor.outcome.Retry"
    first_error_at = job.errors[0]["at"]
    assert first_error_at is not None


async def test_timeout_stops_async_job_and_counts_as_failed_attempt(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    import asyncio

    @app.task(name="slow", timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(30)

    job_id = slow.enqueue()
    # a long lease: on a loaded machine a 2 s lease can expire first and fail it as LeaseExpired
    async with running_worker(app, fast_config(lease_seconds=10)):
        await eventually(lambda: job_states(conn).get("failed") == 1)
    job = app.client().get_job(job_id)
    assert job.errors[0]["type"] == "conveyor.worker.executor.JobTimeout"


async def test_timeout_interrupts_sync_job(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    import time

    stopped: list[str] = []

    @app.task(name="spin", timeout=0.2, max_attempts=1)
    def spin() -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)
        except BaseException as exc:
            stopped.append(type(exc).__name__)
            raise

    spin.enqueue()
    async with running_worker(app, fast_config(lease_seconds=10)):
        await eventually(lambda: job_states(conn).get("failed") == 1)
        await eventually(lambda: stopped == ["JobTimeout"])


async def test_delayed_job_waits_for_its_time(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="later_job")
    async def later_job() -> None:
        return None

    job_id = later_job.with_options(delay=0.5).enqueue()
    assert app.client().get_job(job_id).state == conveyor.JobState.SCHEDULED
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)
    job = app.client().get_job(job_id)
    assert job.attempted_at is not None and job.attempted_at >= job.run_at


async def test_higher_priority_runs_first(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    order: list[int] = []

    @app.task(name="ordered")
    def ordered(n: int) -> None:
        order.append(n)

    app.enqueue_many([ordered.spec(n=n) for n in range(5)])
    ordered.with_options(priority=10).enqueue(n=99)
    async with running_worker(app, conveyor.WorkerConfig(concurrency=1, poll_interval=0.2)):
        await eventually(lambda: job_states(conn).get("completed") == 6)
    assert order == [99, 0, 1, 2, 3, 4]


async def test_worker_claims_only_tasks_it_knows(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], db: str
) -> None:
    @app.task(name="known")
    def known() -> None:
        return None

    known.enqueue()
    conn.execute("SELECT conveyor.enqueue('only.the.new.version.knows')")
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 1)
        status = app.client().status()
    assert job_states(conn).get("available") == 1
    assert [(o.task, o.count) for o in status.orphaned] == [("only.the.new.version.knows", 1)]
