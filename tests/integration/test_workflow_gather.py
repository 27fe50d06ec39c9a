"""ctx.gather on a real Postgres with a worker in the test's event loop: steps run at once,
replay in their places, and a step that must wait parks the run only after the others recorded.
(A sync workflow's gather is in test_workflow_fanout.py, with its map.)"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

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


def config() -> conveyor.WorkerConfig:
    return fast_config(rescue_interval=3600.0)


async def state_of(app: conveyor.Conveyor, run_id: str, state: str) -> Any:
    async def reached() -> Any:
        run = await app.async_client().get_workflow(run_id)
        return run if run.state == state else None

    return await eventually(reached)


async def test_gather_runs_steps_concurrently_and_replays_them_in_place(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock
) -> None:
    both = threading.Barrier(2, timeout=5)  # passes only if the two steps run at once
    calls: list[str] = []

    def meet(name: str) -> str:
        calls.append(name)
        both.wait()
        return name

    @app.workflow(name="fan.gather")
    async def together(ctx: conveyor.WorkflowContext) -> list[Any]:
        pair = await ctx.gather(ctx.step("a", meet, "a"), ctx.step("b", meet, "b"))
        await ctx.sleep(timedelta(hours=1))
        return [*pair, await ctx.step("c", lambda: "c")]

    run_id = await together.astart()
    async with running_worker(app, config()):
        await state_of(app, run_id, "sleeping")
        clock.advance(hours=2)
        run = await state_of(app, run_id, "completed")
    assert run.result == ["a", "b", "c"]
    assert sorted(calls) == ["a", "b"], "the replay after the sleep ran neither step again"
    assert [(s.position, s.name) for s in run.steps] == [(0, "a"), (1, "b"), (2, "sleep"), (3, "c")]


async def test_gather_parks_for_a_retry_only_after_its_other_steps_recorded(
    app: conveyor.Conveyor,
) -> None:
    runs: dict[str, int] = {"flaky": 0, "slow": 0}

    def flaky() -> str:
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise ConnectionError("first try fails")
        return "flaky"

    def slow() -> str:
        runs["slow"] += 1
        time.sleep(0.2)  # still running when the flaky step's first attempt fails
        return "slow"

    @app.workflow(name="fan.retry_in_gather")
    async def retried(ctx: conveyor.WorkflowContext) -> list[str]:
        out: list[str] = await ctx.gather(
            ctx.step("flaky", flaky, backoff=0.0), ctx.step("slow", slow)
        )
        return out

    run_id = await retried.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "completed")
    assert run.result == ["flaky", "slow"]
    assert runs == {"flaky": 2, "slow": 1}, "the slow step's record was not refused by the park"


async def test_a_sleep_in_a_gather_parks_the_run_after_its_steps_recorded(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock
) -> None:
    ran: list[str] = []

    def work() -> str:
        ran.append("work")
        return "done"

    @app.workflow(name="fan.nap")
    async def nap(ctx: conveyor.WorkflowContext) -> list[Any]:
        out: list[Any] = await ctx.gather(ctx.sleep(timedelta(days=1)), ctx.step("work", work))
        return out

    run_id = await nap.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "sleeping")
        assert [(s.name, s.state) for s in run.steps] == [
            ("sleep", "sleeping"),
            ("work", "completed"),
        ]
        assert run.wake_at == START + timedelta(days=1)
        clock.advance(days=1, seconds=1)
        run = await state_of(app, run_id, "completed")
    assert run.result == [None, "done"] and ran == ["work"]
