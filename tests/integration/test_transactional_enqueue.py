"""Enqueue inside the caller's transaction: commit keeps the job, rollback leaves none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import conveyor


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def ping(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ping")
    def ping(n: int) -> int:
        return n

    return ping


class _RollbackError(Exception):
    pass


def test_psycopg_commit_keeps_job_and_rollback_leaves_none(
    db: str, conn: psycopg.Connection[Any], ping: conveyor.Task[Any]
) -> None:
    with psycopg.connect(db) as caller:
        with caller.transaction():
            job_id = ping.enqueue_tx(caller, n=1)
            assert _count(conn) == 0, "invisible before commit"
        assert _count(conn) == 1
        with pytest.raises(_RollbackError), caller.transaction():
            ping.enqueue_tx(caller, n=2)
            raise _RollbackError
    assert _count(conn) == 1
    assert conveyor.Conveyor(db).client().get_job(job_id).args == {"n": 1}


async def test_psycopg_async_commit_keeps_job_and_rollback_leaves_none(
    db: str, conn: psycopg.Connection[Any], ping: conveyor.Task[Any]
) -> None:
    async with await psycopg.AsyncConnection.connect(db) as caller:
        async with caller.transaction():
            await ping.aenqueue_tx(caller, n=1)
        with pytest.raises(_RollbackError):
            async with caller.transaction():
                await ping.aenqueue_tx(caller, n=2)
                raise _RollbackError
    assert _count(conn) == 1


def _sqlalchemy_url(db: str, driver: str = "psycopg") -> str:
    return db.replace("postgresql://", f"postgresql+{driver}://", 1)


def test_sqlalchemy_session_and_connection(
    db: str, conn: psycopg.Connection[Any], ping: conveyor.Task[Any]
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(_sqlalchemy_url(db))
    try:
        with Session(engine) as session, session.begin():
            ping.enqueue_tx(session, n=1)
        with pytest.raises(_RollbackError), Session(engine) as session, session.begin():
            ping.enqueue_tx(session, n=2)
            raise _RollbackError
        with engine.begin() as connection:
            ping.enqueue_tx(connection, n=3)
        with pytest.raises(_RollbackError), engine.begin() as connection:
            ping.enqueue_tx(connection, n=4)
            raise _RollbackError
    finally:
        engine.dispose()
    rows = conn.execute("SELECT args->>'n' FROM conveyor.jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["1", "3"]


async def test_sqlalchemy_async_session_and_connection(
    db: str, conn: psycopg.Connection[Any], ping: conveyor.Task[Any]
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(_sqlalchemy_url(db))
    try:
        async with AsyncSession(engine) as session, session.begin():
            await ping.aenqueue_tx(session, n=1)
        with pytest.raises(_RollbackError):
            async with AsyncSession(engine) as session, session.begin():
                await ping.aenqueue_tx(session, n=2)
                raise _RollbackError
        async with engine.begin() as connection:
            await ping.aenqueue_tx(connection, n=3)
        with pytest.raises(_RollbackError):
            async with engine.begin() as connection:
                await ping.aenqueue_tx(connection, n=4)
                raise _RollbackError
    finally:
        await engine.dispose()
    rows = conn.execute("SELECT args->>'n' FROM conveyor.jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["1", "3"]


@pytest.fixture
def django_connection(db: str) -> Iterator[Any]:
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
    if not settings.configured:
        settings.configure(DATABASES={"default": database}, USE_TZ=True)
        django.setup()
    from django.db import connection

    yield connection
    connection.close()


def test_django_atomic_commit_keeps_job_and_rollback_leaves_none(
    django_connection: Any, conn: psycopg.Connection[Any], ping: conveyor.Task[Any]
) -> None:
    from django.db import transaction

    with transaction.atomic():
        ping.enqueue_tx(django_connection, n=1)
    with pytest.raises(_RollbackError), transaction.atomic():
        ping.enqueue_tx(django_connection, n=2)
        raise _RollbackError
    rows = conn.execute("SELECT args->>'n' FROM conveyor.jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["1"]


def test_bulk_enqueue_in_a_transaction_returns_ids_in_order(
    db: str, conn: psycopg.Connection[Any], app: conveyor.Conveyor, ping: conveyor.Task[Any]
) -> None:
    specs = [ping.spec(n=n) for n in range(5000)]
    with psycopg.connect(db) as caller:
        ids = app.enqueue_many_tx(caller, specs)
        assert _count(conn) == 0
        caller.commit()
    rows = conn.execute("SELECT id, (args->>'n')::int FROM conveyor.job").fetchall()
    by_id = dict(rows)
    assert [by_id[i] for i in ids] == list(range(5000))
    small = app.enqueue_many([ping.spec(n=n) for n in range(10)])  # the INSERT path
    assert [app.client().get_job(i).args["n"] for i in small] == list(range(10))


def test_wrong_connection_type_is_named_in_the_error(ping: conveyor.Task[Any]) -> None:
    with pytest.raises(TypeError, match=r"cannot enqueue on a builtins\.object"):
        ping.enqueue_tx(object(), n=1)
