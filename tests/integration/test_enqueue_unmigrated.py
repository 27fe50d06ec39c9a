"""Enqueue on a database that was never migrated raises SchemaError saying to run
`conveyor migrate`, on every kind of connection, instead of a driver's UndefinedTable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import conveyor
from tests.conftest import _with_dbname

FIX = "run `conveyor migrate`"


@pytest.fixture
def unmigrated(admin_url: str) -> Iterator[conveyor.Conveyor]:
    """An app on a database of its own that has no conveyor schema."""
    name = f"conveyor_unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    app = conveyor.Conveyor(_with_dbname(admin_url, name))
    yield app
    app.close()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _task(app: conveyor.Conveyor) -> conveyor.Task[None]:
    @app.task(name="t.unmigrated")
    def unmigrated_task(n: int) -> None:
        return None

    return unmigrated_task


def test_enqueue_on_the_apps_own_connection(unmigrated: conveyor.Conveyor) -> None:
    task = _task(unmigrated)
    with pytest.raises(conveyor.SchemaError, match=FIX):
        task.enqueue(n=1)
    with pytest.raises(conveyor.SchemaError, match=FIX):
        unmigrated.enqueue_many([task.spec(n=n) for n in range(300)])  # the COPY path


async def test_aenqueue_on_the_apps_own_connection(unmigrated: conveyor.Conveyor) -> None:
    task = _task(unmigrated)
    with pytest.raises(conveyor.SchemaError, match=FIX):
        await task.aenqueue(n=1)
    await unmigrated.aclose()


def test_enqueue_tx_on_psycopg_and_sqlalchemy(unmigrated: conveyor.Conveyor) -> None:
    task = _task(unmigrated)
    url = unmigrated.database_url
    with psycopg.connect(url) as conn, pytest.raises(conveyor.SchemaError, match=FIX):
        task.enqueue_tx(conn, n=1)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with Session(engine) as session, pytest.raises(conveyor.SchemaError, match=FIX):
        task.enqueue_tx(session, n=1)
    engine.dispose()
