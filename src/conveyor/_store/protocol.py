"""Store: what the worker and the maintenance services need from the database.

The worker and maintenance packages depend on this protocol only; PostgresStore implements it.
Methods read like a table of contents, entity first.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

from conveyor._store.alerts import (
    Abandoned,
    AlertStatements,
    DeliveryResult,
    EpisodeEvent,
    FailedArrivals,
    Observation,
    PendingNotification,
)
from conveyor._store.cron import CronProgress, CronRegistration, StoredSchedule
from conveyor._store.flows import Advanced
from conveyor.endpoints import Endpoint
from conveyor.job import Job
from conveyor.spec import JobSpec

#: Tables the vacuumer looks after.
TableName = Literal["job", "job_done"]


@dataclass(frozen=True)
class QueueControl:
    """What the producer must know of a queue: paused, snoozed for how long, and whether its
    claims go through the limits."""

    paused: bool
    snoozed_for: float
    limited: bool


@dataclass(frozen=True)
class Failure:
    """One failed attempt to record: retry after `retry_in` seconds (database clock), or fail
    for good when it is None."""

    job_id: int
    token: UUID
    error: dict[str, Any]
    retry_in: float | None
    #: Fail for good as cancelled instead of failed (an endpoint answered 410 Gone).
    cancel: bool = False


@dataclass(frozen=True)
class Completion:
    """One successful attempt to record, with the handler's result and idempotency keys."""

    job_id: int
    token: UUID
    result_json: str | None = None
    idempotency: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class QueueDepth:
    """Unfinished jobs of one queue in one state; for 'available', the oldest one's age."""

    queue: str
    state: str
    count: int
    oldest_seconds: float | None


@dataclass(frozen=True)
class Rescued:
    """What a rescue pass did: jobs made available again, and jobs failed for good."""

    retried: int
    failed: int


@dataclass(frozen=True)
class Pruned:
    """What a prune pass deleted."""

    jobs: int
    idempotency_keys: int
    cron_slots: int = 0
    workflow_runs: int = 0
    workflow_events: int = 0


class Store(Protocol):
    """The worker's and the maintenance services' view of the database."""

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
    ) -> list[Job]: ...

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
    ) -> tuple[list[Job], float | None]: ...

    async def queue_controls(
        self, names: Sequence[str], now: datetime | None = None
    ) -> dict[str, QueueControl]: ...

    async def endpoint_list(self) -> list[Endpoint]: ...

    async def job_snooze_queue(
        self, job_id: int, token: UUID, seconds: float, reason: str, now: datetime | None = None
    ) -> bool: ...

    async def job_complete_many(
        self, completions: Sequence[Completion], now: datetime | None = None
    ) -> set[int]: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """An async connection inside an open transaction (atomic async tasks)."""
        ...

    def sync_transaction(self) -> AbstractContextManager[Any]:
        """A sync connection inside an open transaction (atomic sync tasks)."""
        ...

    async def job_complete_in(
        self, conn: Any, completion: Completion, now: datetime | None = None
    ) -> bool: ...

    def job_complete_in_sync(
        self, conn: Any, completion: Completion, now: datetime | None = None
    ) -> bool: ...

    async def job_fail_many(
        self, failures: Sequence[Failure], now: datetime | None = None
    ) -> set[int]: ...

    async def job_extend_lease(
        self,
        held: Sequence[tuple[int, UUID]],
        lease_seconds: float,
        now: datetime | None = None,
    ) -> set[int]: ...

    async def job_release_many(
        self, held: Sequence[tuple[int, UUID]], now: datetime | None = None
    ) -> int: ...

    async def job_promote_due(self, limit: int = 1000, now: datetime | None = None) -> int: ...

    async def job_rescue_expired(
        self, limit: int = 1000, now: datetime | None = None
    ) -> Rescued: ...

    async def job_prune_done(
        self,
        *,
        completed_seconds: float,
        cancelled_seconds: float,
        failed_seconds: float,
        idempotency_seconds: float,
        limit: int = 10_000,
        now: datetime | None = None,
    ) -> Pruned: ...

    async def table_dead_tuples(self) -> dict[str, tuple[int, int]]: ...

    async def table_vacuum(self, table: TableName) -> None: ...

    async def queue_depths(self, now: datetime | None = None) -> list[QueueDepth]: ...

    async def queue_configure(self, name: str, settings: dict[str, Any]) -> None: ...

    async def idempotency_get(self, key: str) -> tuple[bool, Any]: ...

    async def flow_advance(self, limit: int = 1000, now: datetime | None = None) -> Advanced: ...

    async def flow_children(self, parent_id: int) -> list[Job]: ...

    async def flow_prune(self) -> int: ...

    async def job_set_progress(
        self,
        job_id: int,
        token: UUID,
        value: float,
        message: str | None,
        now: datetime | None = None,
    ) -> bool: ...

    async def worker_register(
        self,
        *,
        worker_id: str,
        hostname: str,
        pid: int,
        queues: Sequence[str],
        tasks: Sequence[str],
        now: datetime | None = None,
    ) -> None: ...

    async def worker_heartbeat(self, worker_id: str, now: datetime | None = None) -> bool: ...

    async def worker_deregister(self, worker_id: str) -> None: ...

    async def database_ping(self) -> None: ...

    async def worker_prune_stale(self, seconds: float, now: datetime | None = None) -> int: ...

    async def leader_attempt_elect(
        self, holder: str, ttl_seconds: float, now: datetime | None = None
    ) -> bool: ...

    async def leader_resign(self, holder: str) -> None: ...

    async def workflow_prune(
        self,
        *,
        completed_seconds: float,
        cancelled_seconds: float,
        failed_seconds: float,
        limit: int,
        now: datetime | None = None,
    ) -> tuple[int, int]:
        """Delete finished workflow runs past retention and expired events: (runs, events)."""
        ...

    async def cron_schedule_register(
        self, schedules: Sequence[CronRegistration], now: datetime | None = None
    ) -> None: ...

    async def cron_schedule_state(
        self, names: Sequence[str], now: datetime | None = None
    ) -> tuple[datetime, dict[str, CronProgress]]: ...

    async def cron_slot_enqueue(
        self,
        *,
        schedule: str,
        slot: datetime,
        next_slot: datetime | None,
        spec: JobSpec,
        unique_key: str,
        now: datetime | None = None,
    ) -> int | None: ...

    async def cron_schedule_skip(
        self, *, schedule: str, next_slot: datetime, now: datetime | None = None
    ) -> bool: ...

    async def cron_schedule_stored(self) -> list[StoredSchedule]: ...

    async def cron_slot_prune(self, seconds: float, now: datetime | None = None) -> int: ...

    def alert_transaction(self) -> AbstractAsyncContextManager[AlertStatements]:
        """The alert statements on one connection, in one transaction."""
        ...

    async def alert_failed_arrivals(
        self,
        *,
        rule: str,
        queue: str | None,
        task: str | None,
        settle: timedelta,
        sample: int = 5,
        now: datetime | None = None,
    ) -> list[FailedArrivals]: ...

    async def alert_failed_remaining(
        self, *, queue: str | None, task: str | None
    ) -> dict[tuple[str, str], int]: ...

    async def alert_episode_observe(
        self,
        *,
        rule: str,
        observations: Sequence[Observation],
        hold: timedelta,
        refire: bool,
        channels: Sequence[str],
        now: datetime | None = None,
    ) -> list[EpisodeEvent]: ...

    async def alert_notification_claim(
        self,
        channels: Sequence[str],
        *,
        limit: int = 100,
        lease_seconds: float = 120.0,
        now: datetime | None = None,
    ) -> list[PendingNotification]: ...

    async def alert_notification_finish(
        self,
        results: Sequence[DeliveryResult],
        *,
        max_attempts: int,
        now: datetime | None = None,
    ) -> list[Abandoned]: ...

    async def alert_episode_prune(self, seconds: float, now: datetime | None = None) -> int: ...
