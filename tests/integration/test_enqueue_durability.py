"""durable_enqueue: an enqueue waits for its commit's WAL flush unless the app or the task opts
out, and never changes the durability of a caller's own transaction.

A trigger on the job table records synchronous_commit as the enqueue's transaction sees it, on
whatever connection the enqueue ran (the app's pool, or the caller's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor._store.enqueue import COPY_THRESHOLD


@pytest.fixture
def seen(conn: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """synchronous_commit inside each enqueue statement that inserted jobs, in order."""
    conn.execute("CREATE TABLE conveyor.test_seen (n serial, setting text)")
    conn.execute(
        "CREATE FUNCTION conveyor.test_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO conveyor.test_seen (setting)"
        " VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$"
    )
    conn.execute(
        "CREATE TRIGGER test_seen AFTER INSERT ON conveyor.job FOR EACH STATEMENT"
        " EXECUTE FUNCTION conveyor.test_seen()"
    )
    found: list[str] = []
    try:
        yield found
    finally:
        conn.execute("DROP TRIGGER test_seen ON conveyor.job")
        conn.execute("DROP FUNCTION conveyor.test_seen()")
        conn.execute("DROP TABLE conveyor.test_seen")


def _seen(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT setting FROM conveyor.test_seen ORDER BY n").fetchall()
    conn.execute("TRUNCATE conveyor.test_seen")
    return [row[0] for row in rows]


def _tasks(app: conveyor.Conveyor) -> tuple[conveyor.Task[Any], conveyor.Task[Any]]:
    @app.task(name="plain")
    def plain(n: int = 0) -> None:
        pass

    @app.task(name="relaxed", durable_enqueue=False)
    def relaxed(n: int = 0) -> None:
        pass

    return plain, relaxed


@pytest.mark.usefixtures("seen")
def test_enqueue_is_durable_by_default_and_relaxed_when_a_task_asks(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    plain, relaxed = _tasks(app)
    assert app.durable_enqueue is True
    plain.enqueue(n=1)
    app.enqueue_many([plain.spec(n=n) for n in range(COPY_THRESHOLD)])  # COPY
    assert _seen(conn) == ["on", "on"]
    relaxed.enqueue(n=1)
    app.enqueue_many([relaxed.spec(n=n) for n in range(3)])
    app.enqueue_many([relaxed.spec(n=n) for n in range(COPY_THRESHOLD)])
    assert _seen(conn) == ["off", "off", "off"]
    # a batch mixing a durable task's jobs with relaxed ones stays durable
    app.enqueue_many([relaxed.spec(n=1), plain.spec(n=2)])
    assert _seen(conn) == ["on"]


@pytest.mark.usefixtures("seen")
async def test_async_enqueue_follows_the_same_setting(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    plain, relaxed = _tasks(app)
    await plain.aenqueue(n=1)
    await relaxed.aenqueue(n=1)
    await app.aenqueue_many([relaxed.spec(n=n) for n in range(COPY_THRESHOLD)])
    assert _seen(conn) == ["on", "off", "off"]


@pytest.mark.usefixtures("seen")
def test_the_apps_setting_is_the_default_and_a_task_can_keep_durability(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    app = conveyor.Conveyor(db, durable_enqueue=False)
    try:

        @app.task(name="any")
        def any_task() -> None:
            pass

        @app.task(name="careful", durable_enqueue=True)
        def careful() -> None:
            pass

        any_task.enqueue()
        careful.enqueue()
        assert _seen(conn) == ["off", "on"]
    finally:
        app.close()


@pytest.mark.usefixtures("seen")
def test_a_callers_transaction_keeps_its_durability(
    app: conveyor.Conveyor, db: str, conn: psycopg.Connection[Any]
) -> None:
    _, relaxed = _tasks(app)
    with psycopg.connect(db) as own:
        relaxed.enqueue_tx(own, n=1)
        app.enqueue_many_tx(own, [relaxed.spec(n=n) for n in range(COPY_THRESHOLD)])
        setting = own.execute("SHOW synchronous_commit").fetchone()
        own.commit()
    assert setting == ("on",)
    assert _seen(conn) == ["on", "on"]


@pytest.mark.usefixtures("seen")
def test_relaxed_lasts_only_for_its_transaction(db: str, conn: psycopg.Connection[Any]) -> None:
    app = conveyor.Conveyor(db, durable_enqueue=False)
    try:

        @app.task(name="t")
        def t() -> None:
            pass

        t.enqueue()
        with app._connections.connection() as pooled:  # the connection the enqueue used
            setting = pooled.execute("SHOW synchronous_commit").fetchone()
        assert setting == ("on",)
    finally:
        app.close()
