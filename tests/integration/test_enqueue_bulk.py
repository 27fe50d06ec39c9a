"""Bulk enqueue through binary COPY: every column as a one-row insert writes it, one transaction
on the app's own connection, one NOTIFY per queue that got available jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.enqueue import COPY_THRESHOLD
from conveyor.spec import JobSpec

_ROW = (
    "SELECT task, queue, state, priority, max_attempts, args, unique_key, timeout_seconds,"
    " run_at > created_at AS later, concurrency_key, correlation_id, trace_context"
    " FROM conveyor.job WHERE id = %s"
)


@pytest.fixture
def t(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="t")
    def t(**kwargs: Any) -> None:
        pass

    return t


def _row(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = conn.execute(_ROW, (job_id,)).fetchone()
    assert row is not None
    return tuple(row)


def test_copy_writes_every_column_as_the_one_row_insert_does(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("keyed", key="tenant", key_concurrency=2)
    run_at = datetime.now(UTC) + timedelta(hours=1)
    specs = [
        t.spec(n=1, text="zoë ✓", nested={"a": [1, 2.5, None, True]}),
        t.with_options(queue="keyed", priority=7, max_attempts=2, timeout=9.5).spec(tenant="x"),
        t.with_options(delay=60, correlation_id="req-1").spec(n=2),
        t.with_options(run_at=run_at).spec(n=3),
        JobSpec(task="t", args_json='{"n":4}', trace_context={"traceparent": "00-ab-cd-01"}),
    ]
    bulk = app.enqueue_many(specs * (COPY_THRESHOLD // len(specs) + 1))
    singles = [app.enqueue_many([spec])[0] for spec in specs]
    for n, single in enumerate(singles):
        assert _row(conn, bulk[n]) == _row(conn, single)
    assert _row(conn, bulk[1])[9] == "x"  # the keyed queue's concurrency key
    waits = conn.execute(
        "SELECT run_at - created_at, run_at FROM conveyor.job WHERE id = ANY(%s) ORDER BY id",
        (bulk[2:4],),
    ).fetchall()
    assert waits[0][0] == timedelta(seconds=60)
    assert waits[1][1] == run_at


@pytest.fixture
def failing_key_update(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A trigger that fails the statement giving a job the concurrency key 'boom': it runs
    after the COPY, so a bulk enqueue that is not one transaction would leave its jobs."""
    conn.execute(
        "CREATE FUNCTION conveyor.test_boom() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'boom'; END $$"
    )
    conn.execute(
        "CREATE TRIGGER test_boom AFTER UPDATE ON conveyor.job FOR EACH ROW"
        " WHEN (NEW.concurrency_key = 'boom') EXECUTE FUNCTION conveyor.test_boom()"
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER test_boom ON conveyor.job")
        conn.execute("DROP FUNCTION conveyor.test_boom()")


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.job").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.usefixtures("failing_key_update")
def test_a_bulk_enqueue_is_one_transaction_on_the_apps_connection(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("keyed", key="tenant", key_concurrency=2)
    specs = [t.with_options(queue="keyed").spec(tenant="ok")] * COPY_THRESHOLD
    with pytest.raises(psycopg.errors.RaiseException, match="boom"):
        app.enqueue_many([*specs, t.with_options(queue="keyed").spec(tenant="boom")])
    assert _count(conn) == 0
    assert len(app.enqueue_many(specs)) == COPY_THRESHOLD


@pytest.mark.usefixtures("failing_key_update")
async def test_an_async_bulk_enqueue_is_one_transaction_too(
    app: conveyor.Conveyor, t: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    app.client().configure_queue("keyed", key="tenant", key_concurrency=2)
    specs = [t.with_options(queue="keyed").spec(tenant="ok")] * COPY_THRESHOLD
    with pytest.raises(psycopg.errors.RaiseException, match="boom"):
        await app.aenqueue_many([*specs, t.with_options(queue="keyed").spec(tenant="boom")])
    assert _count(conn) == 0


def test_a_bulk_enqueue_wakes_each_queue_with_available_jobs_once(
    app: conveyor.Conveyor, t: conveyor.Task[Any], db: str
) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        later = t.with_options(queue="later", delay=3600)
        app.enqueue_many(
            [t.spec(n=1), t.with_options(queue="other").spec(n=2), later.spec(n=3)] * COPY_THRESHOLD
        )
        woken = sorted(n.payload for n in listener.notifies(timeout=1.0, stop_after=3))
    assert woken == ["default", "other"]


def test_a_single_enqueue_wakes_its_queue_once_and_only_for_an_available_job(
    app: conveyor.Conveyor, t: conveyor.Task[Any], db: str
) -> None:
    # On the app's own connection the NOTIFY is a transaction of its own after the insert's
    # (notifying inside it would hold a lock through the commit flush); in a caller's
    # transaction it stays inside, so a rollback wakes nobody.
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        t.enqueue(n=1)
        t.with_options(queue="later", delay=3600).enqueue(n=2)
        keyed = t.with_options(queue="once", unique_key="k")
        keyed.enqueue(n=3)
        keyed.enqueue(n=4)  # the key's job already waits: not inserted, nobody to wake
        with psycopg.connect(db) as own:
            t.with_options(queue="rolled_back").enqueue_tx(own, n=5)
            own.rollback()
        woken = [n.payload for n in listener.notifies(timeout=1.0, stop_after=4)]
    assert woken == ["default", "once"]


def test_a_single_enqueue_wakes_once_whether_alone_or_beside_other_enqueues(
    app: conveyor.Conveyor, t: conveyor.Task[Any], db: str
) -> None:
    # Alone, the NOTIFY rides in the insert's own statement (one round trip); beside another
    # enqueue of the app in flight it follows the commit, so their flushes are shared. A task
    # with durable_enqueue off notifies inside its insert either way. Each wakes exactly once.
    @app.task(name="relaxed_t", queue="relaxed", durable_enqueue=False)
    def relaxed_t(**kwargs: Any) -> None:
        pass

    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        t.with_options(queue="alone").enqueue(n=1)
        with app._connections.connection():  # another enqueue of the app, in flight
            assert app._connections.busy == 1
            t.with_options(queue="beside").enqueue(n=2)
            relaxed_t.enqueue(n=3)
        relaxed_t.enqueue(n=4)
        woken = [n.payload for n in listener.notifies(timeout=1.0, stop_after=5)]
    assert woken == ["alone", "beside", "relaxed", "relaxed"]
    assert app._connections.busy == 0


async def test_the_count_of_connections_in_flight_comes_back_to_zero_after_failures(
    app: conveyor.Conveyor, t: conveyor.Task[Any], db: str
) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        await t.with_options(queue="async_alone").aenqueue(n=1)
        async with app._connections.aconnection():
            assert app._connections.busy == 1
            await t.with_options(queue="async_beside").aenqueue(n=2)
        woken = [n.payload for n in listener.notifies(timeout=1.0, stop_after=3)]
    assert woken == ["async_alone", "async_beside"]
    with pytest.raises(psycopg.errors.UndefinedTable), app._connections.connection() as conn:
        conn.execute("SELECT * FROM no_such_table")
    with pytest.raises(ZeroDivisionError):
        async with app._connections.aconnection():
            1 / 0  # noqa: B018
    assert app._connections.busy == 0
