"""Test fixtures: a real Postgres for the whole session, a clean schema for every test.

The server is CONVEYOR_TEST_DATABASE_URL when set, else the local one on 127.0.0.1:5432, else
an embedded Postgres (pgserver) started for the session, so the suite runs on a bare machine
(CONVEYOR_TEST_EMBEDDED=1 forces the embedded one).
Each session gets its own database; each test starts from empty tables.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

import conveyor
from conveyor.migrate import Migrator
from tests.helpers import clean_tables

_LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _server_url(tmp_root: str) -> tuple[str, Any]:
    explicit = os.environ.get("CONVEYOR_TEST_DATABASE_URL")
    if explicit:
        return explicit, None
    if not os.environ.get("CONVEYOR_TEST_EMBEDDED") and _reachable(_LOCAL):
        return _LOCAL, None
    import pgserver  # the embedded default: no Postgres on this machine

    server = pgserver.get_server(os.path.join(tmp_root, "pgdata"), cleanup_mode="stop")
    return server.get_uri(), server


def _with_dbname(url: str, dbname: str) -> str:
    """The same server, another database, as a postgresql:// URL (which SQLAlchemy and node
    accept too, unlike key=value conninfo)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = quote(str(info.get("user") or "postgres"))
    password = info.get("password")
    auth = f"{user}:{quote(str(password))}" if password else user
    host = str(info.get("host") or "")
    port = str(info.get("port") or "5432")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{dbname}?host={quote(host)}&port={port}"
    return f"postgresql://{auth}@{host or 'localhost'}:{port}/{dbname}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session."""
    with tempfile.TemporaryDirectory(prefix="conveyor-tests-") as tmp_root:
        admin_url, server = _server_url(tmp_root)
        name = f"conveyor_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = _with_dbname(admin_url, name)
        Migrator(url).migrate()
        os.environ["CONVEYOR_DATABASE_URL"] = url
        try:
            yield url
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            del server


@pytest.fixture(scope="session")
def admin_url(database_url: str) -> str:
    """The maintenance database of the same server (for creating throwaway databases)."""
    return _with_dbname(database_url, "postgres")


@pytest.fixture
def db(database_url: str) -> str:
    """The session database, emptied for this test."""
    clean_tables(database_url)
    return database_url


@pytest.fixture
async def app(db: str) -> AsyncIterator[conveyor.Conveyor]:
    """A Conveyor app on the clean test database; tests register their own tasks."""
    application = conveyor.Conveyor(db)
    yield application
    # The async pool too, on its own loop: an open pool's workers outlive a cancellation, so
    # one left open can hang the loop's close.
    await application.aclose()


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection for looking at rows."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection
