"""The worker tests again, once, through a real PgBouncer in transaction mode.

The tests below are the suite's own, collected here a second time: this module's `app` (and
`store`) fixtures shadow conftest's, so every connection the app, its client and its worker
open goes through pgbouncer with the app in PgBouncer mode (no LISTEN: the worker polls). A
test's own checks still read the database directly (`conn`, `db`). A representative set:
drain, retries, cron once per slot, workflows with a sleep and steps, unique jobs, rate limits
and pause, and the leader lease rescuing an expired job lease.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.postgres import PostgresStore
from tests.helpers import eventually, fast_config, job_states, running_worker
from tests.integration import test_cron
from tests.integration.test_queue_controls import (
    t,
    test_paused_queue_starts_nothing_until_resumed_and_enqueue_goes_on,
    test_rate_limited_worker_waits_for_the_next_window_without_polling,
)
from tests.integration.test_unique_and_sql import test_key_is_free_again_once_the_job_finished
from tests.integration.test_worker_basics import (
    test_exhausted_job_lands_in_failed,
    test_failed_attempts_are_retried_then_complete,
    test_runs_async_and_sync_handlers,
)
from tests.integration.test_workflows import (
    effects,
    test_failing_step_retries_without_running_earlier_steps_again,
    test_steps_run_once_and_replay_after_a_sleep,
)
from tests.pgbouncer import Bouncer, pgbouncer

__all__ = [  # collected again here, through pgbouncer
    "effects",
    "t",
    "test_exhausted_job_lands_in_failed",
    "test_failed_attempts_are_retried_then_complete",
    "test_failing_step_retries_without_running_earlier_steps_again",
    "test_key_is_free_again_once_the_job_finished",
    "test_paused_queue_starts_nothing_until_resumed_and_enqueue_goes_on",
    "test_rate_limited_worker_waits_for_the_next_window_without_polling",
    "test_runs_async_and_sync_handlers",
    "test_steps_run_once_and_replay_after_a_sleep",
]


#: The cron test's frozen start, for the clock of the tests written here.
START = test_cron.START


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[Bouncer]:
    with pgbouncer(database_url) as running:
        yield running


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> conveyor.FrozenClock:
    """The frozen clock of the module the test comes from (its START)."""
    return conveyor.FrozenClock(sys.modules[request.function.__module__].START)


@pytest.fixture
async def app(
    db: str, bouncer: Bouncer, request: pytest.FixtureRequest
) -> AsyncIterator[conveyor.Conveyor]:
    """The app through pgbouncer, with the test's frozen clock when it asks for one."""
    frozen = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    application = conveyor.Conveyor(bouncer.url, clock=frozen, pgbouncer=True)
    yield application
    await application.aclose()


@pytest.fixture
async def store(bouncer: Bouncer) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(bouncer.url, pgbouncer=True)
    await opened.open()
    yield opened
    await opened.close()


async def test_a_worker_runs_the_cron_job_once_per_slot(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="cron.tick")
    def tick(ctx: conveyor.JobContext) -> str | None:
        return ctx.cron_slot.isoformat() if ctx.cron_slot else None

    await test_cron.test_a_worker_runs_the_cron_job_and_the_handler_sees_its_slot(app, clock, conn)


async def test_the_leader_lease_holder_runs_maintenance_and_rescues_an_expired_lease(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="again")
    def again() -> str:
        return "ran"

    job_id = again.enqueue()
    # a worker that died holding the job: claimed with a one-second lease nobody renews
    claimed = await store.job_fetch_available(
        queue="default",
        tasks=["again"],
        task_max_attempts=[3],
        limit=1,
        lease_seconds=1,
        token=uuid.uuid4(),
        worker_id="gone",
    )
    assert [j.id for j in claimed] == [job_id]
    async with running_worker(app, fast_config()) as worker:
        await eventually(lambda: job_states(conn) == {"completed": 1})
        holder = conn.execute("SELECT holder FROM conveyor.leader").fetchone()
        assert holder == (worker.id,), "the only worker took the lease through pgbouncer"
    job = app.client().get_job(job_id)
    assert (job.attempt, job.result) == (2, "ran")
    assert conn.execute("SELECT count(*) FROM conveyor.leader").fetchone() == (0,), "resigned"


async def test_many_jobs_drain_without_prepared_statement_errors(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor")

    @app.task(name="touch")
    async def touch(n: int) -> int:
        return n

    # far past psycopg's prepare threshold (5) on every pooled connection
    app.enqueue_many([touch.spec(n=n) for n in range(300)])
    async with running_worker(app, fast_config(concurrency=8, batch_size=20)):
        await eventually(lambda: job_states(conn) == {"completed": 300})
    assert "prepared statement" not in caplog.text
    assert "pickup: polling every 0.2s (PgBouncer transaction mode" in caplog.text
