"""Leases, fencing and the maintenance services, on the PostgresStore with a frozen clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.leader import LeaderLease
from conveyor._store.postgres import PostgresStore
from conveyor._store.protocol import Completion, Failure, Pruned, Rescued
from conveyor.maintenance.pruner import JobPruner
from conveyor.maintenance.rescuer import JobRescuer
from conveyor.maintenance.scheduler import JobScheduler
from tests.helpers import eventually

LEASE = 30.0
MAX_ATTEMPTS = 3


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock()


@pytest.fixture
async def task(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Task[Any]]:
    """A task on an app that shares the frozen clock, so jobs are created at its time."""
    app = conveyor.Conveyor(db, clock=clock)

    @app.task(name="t", max_attempts=MAX_ATTEMPTS)
    def t(n: int = 0) -> None:
        return None

    yield t
    await app.aclose()


async def _claim(
    store: PostgresStore, clock: conveyor.FrozenClock, *, worker: str = "w1", limit: int = 1
) -> list[tuple[int, uuid.UUID]]:
    """Claim up to `limit` jobs as `worker`; return (job id, lease token) pairs."""
    token = uuid.uuid4()
    jobs = await store.job_fetch_available(
        queue="default",
        tasks=["t"],
        task_max_attempts=[MAX_ATTEMPTS],
        limit=limit,
        lease_seconds=LEASE,
        token=token,
        worker_id=worker,
        now=clock.now(),
    )
    return [(job.id, token) for job in jobs]


async def _claim_one(
    store: PostgresStore, clock: conveyor.FrozenClock, *, worker: str = "w1"
) -> uuid.UUID:
    claimed = await _claim(store, clock, worker=worker)
    assert len(claimed) == 1
    return claimed[0][1]


def _row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    found = cur.execute("SELECT * FROM conveyor.jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found


def _state(conn: psycopg.Connection[Any], job_id: int) -> tuple[str, int]:
    row = _row(conn, job_id)
    return row["state"], row["attempt"]


# -- rescue -----------------------------------------------------------------------------------


async def test_rescues_running_job_whose_lease_expired(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    job_id = task.enqueue()
    await _claim_one(store, clock)
    rescuer = JobRescuer(store, clock=clock)
    clock.advance(seconds=LEASE - 1)
    assert await rescuer.run_once() == Rescued(retried=0, failed=0)
    clock.advance(seconds=2)
    assert await rescuer.run_once() == Rescued(retried=1, failed=0)
    row = _row(conn, job_id)
    assert (row["state"], row["attempt"], row["worker_id"]) == ("available", 1, None)
    assert [e["type"] for e in row["errors"]] == ["LeaseExpired"]
    assert "worker w1 stopped renewing its lease" in row["errors"][0]["message"]


async def test_rescue_fails_a_job_that_is_out_of_attempts(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    job_id = task.enqueue()
    rescuer = JobRescuer(store, clock=clock)
    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        await _claim_one(store, clock)
        clock.advance(seconds=LEASE + 1)
        outcomes.append(await rescuer.run_once())
    assert outcomes == [Rescued(1, 0), Rescued(1, 0), Rescued(retried=0, failed=1)]
    row = _row(conn, job_id)
    assert (row["state"], row["attempt"]) == ("failed", MAX_ATTEMPTS)
    assert [e["type"] for e in row["errors"]] == ["LeaseExpired"] * MAX_ATTEMPTS
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]
    assert row["finished_at"] == clock.now()


async def test_stale_worker_cannot_touch_a_job_claimed_by_someone_else(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    job_id = task.enqueue()
    stale = await _claim_one(store, clock, worker="stale")
    clock.advance(seconds=LEASE + 1)
    await JobRescuer(store, clock=clock).run_once()
    fresh = await _claim_one(store, clock, worker="fresh")
    now = clock.now()
    assert await store.job_complete_many([Completion(job_id, stale)], now=now) == set()
    failure = Failure(job_id, stale, {"type": "X", "message": "late"}, None)
    assert await store.job_fail_many([failure], now=now) == set()
    assert await store.job_extend_lease([(job_id, stale)], LEASE, now=now) == set()
    assert await store.job_release_many([(job_id, stale)], now=now) == 0
    row = _row(conn, job_id)
    assert (row["state"], row["attempt"], row["worker_id"]) == ("running", 2, "fresh")
    assert await store.job_complete_many([Completion(job_id, fresh, '"ok"')], now=now) == {job_id}
    assert _state(conn, job_id) == ("completed", 2)
    assert _row(conn, job_id)["result"] == "ok"


async def test_heartbeat_keeps_a_lease_alive_across_clock_advances(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    renewed, abandoned = task.enqueue(n=1), task.enqueue(n=2)
    held = dict(await _claim(store, clock, limit=2))
    assert set(held) == {renewed, abandoned}
    rescuer = JobRescuer(store, clock=clock)
    rescued = []
    for _ in range(5):
        clock.advance(seconds=LEASE * 2 / 3)
        extended = await store.job_extend_lease([(renewed, held[renewed])], LEASE, now=clock.now())
        assert extended == {renewed}
        rescued.append(await rescuer.run_once())
    assert _state(conn, renewed) == ("running", 1)
    assert _state(conn, abandoned) == ("available", 1)
    assert rescued == [Rescued(0, 0), Rescued(1, 0), Rescued(0, 0), Rescued(0, 0), Rescued(0, 0)]


# -- scheduling -------------------------------------------------------------------------------


async def test_scheduler_promotes_due_jobs_only_when_their_time_came(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    soon = task.with_options(delay=timedelta(minutes=5)).enqueue()
    later = task.with_options(run_at=clock.now() + timedelta(minutes=10)).enqueue()
    assert _state(conn, soon)[0] == _state(conn, later)[0] == "scheduled"
    scheduler = JobScheduler(store, clock=clock)
    assert await scheduler.run_once() == 0
    clock.advance(minutes=5, seconds=-1)
    assert await scheduler.run_once() == 0
    clock.advance(seconds=1)
    assert await scheduler.run_once() == 1
    assert (_state(conn, soon)[0], _state(conn, later)[0]) == ("available", "scheduled")
    clock.advance(minutes=5)
    assert await scheduler.run_once() == 1
    assert _state(conn, later)[0] == "available"


async def test_failed_attempt_is_retryable_until_its_backoff_passed(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    job_id = task.enqueue()
    token = await _claim_one(store, clock)
    failure = Failure(job_id, token, {"type": "E", "message": "m"}, retry_in=60)
    assert await store.job_fail_many([failure], now=clock.now()) == {job_id}
    assert _state(conn, job_id) == ("retryable", 1)
    scheduler = JobScheduler(store, clock=clock)
    clock.advance(seconds=59)
    assert await scheduler.run_once() == 0
    assert await _claim(store, clock) == [], "a retryable job is not claimable"
    clock.advance(seconds=1)
    assert await scheduler.run_once() == 1
    assert _state(conn, job_id) == ("available", 1)


# -- release ----------------------------------------------------------------------------------


async def test_release_puts_a_job_back_without_counting_the_attempt(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    job_id = task.enqueue()
    token = await _claim_one(store, clock)
    assert await store.job_release_many([(job_id, token)], now=clock.now()) == 1
    row = _row(conn, job_id)
    assert (row["state"], row["attempt"], row["errors"], row["worker_id"]) == (
        "available",
        0,
        [],
        None,
    )
    assert await store.job_complete_many([Completion(job_id, token)], now=clock.now()) == set()
    await _claim_one(store, clock, worker="w2")
    assert _state(conn, job_id) == ("running", 1)


# -- pruning ----------------------------------------------------------------------------------


async def test_pruner_deletes_only_what_is_past_the_default_retention(
    store: PostgresStore, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    ages = {
        1: ("completed", timedelta(hours=23)),
        2: ("completed", timedelta(hours=25)),
        3: ("failed", timedelta(days=13)),
        4: ("failed", timedelta(days=15)),
        5: ("cancelled", timedelta(hours=23)),
        6: ("cancelled", timedelta(hours=25)),
    }
    now = clock.now()
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, args,"
            " errors, created_at, run_at, finished_at)"
            " VALUES (%s, 't', 'default', %s, 0, 1, '{}', '[]', %s, %s, %s)",
            [(n, state, now - age, now - age, now - age) for n, (state, age) in ages.items()],
        )
        cur.executemany(
            "INSERT INTO conveyor.idempotency_key (key, created_at) VALUES (%s, %s)",
            [("old", now - timedelta(days=7, seconds=1)), ("new", now - timedelta(days=6))],
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
    assert conn.execute("SELECT id FROM conveyor.job_done ORDER BY id").fetchall() == [
        (1,),
        (3,),
        (5,),
    ]
    assert conn.execute("SELECT key FROM conveyor.idempotency_key").fetchall() == [("new",)]
    assert await pruner.run_once() == Pruned(jobs=0, idempotency_keys=0)
    clock.advance(days=2)
    assert await pruner.run_once() == Pruned(jobs=3, idempotency_keys=1)
    assert conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone() == (0,)


def test_default_retention_is_a_day_for_finished_jobs_two_weeks_for_failed_ones() -> None:
    assert conveyor.Retention() == conveyor.Retention(
        completed=timedelta(hours=24),
        cancelled=timedelta(hours=24),
        failed=timedelta(days=14),
        idempotency_keys=timedelta(days=7),
    )


async def test_pruner_never_touches_active_jobs(
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    task: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    task.enqueue()
    task.with_options(delay=3600).enqueue()
    clock.advance(days=365)
    retention = conveyor.Retention()
    pruner = JobPruner(
        store,
        completed=retention.completed,
        cancelled=retention.cancelled,
        failed=retention.failed,
        idempotency_keys=retention.idempotency_keys,
        clock=clock,
    )
    assert await pruner.run_once() == Pruned(jobs=0, idempotency_keys=0)
    assert conn.execute("SELECT count(*) FROM conveyor.job").fetchone() == (2,)


# -- leader election --------------------------------------------------------------------------


async def test_only_one_of_two_is_leader_and_the_other_takes_over_when_it_resigns(
    store: PostgresStore,
) -> None:
    first, second = LeaderLease(store, "first", ttl=30), LeaderLease(store, "second", ttl=30)
    try:
        assert await first.attempt_elect()
        assert not await second.attempt_elect()
        assert await first.attempt_elect(), "the leader stays leader"
        assert not await second.attempt_elect()
        await first.close()
        assert not first.is_leader
        await eventually(second.attempt_elect, timeout=5)
        assert not await first.attempt_elect()
    finally:
        await first.close()
        await second.close()


async def test_leadership_moves_on_when_the_leader_stops_renewing(store: PostgresStore) -> None:
    first, second = LeaderLease(store, "first", ttl=1), LeaderLease(store, "second", ttl=1)
    try:
        assert await first.attempt_elect()
        # the first stops asking (a crash, a frozen process): its lease runs out
        await eventually(second.attempt_elect, timeout=5)
        # ... and the old leader notices once it asks again
        await eventually(lambda: _not(first.attempt_elect()), timeout=5)
    finally:
        await first.close()
        await second.close()


async def _not(elected: Any) -> bool:
    return not await elected


async def test_the_lease_is_taken_only_once_expired_by_the_database_clock(
    store: PostgresStore, clock: conveyor.FrozenClock
) -> None:
    t0 = clock.now()
    assert await store.leader_attempt_elect("a", 10, now=t0)
    assert not await store.leader_attempt_elect("b", 10, now=t0 + timedelta(seconds=9))
    assert await store.leader_attempt_elect("a", 10, now=t0 + timedelta(seconds=9)), "renewed"
    assert not await store.leader_attempt_elect("b", 10, now=t0 + timedelta(seconds=18))
    assert await store.leader_attempt_elect("b", 10, now=t0 + timedelta(seconds=19))
    assert not await store.leader_attempt_elect("a", 10, now=t0 + timedelta(seconds=20))
    await store.leader_resign("a")  # not its lease: nothing happens
    assert not await store.leader_attempt_elect("a", 10, now=t0 + timedelta(seconds=20))
    await store.leader_resign("b")
    assert await store.leader_attempt_elect("a", 10, now=t0 + timedelta(seconds=20))
