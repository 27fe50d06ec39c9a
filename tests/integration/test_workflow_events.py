"""Workflow events and starts on a real Postgres: an event sent before or after the wait
wakes the run, a timeout returns None, concurrent sends lose no wake-up, and both SQL functions
work inside the caller's transaction."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
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
def shipping(app: conveyor.Conveyor) -> conveyor.Workflow:
    @app.workflow(name="wf.shipping")
    async def shipping(ctx: conveyor.WorkflowContext, order: str) -> Any:
        shipped = await ctx.wait_for_event("order.shipped", key=order, timeout=timedelta(days=7))
        return {"shipped": shipped}

    return shipping


def config() -> conveyor.WorkerConfig:
    return fast_config(rescue_interval=3600.0)


async def run_in(app: conveyor.Conveyor, run_id: str, state: str) -> conveyor.WorkflowRun:
    async def reached() -> conveyor.WorkflowRun | None:
        run = await app.async_client().get_workflow(run_id)
        return run if run.state == state else None

    found: conveyor.WorkflowRun = await eventually(reached)
    return found


async def test_event_sent_after_the_wait_wakes_the_run(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    run_id = await shipping.astart(order="42")
    async with running_worker(app, config()):
        waiting = await run_in(app, run_id, "waiting")
        assert (waiting.wait_event, waiting.wait_key) == ("order.shipped", "42")
        assert waiting.wait_deadline == START + timedelta(days=7)
        await app.asend_event("order.shipped", key="42", payload={"carrier": "DHL"})
        run = await run_in(app, run_id, "completed")
    assert run.result == {"shipped": {"carrier": "DHL"}}
    assert app.client().get_job(run.job_id).attempt == 1


async def test_event_sent_before_the_wait_is_not_lost(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    app.send_event("order.shipped", key="7", payload={"carrier": "UPS"})
    app.send_event("order.shipped")  # no key: waits on ("order.shipped", "") take it
    app.send_event("order.shipped", key="8", payload={"carrier": "other order"})
    run_id = shipping.start(order="7")
    async with running_worker(app, config()):
        run = await run_in(app, run_id, "completed")
    assert run.result == {"shipped": {"carrier": "UPS"}}


async def test_one_event_wakes_the_oldest_waiting_run_only(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    first = await shipping.astart(order="same")
    async with running_worker(app, config()):
        await run_in(app, first, "waiting")
        second = await shipping.astart(order="same")
        await run_in(app, second, "waiting")
        await app.asend_event("order.shipped", key="same", payload={"n": 1})
        assert (await run_in(app, first, "completed")).result == {"shipped": {"n": 1}}
        assert (await app.async_client().get_workflow(second)).state == "waiting"
        await app.asend_event("order.shipped", key="same", payload={"n": 2})
        assert (await run_in(app, second, "completed")).result == {"shipped": {"n": 2}}


async def test_wait_times_out_with_none_or_raises_when_asked(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, shipping: conveyor.Workflow
) -> None:
    @app.workflow(name="wf.approval")
    async def approval(ctx: conveyor.WorkflowContext) -> str:
        try:
            await ctx.wait_for_event("approved", key="doc", timeout=3600, raise_on_timeout=True)
        except conveyor.EventTimeout:
            return "escalated"
        return "approved"

    quiet = await shipping.astart(order="never")
    strict = await approval.astart()
    async with running_worker(app, config()):
        await run_in(app, quiet, "waiting")
        await run_in(app, strict, "waiting")
        clock.advance(days=7, seconds=1)
        timed_out = await run_in(app, quiet, "completed")
        escalated = await run_in(app, strict, "completed")
    assert timed_out.result == {"shipped": None}
    assert escalated.result == "escalated"
    # an event after the timeout is kept for another wait, not given to the finished run
    app.send_event("order.shipped", key="never")
    with psycopg.connect(app.database_url) as conn:
        row = conn.execute("SELECT consumed_by_run FROM conveyor.workflow_events").fetchone()
    assert row == (None,)


async def test_sends_racing_waits_lose_no_wake_up(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.race")
    async def race(ctx: conveyor.WorkflowContext, n: int) -> Any:
        await ctx.step("before", lambda: n)
        return await ctx.wait_for_event("go", key=str(n))

    rng = random.Random(14)
    runs = [await race.astart(n=n) for n in range(40)]

    async def send(n: int) -> None:
        await asyncio.sleep(rng.random() * 0.5)  # before, while and after the run's wait
        await app.asend_event("go", key=str(n), payload={"n": n})

    async with running_worker(app, fast_config(concurrency=8, rescue_interval=3600.0)):
        await asyncio.gather(*(send(n) for n in range(40)))

        async def all_done() -> bool:
            done = await app.async_client().list_workflows(state="completed", limit=100)
            return len(done) == 40

        await eventually(all_done)
    results = {app.client().get_workflow(r).result["n"] for r in runs}
    assert results == set(range(40))


async def test_start_with_a_used_run_id_returns_it_and_starts_nothing(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    assert shipping.start(order="1", run_id="order-1") == "order-1"
    assert await shipping.astart(order="2", run_id="order-1") == "order-1"
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        runs = conn.execute("SELECT count(*), min(args->>'order') FROM conveyor.workflow_runs")
        assert runs.fetchone() == (1, "1")
        jobs = conn.execute("SELECT count(*) FROM conveyor.job WHERE task = 'wf.shipping'")
        assert jobs.fetchone() == (1,)
        same = conn.execute("SELECT conveyor.start_workflow('wf.shipping', '{}', 'order-1')")
        assert same.fetchone() == ("order-1",)
        with pytest.raises(psycopg.errors.UniqueViolation, match="belongs to workflow"):
            conn.execute("SELECT conveyor.start_workflow('wf.other', '{}', 'order-1')")


async def test_start_and_send_in_a_rolled_back_transaction_leave_nothing(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    with psycopg.connect(app.database_url) as conn:
        shipping.start_tx(conn, order="9", run_id="rolled-back")
        app.send_event_tx(conn, "order.shipped", key="9")
        conn.execute("SELECT conveyor.send_event('order.shipped', '9', '{\"sql\": true}')")
        conn.rollback()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM conveyor.workflow_runs),"
            " (SELECT count(*) FROM conveyor.workflow_events),"
            " (SELECT count(*) FROM conveyor.job)"
        ).fetchone()
    assert counts == (0, 0, 0)
    async with await psycopg.AsyncConnection.connect(app.database_url) as aconn:
        run_id = await shipping.astart_tx(aconn, order="9")
        await app.asend_event_tx(aconn, "order.shipped", key="9", payload={"kept": True})
        await aconn.commit()
    async with running_worker(app, config()):
        run = await run_in(app, run_id, "completed")
    assert run.result == {"shipped": {"kept": True}}


async def test_limits_are_refused_with_the_fix(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    with pytest.raises(conveyor.PayloadError, match="store the data elsewhere"):
        app.send_event("big", key="k", payload={"blob": "x" * 70_000})
    with pytest.raises(conveyor.PayloadError, match="unexpected argument"):
        shipping.start(order="1", color="red")
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="64 KiB"):
            conn.execute(
                "SELECT conveyor.send_event('big', 'k',"
                " jsonb_build_object('b', repeat('x', 70000)))"
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON object"):
            conn.execute("SELECT conveyor.start_workflow('wf.shipping', '[1]')")


async def test_a_wait_behind_an_uncommitted_send_takes_the_event_once_committed(
    app: conveyor.Conveyor, shipping: conveyor.Workflow
) -> None:
    with psycopg.connect(app.database_url) as sender:
        app.send_event_tx(sender, "order.shipped", key="x", payload={"late": True})
        run_id = await shipping.astart(order="x")
        async with running_worker(app, config()):

            def wait_blocked() -> bool:
                with psycopg.connect(app.database_url, autocommit=True) as look:
                    row = look.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).fetchone()
                return row is not None and row[0] == 1

            await eventually(wait_blocked)  # the wait queues behind the send's (name, key) lock
            sender.commit()
            run = await run_in(app, run_id, "completed")
    assert run.result == {"shipped": {"late": True}}


async def test_an_event_without_a_key_wakes_a_wait_without_one(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.keyless")
    def keyless(ctx: conveyor.WorkflowContext) -> Any:
        return ctx.wait_for_event("deploy.done", timeout=60)

    run_id = keyless.start()
    async with running_worker(app, config()):
        await run_in(app, run_id, "waiting")
        await app.asend_event("deploy.done", payload=["v2"])
        run = await run_in(app, run_id, "completed")
    assert run.result == ["v2"]
