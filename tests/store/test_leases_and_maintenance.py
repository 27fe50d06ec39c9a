"""Leases, fencing and the maintenance services, driven by a frozen clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.leader import LeaderLock
from conveyor._store.postgres import PostgresStore
from conveyor._store.protocol import Completion, Failure, Pruned, Rescued
from conveyor.maintenance.pruner import JobPruner
from conveyor.maintenance.rescuer import JobRescuer
from conveyor.maintenance.scheduler import JobScheduler
from tests.helpers import eventually


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(db)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock()


async def _claim(
    store: PostgresStore, clock: conveyor.FrozenClock, *, lease: float = 30.0
) -> tuple[conveyor.Job, uuid.UUID]:
    token = uuid.uuid4()
    jobs = await store.job_fetch_available(
        queue="default",
        tasks=["t"],
        task_max_attempts=[3],
        limit=1,
        lease_seconds=lease,
        token=token,
        worker_id="w1",
        now=clock.now(),
    )
    assert len(jobs) == 1
    return jobs[0], token


def _enqueue(conn: psycopg.Connection[Any], clock: conveyor.FrozenClock) -> int:
    row = conn.execute(
        "INSERT INTO conveyor.job (task, created_at, run_at) VALUES ('t', %s, %s) RETURNING id",
        (clock.now(), clock.now()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _state(conn: psycopg.Connection[Any], job_id: int) -> tuple[str, int]:
    row = conn.execute("SELECT state, attempt FROM conveyor.jobs WHERE id = %s", (job_id,))
    found = row.fetchone()
    assert found is not None
    return found[0], found[1]


async def test_rescues_running_job_whose_lease_expired(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    await _claim(store, clock)
    rescuer = JobRescuer(store, clock=clock)
    assert await rescuer.run_once() == Rescued(retried=0, failed=0)
    clock.advance(seconds=31)
    assert await rescuer.run_once() == Rescued(retried=1, failed=0)
    assert _state(conn, job_id) == ("available", 1)
    errors = conn.execute("SELECT errors FROM conveyor.jobs").fetchone()
    assert errors is not None and errors[0][0]["type"] == "LeaseExpired"


async def test_rescue_fails_a_job_out_of_attempts(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    rescuer = JobRescuer(store, clock=clock)
    for _ in range(3):
        await _claim(store, clock)
        clock.advance(seconds=31)
        await rescuer.run_once()
    assert _state(conn, job_id) == ("failed", 3)


async def test_stale_worker_cannot_complete_a_job_handed_to_someone_else(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    _, stale = await _claim(store, clock)
    clock.advance(seconds=31)
    await JobRescuer(store, clock=clock).run_once()
    _, fresh = await _claim(store, clock)
    assert await store.job_complete_many([Completion(job_id, stale)], now=clock.now()) == set()
    failure = Failure(job_id, stale, {"type": "X", "message": "late"}, None)
    assert await store.job_fail_many([failure], now=clock.now()) == set()
    assert await store.job_extend_lease([(job_id, stale)], 30, now=clock.now()) == set()
    assert _state(conn, job_id) == ("running", 2)
    assert await store.job_complete_many([Completion(job_id, fresh)], now=clock.now()) == {job_id}
    assert _state(conn, job_id) == ("completed", 2)


async def test_renewed_lease_outlives_the_original(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    _, token = await _claim(store, clock)
    rescuer = JobRescuer(store, clock=clock)
    for _ in range(5):
        clock.advance(seconds=20)
        assert await store.job_extend_lease([(job_id, token)], 30, now=clock.now()) == {job_id}
        assert await rescuer.run_once() == Rescued(retried=0, failed=0)
    assert _state(conn, job_id) == ("running", 1)


async def test_scheduler_promotes_jobs_only_when_their_time_came(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO conveyor.job (task, state, run_at) VALUES ('t', 'scheduled', %s),"
        " ('t', 'retryable', %s)",
        (clock.now() + timedelta(minutes=5), clock.now() + timedelta(minutes=10)),
    )
    scheduler = JobScheduler(store, clock=clock)
    assert await scheduler.run_once() == 0
    clock.advance(minutes=5)
    assert await scheduler.run_once() == 1
    clock.advance(minutes=5)
    assert await scheduler.run_once() == 1
    states = conn.execute("SELECT state FROM conveyor.job").fetchall()
    assert states == [("available",), ("available",)]


async def test_failed_attempt_waits_for_its_backoff(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    _, token = await _claim(store, clock)
    failure = Failure(job_id, token, {"type": "E", "message": "m"}, retry_in=60)
    assert await store.job_fail_many([failure], now=clock.now()) == {job_id}
    scheduler = JobScheduler(store, clock=clock)
    clock.advance(seconds=59)
    assert await scheduler.run_once() == 0
    clock.advance(seconds=1)
    assert await scheduler.run_once() == 1


async def test_pruner_keeps_jobs_younger_than_their_retention(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    now = clock.now()
    conn.execute(
        "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, args, errors,"
        " created_at, run_at, finished_at) SELECT n, 't', 'default', s, 0, 1, '{}', '[]', %(t)s,"
        " %(t)s, %(t)s - make_interval(hours => h) FROM (VALUES (1, 'completed', 23),"
        " (2, 'completed', 25), (3, 'failed', 24 * 13), (4, 'failed', 24 * 15),"
        " (5, 'cancelled', 25)) AS v(n, s, h)",
        {"t": now},
    )
    conn.execute(
        "INSERT INTO conveyor.idempotency_key (key, created_at) VALUES ('old', %s), ('new', %s)",
        (now - timedelta(days=8), now - timedelta(days=6)),
    )
    retention = conveyor.Retention()
    pruner = JobPruner(
        store,
        completed=retention.completed,
        cancelled=retention.cancelled,
        failed=retention.failed,
        idempotency_keys=retention.idempotency_keys,
        clock=clock,
    )
    assert await pruner.run_once() == Pruned(jobs=3, idempotency_keys=1)
    kept = conn.execute("SELECT id FROM conveyor.job_done ORDER BY id").fetchall()
    assert kept == [(1,), (3,)]


async def test_release_puts_a_job_back_without_counting_the_attempt(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    job_id = _enqueue(conn, clock)
    _, token = await _claim(store, clock)
    assert await store.job_release_many([(job_id, token)], now=clock.now()) == 1
    assert _state(conn, job_id) == ("available", 0)


async def test_only_one_leader_at_a_time_and_the_next_takes_over(db: str) -> None:
    first, second = LeaderLock(db), LeaderLock(db)
    try:
        assert await first.attempt_elect()
        assert not await second.attempt_elect()
        assert await first.attempt_elect()
        await first.close()
        await eventually(second.attempt_elect, timeout=5)
    finally:
        await first.close()
        await second.close()
