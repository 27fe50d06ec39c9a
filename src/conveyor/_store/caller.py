"""Run one statement on a connection the caller owns, whatever its kind.

Enqueue inside the caller's transaction works on psycopg 3 connections (sync and async),
SQLAlchemy sessions and connections (sync and async) and Django's connection. Parameters are
always bound by the driver, never formatted into the SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conveyor.errors import ConnectionTypeError

Row = dict[str, Any]
Params = Mapping[str, Any]

_PYFORMAT = re.compile(r"%\((\w+)\)s")


def run_sync(conn: Any, sql: str, params: Params) -> list[Row]:
    """Execute on a sync psycopg connection, SQLAlchemy Session/Connection or Django connection."""
    kind = _kind(conn)
    if kind == "psycopg":
        from psycopg.rows import dict_row

        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    if kind == "sqlalchemy":
        from sqlalchemy import text

        result = conn.execute(text(_to_named(sql)), dict(params))
        return [dict(row._mapping) for row in result] if result.returns_rows else []
    if kind == "django":
        with conn.cursor() as cur:
            cur.execute(sql, dict(params))
            if cur.description is None:
                return []
            columns = [col[0] for col in cur.description]
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    raise _unsupported(conn, async_=False)


async def run_async(conn: Any, sql: str, params: Params) -> list[Row]:
    """Execute on an async psycopg connection or SQLAlchemy AsyncSession/AsyncConnection."""
    kind = _kind(conn)
    if kind == "psycopg":
        from psycopg.rows import dict_row

        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall()) if cur.description else []
    if kind == "sqlalchemy":
        from sqlalchemy import text

        result = await conn.execute(text(_to_named(sql)), dict(params))
        return [dict(row._mapping) for row in result] if result.returns_rows else []
    raise _unsupported(conn, async_=True)


def is_psycopg(conn: Any) -> bool:
    """True for psycopg 3 connections (which can COPY)."""
    return _kind(conn) == "psycopg"


def _kind(conn: Any) -> str:
    module = type(conn).__module__
    if module.startswith("psycopg"):
        return "psycopg"
    if module.startswith("sqlalchemy"):
        return "sqlalchemy"
    if module.startswith("django"):
        return "django"
    return "unknown"


def _to_named(sql: str) -> str:
    # text() binds :name; a cast written ::type right after a parameter would read as part of
    # the name, so every :: is escaped first
    return _PYFORMAT.sub(r":\1", sql.replace("::", r"\:\:"))


def _unsupported(conn: Any, *, async_: bool) -> ConnectionTypeError:
    kinds = (
        "psycopg.AsyncConnection, sqlalchemy AsyncSession or AsyncConnection"
        if async_
        else "psycopg.Connection, sqlalchemy Session or Connection, django.db.connection"
    )
    return ConnectionTypeError(
        f"cannot enqueue on a {type(conn).__module__}.{type(conn).__name__}; pass one of: {kinds}"
    )
