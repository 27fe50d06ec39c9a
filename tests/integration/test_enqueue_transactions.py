"""Enqueue inside the caller's transaction: commit keeps the job, rollback leaves none, on every
connection kind Conveyor accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any

import psycopg
import pytest

import conveyor

SyncTransaction = Callable[[], AbstractContextManager[Any]]
AsyncTransaction = Callable[[], AbstractAsyncContextManager[Any]]

SYNC_KINDS = ["psycopg-connection", "sqlalchemy-session", "sqlalchemy-connection", "django"]
ASYNC_KINDS = [
    "psycopg-async-connection",
    "sqlalchemy-async-session",
    "sqlalchemy-async-connection",
]


class _RollbackError(Exception):
    """Raised inside a transaction block to make it roll back."""


def _sqlalchemy_url(db: str) -> str:
    return db.replace("postgresql://", "postgresql+psycopg://", 1)


def _configure_django(db: str) -> None:
    """Point Django's default database at the test database (once per process)."""
    import django
    from django.conf import settings

    info = psycopg.conninfo.conninfo_to_dict(db)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info.get("dbname"),
        "USER": info.get("user") or "postgres",
        "PASSWORD": info.get("password") or "",
        "HOST": info.get("host") or "",
        "PORT": str(info.get("port") or ""),
    }
    if settings.configured:
        configured = settings.DATABASES["default"]["NAME"]
        assert configured == database["NAME"], f"Django already points at {configured}"
        return
    settings.configure(DATABASES={"default": database}, USE_TZ=True)
    django.setup()


@pytest.fixture(params=SYNC_KINDS)
def sync_transaction(request: pytest.FixtureRequest, db: str) -> Iterator[SyncTransaction]:
    """Opens a transaction on one kind of sync connection and yields what enqueue_tx takes;
    leaving the block with an exception rolls it back."""
    kind: str = request.param
    if kind == "psycopg-connection":

        @contextmanager
        def psycopg_transaction() -> Iterator[Any]:
            with psycopg.connect(db) as caller, caller.transaction():
                yield caller

        yield psycopg_transaction
    elif kind == "django":
        _configure_django(db)
        from django.db import connection, transaction

        @contextmanager
        def django_transaction() -> Iterator[Any]:
            with transaction.atomic():
                yield connection

        yield django_transaction
        connection.close()
    else:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        engine = create_engine(_sqlalchemy_url(db))

        @contextmanager
        def session_transaction() -> Iterator[Any]:
            with Session(engine) as session, session.begin():
                yield session

        yield session_transaction if kind == "sqlalchemy-session" else engine.begin
        engine.dispose()


@pytest.fixture(params=ASYNC_KINDS)
async def async_transaction(
    request: pytest.FixtureRequest, db: str
) -> AsyncIterator[AsyncTransaction]:
    """Async twin of sync_transaction."""
    kind: str = request.param
    if kind == "psycopg-async-connection":

        @asynccontextmanager
        async def psycopg_transaction() -> AsyncIterator[Any]:
            async with (
                await psycopg.AsyncConnection.connect(db) as caller,
                caller.transaction(),
            ):
                yield caller

        yield psycopg_transaction
    else:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(_sqlalchemy_url(db))

        @asynccontextmanager
        async def session_transaction() -> AsyncIterator[Any]:
            async with AsyncSession(engine) as session, session.begin():
                yield session

        yield session_transaction if kind == "sqlalchemy-async-session" else engine.begin
        await engine.dispose()


@pytest.fixture
def ping(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ping")
    def ping(n: int) -> int:
        return n

    return ping


def _jobs(conn: psycopg.Connection[Any]) -> dict[int, int]:
    """Every job's id and its `n` argument, seen from outside the caller's transaction."""
    rows = conn.execute("SELECT id, (args->>'n')::int FROM conveyor.jobs ORDER BY id")
    return dict(rows.fetchall())


def test_commit_keeps_the_jobs(
    sync_transaction: SyncTransaction,
    app: conveyor.Conveyor,
    ping: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    with sync_transaction() as caller:
        one = ping.enqueue_tx(caller, n=1)
        many = app.enqueue_many_tx(caller, [ping.spec(n=2), ping.spec(n=3)])
        assert _jobs(conn) == {}, "jobs must be invisible before commit"
    assert _jobs(conn) == {one: 1, many[0]: 2, many[1]: 3}


def test_rollback_leaves_no_job(
    sync_transaction: SyncTransaction,
    app: conveyor.Conveyor,
    ping: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(_RollbackError), sync_transaction() as caller:
        ping.enqueue_tx(caller, n=1)
        app.enqueue_many_tx(caller, [ping.spec(n=2), ping.spec(n=3)])
        raise _RollbackError
    assert _jobs(conn) == {}


def test_rolled_back_enqueue_wakes_no_worker(
    sync_transaction: SyncTransaction, ping: conveyor.Task[Any], db: str
) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN conveyor_jobs")
        with pytest.raises(_RollbackError), sync_transaction() as caller:
            ping.with_options(queue="rolled-back").enqueue_tx(caller, n=1)
            raise _RollbackError
        with sync_transaction() as caller:
            ping.with_options(queue="committed").enqueue_tx(caller, n=2)
        # Notifications arrive in commit order: the first one must be the committed job's.
        first = next(listener.notifies(timeout=10, stop_after=1))
    assert first.payload == "committed"


async def test_async_commit_keeps_the_jobs(
    async_transaction: AsyncTransaction,
    app: conveyor.Conveyor,
    ping: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    async with async_transaction() as caller:
        one = await ping.aenqueue_tx(caller, n=1)
        many = await app.aenqueue_many_tx(caller, [ping.spec(n=2), ping.spec(n=3)])
        assert _jobs(conn) == {}, "jobs must be invisible before commit"
    assert _jobs(conn) == {one: 1, many[0]: 2, many[1]: 3}


async def test_async_rollback_leaves_no_job(
    async_transaction: AsyncTransaction,
    app: conveyor.Conveyor,
    ping: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(_RollbackError):
        async with async_transaction() as caller:
            await ping.aenqueue_tx(caller, n=1)
            await app.aenqueue_many_tx(caller, [ping.spec(n=2), ping.spec(n=3)])
            raise _RollbackError
    assert _jobs(conn) == {}


BULK = 10_000


@pytest.mark.parametrize("kind", ["psycopg-connection", "sqlalchemy-session"])
def test_bulk_enqueue_of_ten_thousand_jobs_returns_ids_in_input_order(
    kind: str,
    db: str,
    app: conveyor.Conveyor,
    ping: conveyor.Task[Any],
    conn: psycopg.Connection[Any],
) -> None:
    # psycopg takes the COPY path, SQLAlchemy the single INSERT: both must keep the order.
    specs = [ping.spec(n=n) for n in range(BULK)]
    if kind == "psycopg-connection":
        with psycopg.connect(db) as caller, caller.transaction():
            ids = app.enqueue_many_tx(caller, specs)
    else:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        engine = create_engine(_sqlalchemy_url(db))
        with Session(engine) as session, session.begin():
            ids = app.enqueue_many_tx(session, specs)
        engine.dispose()
    assert len(set(ids)) == BULK
    by_id = _jobs(conn)
    assert [by_id[job_id] for job_id in ids] == list(range(BULK))


async def test_async_bulk_enqueue_of_ten_thousand_jobs_returns_ids_in_input_order(
    db: str, app: conveyor.Conveyor, ping: conveyor.Task[Any], conn: psycopg.Connection[Any]
) -> None:
    specs = [ping.spec(n=n) for n in range(BULK)]
    async with await psycopg.AsyncConnection.connect(db) as caller, caller.transaction():
        ids = await app.aenqueue_many_tx(caller, specs)
    assert len(set(ids)) == BULK
    by_id = _jobs(conn)
    assert [by_id[job_id] for job_id in ids] == list(range(BULK))


def test_enqueue_on_an_unsupported_object_names_its_type(ping: conveyor.Task[Any]) -> None:
    with pytest.raises(TypeError, match=r"cannot enqueue on a builtins\.object"):
        ping.enqueue_tx(object(), n=1)
