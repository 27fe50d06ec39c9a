"""The alerts half of PostgresStore: what rules measure, episodes, and the notification outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from psycopg import AsyncConnection

from conveyor._store.ops import Op, Plan, Rows, count
from conveyor._store.runner import arun

T = TypeVar("T")

#: How an observation moves a subject's episode: open or fire it, keep it, or let it clear.
ObservationState = Literal["fire", "hold", "clear"]
#: What delivering one notification did.
DeliveryOutcome = Literal["delivered", "failed", "skipped"]


@dataclass(frozen=True)
class Observation:
    """One subject's reading for a rule in one evaluation."""

    subject: str
    value: float
    state: ObservationState
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeEvent:
    """An episode that one observe statement fired or resolved."""

    episode_id: int
    subject: str
    status: Literal["firing", "resolved"]
    since: datetime
    at: datetime
    fire_count: int
    value: float
    details: dict[str, Any]


@dataclass(frozen=True)
class PendingNotification:
    """A claimed, undelivered notification of a fire or resolve to one channel."""

    id: int
    episode_id: int
    rule: str
    subject: str
    status: Literal["firing", "resolved"]
    channel: str
    since: datetime
    at: datetime
    fire_count: int
    value: float
    details: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class FailedArrivals:
    """Failed jobs of one queue and task that arrived since a JobFailed rule last looked."""

    queue: str
    task: str
    count: int
    job_ids: tuple[int, ...]
    errors: dict[str, int]


@dataclass(frozen=True)
class DeliveryResult:
    """What delivering one notification did, and the error when it failed."""

    notification_id: int
    outcome: DeliveryOutcome
    error: str | None = None


@dataclass(frozen=True)
class Abandoned:
    """A notification given up on after its last allowed attempt."""

    notification_id: int
    channel: str
    attempts: int


class AlertStatements:
    """Mixed into PostgresStore; runs every operation through its `_run`."""

    async def _run(self, work: Op[T] | Plan[T]) -> T:
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    @asynccontextmanager
    async def alert_transaction(self) -> AsyncIterator[AlertStatements]:
        """These statements on one connection, in one transaction: a JobFailed rule moves
        its watermark and records what it saw together, or neither."""
        async with self.transaction() as conn:
            yield _InTransaction(conn)

    async def alert_failed_arrivals(
        self,
        *,
        rule: str,
        queue: str | None,
        task: str | None,
        settle: timedelta,
        sample: int = 5,
        now: datetime | None = None,
    ) -> list[FailedArrivals]:
        params = {
            "rule": rule,
            "queue": queue,
            "task": task,
            "settle_seconds": settle.total_seconds(),
            "sample": sample,
            "now": now,
        }
        return [
            FailedArrivals(
                queue=row["queue"],
                task=row["task"],
                count=int(row["count"]),
                job_ids=tuple(row["job_ids"]),
                errors={str(k): int(v) for k, v in (row["errors"] or {}).items()},
            )
            for row in await self._run(Op("alert_failed_arrivals", params, Rows))
        ]

    async def alert_failed_remaining(
        self, *, queue: str | None, task: str | None
    ) -> dict[tuple[str, str], int]:
        params = {"queue": queue, "task": task}
        rows = await self._run(Op("alert_failed_remaining", params, Rows))
        return {(row["queue"], row["task"]): int(row["count"]) for row in rows}

    async def alert_episode_observe(
        self,
        *,
        rule: str,
        observations: Sequence[Observation],
        hold: timedelta,
        refire: bool,
        channels: Sequence[str],
        now: datetime | None = None,
    ) -> list[EpisodeEvent]:
        params = {
            "rule": rule,
            "subjects": [o.subject for o in observations],
            "values": [o.value for o in observations],
            "details": [json.dumps(o.details, default=str) for o in observations],
            "states": [o.state for o in observations],
            "hold": hold,
            "refire": refire,
            "channels": list(channels),
            "pass": uuid.uuid4(),
            "now": now,
        }
        return [
            EpisodeEvent(
                episode_id=int(row["id"]),
                subject=row["subject"],
                status=row["status"],
                since=row["pending_since"],
                at=row["at"],
                fire_count=int(row["fire_count"]),
                value=float(row["last_value"] or 0),
                details=row["details"] or {},
            )
            for row in await self._run(Op("alert_episode_observe", params, Rows))
        ]

    async def alert_notification_claim(
        self,
        channels: Sequence[str],
        *,
        limit: int = 100,
        lease_seconds: float = 120.0,
        now: datetime | None = None,
    ) -> list[PendingNotification]:
        params = {
            "channels": list(channels),
            "limit": limit,
            "lease_seconds": lease_seconds,
            "now": now,
        }
        rows = await self._run(Op("alert_notification_claim", params, Rows))
        return sorted(
            (
                PendingNotification(
                    id=int(row["id"]),
                    episode_id=int(row["episode_id"]),
                    rule=row["rule"],
                    subject=row["subject"],
                    status=row["status"],
                    channel=row["channel"],
                    since=row["pending_since"],
                    at=row["created_at"],
                    fire_count=int(row["fire_count"]),
                    value=float(row["value"] or 0),
                    details=row["details"] or {},
                    attempts=int(row["attempts"]),
                )
                for row in rows
            ),
            key=lambda n: n.id,
        )

    async def alert_notification_finish(
        self,
        results: Sequence[DeliveryResult],
        *,
        max_attempts: int,
        now: datetime | None = None,
    ) -> list[Abandoned]:
        params = {
            "ids": [r.notification_id for r in results],
            "outcomes": [r.outcome for r in results],
            "errors": [r.error for r in results],
            "max_attempts": max_attempts,
            "now": now,
        }
        rows = await self._run(Op("alert_notification_finish", params, Rows))
        return [
            Abandoned(int(row["id"]), row["channel"], int(row["attempts"]))
            for row in rows
            if row["abandoned"]
        ]

    async def alert_episode_prune(self, seconds: float, now: datetime | None = None) -> int:
        params = {"seconds": seconds, "now": now}
        return await self._run(Op("alert_episode_prune", params, count))


class _InTransaction(AlertStatements):
    """AlertStatements on one connection inside its open transaction."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn

    async def _run(self, work: Op[T] | Plan[T]) -> T:
        return await arun(self._conn, work)
