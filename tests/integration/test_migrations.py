"""Migrations: safe twice, safe from many processes at once; workers refuse a wrong schema."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import conveyor
from conveyor.migrate import Migrator, latest_version
from tests.conftest import _with_dbname


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    name = f"conveyor_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_twice_applies_nothing_the_second_time(empty_db: str) -> None:
    assert [m.version for m in Migrator(empty_db).migrate()] == list(range(1, latest_version() + 1))
    assert Migrator(empty_db).migrate() == []
    assert Migrator(empty_db).version() == latest_version()


def test_six_processes_migrating_at_once_all_succeed(empty_db: str) -> None:
    command = [sys.executable, "-m", "conveyor", "--database-url", empty_db, "migrate"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, outputs
    said = [out for out, _ in outputs]
    assert sum("applied 0001_initial" in out for out in said) == 1
    assert sum("up to date" in out for out in said) == 5
    assert Migrator(empty_db).version() == latest_version()


async def test_worker_refuses_an_unmigrated_database(empty_db: str) -> None:
    app = conveyor.Conveyor(empty_db)
    with pytest.raises(conveyor.SchemaError, match="run `conveyor migrate`"):
        await conveyor.Worker(app).run()


async def test_worker_refuses_a_newer_schema(empty_db: str) -> None:
    Migrator(empty_db).migrate()
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor.schema_version (version, name) VALUES (%s, 'future')",
            (latest_version() + 1,),
        )
    app = conveyor.Conveyor(empty_db)
    with pytest.raises(conveyor.SchemaError, match="upgrade the conveyor package"):
        await conveyor.Worker(app).run()
