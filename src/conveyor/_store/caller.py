"""Execute one step of an operation on a connection, whatever its kind.

The runners hand every step here: the worker's pooled psycopg connections and the caller's own,
for enqueue inside the caller's transaction: psycopg 3 connections (sync and async), SQLAlchemy
sessions and connections (sync and async) and Django's connection. Parameters are always bound
by the driver, never formatted into the SQL text.
"""

from __future__ import annotations

import re
from typing import Any

from conveyor._store.ops import Call, Claim, Copy, Op, Row, Rows, Savepoint, Step
from conveyor._store.queries import sql
from conveyor.errors import ConnectionTypeError

_PYFORMAT = re.compile(r"%\((\w+)\)s")


def execute(conn: Any, step: Step) -> Any:
    """Run one step on a sync psycopg connection, SQLAlchemy Session/Connection or Django
    connection; return what the step read."""
    if isinstance(step, Call):
        return step.fn(*step.args, **step.kwargs)
    if isinstance(step, Claim):
        raise ConnectionTypeError("a claim runs on the worker's async connection, with arun()")
    kind = _kind(conn)
    if isinstance(step, Savepoint):
        with _psycopg(conn, kind, "a savepoint").transaction():
            return execute(conn, step.op)
    if isinstance(step, Copy):
        with _psycopg(conn, kind, "COPY").cursor() as cur, cur.copy(sql(step.query)) as copy:
            _binary(cur, copy, step)
            for row in step.rows:
                copy.write_row(row)
        return None
    if kind == "psycopg":
        with conn.cursor(row_factory=_dict_row()) as cur:
            _prepare(cur, step)
            cur.execute(sql(step.query), step.params)
            return step.read(_rows(cur.fetchall() if cur.description else [], cur.rowcount))
    if kind == "sqlalchemy":
        result = conn.execute(_text(step.query), dict(step.params))
        return step.read(_alchemy_rows(result))
    if kind == "django":
        with conn.cursor() as cur:
            cur.execute(sql(step.query), dict(step.params))
            return step.read(_rows(_django_rows(cur), cur.rowcount))
    raise _unsupported(conn, async_=False)


async def aexecute(conn: Any, step: Step) -> Any:
    """Run one step on an async psycopg connection or SQLAlchemy AsyncSession/AsyncConnection;
    return what the step read."""
    if isinstance(step, Call):
        return await step.fn(*step.args, **step.kwargs)
    kind = _kind(conn)
    if isinstance(step, Claim):
        from conveyor._store.claimed import read_claimed

        async with _psycopg(conn, kind, "a claim").cursor(row_factory=_dict_row()) as cur:
            await cur.execute(sql(step.query), step.params)
            return await read_claimed(cur)
    if isinstance(step, Savepoint):
        async with _psycopg(conn, kind, "a savepoint").transaction():
            return await aexecute(conn, step.op)
    if isinstance(step, Copy):
        async with _psycopg(conn, kind, "COPY").cursor() as cur, cur.copy(sql(step.query)) as copy:
            _binary(cur, copy, step)
            for row in step.rows:
                await copy.write_row(row)
        return None
    if kind == "psycopg":
        async with conn.cursor(row_factory=_dict_row()) as cur:
            _prepare(cur, step)
            await cur.execute(sql(step.query), step.params)
            fetched = await cur.fetchall() if cur.description else []
            return step.read(_rows(fetched, cur.rowcount))
    if kind == "sqlalchemy":
        result = await conn.execute(_text(step.query), dict(step.params))
        return step.read(_alchemy_rows(result))
    raise _unsupported(conn, async_=True)


def can_copy(conn: Any) -> bool:
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


def _dict_row() -> Any:
    # imported on use: SQLAlchemy and Django callers may run on another driver
    from psycopg.rows import dict_row

    return dict_row


def _binary(cur: Any, copy: Any, step: Copy) -> None:
    """Set a binary COPY's column types; its JSON columns get their text as it is."""
    if step.types is None:
        return
    from psycopg.types.json import set_json_dumps

    set_json_dumps(_as_is, cur)
    copy.set_types(step.types)


def _as_is(text: Any) -> Any:
    return text


def _prepare(cur: Any, op: Op[Any]) -> None:
    if op.lenient:
        from conveyor.client_rows import load_leniently

        load_leniently(cur)


def _rows(fetched: list[Row], count: int) -> Rows:
    rows = Rows(fetched)
    rows.rowcount = count
    return rows


def _alchemy_rows(result: Any) -> Rows:
    fetched = [dict(row._mapping) for row in result] if result.returns_rows else []
    return _rows(fetched, result.rowcount)


def _django_rows(cur: Any) -> list[Row]:
    if cur.description is None:
        return []
    columns = [col[0] for col in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def _text(name: str) -> Any:
    from sqlalchemy import text

    # text() binds :name; a cast written ::type right after a parameter would read as part of
    # the name, so every :: is escaped first
    return text(_PYFORMAT.sub(r":\1", sql(name).replace("::", r"\:\:")))


def _psycopg(conn: Any, kind: str, what: str) -> Any:
    if kind != "psycopg":
        raise ConnectionTypeError(f"{what} needs a psycopg connection, not a {type(conn).__name__}")
    return conn


def _unsupported(conn: Any, *, async_: bool) -> ConnectionTypeError:
    kinds = (
        "psycopg.AsyncConnection, sqlalchemy AsyncSession or AsyncConnection"
        if async_
        else "psycopg.Connection, sqlalchemy Session or Connection, django.db.connection"
    )
    return ConnectionTypeError(
        f"cannot enqueue on a {type(conn).__module__}.{type(conn).__name__}; pass one of: {kinds}"
    )
