"""The CronEnqueuer on real Postgres, with a frozen clock: one job per time slot however many
workers run, the catch-up policies, daylight-saving nights, and pruning of slot records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.postgres import PostgresStore
from conveyor.maintenance.cron import CronEnqueuer, CronPass
from conveyor.maintenance.pruner import JobPruner
from tests.helpers import eventually, fast_config, running_worker

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def minutes(*offsets: int, base: datetime = START) -> list[datetime]:
    return [base + timedelta(minutes=m) for m in offsets]


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock(START)


@pytest.fixture
async def app(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Conveyor]:
    application = conveyor.Conveyor(db, clock=clock)

    @application.task(name="cron.tick")
    def tick(ctx: conveyor.JobContext) -> str | None:
        return ctx.cron_slot.isoformat() if ctx.cron_slot else None

    yield application
    await application.aclose()


@pytest.fixture
async def stores(db: str) -> AsyncIterator[list[PostgresStore]]:
    """Four stores, each with its own pool: four workers' view of the database."""
    opened = [PostgresStore(db, name=f"cron-test-{n}") for n in range(4)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def enqueuers(
    app: conveyor.Conveyor, stores: list[PostgresStore], clock: conveyor.FrozenClock
) -> list[CronEnqueuer]:
    return [CronEnqueuer(s, list(app.schedules.values()), clock=clock) for s in stores]


def enqueued_slots(conn: psycopg.Connection[Any], schedule: str = "cron.tick") -> list[datetime]:
    rows = conn.execute(
        "SELECT slot FROM conveyor.cron_slot WHERE schedule = %s ORDER BY slot", (schedule,)
    ).fetchall()
    return [row[0] for row in rows]


def cron_jobs(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str]]:
    rows = conn.execute("SELECT id, task, unique_key FROM conveyor.jobs ORDER BY id").fetchall()
    return [(job_id, task, key) for job_id, task, key in rows]


async def step_through(
    workers: list[CronEnqueuer], clock: conveyor.FrozenClock, until: datetime, step: timedelta
) -> list[CronPass]:
    """Every worker makes a pass at once, then time moves on by `step`, until `until`."""
    passes: list[CronPass] = []
    while clock.now() < until:
        passes += await asyncio.gather(*(w.run_once() for w in workers))
        clock.advance(step)
    return passes


# -- one job per slot -------------------------------------------------------------------------


async def test_four_workers_over_ten_simulated_minutes_enqueue_exactly_ten_jobs(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    app.add_schedule("cron.tick", cron="* * * * *")
    workers = enqueuers(app, stores, clock)
    passes = await step_through(workers, clock, START + timedelta(minutes=10), timedelta(seconds=5))

    expected = minutes(*range(10))
    assert enqueued_slots(conn) == expected
    jobs = cron_jobs(conn)
    assert len(jobs) == 10
    assert [key for _, _, key in jobs] == [f"cron:cron.tick@{s.isoformat()}" for s in expected]
    assert {task for _, task, _ in jobs} == {"cron.tick"}
    # Each slot was enqueued by exactly one of the four racing workers.
    won = [slot for p in passes for _, slot in p.enqueued]
    assert sorted(won) == expected


async def test_workers_racing_for_one_slot_insert_one_job(
    app: conveyor.Conveyor, stores: list[PostgresStore], conn: psycopg.Connection[Any]
) -> None:
    s = app.add_schedule("cron.tick", cron="* * * * *")
    ids = await asyncio.gather(
        *(
            store.cron_slot_enqueue(
                schedule=s.name,
                slot=START,
                next_slot=s.next_after(START),
                spec=s.spec,
                unique_key=s.job_key(START),
                now=START,
            )
            for store in stores
        )
    )
    assert len([i for i in ids if i is not None]) == 1
    assert enqueued_slots(conn) == [START]
    assert len(cron_jobs(conn)) == 1


async def test_a_slot_at_or_before_the_last_enqueued_one_is_refused(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="* * * * *")
    await CronEnqueuer(stores[0], [s], clock=clock).run_once()  # registers, enqueues 12:00
    clock.advance(minutes=5)
    await CronEnqueuer(stores[0], [s], clock=clock).run_once()  # enqueues 12:05
    stale = START + timedelta(minutes=3)  # a worker that stalled since 12:03
    late = await stores[1].cron_slot_enqueue(
        schedule=s.name,
        slot=stale,
        next_slot=s.next_after(stale),
        spec=s.spec,
        unique_key=s.job_key(stale),
        now=clock.now(),
    )
    assert late is None
    assert enqueued_slots(conn) == minutes(0, 5)


# -- catching up ------------------------------------------------------------------------------


async def test_skip_drops_times_missed_while_no_worker_ran(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="0 * * * *", catch_up="skip")
    worker = CronEnqueuer(stores[0], [s], clock=clock)
    assert (await worker.run_once()).enqueued == (("cron.tick", START),)
    clock.advance(hours=3, minutes=30)  # every worker was down for 13:00, 14:00 and 15:00
    assert await worker.run_once() == CronPass(skipped=(("cron.tick", START + timedelta(hours=3)),))
    assert await worker.run_once() == CronPass()
    clock.set(START + timedelta(hours=4, seconds=20))
    assert (await worker.run_once()).enqueued == (("cron.tick", START + timedelta(hours=4)),)
    assert enqueued_slots(conn) == [START, START + timedelta(hours=4)]


async def test_skip_still_runs_a_time_that_is_less_than_grace_old(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="* * * * *", grace=timedelta(seconds=30))
    worker = CronEnqueuer(stores[0], [s], clock=clock)
    await worker.run_once()
    clock.advance(minutes=3, seconds=20)  # a short restart: 12:01 and 12:02 are missed
    assert (await worker.run_once()).enqueued == (("cron.tick", START + timedelta(minutes=3)),)
    assert enqueued_slots(conn) == minutes(0, 3)


async def test_once_enqueues_one_job_for_the_latest_missed_time(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="*/5 * * * *", catch_up="once")
    workers = enqueuers(app, stores, clock)
    await asyncio.gather(*(w.run_once() for w in workers))
    clock.advance(hours=2, minutes=7)  # 24 times missed
    passes = await asyncio.gather(*(w.run_once() for w in workers))
    assert [p.enqueued for p in passes if p.enqueued] == [
        ((s.name, START + timedelta(hours=2, minutes=5)),)
    ]
    assert enqueued_slots(conn) == [START, START + timedelta(hours=2, minutes=5)]
    assert len(cron_jobs(conn)) == 2


async def test_a_new_schedule_does_not_catch_up_times_before_it_was_registered(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="0 * * * *", catch_up="once")
    clock.set(START + timedelta(minutes=30))
    worker = CronEnqueuer(stores[0], [s], clock=clock)
    assert await worker.run_once() == CronPass()
    clock.set(START + timedelta(hours=1))
    assert (await worker.run_once()).enqueued == ((s.name, START + timedelta(hours=1)),)


# -- daylight saving --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("night_start", "runs_at"),
    [
        # 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 does not exist and runs at 03:00 CEST
        (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC)),
        # 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice and runs at the first
        (datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_a_fixed_time_runs_exactly_once_on_a_daylight_saving_night(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    night_start: datetime,
    runs_at: datetime,
) -> None:
    app.add_schedule("cron.tick", cron="30 2 * * *", timezone="Europe/Berlin")
    clock.set(night_start)
    await step_through(
        enqueuers(app, stores, clock), clock, night_start + timedelta(hours=4), timedelta(minutes=2)
    )
    assert enqueued_slots(conn) == [runs_at]


# -- registration and clocks ------------------------------------------------------------------


async def test_without_a_clock_the_database_time_is_used(
    app: conveyor.Conveyor, stores: list[PostgresStore], conn: psycopg.Connection[Any]
) -> None:
    s = app.add_schedule("cron.tick", cron="* * * * *")
    result = await CronEnqueuer(stores[0], [s]).run_once()
    (db_now,) = conn.execute("SELECT now()").fetchone() or (None,)
    assert db_now is not None
    # The minute that began less than a minute ago (grace) is enqueued at once.
    ((_, slot),) = result.enqueued
    assert timedelta(0) <= db_now - slot < timedelta(seconds=61)
    assert slot.second == 0 and slot.microsecond == 0


async def test_a_restarted_worker_keeps_the_progress_and_a_changed_expression_restarts_it(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    hourly = app.add_schedule("cron.tick", cron="0 * * * *", catch_up="once")
    await CronEnqueuer(stores[0], [hourly], clock=clock).run_once()
    clock.advance(hours=2, minutes=10)
    # A restarted worker registers again: the missed 14:00 is still owed (catch_up="once").
    restarted = CronEnqueuer(stores[1], [hourly], clock=clock)
    assert (await restarted.run_once()).enqueued == (("cron.tick", START + timedelta(hours=2)),)

    app.schedules.clear()
    every_5 = app.add_schedule("cron.tick", cron="*/5 * * * *", catch_up="once")
    clock.advance(minutes=1)  # 14:11
    assert await CronEnqueuer(stores[2], [every_5], clock=clock).run_once() == CronPass()
    (cron, next_slot) = conn.execute(
        "SELECT cron, next_slot FROM conveyor.cron_schedule WHERE name = 'cron.tick'"
    ).fetchone() or (None, None)
    assert (cron, next_slot) == ("*/5 * * * *", START + timedelta(hours=2, minutes=15))


async def test_pruner_forgets_old_slots_but_keeps_each_schedule_latest(
    app: conveyor.Conveyor,
    stores: list[PostgresStore],
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    s = app.add_schedule("cron.tick", cron="0 0 * * *")
    clock.set(START.replace(hour=0))
    await step_through(
        enqueuers(app, stores[:1], clock), clock, clock.now() + timedelta(days=3), timedelta(days=1)
    )
    assert len(enqueued_slots(conn)) == 3
    clock.advance(days=30)
    retention = app.retention
    pruner = JobPruner(
        stores[0],
        completed=retention.completed,
        cancelled=retention.cancelled,
        failed=retention.failed,
        idempotency_keys=retention.idempotency_keys,
        cron_slots=timedelta(days=14),
        clock=clock,
    )
    assert (await pruner.run_once()).cron_slots == 2
    assert enqueued_slots(conn, s.name) == [START.replace(day=3, hour=0)]


# -- in a worker ------------------------------------------------------------------------------


async def test_a_worker_runs_the_cron_job_and_the_handler_sees_its_slot(
    app: conveyor.Conveyor, clock: conveyor.FrozenClock, conn: psycopg.Connection[Any]
) -> None:
    app.add_schedule("cron.tick", cron="*/15 * * * *")
    async with running_worker(app, fast_config(cron_interval=0.05)):
        await eventually(
            lambda: conn.execute(
                "SELECT result FROM conveyor.jobs WHERE state = 'completed'"
            ).fetchall()
        )
    ((result,),) = conn.execute("SELECT result FROM conveyor.jobs").fetchall()
    assert result == START.isoformat()
