"""A server that refuses connections (a role's CONNECTION LIMIT reached, as with a full
max_connections) makes a worker wait and retry, not crash; it works once connections free up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import conveyor
from tests.helpers import eventually, fast_config, job_states


@pytest.fixture
def limited_url(db: str) -> Iterator[tuple[str, str]]:
    """A role that may open no connection at all (yet), with the rights a worker needs."""
    role = f"conveyor_limited_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(ident))
        conn.execute(sql.SQL("GRANT pg_read_all_data, pg_write_all_data TO {}").format(ident))
    _user, rest = db.split("://", 1)[1].split("@", 1)
    yield f"postgresql://{role}@{rest}", role
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))


async def test_worker_waits_for_connections_and_then_works(
    db: str,
    limited_url: tuple[str, str],
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, role = limited_url
    app = conveyor.Conveyor(url)

    @app.task(name="t")
    def t() -> str:
        return "done"

    worker = conveyor.Worker(app, fast_config())
    running = asyncio.create_task(worker.run())
    # refused, and retrying: at least two attempts logged
    await eventually(
        lambda: sum("too many connections" in r.getMessage() for r in caplog.records) >= 2
    )
    assert not running.done(), "the worker must wait, not crash"
    conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(sql.Identifier(role)))
    await asyncio.wait_for(worker.started.wait(), 30)
    enqueuer = conveyor.Conveyor(db)
    enqueuer.enqueue_many([t.spec()])
    await eventually(lambda: job_states(conn) == {"completed": 1}, timeout=20)
    worker.stop()
    await asyncio.wait_for(running, 30)
    assert not worker.broken
    enqueuer.close()
    app.close()


async def test_database_passwords_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    app = conveyor.Conveyor("postgresql://postgres:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=1")
    worker = conveyor.Worker(app, fast_config())
    running = asyncio.create_task(worker.run())
    await eventually(lambda: any("cannot reach" in r.getMessage() for r in caplog.records))
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    app.close()
    assert "s3cret-pw" not in caplog.text
    assert "127.0.0.1" in caplog.text  # the log still says where it tried
