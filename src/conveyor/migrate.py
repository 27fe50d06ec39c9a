"""Migrator: versioned, forward-only schema migrations in the `conveyor` schema.

Safe to run twice and from several processes at once: a transaction-level advisory lock lets
one process apply the pending migrations while the others wait and then find nothing to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from conveyor.errors import SchemaError

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_KEY = "conveyor.migrate"


@dataclass(frozen=True)
class Migration:
    """One file of sql/migrations: NNNN_name.sql."""

    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this version, oldest first."""
    found: list[Migration] = []
    for entry in (resources.files("conveyor") / "sql" / "migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return tuple(found)


def latest_version() -> int:
    """The schema version this version of Conveyor expects."""
    return migrations()[-1].version


class Migrator:
    """Applies pending migrations and checks that a database is ready for this version."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def migrate(self) -> list[Migration]:
        """Apply every pending migration in one transaction; return what was applied."""
        with psycopg.connect(self._url) as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))", {"key": _LOCK_KEY}
            )
            conn.execute("CREATE SCHEMA IF NOT EXISTS conveyor")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS conveyor.schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = _current_version(conn)
            if current > latest_version():
                raise _newer(current)
            applied: list[Migration] = []
            for migration in migrations():
                if migration.version <= current:
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO conveyor.schema_version (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied.append(migration)
            return applied

    def version(self) -> int:
        """The database's schema version (0 when Conveyor was never migrated there)."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            return _current_version(conn)

    def check(self) -> None:
        """Raise SchemaError unless the schema is exactly the version this code expects."""
        _check_version(self.version())

    async def acheck(self) -> None:
        """check() on an async connection, so that a caller can cancel it mid-connect."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            current = 0
            cur = await conn.execute(_EXISTS_SQL)
            exists = await cur.fetchone()
            if exists and exists[0]:
                cur = await conn.execute(_VERSION_SQL)
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
        _check_version(current)


_EXISTS_SQL = "SELECT to_regclass('conveyor.schema_version') IS NOT NULL"
_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM conveyor.schema_version"


def _check_version(current: int) -> None:
    expected = latest_version()
    if current == 0:
        raise SchemaError(
            "the database has no Conveyor schema; run `conveyor migrate` (or app.migrate()) first"
        )
    if current < expected:
        raise SchemaError(
            f"the database schema is at version {current} but this Conveyor needs"
            f" {expected}; run `conveyor migrate`"
        )
    if current > expected:
        raise _newer(current)


_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)


def schema_missing(exc: BaseException) -> SchemaError | None:
    """The SchemaError to raise instead of `exc` when it says the database lacks this
    Conveyor's schema (a table, column or function of ours is missing); None otherwise.

    Sees through the wrappers of SQLAlchemy (`exc.orig`) and Django (`exc.__cause__`)."""
    for error in (exc, getattr(exc, "orig", None), exc.__cause__):
        if isinstance(error, _MISSING):
            detail = str(error).splitlines()[0]
            return SchemaError(
                f"the database does not have this Conveyor's schema ({detail}); run"
                " `conveyor migrate` (or app.migrate()) first"
            )
    return None


def _current_version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute(_EXISTS_SQL).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(_VERSION_SQL).fetchone()
    return int(row[0]) if row else 0


def _newer(current: int) -> SchemaError:
    return SchemaError(
        f"the database was migrated by a newer Conveyor: its schema is at version {current},"
        f" newer than this Conveyor knows (up to {latest_version()}); upgrade the conveyor"
        " package on this host to use it"
    )
