"""Client: inspect and act on jobs and queues. The CLI and the dashboard use only this.

Each operation is written once as an _Op (a named query, its parameters and how to read the
rows); Client runs ops on a sync connection and AsyncClient on an async one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from conveyor._store.caller import Row, run_async, run_sync
from conveyor._store.queries import sql
from conveyor.errors import ConfigError, JobNotFoundError
from conveyor.job import Job, JobState
from conveyor.queues import FIELDS, QueueInfo, QueueLimits, RateLimit, configure_params, limits

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.cron import Schedule

T = TypeVar("T")

#: A worker not seen for this long is not counted as live.
LIVE_WORKER_SECONDS = 60.0
#: Workers look for due cron slots every second; a slot still not handled this long after its
#: time means no worker runs its schedule.
CRON_OVERDUE = timedelta(seconds=10)


@dataclass(frozen=True)
class QueueStatus:
    """One queue: jobs per state and the age of its oldest available job."""

    queue: str
    counts: dict[str, int]
    oldest_available_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "counts": self.counts,
            "oldest_available_seconds": self.oldest_available_seconds,
        }


@dataclass(frozen=True)
class OrphanedTask:
    """Jobs waiting for a task that no live worker on their queue has registered."""

    queue: str
    task: str
    count: int


@dataclass(frozen=True)
class Status:
    """What `conveyor status` shows."""

    queues: list[QueueStatus]
    orphaned: list[OrphanedTask]
    live_workers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queues": [q.to_dict() for q in self.queues],
            "orphaned_tasks": [o.__dict__ for o in self.orphaned],
            "live_workers": [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in w.items()}
                for w in self.live_workers
            ],
        }


@dataclass(frozen=True)
class ScheduleStatus:
    """One cron schedule: its definition, its last enqueued time and job, its next time.

    `registered` is False for a schedule of the app that no worker has recorded yet; its
    `next_slot` is then computed here. `overdue` means the next time has passed without a
    worker enqueueing it (no worker runs this schedule).
    """

    name: str
    task: str
    cron: str
    timezone: str
    catch_up: str
    last_slot: datetime | None
    last_job_id: int | None
    last_job_state: str | None
    next_slot: datetime | None
    registered: bool
    overdue: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (times as ISO 8601 strings in UTC)."""
        return {
            name: value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
            for name, value in self.__dict__.items()
        }


@dataclass(frozen=True)
class _Op(Generic[T]):
    queries: Sequence[tuple[str, dict[str, Any]]]
    read: Callable[[list[list[Row]]], T]


class _Ops:
    """Every admin operation, once."""

    @staticmethod
    def get(job_id: int) -> _Op[Job]:
        def read(results: list[list[Row]]) -> Job:
            if not results[0]:
                raise JobNotFoundError(f"no job with id {job_id} (it may have been pruned)")
            return Job.from_row(results[0][0])

        return _Op([("job_get", {"id": job_id})], read)

    @staticmethod
    def children(parent_id: int) -> _Op[list[Job]]:
        return _Op(
            [("flow_children", {"parent_id": parent_id})],
            lambda r: [Job.from_row(row) for row in r[0]],
        )

    @staticmethod
    def list_jobs(
        *,
        state: JobState | str | None,
        queue: str | None,
        task: str | None,
        before_id: int | None,
        limit: int,
    ) -> _Op[list[Job]]:
        params = {
            "state": str(JobState(state)) if state else None,
            "queue": queue,
            "task": task,
            "before_id": before_id,
            "limit": limit,
        }
        return _Op([("job_list", params)], lambda r: [Job.from_row(row) for row in r[0]])

    @staticmethod
    def retry(
        ids: Sequence[int] | None, task: str | None, queue: str | None, only_failed: bool
    ) -> _Op[list[int]]:
        params = {
            "ids": list(ids) if ids is not None else None,
            "task": task,
            "queue": queue,
            "only_failed": only_failed,
            "now": None,
        }
        return _Op([("job_retry_many", params)], lambda r: sorted(row["id"] for row in r[0]))

    @staticmethod
    def cancel(ids: Sequence[int]) -> _Op[list[int]]:
        params = {"ids": list(ids), "now": None}
        return _Op([("job_cancel_many", params)], lambda r: sorted(row["id"] for row in r[0]))

    @staticmethod
    def delete(ids: Sequence[int]) -> _Op[list[int]]:
        return _Op(
            [("job_delete_many", {"ids": list(ids)})], lambda r: sorted(x["id"] for x in r[0])
        )

    @staticmethod
    def status() -> _Op[Status]:
        live = {"now": None, "live_seconds": LIVE_WORKER_SECONDS}

        def read(results: list[list[Row]]) -> Status:
            counts, oldest, orphans, workers = results
            by_queue: dict[str, dict[str, int]] = {}
            for row in counts:
                by_queue.setdefault(row["queue"], {})[row["state"]] = int(row["count"])
            ages = {row["queue"]: row["age_seconds"] for row in oldest}
            queues = [
                QueueStatus(
                    q,
                    {str(s): by_queue[q].get(str(s), 0) for s in JobState},
                    ages.get(q),
                )
                for q in sorted(by_queue)
            ]
            orphaned = [OrphanedTask(r["queue"], r["task"], int(r["count"])) for r in orphans]
            return Status(queues, orphaned, [dict(w) for w in workers])

        return _Op(
            [
                ("queue_counts", {}),
                ("queue_oldest_available", {"now": None}),
                ("job_orphaned_tasks", live),
                ("worker_list_live", live),
            ],
            read,
        )

    @staticmethod
    def configure_queue(name: str, changes: dict[str, Any]) -> _Op[str]:
        return _Op([("queue_configure", configure_queue_params(name, changes))], lambda r: name)

    @staticmethod
    def pause_queue(name: str) -> _Op[str]:
        return _Op([("queue_pause", {"name": name, "now": None})], lambda r: name)

    @staticmethod
    def resume_queue(name: str) -> _Op[bool]:
        return _Op([("queue_resume", {"name": name, "now": None})], lambda r: bool(r[0]))

    @staticmethod
    def snooze_queue(name: str, seconds: float, reason: str | None) -> _Op[str]:
        params = {"name": name, "seconds": seconds, "reason": reason, "now": None}
        return _Op([("queue_snooze", params)], lambda r: name)

    @staticmethod
    def queues() -> _Op[list[QueueInfo]]:
        def read(results: list[list[Row]]) -> list[QueueInfo]:
            return [_queue_info(row) for row in results[0]]

        return _Op([("queue_list", {})], read)

    @staticmethod
    def cron_schedules(
        now: datetime | None, declared: Mapping[str, Schedule]
    ) -> _Op[list[ScheduleStatus]]:
        def read(results: list[list[Row]]) -> list[ScheduleStatus]:
            rows, (clock,) = results
            at: datetime = clock["now"]
            found = [
                ScheduleStatus(
                    name=r["name"],
                    task=r["task"],
                    cron=r["cron"],
                    timezone=r["timezone"],
                    catch_up=r["catch_up"],
                    last_slot=r["last_slot"],
                    last_job_id=r["last_job_id"],
                    last_job_state=r["last_job_state"],
                    next_slot=r["next_slot"],
                    registered=True,
                    overdue=r["next_slot"] is not None and r["next_slot"] < at - CRON_OVERDUE,
                )
                for r in rows
            ]
            known = {s.name for s in found}
            found += [
                ScheduleStatus(
                    name=s.name,
                    task=s.task,
                    cron=s.cron,
                    timezone=s.timezone,
                    catch_up=s.catch_up,
                    last_slot=None,
                    last_job_id=None,
                    last_job_state=None,
                    next_slot=s.next_after(at),
                    registered=False,
                    overdue=False,
                )
                for s in declared.values()
                if s.name not in known
            ]
            return sorted(found, key=lambda s: s.name)

        return _Op([("cron_schedule_list", {}), ("database_now", {"now": now})], read)


_GROUPS = {"key_concurrency": "key", "on_full": "max_depth"}


def validate_queue_settings(changes: dict[str, Any]) -> QueueLimits:
    """Check queue settings by name and value; raise ConfigError naming the fix."""
    unknown = sorted(set(changes) - set(FIELDS) - set(_GROUPS))
    if unknown:
        known = [*FIELDS, *_GROUPS]
        hints = [difflib.get_close_matches(u, known, 1) for u in unknown]
        hint = (
            "; did you mean " + ", ".join(repr(h[0]) for h in hints if h) + "?"
            if any(hints)
            else ""
        )
        raise ConfigError(
            f"unknown queue setting(s) {', '.join(map(repr, unknown))}{hint} (settings:"
            f" {', '.join(known)})"
        )
    return limits(**changes)


def configure_queue_params(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Parameters of queue_configure for the named settings only."""
    values = validate_queue_settings(changes)
    fields = tuple(sorted({_GROUPS.get(k, k) for k in changes}))
    return configure_params(name, values, fields, None)


def _queue_info(row: Row) -> QueueInfo:
    rate = (
        RateLimit(row["rate_limit"], timedelta(seconds=row["rate_period"]))
        if row["rate_limit"]
        else None
    )
    return QueueInfo(
        name=row["name"],
        paused=bool(row["paused"]),
        snoozed_until=row["snoozed_until"],
        snooze_reason=row["snooze_reason"],
        limits=QueueLimits(
            concurrency=row["concurrency"],
            key=row["key_arg"],
            key_concurrency=row["key_concurrency"],
            rate_limit=rate,
            max_depth=row["max_depth"],
            on_full=row["on_full"],
        ),
        dropped=int(row["dropped"]),
        waiting=int(row["waiting"]),
        running=int(row["running"]),
    )


class Client:
    """Sync admin API over the app's own connection pool."""

    def __init__(self, app: Conveyor) -> None:
        self._app = app

    def _run(self, op: _Op[T]) -> T:
        with self._app._connection() as conn:
            return op.read([run_sync(conn, sql(name), params) for name, params in op.queries])

    def get_job(self, job_id: int) -> Job:
        """Return one job with its errors; raise JobNotFoundError when there is none."""
        return self._run(_Ops.get(job_id))

    def children(self, parent_id: int) -> list[Job]:
        """The children of a flow parent (or a batch's callback), in the order given."""
        return self._run(_Ops.children(parent_id))

    def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest jobs first; pass the last id seen as `before_id` for the next page."""
        return self._run(
            _Ops.list_jobs(state=state, queue=queue, task=task, before_id=before_id, limit=limit)
        )

    def retry(self, *job_ids: int) -> list[int]:
        """Run failed or cancelled jobs again with a fresh round of attempts."""
        return self._run(_Ops.retry(job_ids, None, None, only_failed=False))

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Run every failed job of a task and/or queue again."""
        return self._run(_Ops.retry(None, task, queue, only_failed=True))

    def cancel(self, *job_ids: int) -> list[int]:
        """Cancel jobs that have not finished (a running one is told to stop)."""
        return self._run(_Ops.cancel(job_ids))

    def delete(self, *job_ids: int) -> list[int]:
        """Delete jobs for good (not running ones: cancel those first)."""
        return self._run(_Ops.delete(job_ids))

    def status(self) -> Status:
        """Counts by state per queue, oldest available age, and tasks no live worker knows."""
        return self._run(_Ops.status())

    def configure_queue(self, name: str, **changes: Any) -> None:
        """Set limits of a queue for every worker: concurrency, key with key_concurrency,
        rate_limit ('100/minute' or RateLimit), max_depth with on_full. None removes one;
        settings not named stay as they are."""
        self._run(_Ops.configure_queue(name, changes))

    def pause_queue(self, name: str) -> None:
        """Stop new jobs of a queue from starting; running jobs finish, enqueue goes on."""
        self._run(_Ops.pause_queue(name))

    def resume_queue(self, name: str) -> bool:
        """Let a paused (or snoozed) queue's jobs start again; False if it had no controls."""
        return self._run(_Ops.resume_queue(name))

    def snooze_queue(self, name: str, seconds: float, reason: str | None = None) -> None:
        """Hold a queue's jobs back for `seconds` (its downstream is down)."""
        self._run(_Ops.snooze_queue(name, seconds, reason))

    def queues(self) -> list[QueueInfo]:
        """Every queue with controls or jobs: controls, waiting and running counts."""
        return self._run(_Ops.queues())

    def cron_schedules(self) -> list[ScheduleStatus]:
        """Every cron schedule workers have recorded, plus this app's own, with each one's
        last enqueued time and job and its next time."""
        return self._run(_Ops.cron_schedules(self._app.clock.now(), self._app.schedules))


class AsyncClient:
    """Async twin of Client, for async apps and the dashboard."""

    def __init__(self, app: Conveyor) -> None:
        self._app = app

    async def _run(self, op: _Op[T]) -> T:
        async with self._app._aconnection() as conn:
            results = [await run_async(conn, sql(name), params) for name, params in op.queries]
            return op.read(results)

    async def get_job(self, job_id: int) -> Job:
        """Async twin of Client.get_job()."""
        return await self._run(_Ops.get(job_id))

    async def children(self, parent_id: int) -> list[Job]:
        """Async twin of Client.children()."""
        return await self._run(_Ops.children(parent_id))

    async def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Async twin of Client.list_jobs()."""
        return await self._run(
            _Ops.list_jobs(state=state, queue=queue, task=task, before_id=before_id, limit=limit)
        )

    async def retry(self, *job_ids: int) -> list[int]:
        """Async twin of Client.retry()."""
        return await self._run(_Ops.retry(job_ids, None, None, only_failed=False))

    async def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Async twin of Client.retry_failed()."""
        return await self._run(_Ops.retry(None, task, queue, only_failed=True))

    async def cancel(self, *job_ids: int) -> list[int]:
        """Async twin of Client.cancel()."""
        return await self._run(_Ops.cancel(job_ids))

    async def delete(self, *job_ids: int) -> list[int]:
        """Async twin of Client.delete()."""
        return await self._run(_Ops.delete(job_ids))

    async def status(self) -> Status:
        """Async twin of Client.status()."""
        return await self._run(_Ops.status())

    async def configure_queue(self, name: str, **changes: Any) -> None:
        """Async twin of Client.configure_queue()."""
        await self._run(_Ops.configure_queue(name, changes))

    async def pause_queue(self, name: str) -> None:
        """Async twin of Client.pause_queue()."""
        await self._run(_Ops.pause_queue(name))

    async def resume_queue(self, name: str) -> bool:
        """Async twin of Client.resume_queue()."""
        return await self._run(_Ops.resume_queue(name))

    async def snooze_queue(self, name: str, seconds: float, reason: str | None = None) -> None:
        """Async twin of Client.snooze_queue()."""
        await self._run(_Ops.snooze_queue(name, seconds, reason))

    async def queues(self) -> list[QueueInfo]:
        """Async twin of Client.queues()."""
        return await self._run(_Ops.queues())

    async def cron_schedules(self) -> list[ScheduleStatus]:
        """Async twin of Client.cron_schedules()."""
        return await self._run(_Ops.cron_schedules(self._app.clock.now(), self._app.schedules))
