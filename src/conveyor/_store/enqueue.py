"""Insert jobs: one statement for one job or ten thousand, on any connection kind."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor._store.caller import Row, run_async, run_sync
from conveyor._store.queries import sql


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

    def to_json(self, ord_: int) -> str:
        meta: dict[str, Any] = {"ord": ord_, "task": self.task}
        for name in ("queue", "priority", "max_attempts", "delay", "unique_key"):
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


def _params(specs: Sequence[JobSpec], now: datetime | None) -> dict[str, Any]:
    document = "[" + ",".join(spec.to_json(i) for i, spec in enumerate(specs)) + "]"
    return {"jobs": document, "now": now}


def _parse(rows: list[Row]) -> tuple[list[int | None], list[bool]]:
    return [row["id"] for row in rows], [bool(row["created"]) for row in rows]


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


def insert_jobs(conn: Any, specs: Sequence[JobSpec], now: datetime | None = None) -> Inserted:
    """Insert on a sync connection (the caller's transaction, if one is open)."""
    ids, created = _parse(run_sync(conn, sql("job_insert_many"), _params(specs, now)))
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
            again, made = _parse(
                run_sync(conn, sql("job_insert_many"), _params([specs[n] for n in retry], now))
            )
            for n, job_id, was_made in zip(retry, again, made, strict=True):
                ids[n], created[n] = job_id, was_made
    raise RuntimeError(_RACE)


async def ainsert_jobs(
    conn: Any, specs: Sequence[JobSpec], now: datetime | None = None
) -> Inserted:
    """Insert on an async connection (the caller's transaction, if one is open)."""
    ids, created = _parse(await run_async(conn, sql("job_insert_many"), _params(specs, now)))
    for _ in range(_ATTEMPTS):
        pending = _pending(specs, ids)
        if not pending:
            return Inserted([i for i in ids if i is not None], created)
        keys = [specs[n].unique_key for n in pending]
        rows = await run_async(conn, sql("job_find_by_unique_key"), {"keys": keys})
        _apply(ids, pending, specs, rows)
        retry = _pending(specs, ids)
        if retry:
            again, made = _parse(
                await run_async(
                    conn, sql("job_insert_many"), _params([specs[n] for n in retry], now)
                )
            )
            for n, job_id, was_made in zip(retry, again, made, strict=True):
                ids[n], created[n] = job_id, was_made
    raise RuntimeError(_RACE)
