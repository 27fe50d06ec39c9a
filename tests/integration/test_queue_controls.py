"""Queue controls: pause, snooze, shared concurrency and rate limits, per-key fairness."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.postgres import PostgresStore
from tests.helpers import eventually, job_states, running_worker


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


async def _claim(
    store: PostgresStore, queue: str = "default", *, limit: int = 100, now: Any = None
) -> tuple[list[conveyor.Job], float | None]:
    return await store.job_fetch_limited(
        queue=queue,
        tasks=["t"],
        task_max_attempts=[3],
        limit=limit,
        lease_seconds=30,
        token=uuid.uuid4(),
        worker_id="w1",
        now=now,
    )


@pytest.fixture
def t(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="t")
    def t(n: int = 0, tenant: str | None = None) -> None:
        return None

    return t


# -- configuration ----------------------------------------------------------------------------


def test_settings_are_checked_with_a_fix_in_the_message(app: conveyor.Conveyor) -> None:
    client = app.client()
    with pytest.raises(conveyor.ConfigError, match="did you mean 'concurrency'"):
        client.configure_queue("q", concurency=2)
    with pytest.raises(conveyor.ConfigError, match="'100/minute'"):
        client.configure_queue("q", rate_limit="100 per minute")
    with pytest.raises(conveyor.ConfigError, match="key_concurrency"):
        client.configure_queue("q", key="tenant_id")
    with pytest.raises(conveyor.ConfigError, match="positive"):
        app.queue("q", conveyor.QueueLimits(max_depth=0))


def test_rate_limits_read_as_text() -> None:
    assert conveyor.RateLimit.parse("100/minute") == conveyor.RateLimit(100, timedelta(minutes=1))
    assert conveyor.RateLimit.parse("20/s") == conveyor.RateLimit(20, timedelta(seconds=1))
    assert conveyor.RateLimit.parse("5/10s") == conveyor.RateLimit(5, timedelta(seconds=10))


def test_settings_not_named_stay(app: conveyor.Conveyor) -> None:
    client = app.client()
    client.configure_queue("q", concurrency=3, rate_limit="10/s")
    client.configure_queue("q", max_depth=50, on_full="drop_oldest")
    (info,) = [q for q in client.queues() if q.name == "q"]
    assert info.limits == conveyor.QueueLimits(
        concurrency=3,
        rate_limit=conveyor.RateLimit(10, timedelta(seconds=1)),
        max_depth=50,
        on_full="drop_oldest",
    )
    client.configure_queue("q", concurrency=None)
    (info,) = [q for q in client.queues() if q.name == "q"]
    assert info.limits.concurrency is None
    assert info.limits.rate_limit is not None


# -- concurrency and rate ---------------------------------------------------------------------


async def test_concurrency_limit_counts_running_jobs_of_every_worker(
    app: conveyor.Conveyor, t: conveyor.Task[Any], store: PostgresStore
) -> None:
    app.client().configure_queue("default", concurrency=3)
    for n in range(10):
        t.enqueue(n=n)
    first, _ = await _claim(store)
    second, _ = await _claim(store)  # as another worker: the 3 running count for both
    assert (len(first), len(second)) == (3, 0)


async def test_rate_limit_lets_n_jobs_start_per_window_and_says_how_long_to_wait(
    app: conveyor.Conveyor, t: conveyor.Task[Any], store: PostgresStore
) -> None:
    clock = conveyor.FrozenClock()
    app.client().configure_queue("default", rate_limit="5/minute")
    for n in range(12):
        t.enqueue(n=n)
    jobs, wait = await _claim(store, limit=3, now=clock.now())
    assert (len(jobs), wait) == (3, 0.0)
    jobs, wait = await _claim(store, now=clock.now())
    assert (len(jobs), wait) == (2, 0.0)
    clock.advance(seconds=20)
    jobs, wait = await _claim(store, now=clock.now())
    assert jobs == []
    assert wait == pytest.approx(40.0)
    clock.advance(seconds=40)
    jobs, _ = await _claim(store, now=clock.now())
    assert len(jobs) == 5


async def test_per_key_limit_is_fair_to_a_key_with_few_jobs(
    app: conveyor.Conveyor,
    t: conveyor.Task[Any],
    store: PostgresStore,
    conn: psycopg.Connection[Any],
) -> None:
    app.client().configure_queue("default", key="tenant", key_concurrency=2)
    big = t.spec(tenant="big")
    app.enqueue_many([big] * 1000)  # through COPY: keys are set there too
    for n in range(10):
        t.enqueue(n=n, tenant="small")
    t.enqueue(n=99)  # no tenant: no per-key limit
    jobs, _ = await _claim(store, limit=100)
    tenants = sorted(str(j.args.get("tenant")) for j in jobs)
    assert tenants == ["None", "big", "big", "small", "small"]
    jobs, _ = await _claim(store, limit=100)
    assert jobs == []  # both keys are at their limit; nothing else waits


async def test_keys_set_after_jobs_were_enqueued_apply_to_them(
    app: conveyor.Conveyor, t: conveyor.Task[Any], store: PostgresStore
) -> None:
    for n in range(5):
        t.enqueue(n=n, tenant="a")
    app.client().configure_queue("default", key="tenant", key_concurrency=1)
    jobs, _ = await _claim(store)
    assert len(jobs) == 1


async def test_sql_enqueue_takes_the_key_from_the_queue(
    app: conveyor.Conveyor,
    t: conveyor.Task[Any],
    store: PostgresStore,
    conn: psycopg.Connection[Any],
) -> None:
    app.client().configure_queue("default", key="tenant", key_concurrency=1)
    for _ in range(3):
        conn.execute("SELECT conveyor.enqueue('t', '{\"tenant\": \"x\"}')")
    jobs, _ = await _claim(store)
    assert len(jobs) == 1


# -- pause, resume, snooze --------------------------------------------------------------------


async def test_paused_queue_starts_nothing_until_resumed_and_enqueue_goes_on(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="work", queue="work")
    def work() -> None:
        return None

    @app.task(name="probe", queue="probe")
    def probe() -> None:
        return None

    client = app.client()
    client.pause_queue("work")
    config = conveyor.WorkerConfig(queues=("work", "probe"), poll_interval=0.2, concurrency=4)
    async with running_worker(app, config):
        job = work.enqueue()
        # the worker has claimed since the pause: the probe, enqueued after, completed
        probe.enqueue()
        await eventually(lambda: job_states(conn).get("completed") == 1)
        assert app.client().get_job(job).state == "available"
        client.resume_queue("work")
        await eventually(lambda: job_states(conn) == {"completed": 2})


async def test_pause_lets_a_running_job_finish(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    release = threading.Event()

    @app.task(name="slow")
    def slow() -> None:
        release.wait(10)

    async with running_worker(app):
        slow.enqueue()
        await eventually(lambda: job_states(conn) == {"running": 1})
        app.client().pause_queue("default")
        waiting = slow.enqueue()
        release.set()
        await eventually(lambda: job_states(conn) == {"completed": 1, "available": 1})
        assert app.client().get_job(waiting).state == "available"


async def test_snooze_from_a_handler_holds_the_queue_and_spends_no_attempt(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    calls: list[int] = []

    @app.task(name="mail", max_attempts=2)
    def mail(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise conveyor.SnoozeQueue(timedelta(minutes=5), "smtp answers 503")

    async with running_worker(app):
        first = mail.enqueue(n=1)
        await eventually(lambda: app.client().get_job(first).state == "available" and calls)
        mail.enqueue(n=2)
        (info,) = [q for q in app.client().queues() if q.name == "default"]
        assert info.snooze_reason == "smtp answers 503"
        assert info.snoozed_until is not None
        assert app.client().get_job(first).attempt == 0
        assert job_states(conn) == {"available": 2}
        assert calls == [1]
        app.client().resume_queue("default")  # the downstream is back before the snooze ends
        await eventually(lambda: job_states(conn) == {"completed": 2})
    assert sorted(calls) == [1, 1, 2]


async def test_rate_limited_worker_waits_for_the_next_window_without_polling(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.queue("default", conveyor.QueueLimits(rate_limit="3/2s"))
    for n in range(6):
        t.enqueue(n=n)
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 3, timeout=5)
        assert job_states(conn) == {"completed": 3, "available": 3}
        await eventually(lambda: job_states(conn) == {"completed": 6}, timeout=10)
