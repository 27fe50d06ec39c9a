"""Every admin operation of the Client, written once: its named queries, their parameters
and how to read the rows. Client runs them on a sync connection, AsyncClient on an async one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from conveyor._store.caller import Row
from conveyor.client_rows import job_from_row
from conveyor.client_types import (
    LIVE_WORKER_SECONDS,
    AlertEpisode,
    JobPage,
    MinuteCount,
    OrphanedTask,
    QueueStatus,
    ScheduleStatus,
    Status,
    TaskCount,
    Throughput,
)
from conveyor.durations import to_seconds
from conveyor.errors import JobNotFoundError
from conveyor.job import Job, JobState
from conveyor.queues import QueueInfo, QueueLimits, RateLimit, configure_queue_params

if TYPE_CHECKING:
    from conveyor.cron import Schedule

T = TypeVar("T")

#: Workers look for due cron slots every second; a slot still not handled this long after its
#: time means no worker runs its schedule.
CRON_OVERDUE = timedelta(seconds=10)

#: Job ids are bigints. An id outside this range names no job, and Postgres refuses to compare
#: a bigint with it ("bigint out of range"), so such ids are never sent: they match nothing.
JOB_IDS = range(-(2**63), 2**63)


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
            return job_from_row(results[0][0])

        return _Op([("job_get", {"id": _job_id(job_id)})], read)

    @staticmethod
    def children(parent_id: int) -> _Op[list[Job]]:
        return _Op(
            [("flow_children", {"parent_id": _job_id(parent_id)})],
            lambda r: [job_from_row(row) for row in r[0]],
        )

    @staticmethod
    def page_jobs(
        *,
        state: JobState | str | None,
        queue: str | None,
        task: str | None,
        search: str | None,
        before_id: int | None,
        limit: int,
        scan_limit: int,
    ) -> _Op[JobPage]:
        params: dict[str, Any] = {
            "state": str(JobState(state)) if state else None,
            "queue": queue,
            "task": task,
            "before_id": None if before_id is None else _clamped(before_id),
            "limit": limit,
        }
        if not search:
            return _Op([("job_list", params)], lambda r: _page(r[0], limit))
        params.update(pattern=_contains(search), scan=scan_limit)
        return _Op([("job_search", params)], lambda r: _search_page(r[0], limit, scan_limit))

    @staticmethod
    def throughput(seconds: float) -> _Op[Throughput]:
        def read(results: list[list[Row]]) -> Throughput:
            rows, (clock,) = results
            until: datetime = clock["now"]
            minutes = [
                MinuteCount(r["minute"], r["queue"], r["state"], int(r["count"])) for r in rows
            ]
            return Throughput(until - timedelta(seconds=seconds), until, minutes)

        return _Op(
            [
                ("job_throughput", {"seconds": seconds, "now": None}),
                ("database_now", {"now": None}),
            ],
            read,
        )

    @staticmethod
    def alert_episodes(open_only: bool, limit: int) -> _Op[list[AlertEpisode]]:
        def read(results: list[list[Row]]) -> list[AlertEpisode]:
            return [
                AlertEpisode(
                    id=int(r["id"]),
                    rule=r["rule"],
                    subject=r["subject"],
                    pending_since=r["pending_since"],
                    fired_at=r["fired_at"],
                    fire_count=int(r["fire_count"]),
                    resolved_at=r["resolved_at"],
                    last_value=r["last_value"],
                    details=r["details"],
                )
                for r in results[0]
            ]

        params = {"open_only": open_only, "limit": limit}
        return _Op([("alert_episode_list", params)], read)

    @staticmethod
    def failed_by_task(limit: int) -> _Op[list[TaskCount]]:
        return _Op(
            [("job_failed_by_task", {"limit": limit})],
            lambda r: [TaskCount(row["queue"], row["task"], int(row["count"])) for row in r[0]],
        )

    @staticmethod
    def waiting_elsewhere(tasks: Iterable[str], queues: Iterable[str]) -> _Op[list[TaskCount]]:
        params = {"tasks": sorted(tasks), "queues": sorted(queues)}
        return _Op(
            [("job_waiting_elsewhere", params)],
            lambda r: [TaskCount(row["queue"], row["task"], int(row["count"])) for row in r[0]],
        )

    @staticmethod
    def retry(
        ids: Sequence[int] | None, task: str | None, queue: str | None, only_failed: bool
    ) -> _Op[list[int]]:
        params = {
            "ids": _job_ids(ids) if ids is not None else None,
            "task": task,
            "queue": queue,
            "only_failed": only_failed,
            "now": None,
        }
        return _Op([("job_retry_many", params)], lambda r: sorted(row["id"] for row in r[0]))

    @staticmethod
    def cancel(ids: Sequence[int]) -> _Op[list[int]]:
        params = {"ids": _job_ids(ids), "now": None}
        return _Op([("job_cancel_many", params)], lambda r: sorted(row["id"] for row in r[0]))

    @staticmethod
    def delete(ids: Sequence[int]) -> _Op[list[int]]:
        return _Op(
            [("job_delete_many", {"ids": _job_ids(ids)})], lambda r: sorted(x["id"] for x in r[0])
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
    def snooze_queue(name: str, seconds: float | timedelta, reason: str | None) -> _Op[str]:
        duration = to_seconds(seconds, "snooze_queue(seconds)")
        params = {"name": name, "seconds": duration, "reason": reason, "now": None}
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


def _job_id(job_id: int) -> int | None:
    # NULL matches no row, as an id out of range should
    return job_id if job_id in JOB_IDS else None


def _job_ids(ids: Sequence[int]) -> list[int]:
    return [job_id for job_id in ids if job_id in JOB_IDS]


def _clamped(before_id: int) -> int:
    """A page boundary within the ids: every job is older than an id past the largest."""
    return min(max(before_id, JOB_IDS.start), JOB_IDS.stop - 1)


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


def _contains(text: str) -> str:
    """An ILIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _page(rows: list[Row], limit: int) -> JobPage:
    jobs = [job_from_row(row) for row in rows]
    return JobPage(jobs, jobs[-1].id if len(jobs) == limit else None)


def _search_page(rows: list[Row], limit: int, scan_limit: int) -> JobPage:
    # One row per match, or a single row of NULL job columns when nothing matched; every row
    # carries how much of the filtered list the search read and where it stopped.
    scanned = int(rows[0]["scanned"]) if rows else 0
    scanned_to = rows[0]["scanned_to"] if rows else None
    jobs = [job_from_row(row) for row in rows if row["id"] is not None]
    if len(jobs) == limit:
        return JobPage(jobs, jobs[-1].id, scanned)
    return JobPage(jobs, scanned_to if scanned == scan_limit else None, scanned)
