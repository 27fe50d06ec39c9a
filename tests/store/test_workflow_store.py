"""The workflow engine's writes on the PostgresStore: fenced by the driving job's lease, so a
worker that lost the job records nothing; runs and events pruned after retention."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store import workflows as ops
from conveyor._store.postgres import PostgresStore
from conveyor._store.runner import arun
from conveyor.job import Job
from conveyor.workflow.engine import WorkflowEngine


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


async def _claim(store: PostgresStore, task: str) -> tuple[Job, uuid.UUID]:
    token = uuid.uuid4()
    jobs = await store.job_fetch_available(
        queue="default",
        tasks=[task],
        task_max_attempts=[5],
        limit=1,
        lease_seconds=30.0,
        token=token,
        worker_id="w1",
    )
    assert len(jobs) == 1
    return jobs[0], token


def _steal(conn: psycopg.Connection[Any], job_id: int) -> None:
    """What a rescue and another worker's claim do to the job: a new lease token."""
    conn.execute("UPDATE conveyor.job SET lease_token = gen_random_uuid() WHERE id = %s", (job_id,))


async def test_a_worker_that_lost_the_job_records_no_step(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    ran: list[str] = []

    def side_effect() -> str:
        ran.append("charged")
        _steal(conn, job.id)  # the lease is lost while the step runs
        return "charged"

    @app.workflow(name="wf.fenced")
    def fenced(ctx: conveyor.WorkflowContext) -> Any:
        return ctx.step("charge", side_effect)

    run_id = fenced.start()
    job, token = await _claim(store, "wf.fenced")
    ended = WorkflowEngine(store).run(fenced, job, token)
    assert ended.kind == "lost" and ran == ["charged"]
    assert app.client().get_workflow(run_id).steps == ()
    assert app.client().get_workflow(run_id).state == "running"


async def test_a_stale_worker_cannot_begin_finish_or_park_a_run(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="wf.stale")
    async def stale(ctx: conveyor.WorkflowContext) -> None:
        await ctx.sleep(60)

    run_id = await stale.astart()
    job, token = await _claim(store, "wf.stale")
    _steal(conn, job.id)
    ended = await WorkflowEngine(store).arun(stale, job, token)
    assert ended.kind == "lost"
    run = app.client().get_workflow(run_id)
    assert run.state == "running" and run.started_at is None and run.steps == ()
    fence = ops.Fence(job.id, token, None)
    async with store.transaction() as tx:
        assert not await arun(tx, ops.park(run_id, fence, state="sleeping", wake_at=None))
        assert not await arun(
            tx, ops.finish(run_id, fence, state="completed", result_json=None, error_json=None)
        )


async def test_pruning_deletes_old_finished_runs_with_their_steps_and_expired_events(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="wf.pruned")
    def pruned(ctx: conveyor.WorkflowContext) -> None:
        return None

    old, recent, running = pruned.start(), pruned.start(), pruned.start()
    conn.execute(
        "UPDATE conveyor.workflow_runs SET state = 'completed', finished_at = now() - %s"
        " WHERE id = ANY(%s)",
        (timedelta(days=2), [old]),
    )
    conn.execute(
        "UPDATE conveyor.workflow_runs SET state = 'completed', finished_at = now() WHERE id = %s",
        (recent,),
    )
    conn.execute(
        "INSERT INTO conveyor.workflow_steps (run_id, position, name, state) VALUES (%s, 0, 's',"
        " 'completed')",
        (old,),
    )
    app.send_event("e", key="k")
    conn.execute("UPDATE conveyor.workflow_events SET expires_at = now() - interval '1 s'")
    app.send_event("e", key="kept")
    day = timedelta(days=1).total_seconds()
    op = ops.prune(
        completed_seconds=day, cancelled_seconds=day, failed_seconds=day, limit=100, now=None
    )
    async with await psycopg.AsyncConnection.connect(app.database_url, autocommit=True) as c:
        assert await arun(c, op) == (1, 1)
    left = {r.id for r in app.client().list_workflows()}
    assert left == {recent, running}
    assert conn.execute("SELECT count(*) FROM conveyor.workflow_steps").fetchone() == (0,)
    keys = conn.execute("SELECT key FROM conveyor.workflow_events").fetchall()
    assert keys == [("kept",)]


class _FlakyStore:
    """The store, with its N-th transaction failing as a lost connection would."""

    def __init__(self, store: PostgresStore, fail_at: int) -> None:
        self._store = store
        self._fail_at = fail_at
        self.opened = 0

    def transaction(self) -> Any:
        self.opened += 1
        if self.opened == self._fail_at:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return self._store.transaction()

    def sync_transaction(self) -> Any:
        return self._store.sync_transaction()


async def test_a_database_error_is_the_jobs_to_retry_not_the_runs_failure(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="wf.blip")
    async def blip(ctx: conveyor.WorkflowContext) -> Any:
        try:
            return await ctx.step("one", lambda: 1)
        except Exception:  # noqa: BLE001 - the workflow cannot swallow the database's trouble
            return "swallowed"

    run_id = await blip.astart()
    job, token = await _claim(store, "wf.blip")
    flaky = _FlakyStore(store, fail_at=2)  # 1: begin, 2: the step's record
    with pytest.raises(psycopg.OperationalError):
        await WorkflowEngine(flaky).arun(blip, job, token)
    run = app.client().get_workflow(run_id)
    assert run.state == "running" and run.steps == ()
    ended = await WorkflowEngine(store).arun(blip, job, token)  # the job's next attempt
    assert ended.kind == "completed" and ended.result_json == "1"
