"""An enqueue after the server dropped the pool's connections (a restart, a failover, an admin's
pg_terminate_backend) succeeds: the pool notices the dead connection before using it."""

from __future__ import annotations

from typing import Any

import psycopg

import conveyor
from tests.helpers import eventually, wait_until

_CLIENTS = """
SELECT pid FROM pg_stat_activity
 WHERE application_name = 'conveyor-client' AND datname = current_database()
"""


def _drop_client_connections(conn: psycopg.Connection[Any]) -> None:
    pids = [row[0] for row in conn.execute(_CLIENTS).fetchall()]
    assert pids, "the app's pool holds no connection to drop"
    conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    wait_until(lambda: not conn.execute(_CLIENTS).fetchall())


def _job_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM conveyor.job").fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_after_the_server_dropped_the_pools_connections(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    app = conveyor.Conveyor(db)

    @app.task(name="t")
    def t(n: int) -> None: ...

    try:
        t.enqueue(n=1)
        _drop_client_connections(conn)
        t.enqueue(n=2)
        assert _job_count(conn) == 2
    finally:
        app.close()


async def test_aenqueue_after_the_server_dropped_the_pools_connections(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    app = conveyor.Conveyor(db)

    @app.task(name="t")
    async def t(n: int) -> None: ...

    try:
        await t.aenqueue(n=1)
        await eventually(lambda: conn.execute(_CLIENTS).fetchall())
        _drop_client_connections(conn)
        await t.aenqueue(n=2)
        assert _job_count(conn) == 2
    finally:
        await app.aclose()
