"""Cron schedules for HTTP endpoints on real Postgres and a real local HTTP server: stored in
the database, one job per time however many workers race (frozen clock), delivered signed,
retried like any job; and the Python form, app.add_schedule(endpoint=...)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from standardwebhooks import Webhook

import conveyor
from conveyor._store.postgres import PostgresStore
from conveyor.endpoints import generate_secret
from conveyor.maintenance.cron import CronEnqueuer
from tests.delivery_server import DeliveryServer, delivery_server
from tests.helpers import eventually, fast_config, running_worker

START = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
async def server() -> AsyncIterator[DeliveryServer]:
    async with delivery_server() as running:
        yield running


@pytest.fixture
async def stores(db: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores, each with its own pool: two workers' view of the database."""
    opened = [PostgresStore(db, name=f"cron-endpoint-{n}") for n in range(2)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


async def _race(workers: list[CronEnqueuer], clock: conveyor.FrozenClock, until: datetime) -> None:
    while clock.now() < until:
        await asyncio.gather(*(w.run_once() for w in workers))
        clock.advance(timedelta(seconds=20))


def _jobs(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str, str]]:
    rows = conn.execute("SELECT id, task, queue, unique_key FROM conveyor.jobs ORDER BY id")
    return [(i, t, q, k) for i, t, q, k in rows.fetchall()]


async def _settled(app: conveyor.Conveyor, ids: list[int]) -> list[conveyor.Job]:
    client = app.async_client()

    async def done() -> list[conveyor.Job] | None:
        jobs = [await client.get_job(i) for i in ids]
        return jobs if all(str(j.state) == "completed" for j in jobs) else None

    found: list[conveyor.Job] = await eventually(done)
    return found


async def test_two_racing_workers_enqueue_one_signed_delivery_per_time_and_a_failure_retries(
    db: str,
    app: conveyor.Conveyor,
    conn: psycopg.Connection[Any],
    server: DeliveryServer,
    stores: list[PostgresStore],
) -> None:
    clock = conveyor.FrozenClock(START)
    secret = generate_secret()
    app.client().add_endpoint("tick", server.url("/ok"), secret, queue="hooks")
    app.client().add_endpoint("flaky", server.url("/flaky"), secret)
    frozen = conveyor.Conveyor(db, clock=clock)  # what `conveyor deliver` runs: no tasks
    try:
        frozen.client().add_cron_schedule("tick.every5", "*/5 * * * *", endpoint="tick")
        frozen.client().add_cron_schedule("flaky.hourly", "@hourly", endpoint="flaky")
    finally:
        await frozen.aclose()
    workers = [CronEnqueuer(s, [], clock=clock, stored=True) for s in stores]
    await _race(workers, clock, START + timedelta(minutes=16))
    jobs = _jobs(conn)
    keys = [key for _, _, _, key in jobs]
    assert keys == [
        "cron:tick.every5@2026-05-01T12:05:00+00:00",
        "cron:tick.every5@2026-05-01T12:10:00+00:00",
        "cron:tick.every5@2026-05-01T12:15:00+00:00",
    ]
    assert {(task, queue) for _, task, queue, _ in jobs} == {("tick", "hooks")}
    await _race(workers, clock, datetime(2026, 5, 1, 13, 0, 30, tzinfo=UTC))
    flaky = [i for i, task, _, _ in _jobs(conn) if task == "flaky"]
    assert len(flaky) == 1 and len(_jobs(conn)) == 1 + 3 + 9  # tick: 12:20 .. 13:00
    ids = [i for i, _, _, _ in _jobs(conn)]
    # the worker below runs on the real clock: it must not fire today's times too
    app.client().remove_cron_schedule("tick.every5")
    app.client().remove_cron_schedule("flaky.hourly")
    async with running_worker(
        app, fast_config(allow_networks=LOOPBACK, queues=("hooks", "default"))
    ):
        done = await _settled(app, ids)
    for request in server.bodies("/ok") + server.bodies("/flaky"):
        Webhook(secret).verify(request.body, request.headers)
    assert len(server.bodies("/ok")) == 12
    (retried,) = [j for j in done if j.task == "flaky"]
    assert retried.attempt == 2 and retried.errors[0]["status"] == 500
    first, again = server.bodies("/flaky")
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == f"job_{retried.id}"
    body = json.loads(first.body)
    assert body["task"] == "flaky" and body["args"] == {}


async def test_a_worker_with_no_tasks_fires_a_stored_schedule(
    db: str, app: conveyor.Conveyor, conn: psycopg.Connection[Any], server: DeliveryServer
) -> None:
    clock = conveyor.FrozenClock(START)
    secret = generate_secret()
    app.client().add_endpoint("tick", server.url("/ok"), secret)
    bare = conveyor.Conveyor(db, clock=clock)
    try:
        bare.client().add_cron_schedule("tick.minutely", "* * * * *", endpoint="tick")
        async with running_worker(bare, fast_config(allow_networks=LOOPBACK, cron_interval=0.1)):
            clock.advance(timedelta(minutes=1))
            ((job_id, _, _, key),) = await eventually(lambda: _jobs(conn) or None)
            await _settled(app, [job_id])
    finally:
        await bare.aclose()
    assert key == "cron:tick.minutely@2026-05-01T12:01:00+00:00"
    (request,) = server.bodies("/ok")
    Webhook(secret).verify(request.body, request.headers)


async def test_app_add_schedule_for_an_endpoint_enqueues_in_the_endpoints_queue(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], stores: list[PostgresStore]
) -> None:
    clock = conveyor.FrozenClock(START)
    app.client().add_endpoint("report", "https://example.com/", "s", queue="hooks")
    schedule = app.add_schedule(endpoint="report", cron="*/10 * * * *", args={"kind": "digest"})
    assert schedule.name == "report" and schedule.task == "report"
    workers = [CronEnqueuer(s, [schedule], clock=clock) for s in stores]
    await _race(workers, clock, START + timedelta(minutes=21))
    rows = conn.execute("SELECT task, queue, args FROM conveyor.jobs ORDER BY id").fetchall()
    assert rows == [("report", "hooks", {"kind": "digest"})] * 3  # 12:00 (in grace), :10, :20


def test_add_schedule_for_an_endpoint_checks_its_input() -> None:
    app = conveyor.Conveyor("postgresql://unused")
    with pytest.raises(conveyor.ConfigError, match="invalid cron expression"):
        app.add_schedule(endpoint="report", cron="61 * * * *")
    with pytest.raises(conveyor.ConfigError, match="not both"):
        app.add_schedule("report", endpoint="report", cron="* * * * *")


async def test_client_errors(db: str, app: conveyor.Conveyor) -> None:
    client = app.async_client()
    with pytest.raises(conveyor.EndpointNotFoundError, match="conveyor endpoint add nowhere"):
        await client.add_cron_schedule("x", "* * * * *", endpoint="nowhere")
    await client.add_endpoint("here", "https://example.com/", "s")
    await client.add_cron_schedule("x", "* * * * *", endpoint="here")
    with pytest.raises(conveyor.ConfigError, match="exists already"):
        await client.add_cron_schedule("x", "@daily", endpoint="here")
    with pytest.raises(conveyor.ConfigError, match="bad minute"):
        await client.add_cron_schedule("y", "61 * * * *", endpoint="here")
    await client.remove_cron_schedule("x")
    with pytest.raises(conveyor.ConfigError, match="no cron schedule named 'x'"):
        await client.remove_cron_schedule("x")
