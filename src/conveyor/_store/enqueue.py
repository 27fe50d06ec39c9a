"""Insert jobs: one statement for one job or ten thousand, on any connection kind."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor import tracing
from conveyor._store.caller import Row, is_psycopg, run_async, run_sync
from conveyor._store.queries import sql
from conveyor.durations import check_run_at, to_seconds
from conveyor.errors import QueueFullError, UniqueKeyRaceError
from conveyor.migrate import schema_missing

#: From this many jobs on, a psycopg connection enqueues with COPY instead of one INSERT.
COPY_THRESHOLD = 200
_COPY = (
    "COPY conveyor.job (id, task, queue, args, priority, max_attempts, run_at, state,"
    " timeout_seconds, created_at, correlation_id, trace_context) FROM STDIN"
)


@dataclass(frozen=True)
class JobSpec:
    """A job ready to insert: arguments already encoded as JSON text."""

    task: str
    args_json: str
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    run_at: datetime | None = None
    delay: float | None = None
    unique_key: str | None = None
    timeout_seconds: float | None = None
    correlation_id: str | None = None
    #: W3C trace headers of the enqueueing span, when tracing is on.
    trace_context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # specs built by hand (not by Task.spec) meet the same bounds as with_options()
        if self.run_at is not None:
            check_run_at(self.run_at)
        if self.delay is not None:
            to_seconds(self.delay, "delay")
        if self.timeout_seconds is not None:
            to_seconds(self.timeout_seconds, "timeout", positive=True)

    def to_json(self, ord_: int) -> str:
        meta: dict[str, Any] = {"ord": ord_, "task": self.task}
        for name in (
            "queue",
            "priority",
            "max_attempts",
            "delay",
            "unique_key",
            "correlation_id",
            "trace_context",
        ):
            value = getattr(self, name)
            if value is not None:
                meta[name] = value
        if self.timeout_seconds is not None:
            meta["timeout_seconds"] = self.timeout_seconds
        if self.run_at is not None:
            meta["run_at"] = self.run_at.isoformat()
        head = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
        # args_json is already valid JSON from the codec; splice it in rather than re-encode
        return head[:-1] + ',"args":' + self.args_json + "}"


@dataclass(frozen=True)
class Inserted:
    """The id of each enqueued job, in input order; `created` is False for unique-key hits."""

    ids: list[int]
    created: list[bool]


def _statement(specs: Sequence[JobSpec], now: datetime | None) -> tuple[str, dict[str, Any]]:
    """The insert for these jobs and its parameters: one row, or a JSON recordset of many."""
    if len(specs) == 1:
        s = specs[0]
        return sql("job_insert_one"), {
            "task": s.task,
            "queue": s.queue,
            "args": s.args_json,
            "priority": s.priority,
            "max_attempts": s.max_attempts,
            "run_at": s.run_at,
            "delay": s.delay,
            "unique_key": s.unique_key,
            "timeout_seconds": s.timeout_seconds,
            "correlation_id": s.correlation_id,
            "trace_context": None if s.trace_context is None else json.dumps(s.trace_context),
            "now": now,
        }
    document = "[" + ",".join(spec.to_json(i) for i, spec in enumerate(specs)) + "]"
    return sql("job_insert_many"), {"jobs": document, "now": now}


def _parse(rows: list[Row]) -> tuple[list[int | None], list[bool]]:
    return [row["id"] for row in rows], [bool(row["created"]) for row in rows]


def _backpressure(specs: Sequence[JobSpec], rows: list[Row]) -> list[str]:
    """Raise QueueFullError for refused jobs; return the queues that must make room."""
    refused = sorted({_queue(specs[n]) for n, row in enumerate(rows) if row["refused"]})
    if refused:
        raise QueueFullError(refused)
    return sorted({_queue(specs[n]) for n, row in enumerate(rows) if row["crowded"]})


def _queue(spec: JobSpec) -> str:
    return spec.queue or "default"


def _batch_counts(specs: Sequence[JobSpec]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for spec in specs:
        counts[_queue(spec)] = counts.get(_queue(spec), 0) + 1
    return {"queues": list(counts), "counts": list(counts.values())}


def _pending(specs: Sequence[JobSpec], ids: list[int | None]) -> list[int]:
    return [n for n, job_id in enumerate(ids) if job_id is None and specs[n].unique_key]


def _apply(
    ids: list[int | None], pending: list[int], specs: Sequence[JobSpec], rows: list[Row]
) -> None:
    found = {row["unique_key"]: row["id"] for row in rows}
    for n in pending:
        ids[n] = found.get(specs[n].unique_key)


_ATTEMPTS = 5
_RACE = "unique-key enqueue kept racing with the key's holder finishing; try again"


def _use_copy(conn: Any, specs: Sequence[JobSpec]) -> bool:
    return (
        len(specs) >= COPY_THRESHOLD and is_psycopg(conn) and not any(s.unique_key for s in specs)
    )


def _copy_rows(
    specs: Sequence[JobSpec], ids: list[int], db_now: datetime
) -> tuple[list[tuple[Any, ...]], set[str]]:
    rows: list[tuple[Any, ...]] = []
    wake: set[str] = set()
    for job_id, s in zip(ids, specs, strict=True):
        run_at = s.run_at or (db_now + timedelta(seconds=s.delay) if s.delay else db_now)
        state = "scheduled" if run_at > db_now else "available"
        queue = s.queue or "default"
        if state == "available":
            wake.add(queue)
        rows.append(
            (
                job_id,
                s.task,
                queue,
                s.args_json,
                s.priority or 0,
                s.max_attempts,
                run_at,
                state,
                s.timeout_seconds,
                db_now,
                s.correlation_id,
                None if s.trace_context is None else json.dumps(s.trace_context),
            )
        )
    return rows, wake


def copy_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None = None) -> Inserted:
    """Bulk insert with COPY on a sync psycopg connection: ids drawn first, one NOTIFY per
    queue, all inside the connection's current transaction."""
    with conn.cursor() as cur:
        batch = _batch_counts(specs)
        cur.execute(sql("queue_refusing"), batch)
        refused = sorted(row[0] for row in cur.fetchall())
        if refused:
            raise QueueFullError(refused)
        cur.execute(sql("job_reserve_ids"), {"n": len(specs), "now": now})
        drawn = cur.fetchall()
        ids = [row[0] for row in drawn]
        rows, wake = _copy_rows(specs, ids, drawn[0][1])
        with cur.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(sql("job_set_concurrency_keys"), {"ids": ids})
        cur.execute(sql("queue_make_room"), {"queues": batch["queues"], "now": now})
        for queue in sorted(wake):
            cur.execute("SELECT pg_notify('conveyor_jobs', %s)", (queue,))
    return Inserted(ids, [True] * len(ids))


async def acopy_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None = None) -> Inserted:
    """Async twin of copy_jobs()."""
    async with conn.cursor() as cur:
        batch = _batch_counts(specs)
        await cur.execute(sql("queue_refusing"), batch)
        refused = sorted(row[0] for row in await cur.fetchall())
        if refused:
            raise QueueFullError(refused)
        await cur.execute(sql("job_reserve_ids"), {"n": len(specs), "now": now})
        drawn = await cur.fetchall()
        ids = [row[0] for row in drawn]
        rows, wake = _copy_rows(specs, ids, drawn[0][1])
        async with cur.copy(_COPY) as copy:
            for row in rows:
                await copy.write_row(row)
        await cur.execute(sql("job_set_concurrency_keys"), {"ids": ids})
        await cur.execute(sql("queue_make_room"), {"queues": batch["queues"], "now": now})
        for queue in sorted(wake):
            await cur.execute("SELECT pg_notify('conveyor_jobs', %s)", (queue,))
    return Inserted(ids, [True] * len(ids))


def insert_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None = None) -> Inserted:
    """Insert on a sync connection (the caller's transaction, if one is open)."""
    with tracing.enqueue_span(specs) as traced, _migrated():
        return _insert_jobs(conn, traced, now)


async def ainsert_jobs(
    conn: Any, specs: Sequence[JobSpec], now: datetime | None = None
) -> Inserted:
    """Insert on an async connection (the caller's transaction, if one is open)."""
    with tracing.enqueue_span(specs) as traced, _migrated():
        return await _ainsert_jobs(conn, traced, now)


@contextmanager
def _migrated() -> Iterator[None]:
    """On a database without the schema, raise SchemaError saying to run `conveyor migrate`
    instead of the driver's UndefinedTable."""
    try:
        yield
    except Exception as exc:
        missing = schema_missing(exc)
        if missing is None:
            raise
        raise missing from exc


def _insert_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None) -> Inserted:
    if _use_copy(conn, specs):
        return copy_jobs(conn, specs, now)
    rows = run_sync(conn, *_statement(specs, now))
    crowded = _backpressure(specs, rows)
    if crowded:
        run_sync(conn, sql("queue_make_room"), {"queues": crowded, "now": now})
    ids, created = _parse(rows)
    for _ in range(_ATTEMPTS):
        pending = _pending(specs, ids)
        if not pending:
            return Inserted([i for i in ids if i is not None], created)
        # A concurrent transaction committed the key after our statement's snapshot was taken.
        keys = [specs[n].unique_key for n in pending]
        _apply(ids, pending, specs, run_sync(conn, sql("job_find_by_unique_key"), {"keys": keys}))
        # Keys whose holder finished in between: insert those jobs again.
        retry = _pending(specs, ids)
        if retry:
            again, made = _parse(run_sync(conn, *_statement([specs[n] for n in retry], now)))
            for n, job_id, was_made in zip(retry, again, made, strict=True):
                ids[n], created[n] = job_id, was_made
    raise UniqueKeyRaceError(_RACE)


async def _ainsert_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None) -> Inserted:
    if _use_copy(conn, specs):
        return await acopy_jobs(conn, specs, now)
    rows = await run_async(conn, *_statement(specs, now))
    crowded = _backpressure(specs, rows)
    if crowded:
        await run_async(conn, sql("queue_make_room"), {"queues": crowded, "now": now})
    ids, created = _parse(rows)
    for _ in range(_ATTEMPTS):
        pending = _pending(specs, ids)
        if not pending:
            return Inserted([i for i in ids if i is not None], created)
        keys = [specs[n].unique_key for n in pending]
        rows = await run_async(conn, sql("job_find_by_unique_key"), {"keys": keys})
        _apply(ids, pending, specs, rows)
        retry = _pending(specs, ids)
        if retry:
            again, made = _parse(await run_async(conn, *_statement([specs[n] for n in retry], now)))
            for n, job_id, was_made in zip(retry, again, made, strict=True):
                ids[n], created[n] = job_id, was_made
    raise UniqueKeyRaceError(_RACE)
