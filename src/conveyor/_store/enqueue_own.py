"""Enqueue on the app's own pooled connection: the path of `task.enqueue()` and `aenqueue()`.

A connection of the app's pool is a psycopg connection in autocommit mode, where each statement
commits by itself. One job is sent straight to psycopg: the insert (job_insert_one), carrying
its own NOTIFY when it is the app's only enqueue in flight (`alone`: one round trip). Beside
other enqueues, the NOTIFY follows the commit instead (job_wake, see insert_plan()): a NOTIFY
holds a cluster-wide lock through its commit's WAL flush, so concurrent notifying commits would
flush one at a time instead of together. Only an insert that needs more (a queue that refuses
or must drop jobs, a unique key held by another job, tracing, which carries the span's context
in the job) goes on with the plan of enqueue.py, from the insert's own row. Many jobs run the
plan, inside a transaction when it has several writing statements (COPY).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor import tracing
from conveyor._store.enqueue import (
    continue_insert,
    insert_plan,
    needs_transaction,
    one_params,
)
from conveyor._store.ops import Rows
from conveyor._store.queries import sql
from conveyor._store.runner import arun, run
from conveyor.migrate import schema_missing
from conveyor.spec import JobSpec

# job_insert_one's columns: ord, id, created, refused, crowded, notified, wake
_ID, _REFUSED, _CROWDED, _WAKE = 1, 3, 4, 6


def enqueue(
    conn: Any, specs: Sequence[JobSpec], now: datetime | None, relaxed: bool, alone: bool = False
) -> list[int]:
    """Insert `specs` on the app's sync connection `conn`; their ids in input order. `alone`:
    no other enqueue of the app is in flight, so one job's NOTIFY goes with its insert."""
    if len(specs) == 1 and not tracing.enabled():
        params = one_params(specs[0], now, relaxed, wake_later=not (relaxed or alone))
        try:
            cur = conn.execute(sql("job_insert_one"), params)
        except Exception as exc:
            missing = schema_missing(exc)
            if missing is None:
                raise
            raise missing from exc
        row = cur.fetchone()
        if row[_ID] is not None and not row[_REFUSED] and not row[_CROWDED]:
            if params["wake_later"] and row[_WAKE] is not None:
                conn.execute(sql("job_wake"), {"queue": row[_WAKE]})
            return [row[_ID]]
        return run(conn, continue_insert(specs, now, params, _rows(cur, row))).ids
    plan = insert_plan(conn, specs, now, relaxed=relaxed, own=True)
    if needs_transaction(conn, specs):
        with conn.transaction():
            return run(conn, plan).ids
    return run(conn, plan).ids


async def aenqueue(
    conn: Any, specs: Sequence[JobSpec], now: datetime | None, relaxed: bool, alone: bool = False
) -> list[int]:
    """Async twin of enqueue()."""
    if len(specs) == 1 and not tracing.enabled():
        params = one_params(specs[0], now, relaxed, wake_later=not (relaxed or alone))
        try:
            cur = await conn.execute(sql("job_insert_one"), params)
        except Exception as exc:
            missing = schema_missing(exc)
            if missing is None:
                raise
            raise missing from exc
        row = await cur.fetchone()
        if row[_ID] is not None and not row[_REFUSED] and not row[_CROWDED]:
            if params["wake_later"] and row[_WAKE] is not None:
                await conn.execute(sql("job_wake"), {"queue": row[_WAKE]})
            return [row[_ID]]
        return (await arun(conn, continue_insert(specs, now, params, _rows(cur, row)))).ids
    plan = insert_plan(conn, specs, now, relaxed=relaxed, own=True)
    if needs_transaction(conn, specs):
        async with conn.transaction():
            return (await arun(conn, plan)).ids
    return (await arun(conn, plan)).ids


def _rows(cur: Any, row: tuple[Any, ...]) -> Rows:
    return Rows([dict(zip([c.name for c in cur.description], row, strict=True))])
