"""PostgresStore: the Store protocol on psycopg 3 and an async connection pool."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor._store.alerts import AlertStatements
from conveyor._store.caller import Row, run_sync
from conveyor._store.claimed import failures, read_claimed
from conveyor._store.cron import CronStatements
from conveyor._store.flows import FlowStatements
from conveyor._store.protocol import (
    Completion,
    Failure,
    Pruned,
    QueueControl,
    QueueDepth,
    Rescued,
    Store,
    TableName,
)
from conveyor._store.queries import sql
from conveyor.job import Job

log = logging.getLogger("conveyor.worker")

_VACUUM: dict[TableName, str] = {"job": "job_table_vacuum", "job_done": "job_done_table_vacuum"}


class PostgresStore(CronStatements, FlowStatements, AlertStatements):
    """All of the worker's SQL, run on a small pool of autocommit connections (the cron,
    flow and alert statements live in _store/cron.py, flows.py and alerts.py)."""

    def __init__(self, database_url: str, *, max_connections: int = 4, name: str = "") -> None:
        self.database_url = database_url
        self._name = name or "conveyor"
        self._sync_pool: ConnectionPool[Any] | None = None
        self._sync_lock = threading.Lock()
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "application_name": name or "conveyor"},
            open=False,
            timeout=15.0,
            name=name or None,
        )

    async def open(self) -> None:
        """Open the pool; connections are made in the background and retried."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()
        if self._sync_pool is not None:
            self._sync_pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection inside an open transaction (atomic async tasks)."""
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def sync_transaction(self) -> Iterator[Connection[Any]]:
        """A sync connection inside an open transaction (atomic sync tasks, in their thread)."""
        with self._sync_lock:
            if self._sync_pool is None:
                self._sync_pool = ConnectionPool(
                    self.database_url,
                    min_size=0,
                    max_size=self._pool.max_size,
                    open=True,
                    kwargs={"application_name": self._name},
                    timeout=15.0,
                )
        with self._sync_pool.connection() as conn, conn.transaction():
            yield conn

    def job_complete_in_sync(
        self, conn: Connection[Any], completion: Completion, now: datetime | None = None
    ) -> bool:
        """Complete one job on a sync connection inside its open transaction."""
        done = bool(run_sync(conn, sql("job_complete_many"), _one(completion, now)))
        if done and completion.idempotency:
            keys = [k for k, _ in completion.idempotency]
            run_sync(
                conn,
                sql("idempotency_claim_many"),
                {
                    "keys": keys,
                    "results": [r for _, r in completion.idempotency],
                    "job_ids": [completion.job_id] * len(keys),
                    "now": now,
                },
            )
        return done

    async def _rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql(name), params)
            return list(await cur.fetchall()) if cur.description else []

    async def execute(self, name: str, params: dict[str, Any]) -> list[Row]:
        """Run a named query on a pooled connection (used by admin operations)."""
        return await self._rows(name, params)

    # -- jobs: the hot path -------------------------------------------------------------------

    async def job_fetch_available(
        self,
        *,
        queue: str,
        tasks: Sequence[str],
        task_max_attempts: Sequence[int],
        limit: int,
        lease_seconds: float,
        token: UUID,
        worker_id: str,
        now: datetime | None = None,
    ) -> list[Job]:
        params = {
            "queue": queue,
            "tasks": list(tasks),
            "task_max_attempts": list(task_max_attempts),
            "limit": limit,
            "lease_seconds": lease_seconds,
            "token": token,
            "worker_id": worker_id,
            "now": now,
        }
        async with self._pool.connection() as conn:
            return await _claim(conn, "job_fetch_available", params)

    async def job_fetch_limited(
        self,
        *,
        queue: str,
        tasks: Sequence[str],
        task_max_attempts: Sequence[int],
        limit: int,
        lease_seconds: float,
        token: UUID,
        worker_id: str,
        now: datetime | None = None,
    ) -> tuple[list[Job], float | None]:
        """Claim within the queue's limits, holding its row so counts cannot race; also
        return how long nothing may start (None: paused, wait for resume; 0: no wait)."""
        params = {
            "queue": queue,
            "tasks": list(tasks),
            "task_max_attempts": list(task_max_attempts),
            "limit": limit,
            "lease_seconds": lease_seconds,
            "token": token,
            "worker_id": worker_id,
            "now": now,
        }
        async with self._pool.connection() as conn, conn.transaction():
            lock = await _fetch(conn, "queue_lock_for_claim", {"queue": queue, "now": now})
            if not lock or not lock[0]["limited"]:
                return await _claim(conn, "job_fetch_available", params), 0.0
            if lock[0]["paused"]:
                return [], None
            wait = float(lock[0]["wait"] or 0)
            if wait > 0:
                return [], wait
            return await _claim(conn, "job_fetch_limited", params), 0.0

    async def queue_controls(
        self, names: Sequence[str], now: datetime | None = None
    ) -> dict[str, QueueControl]:
        rows = await self._rows("queue_controls", {"names": list(names), "now": now})
        return {
            r["name"]: QueueControl(bool(r["paused"]), float(r["snoozed_for"] or 0), r["limited"])
            for r in rows
        }

    async def job_snooze_queue(
        self, job_id: int, token: UUID, seconds: float, reason: str, now: datetime | None = None
    ) -> bool:
        params = {"id": job_id, "token": token, "seconds": seconds, "reason": reason, "now": now}
        return bool(await self._rows("job_snooze_queue", params))

    async def job_complete_many(
        self, completions: Sequence[Completion], now: datetime | None = None
    ) -> set[int]:
        params = {
            "ids": [c.job_id for c in completions],
            "tokens": [c.token for c in completions],
            "results": [c.result_json for c in completions],
            "now": now,
        }
        keyed = [c for c in completions if c.idempotency]
        if not keyed:
            return {row["id"] for row in await self._rows("job_complete_many", params)}
        async with self._pool.connection() as conn, conn.transaction():
            done = {row["id"] for row in await _fetch(conn, "job_complete_many", params)}
            await _record_keys(conn, [c for c in keyed if c.job_id in done], now)
            return done

    async def job_complete_in(
        self, conn: AsyncConnection[Any], completion: Completion, now: datetime | None = None
    ) -> bool:
        """Complete one job on the handler's own connection, inside its open transaction."""
        done = bool(await _fetch(conn, "job_complete_many", _one(completion, now)))
        if done and completion.idempotency:
            await _record_keys(conn, [completion], now)
        return done

    async def job_fail_many(
        self, failures: Sequence[Failure], now: datetime | None = None
    ) -> set[int]:
        rows = await self._rows(
            "job_fail_many",
            {
                "ids": [f.job_id for f in failures],
                "tokens": [f.token for f in failures],
                "errors": [json.dumps(f.error, default=str) for f in failures],
                "retry_in": [f.retry_in for f in failures],
                "now": now,
            },
        )
        return {row["id"] for row in rows}

    async def job_extend_lease(
        self,
        held: Sequence[tuple[int, UUID]],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> set[int]:
        rows = await self._rows(
            "job_extend_lease",
            {
                "ids": [h[0] for h in held],
                "tokens": [h[1] for h in held],
                "lease_seconds": lease_seconds,
                "now": now,
            },
        )
        return {row["id"] for row in rows}

    async def job_release_many(
        self, held: Sequence[tuple[int, UUID]], now: datetime | None = None
    ) -> int:
        rows = await self._rows(
            "job_release_many",
            {"ids": [h[0] for h in held], "tokens": [h[1] for h in held], "now": now},
        )
        return len(rows)

    # -- jobs: maintenance --------------------------------------------------------------------

    async def job_promote_due(self, limit: int = 1000, now: datetime | None = None) -> int:
        rows = await self._rows("job_promote_due", {"limit": limit, "now": now})
        return sum(int(row["count"]) for row in rows)

    async def job_rescue_expired(self, limit: int = 1000, now: datetime | None = None) -> Rescued:
        rows = await self._rows("job_rescue_expired", {"limit": limit, "now": now})
        return Rescued(retried=int(rows[0]["retried"]), failed=int(rows[0]["failed"]))

    async def job_prune_done(
        self,
        *,
        completed_seconds: float,
        cancelled_seconds: float,
        failed_seconds: float,
        idempotency_seconds: float,
        limit: int = 10_000,
        now: datetime | None = None,
    ) -> Pruned:
        async with self._pool.connection() as conn:
            jobs = await conn.execute(
                sql("job_prune_done"),
                {
                    "completed_seconds": completed_seconds,
                    "cancelled_seconds": cancelled_seconds,
                    "failed_seconds": failed_seconds,
                    "limit": limit,
                    "now": now,
                },
            )
            keys = await conn.execute(
                sql("idempotency_prune"), {"seconds": idempotency_seconds, "now": now}
            )
            return Pruned(jobs=jobs.rowcount, idempotency_keys=keys.rowcount)

    async def table_dead_tuples(self) -> dict[str, tuple[int, int]]:
        rows = await self._rows("table_dead_tuples", {})
        return {str(r["name"]): (int(r["dead"]), int(r["live"])) for r in rows}

    async def table_vacuum(self, table: TableName) -> None:
        await self._rows(_VACUUM[table], {})

    async def queue_depths(self, now: datetime | None = None) -> list[QueueDepth]:
        rows = await self._rows("queue_depths", {"now": now})
        return [
            QueueDepth(str(r["queue"]), str(r["state"]), int(r["count"]), r["oldest_seconds"])
            for r in rows
        ]

    # -- idempotency keys ---------------------------------------------------------------------

    async def idempotency_get(self, key: str) -> tuple[bool, Any]:
        rows = await self._rows("idempotency_get", {"key": key})
        return (True, rows[0]["result"]) if rows else (False, None)

    # -- workers ------------------------------------------------------------------------------

    async def worker_register(
        self,
        *,
        worker_id: str,
        hostname: str,
        pid: int,
        queues: Sequence[str],
        tasks: Sequence[str],
        now: datetime | None = None,
    ) -> None:
        await self._rows(
            "worker_register",
            {
                "id": worker_id,
                "hostname": hostname,
                "pid": pid,
                "queues": list(queues),
                "tasks": list(tasks),
                "now": now,
            },
        )

    async def worker_heartbeat(self, worker_id: str, now: datetime | None = None) -> bool:
        return bool(await self._rows("worker_heartbeat", {"id": worker_id, "now": now}))

    async def worker_deregister(self, worker_id: str) -> None:
        await self._rows("worker_deregister", {"id": worker_id})

    async def worker_prune_stale(self, seconds: float, now: datetime | None = None) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql("worker_prune_stale"), {"seconds": seconds, "now": now})
            return cur.rowcount


def _one(completion: Completion, now: datetime | None) -> dict[str, Any]:
    return {
        "ids": [completion.job_id],
        "tokens": [completion.token],
        "results": [completion.result_json],
        "now": now,
    }


async def _claim(conn: AsyncConnection[Any], name: str, params: dict[str, Any]) -> list[Job]:
    """Run a claim and read its jobs; fail the rows that cannot be read (claimed.py) on the
    same connection, so they end `failed` instead of holding a lease nobody renews."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql(name), params)
        jobs, bad = await read_claimed(cur)
    if bad:
        try:
            # a savepoint inside the limited claim's transaction: a refusal here must not
            # roll back the claim of the readable jobs
            async with conn.transaction():
                await conn.execute(sql("job_fail_many"), failures(bad, params["token"]))
        except psycopg.Error as exc:
            # the claim stands; the lease runs out and the rescuer counts the attempt instead
            log.error("cannot fail unreadable jobs %s (%s)", [b.job_id for b in bad], exc)
        for item in bad:
            log.error("job %d failed: its row cannot be read (%s)", item.job_id, item.reason)
    return jobs


async def _fetch(conn: AsyncConnection[Any], name: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql(name), params)
        return list(await cur.fetchall()) if cur.description else []


async def _record_keys(
    conn: AsyncConnection[Any], completions: Sequence[Completion], now: datetime | None
) -> None:
    keys: list[str] = []
    results: list[str | None] = []
    job_ids: list[int] = []
    for completion in completions:
        for key, result in completion.idempotency:
            keys.append(key)
            results.append(result)
            job_ids.append(completion.job_id)
    if keys:
        await conn.execute(
            sql("idempotency_claim_many"),
            {"keys": keys, "results": results, "job_ids": job_ids, "now": now},
        )


def _conforms(store: PostgresStore) -> Store:
    # mypy proves here that PostgresStore implements the Store protocol.
    return store
