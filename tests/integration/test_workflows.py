"""Durable workflows on a real Postgres, with a worker in the test's event loop: steps replay
after a resume, retries, atomic steps, the determinism guard, versioning, sleeps with a frozen
clock, cancel and retry. Events are in test_workflow_events.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, fast_config, running_worker

START = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock(START)


@pytest.fixture
async def app(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Conveyor]:
    application = conveyor.Conveyor(db, clock=clock)
    yield application
    await application.aclose()


@pytest.fixture
def effects(conn: psycopg.Connection[Any]) -> Iterator[Effects]:
    conn.execute("CREATE TABLE IF NOT EXISTS wf_effect (run text, step text, at serial)")
    conn.execute("TRUNCATE wf_effect")
    yield Effects(conn)


class Effects:
    """Side effects of steps, written to a table so a test can count them."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.url = conn.info.dsn

    def add(self, run: str, step: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute("INSERT INTO wf_effect (run, step) VALUES (%s, %s)", (run, step))

    def count(self, step: str | None = None) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM wf_effect WHERE %(s)s::text IS NULL OR step = %(s)s",
            {"s": step},
        ).fetchone()
        assert row is not None
        return int(row[0])


def config() -> conveyor.WorkerConfig:
    # the rescuer looks once, at start: a frozen clock moved by days would see every lease
    # as expired (leases use the database's clock)
    return fast_config(rescue_interval=3600.0)


async def finished(app: conveyor.Conveyor, run_id: str, state: str = "completed") -> Any:
    async def done() -> Any:
        run = await app.async_client().get_workflow(run_id)
        return run if run.state == state else None

    return await eventually(done)


async def state_of(app: conveyor.Conveyor, run_id: str, state: str) -> Any:
    return await finished(app, run_id, state)


async def test_steps_run_once_and_replay_after_a_sleep(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, effects: Effects
) -> None:
    @app.workflow(name="wf.drip")
    async def drip(ctx: conveyor.WorkflowContext, user: str) -> dict[str, Any]:
        first = await ctx.step("welcome", lambda: effects.add(user, "welcome") or "sent")
        await ctx.sleep(timedelta(days=3))
        second = await ctx.step("tips", lambda: effects.add(user, "tips") or 2)
        return {"first": first, "second": second}

    run_id = await drip.astart(user="ann")
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "sleeping")
        assert run.wake_at is None or run.wake_at > START
        sleep = run.steps[1] if len(run.steps) > 1 else None
        assert sleep is not None and sleep.kind == "sleep" and sleep.state == "sleeping"
        assert sleep.wake_at == START + timedelta(days=3)
        assert effects.count() == 1
        clock.advance(days=3)
        run = await finished(app, run_id)
    assert run.result == {"first": "sent", "second": 2}
    assert effects.count("welcome") == 1 and effects.count("tips") == 1
    assert [(s.name, s.state) for s in run.steps] == [
        ("welcome", "completed"),
        ("sleep", "completed"),
        ("tips", "completed"),
    ]
    job = app.client().get_job(run.job_id)
    assert job.state == "completed" and job.attempt == 1, "parking never counted an attempt"
