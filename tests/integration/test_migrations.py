"""Migrations: safe twice, safe from many processes at once; workers refuse a wrong schema."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import conveyor
from conveyor.migrate import Migrator, latest_version, migrations
from tests.conftest import _with_dbname

PROCESSES = 6


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    """A brand-new database with no Conveyor schema, dropped afterwards."""
    name = f"conveyor_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _versions(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM conveyor.schema_version").fetchall()


def _has_job_table(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('conveyor.job') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_migrate_twice_applies_nothing_the_second_time(empty_db: str) -> None:
    assert Migrator(empty_db).version() == 0
    applied = Migrator(empty_db).migrate()
    assert [m.version for m in applied] == [m.version for m in migrations()]
    before = _versions(empty_db)
    assert Migrator(empty_db).migrate() == []
    assert _versions(empty_db) == before
    assert Migrator(empty_db).version() == latest_version()
    Migrator(empty_db).check()


def test_six_processes_migrating_a_new_database_at_once_all_succeed(empty_db: str) -> None:
    command = [sys.executable, "-m", "conveyor", "--database-url", empty_db, "migrate"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * PROCESSES, outputs
    assert sum("0001_initial" in out for out, _ in outputs) == 1, "exactly one applies it"
    assert Migrator(empty_db).version() == latest_version()
    assert [v for v, _ in _versions(empty_db)] == [m.version for m in migrations()]


async def test_worker_refuses_an_unmigrated_database(empty_db: str) -> None:
    app = conveyor.Conveyor(empty_db)
    with pytest.raises(conveyor.SchemaError, match="run `conveyor migrate`"):
        await conveyor.Worker(app).run()
    assert not _has_job_table(empty_db), "the worker must not create the schema itself"


async def test_worker_refuses_a_newer_schema(empty_db: str) -> None:
    Migrator(empty_db).migrate()
    future = latest_version() + 1
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor.schema_version (version, name) VALUES (%s, 'future')", (future,)
        )
    app = conveyor.Conveyor(empty_db)
    with pytest.raises(conveyor.SchemaError, match="upgrade the conveyor package") as info:
        await conveyor.Worker(app).run()
    assert f"version {future}" in str(info.value)
    with pytest.raises(conveyor.SchemaError, match="newer than this Conveyor knows"):
        Migrator(empty_db).migrate()
    assert Migrator(empty_db).version() == future, "migrate must not touch a newer schema"


def test_cli_on_an_unmigrated_database_says_to_migrate(empty_db: str) -> None:
    from click.testing import CliRunner

    from conveyor.cli import cli

    for command in (["alerts", "list"], ["jobs", "list"], ["status"]):
        result = CliRunner().invoke(cli, ["--database-url", empty_db, *command])
        assert result.exit_code == 1, (command, result.output)
        assert "run `conveyor migrate`" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.output
