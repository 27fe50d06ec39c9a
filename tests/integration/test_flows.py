"""Flows: a parent runs after its children, sees their results, and follows its failure
policy; batches with a completion callback; progress of a running job."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.postgres import PostgresStore
from conveyor.maintenance.flows import FlowAdvancer
from tests.helpers import eventually, fast_config, job_states, running_worker


@pytest.fixture
def tasks(app: conveyor.Conveyor) -> dict[str, conveyor.Task[Any]]:
    @app.task(name="square", max_attempts=1)
    def square(n: int) -> int:
        if n < 0:
            raise ValueError(f"no square of {n} today")
        return n * n

    @app.task(name="total")
    async def total(ctx: conveyor.JobContext) -> dict[str, Any]:
        children = await ctx.achildren()
        return {
            "sum": sum(c.result for c in children if c.state == "completed"),
            "states": [str(c.state) for c in children],
        }

    return {"square": square, "total": total}


async def test_parent_runs_after_all_children_with_their_results(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]], conn: psycopg.Connection[Any]
) -> None:
    square, total = tasks["square"], tasks["total"]
    flow = app.enqueue_flow(total.spec(), [square.spec(n=n) for n in range(1, 31)])
    assert app.client().get_job(flow.parent_id).state == "waiting"
    async with running_worker(app, fast_config(concurrency=8)):
        await eventually(lambda: app.client().get_job(flow.parent_id).state == "completed")
    parent = app.client().get_job(flow.parent_id)
    assert parent.result == {"sum": sum(n * n for n in range(1, 31)), "states": ["completed"] * 30}
    assert parent.attempt == 1
    assert [c.id for c in app.client().children(flow.parent_id)] == flow.child_ids


async def test_failed_child_fails_the_parent_under_the_fail_policy(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]]
) -> None:
    square, total = tasks["square"], tasks["total"]
    flow = app.enqueue_flow(total.spec(), [square.spec(n=2), square.spec(n=-1)])
    async with running_worker(app):
        await eventually(lambda: app.client().get_job(flow.parent_id).state == "failed")
    parent = app.client().get_job(flow.parent_id)
    assert parent.attempt == 0, "the parent never ran"
    assert parent.errors[-1]["type"] == "ChildFailed"
    assert str(flow.child_ids[1]) in parent.errors[-1]["message"]


async def test_failed_child_unblocks_the_parent_under_the_continue_policy(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]]
) -> None:
    square, total = tasks["square"], tasks["total"]
    flow = app.enqueue_flow(
        total.spec(), [square.spec(n=3), square.spec(n=-1)], on_child_failure="continue"
    )
    async with running_worker(app):
        await eventually(lambda: app.client().get_job(flow.parent_id).state == "completed")
    assert app.client().get_job(flow.parent_id).result == {
        "sum": 9,
        "states": ["completed", "failed"],
    }


async def test_batch_callback_runs_once_every_job_has_finished(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]]
) -> None:
    square, total = tasks["square"], tasks["total"]
    batch = await app.aenqueue_batch(
        [square.spec(n=n) for n in (1, 2, -3)], on_complete=total.spec()
    )
    async with running_worker(app):
        await eventually(lambda: app.client().get_job(batch.parent_id).state == "completed")
    assert app.client().get_job(batch.parent_id).result["states"] == [
        "completed",
        "completed",
        "failed",
    ]


def test_rolled_back_flow_leaves_nothing(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]], db: str
) -> None:
    square, total = tasks["square"], tasks["total"]
    with psycopg.connect(db) as own, own.transaction():
        app.enqueue_flow_tx(own, total.spec(), [square.spec(n=1)])  # committed
    with psycopg.connect(db) as own:
        try:
            with own.transaction():
                app.enqueue_flow_tx(own, total.spec(), [square.spec(n=1)])
                raise RuntimeError("payment declined")
        except RuntimeError:
            pass
        counts = own.execute(
            "SELECT (SELECT count(*) FROM conveyor.flow_child), count(*) FROM conveyor.jobs"
        ).fetchone()
    assert counts == (1, 2), "only the committed flow exists"


def test_flow_options_are_checked(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]]
) -> None:
    square, total = tasks["square"], tasks["total"]
    with pytest.raises(conveyor.ConfigError, match="'fail' or 'continue'"):
        app.enqueue_flow(total.spec(), [square.spec(n=1)], on_child_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(conveyor.ConfigError, match="unique keys"):
        app.enqueue_flow(total.with_options(unique_key="x").spec(), [square.spec(n=1)])


async def test_advancer_leaves_a_parent_waiting_while_a_child_is_unfinished(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]], db: str
) -> None:
    square, total = tasks["square"], tasks["total"]
    flow = app.enqueue_flow(total.spec(), [square.spec(n=1), square.spec(n=2)])
    store = PostgresStore(db)
    await store.open()
    try:
        advancer = FlowAdvancer(store)
        assert (await advancer.run_once()).ready == 0
        app.client().cancel(flow.child_ids[0])
        app.client().cancel(flow.child_ids[1])
        result = await advancer.run_once()  # cancelled children under 'fail': parent fails
        assert (result.ready, result.failed) == (0, 1)
    finally:
        await store.close()


async def test_cancelled_waiting_parent_is_cancelled(
    app: conveyor.Conveyor, tasks: dict[str, conveyor.Task[Any]], conn: psycopg.Connection[Any]
) -> None:
    square, total = tasks["square"], tasks["total"]
    flow = app.enqueue_flow(total.spec(), [square.spec(n=1)])
    assert app.client().cancel(flow.parent_id) == [flow.parent_id]
    async with running_worker(app):
        await eventually(lambda: job_states(conn) == {"cancelled": 1, "completed": 1})


async def test_running_job_reports_progress_readable_while_it_runs(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    release = threading.Event()

    @app.task(name="resize")
    def resize(ctx: conveyor.JobContext) -> None:
        ctx.progress(40, "resized 4 of 10")
        release.wait(10)
        ctx.progress(100, "done")

    job_id = resize.enqueue()
    async with running_worker(app):
        await eventually(lambda: app.client().get_job(job_id).progress is not None)
        progress = app.client().get_job(job_id).progress
        assert progress is not None
        assert (progress["value"], progress["message"]) == (40, "resized 4 of 10")
        release.set()
        await eventually(lambda: job_states(conn) == {"completed": 1})
    final = app.client().get_job(job_id).progress
    assert final is not None and final["message"] == "done"


async def test_async_progress_is_throttled_but_keeps_the_last_value(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="count")
    async def count(ctx: conveyor.JobContext) -> None:
        for n in range(1, 101):
            await ctx.aprogress(n, f"{n} of 100")
        await asyncio.sleep(0)

    job_id = count.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn) == {"completed": 1})
    progress = app.client().get_job(job_id).progress
    assert progress is not None and progress["value"] == 100
