"""Durable workflows on a real Postgres, with a worker in the test's event loop: steps replay
after a resume, retries, atomic steps, the determinism guard, versioning, sleeps with a frozen
clock, cancel and retry. Events are in test_workflow_events.py."""

from __future__ import annotations

import contextlib
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


async def test_failing_step_retries_without_running_earlier_steps_again(
    app: conveyor.Conveyor, effects: Effects
) -> None:
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        effects.add("r", "flaky")
        if len(tries) < 3:
            raise ConnectionError(f"try {len(tries)} failed")
        return "ok"

    @app.workflow(name="wf.retry")
    def retrying(ctx: conveyor.WorkflowContext) -> Any:
        ctx.step("first", lambda: effects.add("r", "first"))
        return ctx.step("flaky", flaky, max_attempts=3, backoff=0.0)

    run_id = retrying.start()
    async with running_worker(app, config()):
        run = await finished(app, run_id)
    assert run.result == "ok"
    assert effects.count("first") == 1 and effects.count("flaky") == 3
    assert run.steps[1].attempts == 3 and run.steps[1].error is None
    assert app.client().get_job(run.job_id).attempt == 1


async def test_step_failing_for_good_raises_step_failed_into_the_workflow(
    app: conveyor.Conveyor,
) -> None:
    def broken() -> None:
        raise ValueError("card declined")

    @app.workflow(name="wf.compensate")
    async def compensate(ctx: conveyor.WorkflowContext) -> Any:
        try:
            await ctx.step("charge", broken, max_attempts=2, backoff=0.0)
        except conveyor.StepFailed as failed:
            return {"refunded": True, "why": failed.error["message"], "step": failed.step}
        return {"refunded": False}

    @app.workflow(name="wf.uncaught")
    async def uncaught(ctx: conveyor.WorkflowContext) -> None:
        await ctx.step("charge", broken, max_attempts=1)

    caught_id = await compensate.astart()
    failed_id = await uncaught.astart()
    async with running_worker(app, config()):
        caught = await finished(app, caught_id)
        failed = await finished(app, failed_id, "failed")
    assert caught.result == {"refunded": True, "why": "card declined", "step": "charge"}
    assert caught.steps[0].state == "failed" and caught.steps[0].attempts == 2
    assert failed.error["type"] == "conveyor.errors.StepFailed"
    assert "card declined" in failed.error["message"]
    assert app.client().get_job(failed.job_id).state == "failed"


async def test_atomic_step_writes_exactly_once_with_its_record(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS wf_ledger (run text, amount int)")
    conn.execute("TRUNCATE wf_ledger")
    calls: list[int] = []

    async def charge(tx: psycopg.AsyncConnection[Any], run: str, amount: int) -> int:
        calls.append(amount)
        await tx.execute("INSERT INTO wf_ledger VALUES (%s, %s)", (run, amount))
        if len(calls) == 1:
            raise RuntimeError("crash after the write, before the commit")
        return amount

    @app.workflow(name="wf.atomic")
    async def pay(ctx: conveyor.WorkflowContext, amount: int) -> Any:
        return await ctx.step(
            "charge", charge, ctx.run_id, amount, atomic=True, max_attempts=2, backoff=0.0
        )

    run_id = await pay.astart(amount=30)
    async with running_worker(app, config()):
        run = await finished(app, run_id)
    assert run.result == 30 and calls == [30, 30]
    rows = conn.execute("SELECT run, amount FROM wf_ledger").fetchall()
    assert rows == [(run_id, 30)], "the failed attempt's write was rolled back with it"


async def test_code_asking_for_another_step_fails_the_run_without_running_it(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, effects: Effects
) -> None:
    version = {"n": 1}

    @app.workflow(name="wf.changed")
    async def changed(ctx: conveyor.WorkflowContext) -> None:
        if version["n"] == 1:
            await ctx.step("reserve", lambda: effects.add("x", "reserve"))
        else:
            await ctx.step("charge", lambda: effects.add("x", "charge"))
        await ctx.sleep(60)
        await ctx.step("ship", lambda: effects.add("x", "ship"))

    run_id = await changed.astart()
    async with running_worker(app, config()):
        await state_of(app, run_id, "sleeping")
        version["n"] = 2  # a deploy renames the first step while the run sleeps
        clock.advance(seconds=61)
        run = await finished(app, run_id, "failed")
    assert run.error["type"] == "conveyor.errors.NonDeterminismError"
    message = run.error["message"]
    assert "position 0" in message and "'reserve'" in message and "'charge'" in message
    assert effects.count("charge") == 0 and effects.count("ship") == 0
    assert effects.count("reserve") == 1


async def test_patched_runs_take_the_new_path_and_old_runs_replay_the_old_one(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, effects: Effects
) -> None:
    deployed = {"v2": False}

    @app.workflow(name="wf.versioned")
    async def versioned(ctx: conveyor.WorkflowContext, who: str) -> str:
        await ctx.step("reserve", lambda: effects.add(who, "reserve"))
        if deployed["v2"] and await ctx.patched("fraud-check"):
            await ctx.step("fraud", lambda: effects.add(who, "fraud"))
        await ctx.sleep(60)
        await ctx.step("ship", lambda: effects.add(who, "ship"))
        return "done"

    old_id = await versioned.astart(who="old")
    async with running_worker(app, config()):
        await state_of(app, old_id, "sleeping")
        deployed["v2"] = True  # the new code ships while the old run sleeps
        new_id = await versioned.astart(who="new")
        await state_of(app, new_id, "sleeping")
        clock.advance(seconds=61)
        old = await finished(app, old_id)
        new = await finished(app, new_id)
    assert [s.name for s in old.steps] == ["reserve", "sleep", "ship"]
    assert [s.name for s in new.steps] == ["reserve", "fraud-check", "fraud", "sleep", "ship"]
    assert effects.count("fraud") == 1 and effects.count("ship") == 2


async def test_sync_workflow_runs_in_a_thread_with_plain_calls(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, effects: Effects
) -> None:
    @app.workflow(name="wf.sync")
    def onboarding(ctx: conveyor.WorkflowContext, user: str) -> list[Any]:
        a = ctx.step("a", lambda: effects.add(user, "a") or 1)
        ctx.sleep_until(START + timedelta(hours=1))
        b = ctx.step("b", lambda: effects.add(user, "b") or 2)
        return [a, b]

    run_id = onboarding.start(user="sam")
    async with running_worker(app, config()):
        await state_of(app, run_id, "sleeping")
        clock.advance(hours=1)
        run = await finished(app, run_id)
    assert run.result == [1, 2] and effects.count() == 2


async def test_cancel_stops_a_sleeping_run_and_its_job(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.long")
    async def long(ctx: conveyor.WorkflowContext) -> None:
        await ctx.sleep(timedelta(days=30))

    run_id = await long.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "sleeping")
        assert await app.async_client().cancel_workflow(run_id) is True
        assert await app.async_client().cancel_workflow(run_id) is False
    run = app.client().get_workflow(run_id)
    assert run.state == "cancelled" and run.finished_at is not None
    assert app.client().get_job(run.job_id).state == "cancelled"


async def test_retry_resumes_a_failed_run_from_its_failed_step(
    app: conveyor.Conveyor, effects: Effects
) -> None:
    healthy = {"yes": False}

    def call_partner() -> str:
        effects.add("p", "partner")
        if not healthy["yes"]:
            raise ConnectionError("partner down")
        return "answered"

    @app.workflow(name="wf.partner")
    async def partner(ctx: conveyor.WorkflowContext) -> Any:
        await ctx.step("prepare", lambda: effects.add("p", "prepare"))
        return await ctx.step("call", call_partner, max_attempts=1)

    run_id = await partner.astart()
    async with running_worker(app, config()):
        failed = await finished(app, run_id, "failed")
        first_job = failed.job_id
        healthy["yes"] = True
        assert app.client().retry_workflow(run_id) is True
        run = await finished(app, run_id)
    assert run.result == "answered" and run.job_id != first_job
    assert effects.count("prepare") == 1 and effects.count("partner") == 2
    assert app.client().retry_workflow(run_id) is False


async def test_limits_fail_with_errors_that_say_the_fix(app: conveyor.Conveyor) -> None:
    @app.workflow(name="wf.big")
    async def big(ctx: conveyor.WorkflowContext) -> Any:
        try:
            await ctx.step("blob", lambda: "x" * 100_000)
        except conveyor.StepFailed as failed:
            return failed.error["message"]
        return "stored"

    @app.workflow(name="wf.many", max_steps=5)
    async def many(ctx: conveyor.WorkflowContext) -> None:
        for n in range(6):
            # swallowed, yet the run fails: the limit holds
            with contextlib.suppress(conveyor.WorkflowError):
                await ctx.step(f"s{n}", lambda: None)

    big_id, many_id = await big.astart(), await many.astart()
    async with running_worker(app, config()):
        blob = await finished(app, big_id)
        limited = await finished(app, many_id, "failed")
    assert "store it elsewhere" in blob.result and "return its id" in blob.result
    assert blob.steps[0].attempts == 1, "a result too large is not retried"
    assert "limit of 5 steps" in limited.error["message"]
    assert len(limited.steps) == 5


async def test_steps_are_logged_and_counted(
    app: conveyor.Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    @app.workflow(name="wf.counted")
    async def counted(ctx: conveyor.WorkflowContext) -> None:
        await ctx.step("one", lambda: 1)
        await ctx.step("two", lambda: 2)

    run_id = await counted.astart()
    caplog.set_level("INFO", logger="conveyor.workflow")
    async with running_worker(app, config()) as worker:
        await finished(app, run_id)
        registry = worker.metrics.registry
        steps = registry.get_sample_value(
            "conveyor_workflow_steps_total", {"workflow": "wf.counted", "outcome": "completed"}
        )
        runs = {
            event: registry.get_sample_value(
                "conveyor_workflow_runs_total", {"workflow": "wf.counted", "event": event}
            )
            for event in ("started", "completed")
        }
    assert steps == 2 and runs == {"started": 1, "completed": 1}
    lines = [r for r in caplog.records if r.name == "conveyor.workflow"]
    assert [(r.run_id, r.step, r.position, r.outcome) for r in lines] == [  # type: ignore[attr-defined]
        (run_id, "one", 0, "completed"),
        (run_id, "two", 1, "completed"),
    ]


async def test_cli_lists_shows_cancels_and_retries_runs(app: conveyor.Conveyor) -> None:
    from click.testing import CliRunner

    from conveyor.cli.root import cli

    @app.workflow(name="wf.cli")
    async def waits(ctx: conveyor.WorkflowContext) -> None:
        await ctx.step("ready", lambda: "set")
        await ctx.wait_for_event("go", key="cli")

    run_id = await waits.astart()
    async with running_worker(app, config()):
        await state_of(app, run_id, "waiting")

    def invoke(*argv: str) -> Any:
        return CliRunner().invoke(cli, ["--database-url", app.database_url, *argv])

    listed = invoke("workflows", "list", "--state", "waiting")
    assert listed.exit_code == 0 and run_id in listed.output and "wf.cli" in listed.output
    shown = invoke("workflows", "show", run_id)
    assert shown.exit_code == 0
    assert "waits for event 'go' key 'cli'" in shown.output and "ready" in shown.output
    assert invoke("workflows", "retry", run_id).exit_code == 1  # not failed
    cancelled = invoke("workflows", "cancel", run_id)
    assert cancelled.exit_code == 0 and f"{run_id}: cancelled" in cancelled.output
    assert invoke("workflows", "cancel", run_id).exit_code == 1
    missing = invoke("workflows", "show", "no-such-run")
    assert missing.exit_code == 1 and "no workflow run" in missing.output


async def test_retry_resumes_a_run_whose_job_failed_for_good(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, effects: Effects
) -> None:
    @app.workflow(name="wf.orphan")
    async def orphan(ctx: conveyor.WorkflowContext) -> str:
        await ctx.step("first", lambda: effects.add("o", "first"))
        await ctx.sleep(3600)
        return "resumed"

    run_id = await orphan.astart()
    async with running_worker(app, config()):
        run = await state_of(app, run_id, "sleeping")
        # what the rescuer does to a job whose worker kept crashing: failed for good
        app.client().cancel(run.job_id)
        assert app.client().get_workflow(run_id).state == "sleeping"
        assert app.client().retry_workflow(run_id) is True
        run = await state_of(app, run_id, "sleeping")  # its sleep keeps its wake time
        clock.advance(seconds=3600)
        run = await finished(app, run_id)
    assert run.result == "resumed" and effects.count("first") == 1


async def test_sync_workflow_refuses_an_async_step_without_running_it(
    app: conveyor.Conveyor,
) -> None:
    ran: list[str] = []

    async def notify() -> None:
        ran.append("notify")

    @app.workflow(name="wf.mixed")
    def mixed(ctx: conveyor.WorkflowContext) -> None:
        ctx.step("notify", notify)

    run_id = mixed.start()
    async with running_worker(app, config()):
        run = await finished(app, run_id, "failed")
    assert "async function in a sync workflow" in run.error["message"]
    assert ran == [] and run.steps == ()
