"""Fan-out and fan-in on a real Postgres with a worker in the test's event loop: ctx.map over
tasks and child workflows (input order, the concurrency bound, both failure policies),
ctx.run_workflow, ctx.gather, the parent woken once, and the cancel cascade."""

from __future__ import annotations

import asyncio
import threading
import time
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


def config(**overrides: Any) -> conveyor.WorkerConfig:
    return fast_config(rescue_interval=3600.0, **overrides)


async def state_of(app: conveyor.Conveyor, run_id: str, state: str, timeout: float = 20) -> Any:
    async def reached() -> Any:
        run = await app.async_client().get_workflow(run_id)
        return run if run.state == state else None

    return await eventually(reached, timeout=timeout)


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


async def test_map_returns_child_results_in_input_order(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="fan.square")
    async def square(x: int) -> int:
        await asyncio.sleep(0.01 * (5 - x))  # later items finish first
        return x * x

    @app.workflow(name="fan.squares")
    async def squares(ctx: conveyor.WorkflowContext, n: int) -> list[int]:
        results: list[int] = await ctx.map(square, [{"x": i} for i in range(n)])
        return results

    run_id = await squares.astart(n=5)
    async with running_worker(app, config(concurrency=8)):
        run = await state_of(app, run_id, "completed")
    assert run.result == [0, 1, 4, 9, 16]
    assert [(s.kind, s.name, s.state, s.result) for s in run.steps] == [
        ("map", "map:fan.square", "completed", {"total": 5, "failed": 0})
    ]
    job = app.client().get_job(run.job_id)
    assert job.state == "completed" and job.attempt == 1, "waiting for children counts nothing"
    # the run was replayed twice: the fan-out, then once when the last child ended
    assert scalar(conn, "SELECT count(*) FROM conveyor.jobs WHERE task = 'fan.square'") == 5


async def test_concurrency_bounds_the_children_running_at_once(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    running = 0
    most = 0

    @app.task(name="fan.slow")
    async def slow(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.03)
        running -= 1
        return i

    @app.workflow(name="fan.bounded")
    async def bounded(ctx: conveyor.WorkflowContext) -> list[int]:
        out: list[int] = await ctx.map(slow, [{"i": i} for i in range(12)], concurrency=3)
        return out

    run_id = await bounded.astart()
    async with running_worker(app, config(concurrency=10)):
        await state_of(app, run_id, "waiting")
        run = await state_of(app, run_id, "completed")
    assert run.result == list(range(12))
    assert 2 <= most <= 3, f"at most 3 children at once, and more than one (saw {most})"
    assert scalar(conn, "SELECT count(*) FROM conveyor.job WHERE task = 'fan.slow'") == 0


async def test_three_workers_ending_children_at_once_keep_the_bound_and_wake_once(
    app: conveyor.Conveyor,
) -> None:
    running = 0
    most = 0
    replays = 0

    @app.task(name="fan.brief")
    async def brief(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.005)
        running -= 1
        return i

    @app.workflow(name="fan.crowd")
    async def crowd(ctx: conveyor.WorkflowContext) -> bool:
        nonlocal replays
        replays += 1
        out = await ctx.map(brief, [{"i": i} for i in range(300)], concurrency=30)
        return bool(out == list(range(300)))

    run_id = await crowd.astart()
    cfg = config(concurrency=20, poll_interval=0.05)
    async with running_worker(app, cfg), running_worker(app, cfg), running_worker(app, cfg):
        run = await state_of(app, run_id, "completed", timeout=60)
    assert run.result is True
    assert replays == 2
    assert 1 < most <= 30, f"the bound holds across workers (saw {most} at once)"


async def test_children_past_the_bound_wait_parked_until_released(
    app: conveyor.Conveyor, db: str, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="fan.noop")
    def noop(i: int) -> None:
        return None

    # the workflow on an app of its own, so that its worker runs no child
    other = conveyor.Conveyor(db, clock=clock)

    @other.workflow(name="fan.parked")
    async def parked(ctx: conveyor.WorkflowContext) -> int:
        return len(await ctx.map(noop, [{"i": i} for i in range(10)], concurrency=4))

    try:
        run_id = await parked.astart()
        async with running_worker(other, config()):
            await state_of(other, run_id, "waiting")
            states = conn.execute(
                "SELECT state, count(*) FROM conveyor.job WHERE task = 'fan.noop'"
                " GROUP BY 1 ORDER BY 1"
            ).fetchall()
            assert states == [("available", 4), ("scheduled", 6)]
            async with running_worker(app, config()):
                run = await state_of(other, run_id, "completed")
        assert run.result == 10
    finally:
        await other.aclose()


async def test_a_parent_woken_early_parks_again_and_ends_once(
    app: conveyor.Conveyor, db: str, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    replays = 0

    @app.task(name="fan.one")
    def one(i: int) -> int:
        return 1

    other = conveyor.Conveyor(db, clock=clock)

    @other.workflow(name="fan.early")
    async def early(ctx: conveyor.WorkflowContext) -> int:
        nonlocal replays
        replays += 1
        return sum(await ctx.map(one, [{"i": i} for i in range(3)]))

    try:
        run_id = await early.astart()
        async with running_worker(other, config()):
            run = await state_of(other, run_id, "waiting")
            # a person (or a bug) makes the parent's job available before its children ran
            conn.execute(
                "UPDATE conveyor.job SET state = 'available', run_at = now() WHERE id = %s",
                (run.job_id,),
            )
            await eventually(lambda: replays == 2)
            await state_of(other, run_id, "waiting")
            job_state = scalar(conn, "SELECT state FROM conveyor.job WHERE id = %s", run.job_id)
            assert job_state == "scheduled", "the replay found the children unfinished: parked"
            async with running_worker(app, config()):
                run = await state_of(other, run_id, "completed")
        assert run.result == 3 and replays == 3
    finally:
        await other.aclose()


async def test_a_failed_child_fails_the_run_naming_the_child(app: conveyor.Conveyor) -> None:
    fixed = threading.Event()

    @app.task(name="fan.picky", max_attempts=1)
    def picky(i: int) -> int:
        if i == 2 and not fixed.is_set():
            raise ValueError(f"item {i} is bad")
        return i

    @app.workflow(name="fan.strict")
    async def strict(ctx: conveyor.WorkflowContext) -> list[int]:
        out: list[int] = await ctx.map(picky, [{"i": i} for i in range(4)])
        return out

    run_id = await strict.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "failed")
        assert run.error["type"] == "conveyor.errors.ChildFailed"
        assert "child 2" in run.error["message"] and "item 2 is bad" in run.error["message"]
        assert run.steps[0].state == "failed"
        # retrying the run forgets the failed fan-out step: the map runs again, every child
        fixed.set()
        assert await app.async_client().retry_workflow(run_id)
        run = await state_of(app, run_id, "completed")
    assert run.result == [0, 1, 2, 3]


async def test_the_first_failed_child_fails_the_run_at_once_and_cancels_the_parked_ones(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    hold = asyncio.Event()

    @app.task(name="fan.ff", max_attempts=1)
    async def ff(i: int) -> int:
        if i == 0:
            await hold.wait()  # still running when its sibling fails
        if i == 1:
            raise ValueError("one is bad")
        return i

    @app.workflow(name="fan.ffchild")
    async def ffchild(ctx: conveyor.WorkflowContext, i: int) -> int:
        if i == 0:
            raise ValueError("child run 0 is bad")
        return i

    @app.workflow(name="fan.fast")
    async def fast(ctx: conveyor.WorkflowContext) -> Any:
        return await ctx.map(ff, [{"i": i} for i in range(10)], concurrency=2)

    @app.workflow(name="fan.fast_runs")
    async def fast_runs(ctx: conveyor.WorkflowContext) -> Any:
        try:
            return await ctx.map(ffchild, [{"i": i} for i in range(3)], concurrency=1)
        except conveyor.ChildFailed as exc:
            return {"index": exc.index, "state": exc.state, "message": exc.error["message"]}

    run_id = await fast.astart()
    runs_id = await fast_runs.astart()
    async with running_worker(app, config(concurrency=8)):
        run = await state_of(app, run_id, "failed")
        assert "child 1" in run.error["message"] and "one is bad" in run.error["message"]
        # failed while child 0 still runs; the 8 never let go are cancelled
        states = conn.execute(
            "SELECT state, count(*) FROM conveyor.jobs WHERE task = 'fan.ff' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert states == [("cancelled", 8), ("failed", 1), ("running", 1)]
        hold.set()
        runs = await state_of(app, runs_id, "completed")
    assert runs.result == {"index": 0, "state": "failed", "message": "child run 0 is bad"}
    children = await app.async_client().list_workflows(workflow="fan.ffchild")
    assert sorted(r.state for r in children) == ["cancelled", "cancelled", "failed"]
    assert scalar(conn, "SELECT count(*) FROM conveyor.job WHERE task LIKE 'fan.%%'") == 0


async def test_on_failure_return_gives_an_error_object_in_the_childs_place(
    app: conveyor.Conveyor,
) -> None:
    @app.task(name="fan.picky2", max_attempts=1)
    def picky(i: int) -> int:
        if i == 1:
            raise ValueError("no ones")
        return i

    @app.workflow(name="fan.lenient")
    async def lenient(ctx: conveyor.WorkflowContext) -> list[Any]:
        out = await ctx.map(picky, [{"i": i} for i in range(3)], on_failure="return")
        return [r.to_dict() if isinstance(r, conveyor.ChildError) else r for r in out]

    run_id = await lenient.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "completed")
    first, bad, last = run.result
    assert (first, last) == (0, 2)
    assert bad["index"] == 1 and bad["state"] == "failed" and bad["run_id"] is None
    assert bad["error"]["type"] == "ValueError" and bad["error"]["message"] == "no ones"


async def test_a_child_ended_by_the_rescuer_or_a_job_cancel_counts_as_ended(
    app: conveyor.Conveyor, db: str, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="fan.echo", max_attempts=1)
    def echo(i: int) -> int:
        return i

    other = conveyor.Conveyor(db, clock=clock)

    @other.workflow(name="fan.survivor")
    async def survivor(ctx: conveyor.WorkflowContext) -> list[Any]:
        out = await ctx.map(echo, [{"i": i} for i in range(3)], on_failure="return")
        return [r.state if isinstance(r, conveyor.ChildError) else r for r in out]

    try:
        run_id = await survivor.astart()
        async with running_worker(other, config()):
            await state_of(other, run_id, "waiting")
        child_ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM conveyor.job WHERE task = 'fan.echo' ORDER BY id"
            ).fetchall()
        ]
        # child 0: its worker died on its last attempt (lease expired); child 1: cancelled
        conn.execute(
            "UPDATE conveyor.job SET state = 'running', attempt = 1, worker_id = 'gone',"
            " lease_token = gen_random_uuid(), lease_expires_at = %s WHERE id = %s",
            (START - timedelta(hours=1), child_ids[0]),
        )
        assert await app.async_client().cancel(child_ids[1]) == [child_ids[1]]
        async with running_worker(other, fast_config()), running_worker(app, fast_config()):
            run = await state_of(other, run_id, "completed")
        assert run.result == ["failed", "cancelled", 2]
    finally:
        await other.aclose()


async def test_run_workflow_returns_the_child_runs_result_or_raises(
    app: conveyor.Conveyor,
) -> None:
    @app.workflow(name="fan.child")
    async def child(ctx: conveyor.WorkflowContext, x: int) -> int:
        doubled: int = await ctx.step("double", lambda: x * 2)
        if x < 0:
            raise ValueError("negative")
        return doubled

    @app.workflow(name="fan.parent")
    async def parent(ctx: conveyor.WorkflowContext) -> dict[str, Any]:
        good = await ctx.run_workflow(child, x=21)
        try:
            await ctx.run_workflow(child, x=-1)
        except conveyor.ChildFailed as exc:
            return {"good": good, "bad": exc.error["message"], "run": exc.run_id}
        return {"good": good}

    run_id = await parent.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "completed")
    assert run.result["good"] == 42 and run.result["bad"] == "negative"
    child_run = await app.async_client().get_workflow(run.result["run"])
    assert child_run.parent_run_id == run_id and child_run.state == "failed"
    assert [(s.kind, s.name) for s in run.steps] == [("child", "fan.child"), ("child", "fan.child")]


async def test_map_over_a_child_workflow_and_in_a_sync_workflow(app: conveyor.Conveyor) -> None:
    @app.workflow(name="fan.inc")
    def inc(ctx: conveyor.WorkflowContext, x: int) -> int:
        return int(ctx.step("inc", lambda: x + 1))

    @app.workflow(name="fan.sync_parent")
    def sync_parent(ctx: conveyor.WorkflowContext) -> list[int]:
        first, second = ctx.gather(ctx.step("a", lambda: 1), ctx.step("b", lambda: 2))
        return [first, second, *ctx.map(inc, [{"x": 10}, {"x": 20}], concurrency=1)]

    run_id = sync_parent.start()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "completed")
    assert run.result == [1, 2, 11, 21]


async def test_cancel_cascades_to_child_jobs_child_runs_and_their_waits(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="fan.forever")
    async def forever(i: int) -> None:
        await asyncio.sleep(60)

    @app.workflow(name="fan.waiter")
    async def waiter(ctx: conveyor.WorkflowContext, k: str) -> Any:
        return await ctx.wait_for_event("never", key=k)

    @app.workflow(name="fan.middle")
    async def middle(ctx: conveyor.WorkflowContext) -> Any:
        return await ctx.map(waiter, [{"k": "a"}, {"k": "b"}])

    @app.workflow(name="fan.top")
    async def top(ctx: conveyor.WorkflowContext) -> Any:
        await ctx.run_workflow(middle)
        return "never"

    @app.workflow(name="fan.top2")
    async def top2(ctx: conveyor.WorkflowContext) -> Any:
        return await ctx.map(forever, [{"i": i} for i in range(5)], concurrency=2)

    top_id = await top.astart()
    top2_id = await top2.astart()
    client = app.async_client()
    async with running_worker(app, config(concurrency=8)):
        await state_of(app, top_id, "waiting")

        async def grandchildren_waiting() -> bool:
            waiting = await client.list_workflows(workflow="fan.waiter", state="waiting")
            return len(waiting) == 2

        await eventually(grandchildren_waiting)
        await eventually(
            lambda: (
                scalar(
                    conn,
                    "SELECT count(*) FROM conveyor.job"
                    " WHERE task = 'fan.forever' AND state = 'running'",
                )
                == 2
            )
        )
        assert await client.cancel_workflow(top_id)
        assert await client.cancel_workflow(top2_id)
        runs = await client.list_workflows(limit=100)
        assert {r.workflow: r.state for r in runs} == {
            "fan.top": "cancelled",
            "fan.middle": "cancelled",
            "fan.waiter": "cancelled",
            "fan.top2": "cancelled",
        }
        assert all(r.wait_event is None for r in runs)
        await eventually(
            lambda: scalar(conn, "SELECT count(*) FROM conveyor.job WHERE task LIKE 'fan.%%'") == 0
        )
    states = conn.execute(
        "SELECT task, state, count(*) FROM conveyor.job_done WHERE task LIKE 'fan.%%'"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert states == [
        ("fan.forever", "cancelled", 5),
        ("fan.middle", "cancelled", 1),
        ("fan.top", "cancelled", 1),
        ("fan.top2", "cancelled", 1),
        ("fan.waiter", "cancelled", 2),
    ]
    assert await client.cancel_workflow(top_id) is False


async def test_ten_thousand_children_wake_the_parent_once(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    replays = 0

    @app.task(name="fan.nothing")
    async def nothing(i: int) -> int:
        return i

    @app.workflow(name="fan.wide")
    async def wide(ctx: conveyor.WorkflowContext, n: int) -> dict[str, int]:
        nonlocal replays
        replays += 1
        out = await ctx.map(nothing, [{"i": i} for i in range(n)], concurrency=500)
        return {"count": len(out), "sum": sum(out), "in_order": out == list(range(n))}

    started = time.monotonic()
    run_id = await wide.astart(n=10_000)
    async with running_worker(app, config(concurrency=200, poll_interval=0.05)):
        run = await state_of(app, run_id, "completed", timeout=60)
    took = time.monotonic() - started
    assert run.result == {"count": 10_000, "sum": sum(range(10_000)), "in_order": True}
    assert replays == 2, "one replay fanned out, the last child's end woke exactly one more"
    assert scalar(conn, "SELECT count(*) FROM conveyor.job_done WHERE task = 'fan.nothing'") == (
        10_000
    )
    print(f"10,000 children: {took:.1f}s")  # the figure for the report (pytest -s)
