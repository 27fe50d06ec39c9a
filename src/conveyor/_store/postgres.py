"""PostgresStore: the Store protocol on psycopg 3 and an async connection pool."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor._store import api, arrays, endpoints, idempotency, workflows
from conveyor._store.alerts import AlertStatements
from conveyor._store.claimed import failures
from conveyor._store.cron import CronStatements
from conveyor._store.flows import FlowStatements
from conveyor._store.ops import Claim, Op, Plan, Rows, Savepoint, found, ids, ignore, rowcount
from conveyor._store.pooler import connect_options, hint_if_pooler
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
from conveyor._store.runner import arun, run
from conveyor.endpoints import Endpoint
from conveyor.job import Job
from conveyor.queues import configure_queue_params

T = TypeVar("T")

log = logging.getLogger("conveyor.worker")

#: The one lease of conveyor.leader: the maintenance services' leader.
LEADER = "maintenance"

_VACUUM: dict[TableName, str] = {"job": "job_table_vacuum", "job_done": "job_done_table_vacuum"}


class PostgresStore(CronStatements, FlowStatements, AlertStatements):
    """All of the worker's SQL, run on a small pool of autocommit connections (the cron,
    flow and alert statements live in _store/cron.py, flows.py and alerts.py)."""

    def __init__(
        self,
        database_url: str,
        *,
        max_connections: int = 4,
        name: str = "",
        pgbouncer: bool = False,
        relaxed_transitions: bool = False,
    ) -> None:
        self.database_url = database_url
        # claims, completions, failures and lease renewals commit without waiting for the WAL
        # flush (WorkerConfig.durable_transitions off; docs/worker.md says what that risks)
        self._relaxed = relaxed_transitions
        self._name = name or "conveyor"
        # behind PgBouncer in transaction mode: no server-side prepared statements (pooler.py)
        self._options = connect_options(pgbouncer)
        self._pgbouncer = pgbouncer
        self._sync_pool: ConnectionPool[Any] | None = None
        self._sync_lock = threading.Lock()
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "application_name": self._name, **self._options},
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
                    kwargs={"application_name": self._name, **self._options},
                    timeout=15.0,
                )
        with self._sync_pool.connection() as conn, conn.transaction():
            yield conn

    def job_complete_in_sync(
        self, conn: Connection[Any], completion: Completion, now: datetime | None = None
    ) -> bool:
        """Complete one job on a sync connection inside its open transaction."""
        return bool(run(conn, _complete([completion], now, relaxed=False)))

    async def _run(self, work: Op[T] | Plan[T], *, atomic: bool = False) -> T:
        """Run an operation on a pooled connection; a plan of several steps with `atomic`
        runs them in one transaction."""
        try:
            async with self._pool.connection() as conn:
                if not atomic:
                    return await arun(conn, work)
                async with conn.transaction():
                    return await arun(conn, work)
        except psycopg.Error as exc:
            hint_if_pooler(exc, self._pgbouncer)
            raise

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
            "tasks": arrays.texts(tasks),
            "task_max_attempts": arrays.ints(task_max_attempts),
            "limit": limit,
            "lease_seconds": lease_seconds,
            "token": token,
            "worker_id": worker_id,
            "now": now,
            "relaxed": self._relaxed,
        }
        return await self._run(_claim("job_fetch_available", params))

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
            "tasks": arrays.texts(tasks),
            "task_max_attempts": arrays.ints(task_max_attempts),
            "limit": limit,
            "lease_seconds": lease_seconds,
            "token": token,
            "worker_id": worker_id,
            "now": now,
            "relaxed": self._relaxed,
        }
        return await self._run(_claim_limited(params), atomic=True)

    async def queue_controls(
        self, names: Sequence[str], now: datetime | None = None
    ) -> dict[str, QueueControl]:
        rows = await self._run(Op("queue_controls", {"names": list(names), "now": now}, Rows))
        return {
            r["name"]: QueueControl(bool(r["paused"]), float(r["snoozed_for"] or 0), r["limited"])
            for r in rows
        }

    async def job_snooze_queue(
        self, job_id: int, token: UUID, seconds: float, reason: str, now: datetime | None = None
    ) -> bool:
        params = {"id": job_id, "token": token, "seconds": seconds, "reason": reason, "now": now}
        return await self._run(Op("job_snooze_queue", params, found))

    async def job_complete_many(
        self, completions: Sequence[Completion], now: datetime | None = None
    ) -> set[int]:
        # one transaction only when keys must be recorded with the completions
        atomic = any(c.idempotency for c in completions)
        return await self._run(_complete(completions, now, relaxed=self._relaxed), atomic=atomic)

    async def job_complete_in(
        self, conn: AsyncConnection[Any], completion: Completion, now: datetime | None = None
    ) -> bool:
        """Complete one job on the handler's own connection, inside its open transaction."""
        return bool(await arun(conn, _complete([completion], now, relaxed=False)))

    async def job_fail_many(
        self, failures: Sequence[Failure], now: datetime | None = None
    ) -> set[int]:
        params = {
            "ids": arrays.ints(f.job_id for f in failures),
            "tokens": arrays.uuids(f.token for f in failures),
            "errors": [json.dumps(f.error, default=str) for f in failures],
            "retry_in": [f.retry_in for f in failures],
            "cancel": [f.cancel for f in failures],
            "now": now,
            "relaxed": self._relaxed,
        }
        return await self._run(Op("job_fail_many", params, ids))

    async def job_extend_lease(
        self,
        held: Sequence[tuple[int, UUID]],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> set[int]:
        params = {
            "ids": [h[0] for h in held],
            "tokens": [h[1] for h in held],
            "lease_seconds": lease_seconds,
            "now": now,
            "relaxed": self._relaxed,
        }
        return await self._run(Op("job_extend_lease", params, ids))

    async def job_release_many(
        self, held: Sequence[tuple[int, UUID]], now: datetime | None = None
    ) -> int:
        params = {"ids": [h[0] for h in held], "tokens": [h[1] for h in held], "now": now}
        return await self._run(Op("job_release_many", params, len))

    # -- jobs: maintenance --------------------------------------------------------------------

    async def job_promote_due(self, limit: int = 1000, now: datetime | None = None) -> int:
        params = {"limit": limit, "now": now}
        return await self._run(Op("job_promote_due", params, lambda rows: sum(count_of(rows))))

    async def job_rescue_expired(self, limit: int = 1000, now: datetime | None = None) -> Rescued:
        params = {"limit": limit, "now": now}
        return await self._run(Op("job_rescue_expired", params, _rescued))

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
        params = {
            "completed_seconds": completed_seconds,
            "cancelled_seconds": cancelled_seconds,
            "failed_seconds": failed_seconds,
            "limit": limit,
            "now": now,
        }
        return await self._run(_prune(params, idempotency_seconds, now))

    async def table_dead_tuples(self) -> dict[str, tuple[int, int]]:
        rows = await self._run(Op("table_dead_tuples", {}, Rows))
        return {str(r["name"]): (int(r["dead"]), int(r["live"])) for r in rows}

    async def table_vacuum(self, table: TableName) -> None:
        await self._run(Op(_VACUUM[table], {}, ignore))

    async def queue_depths(self, now: datetime | None = None) -> list[QueueDepth]:
        rows = await self._run(Op("queue_depths", {"now": now}, Rows))
        return [
            QueueDepth(str(r["queue"]), str(r["state"]), int(r["count"]), r["oldest_seconds"])
            for r in rows
        ]

    # -- idempotency keys ---------------------------------------------------------------------

    async def idempotency_get(self, key: str) -> tuple[bool, Any]:
        return await self._run(idempotency.get(key))

    # -- queues -------------------------------------------------------------------------------

    async def endpoint_list(self) -> list[Endpoint]:
        """Every HTTP endpoint (the delivery executor's registry)."""
        return await self._run(endpoints.list_all())

    async def endpoint_upsert(self, endpoint: Endpoint) -> None:
        """Write an endpoint an app declares in code (app.endpoint())."""
        await self._run(endpoints.upsert(endpoint))

    async def queue_configure(self, name: str, settings: dict[str, Any]) -> None:
        """Write the queue settings an app declares in code (app.queue())."""
        await self._run(Op("queue_configure", configure_queue_params(name, settings), ignore))

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
        params = {
            "id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues),
            "tasks": list(tasks),
            "now": now,
        }
        await self._run(Op("worker_register", params, ignore))

    async def worker_heartbeat(self, worker_id: str, now: datetime | None = None) -> bool:
        return await self._run(Op("worker_heartbeat", {"id": worker_id, "now": now}, found))

    async def database_ping(self) -> None:
        await self._run(Op("database_ping", {}, ignore))

    async def worker_deregister(self, worker_id: str) -> None:
        await self._run(Op("worker_deregister", {"id": worker_id}, ignore))

    async def worker_prune_stale(self, seconds: float, now: datetime | None = None) -> int:
        params = {"seconds": seconds, "now": now}
        return await self._run(Op("worker_prune_stale", params, rowcount))

    # -- leader lease -------------------------------------------------------------------------

    async def leader_attempt_elect(
        self, holder: str, ttl_seconds: float, now: datetime | None = None
    ) -> bool:
        params = {"name": LEADER, "holder": holder, "ttl_seconds": ttl_seconds, "now": now}
        return await self._run(Op("leader_attempt_elect", params, found))

    async def leader_resign(self, holder: str) -> None:
        await self._run(Op("leader_resign", {"name": LEADER, "holder": holder}, ignore))

    async def workflow_prune(
        self,
        *,
        completed_seconds: float,
        cancelled_seconds: float,
        failed_seconds: float,
        limit: int,
        now: datetime | None = None,
    ) -> tuple[int, int]:
        return await self._run(
            workflows.prune(
                completed_seconds=completed_seconds,
                cancelled_seconds=cancelled_seconds,
                failed_seconds=failed_seconds,
                limit=limit,
                now=now,
            )
        )


def _complete(
    completions: Sequence[Completion], now: datetime | None, *, relaxed: bool
) -> Plan[set[int]]:
    """Complete jobs, then record the idempotency keys of those that were still theirs."""
    params = {
        "ids": arrays.ints(c.job_id for c in completions),
        "tokens": arrays.uuids(c.token for c in completions),
        "results": arrays.nullable_texts([c.result_json for c in completions]),
        "now": now,
        "relaxed": relaxed,
    }
    done: set[int] = yield Op("job_complete_many", params, ids)
    claims = [(c.job_id, c.idempotency) for c in completions if c.idempotency and c.job_id in done]
    if claims:
        yield idempotency.claim_many(claims, now)
    return done


def _prune(
    params: dict[str, Any], idempotency_seconds: float, now: datetime | None
) -> Plan[Pruned]:
    jobs = yield Op("job_prune_done", params, rowcount)
    keys = yield Op("idempotency_prune", {"seconds": idempotency_seconds, "now": now}, rowcount)
    # the REST API's Idempotency-Key records: kept 24 h, counted with the task keys
    keys += yield api.idempotency_prune(now)
    return Pruned(jobs=jobs, idempotency_keys=keys)


def _rescued(rows: Rows) -> Rescued:
    return Rescued(retried=int(rows[0]["retried"]), failed=int(rows[0]["failed"]))


def count_of(rows: Rows) -> list[int]:
    return [int(row["count"]) for row in rows]


def _claim(name: str, params: dict[str, Any]) -> Plan[list[Job]]:
    """Claim and read the jobs; fail the rows that cannot be read (claimed.py) on the same
    connection, so they end `failed` instead of holding a lease nobody renews."""
    jobs, bad = yield Claim(name, params)
    if bad:
        try:
            # a savepoint inside the limited claim's transaction: a refusal here must not
            # roll back the claim of the readable jobs
            unreadable = {**failures(bad, params["token"]), "relaxed": params["relaxed"]}
            yield Savepoint(Op("job_fail_many", unreadable, ignore))
        except psycopg.Error as exc:
            # the claim stands; the lease runs out and the rescuer counts the attempt instead
            log.error("cannot fail unreadable jobs %s (%s)", [b.job_id for b in bad], exc)
        for item in bad:
            log.error("job %d failed: its row cannot be read (%s)", item.job_id, item.reason)
    return jobs  # type: ignore[no-any-return]


def _claim_limited(params: dict[str, Any]) -> Plan[tuple[list[Job], float | None]]:
    """Claim within the queue's limits, holding its row (in the caller's transaction) so that
    the counts cannot race."""
    lock = yield Op("queue_lock_for_claim", {"queue": params["queue"], "now": params["now"]}, Rows)
    if not lock or not lock[0]["limited"]:
        return (yield from _claim("job_fetch_available", params)), 0.0
    if lock[0]["paused"]:
        return [], None
    wait = float(lock[0]["wait"] or 0)
    if wait > 0:
        return [], wait
    return (yield from _claim("job_fetch_limited", params)), 0.0


def _conforms(store: PostgresStore) -> Store:
    # mypy proves here that PostgresStore implements the Store protocol.
    return store
