"""Insert jobs: one statement for one job or ten thousand, on any connection kind.

Written once as a plan (ops.py): the insert, backpressure, and the unique-key race; or, for a
large batch on psycopg, COPY. Callers run it with the sync or the async runner on their
connection; nothing else differs between enqueue and aenqueue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor import tracing
from conveyor._store.caller import can_copy
from conveyor._store.ops import Copy, Op, Plan, Row, Rows, ignore
from conveyor.errors import QueueFullError, UniqueKeyRaceError
from conveyor.migrate import schema_missing
from conveyor.spec import JobSpec

#: From this many jobs on, a psycopg connection enqueues with COPY instead of one INSERT.
COPY_THRESHOLD = 200


@dataclass(frozen=True)
class Inserted:
    """The id of each enqueued job, in input order; `created` is False for unique-key hits."""

    ids: list[int]
    created: list[bool]


def _insert(
    specs: Sequence[JobSpec], now: datetime | None, relaxed: bool, wake_later: bool
) -> Op[Rows]:
    """The insert for these jobs: one row, or a JSON recordset of many."""
    if len(specs) == 1:
        return Op("job_insert_one", one_params(specs[0], now, relaxed, wake_later), Rows)
    document = "[" + ",".join(spec.to_json(i) for i, spec in enumerate(specs)) + "]"
    return Op("job_insert_many", {"jobs": document, "now": now, "relaxed": relaxed}, Rows)


def one_params(s: JobSpec, now: datetime | None, relaxed: bool, wake_later: bool) -> dict[str, Any]:
    """The parameters of job_insert_one for `s`."""
    return {
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
        "relaxed": relaxed,
        "wake_later": wake_later,
    }


def _make_room(queues: list[str], now: datetime | None) -> Op[None]:
    return Op("queue_make_room", {"queues": queues, "now": now}, ignore)


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


#: The types of job_copy's columns, in _copy_rows()'s order.
_COPY_TYPES = (
    "int8",
    "text",
    "text",
    "jsonb",
    "int4",
    "int4",
    "timestamptz",
    "text",
    "float8",
    "timestamptz",
    "text",
    "jsonb",
)


def _use_copy(conn: Any, specs: Sequence[JobSpec]) -> bool:
    return len(specs) >= COPY_THRESHOLD and can_copy(conn) and not any(s.unique_key for s in specs)


def needs_transaction(conn: Any, specs: Sequence[JobSpec]) -> bool:
    """True when inserting `specs` on `conn` takes several writing statements (COPY) that an
    autocommit connection must run inside a transaction of its own."""
    return _use_copy(conn, specs)


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


def insert_plan(
    conn: Any,
    specs: Sequence[JobSpec],
    now: datetime | None,
    *,
    relaxed: bool = False,
    own: bool = False,
) -> Plan[Inserted]:
    """Insert jobs, to be run on `conn` (the caller's transaction, if one is open; `conn` is
    only looked at to choose COPY). Runs inside an enqueue span; a database without the schema
    raises SchemaError saying to run `conveyor migrate` instead of the driver's UndefinedTable.

    `own`: `conn` is the app's own autocommit connection, where each statement commits by
    itself. `relaxed` (own connections only) turns synchronous_commit off for the insert's
    transaction (SET LOCAL).

    A single job inserted durably on an own connection beside other enqueues in flight
    (enqueue_own.py decides) wakes its queue with a NOTIFY of its own after the insert
    committed, not inside the insert: a transaction that notifies holds a
    cluster-wide lock from its commit until the commit's WAL flush is done, so notifying
    inserts cannot share flushes (group commit) and concurrent enqueues queue up one flush at a
    time. A failed insert still wakes nobody. Everywhere else (a caller's transaction, many
    jobs, relaxed commits, which do not wait for the flush) the NOTIFY goes with the insert."""
    with tracing.enqueue_span(specs) as traced, _migrated():
        if _use_copy(conn, traced):
            return (yield from _copy_jobs(traced, now, relaxed))
        wake_later = own and not relaxed and len(traced) == 1
        return (yield from _insert_jobs(traced, now, relaxed, wake_later))


def continue_insert(
    specs: Sequence[JobSpec], now: datetime | None, params: dict[str, Any], rows: Rows
) -> Plan[Inserted]:
    """The rest of insert_plan() for one job whose job_insert_one (with `params`) already ran on
    an own connection and returned `rows` (enqueue_own.py)."""
    with _migrated():
        return (yield from _insert_jobs(specs, now, params["relaxed"], params["wake_later"], rows))


@contextmanager
def _migrated() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        missing = schema_missing(exc)
        if missing is None:
            raise
        raise missing from exc


def _copy_jobs(specs: Sequence[JobSpec], now: datetime | None, relaxed: bool) -> Plan[Inserted]:
    """Bulk insert with a binary COPY: ids drawn first (with the backpressure check), then the
    rows, then the concurrency keys and one NOTIFY per woken queue. Three statements: run them
    in one transaction (the caller's, or the one app.enqueue_many opens, see
    needs_transaction()), so that no worker sees a job before its concurrency key."""
    batch = _batch_counts(specs)
    reserve = {**batch, "n": len(specs), "now": now, "relaxed": relaxed}
    (drawn,) = yield Op("job_reserve_ids", reserve, Rows)
    if drawn["refused"]:
        raise QueueFullError(sorted(drawn["refused"]))
    ids: list[int] = drawn["ids"]
    rows, wake = _copy_rows(specs, ids, drawn["now"])
    yield Copy("job_copy", rows, _COPY_TYPES)
    keyed = ids if drawn["keyed"] else []
    yield Op("job_copied", {"ids": keyed, "wake": sorted(wake)}, ignore)
    if drawn["dropping"]:
        yield _make_room(batch["queues"], now)
    return Inserted(ids, [True] * len(ids))


def _insert_jobs(
    specs: Sequence[JobSpec],
    now: datetime | None,
    relaxed: bool,
    wake_later: bool,
    first: Rows | None = None,
) -> Plan[Inserted]:
    inserted = yield from _insert_and_race(specs, now, relaxed, wake_later, first)
    if inserted.wake:
        yield Op("job_wake", {"queue": inserted.wake}, ignore)
    return Inserted(inserted.ids, inserted.created)


@dataclass(frozen=True)
class _Woken(Inserted):
    """Inserted, and the queue to wake after the commit (job_insert_one with wake_later)."""

    wake: str | None = None


def _insert_and_race(
    specs: Sequence[JobSpec],
    now: datetime | None,
    relaxed: bool,
    wake_later: bool,
    first: Rows | None,
) -> Plan[_Woken]:
    rows = first if first is not None else (yield _insert(specs, now, relaxed, wake_later))
    wake = rows[0].get("wake") if wake_later else None
    crowded = _backpressure(specs, rows)
    if crowded:
        yield _make_room(crowded, now)
    ids, created = _parse(rows)
    for _ in range(_ATTEMPTS):
        pending = _pending(specs, ids)
        if not pending:
            return _Woken([i for i in ids if i is not None], created, wake)
        # A concurrent transaction committed the key after our statement's snapshot was taken.
        keys = [specs[n].unique_key for n in pending]
        _apply(ids, pending, specs, (yield Op("job_find_by_unique_key", {"keys": keys}, Rows)))
        # Keys whose holder finished in between: insert those jobs again.
        retry = _pending(specs, ids)
        if retry:
            rows = yield _insert([specs[n] for n in retry], now, relaxed, wake_later)
            wake = wake or (rows[0].get("wake") if wake_later else None)
            again, made = _parse(rows)
            for n, job_id, was_made in zip(retry, again, made, strict=True):
                ids[n], created[n] = job_id, was_made
    raise UniqueKeyRaceError(_RACE)
