"""The Client's operations: reading and acting on jobs, queues, cron schedules and alerts.

Each is an operation (ops.py) or a plan of several, written once; Client runs them with the sync
runner and AsyncClient with the async one. Every read is lenient, so that no stored value can
break a list or a page (client_rows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor._store.ops import Op, Plan, Row, Rows, sorted_ids
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


def _read(query: str, params: Mapping[str, Any], read: Callable[[Rows], T]) -> Op[T]:
    return Op(query, params, read, lenient=True)


def get(job_id: int) -> Op[Job]:
    def read(rows: Rows) -> Job:
        if not rows:
            raise JobNotFoundError(f"no job with id {job_id} (it may have been pruned)")
        return job_from_row(rows[0])

    return _read("job_get", {"id": _job_id(job_id)}, read)


def children(parent_id: int) -> Op[list[Job]]:
    return _read(
        "flow_children",
        {"parent_id": _job_id(parent_id)},
        lambda rows: [job_from_row(row) for row in rows],
    )


def page_jobs(
    state: JobState | str | None,
    queue: str | None,
    task: str | None,
    search: str | None,
    before_id: int | None,
    limit: int,
    scan_limit: int,
) -> Op[JobPage]:
    params: dict[str, Any] = {
        "state": str(JobState(state)) if state else None,
        "queue": queue,
        "task": task,
        "before_id": None if before_id is None else _clamped(before_id),
        "limit": limit,
    }
    if not search:
        return _read("job_list", params, lambda rows: _page(rows, limit))
    params.update(pattern=_contains(search), scan=scan_limit)
    return _read("job_search", params, lambda rows: _search_page(rows, limit, scan_limit))


def throughput(seconds: float) -> Plan[Throughput]:
    rows = yield _read("job_throughput", {"seconds": seconds, "now": None}, Rows)
    until = yield database_now(None)
    minutes = [MinuteCount(r["minute"], r["queue"], r["state"], int(r["count"])) for r in rows]
    return Throughput(until - timedelta(seconds=seconds), until, minutes)


def database_now(now: datetime | None) -> Op[datetime]:
    return _read("database_now", {"now": now}, lambda rows: rows[0]["now"])


def alert_episodes(open_only: bool, limit: int) -> Op[list[AlertEpisode]]:
    def read(rows: Rows) -> list[AlertEpisode]:
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
            for r in rows
        ]

    return _read("alert_episode_list", {"open_only": open_only, "limit": limit}, read)


def failed_by_task(limit: int) -> Op[list[TaskCount]]:
    return _read("job_failed_by_task", {"limit": limit}, _task_counts)


def waiting_elsewhere(tasks: Iterable[str], queues: Iterable[str]) -> Op[list[TaskCount]]:
    params = {"tasks": sorted(tasks), "queues": sorted(queues)}
    return _read("job_waiting_elsewhere", params, _task_counts)


def retry(
    ids: Sequence[int] | None, task: str | None, queue: str | None, only_failed: bool
) -> Op[list[int]]:
    params = {
        "ids": _job_ids(ids) if ids is not None else None,
        "task": task,
        "queue": queue,
        "only_failed": only_failed,
        "now": None,
    }
    return _read("job_retry_many", params, sorted_ids)


def cancel(ids: Sequence[int]) -> Op[list[int]]:
    return _read("job_cancel_many", {"ids": _job_ids(ids), "now": None}, sorted_ids)


def delete(ids: Sequence[int]) -> Op[list[int]]:
    return _read("job_delete_many", {"ids": _job_ids(ids)}, sorted_ids)


def status() -> Plan[Status]:
    live = {"now": None, "live_seconds": LIVE_WORKER_SECONDS}
    counts = yield _read("queue_counts", {}, Rows)
    oldest = yield _read("queue_oldest_available", {"now": None}, Rows)
    orphans = yield _read("job_orphaned_tasks", live, Rows)
    workers = yield _read("worker_list_live", live, Rows)
    by_queue: dict[str, dict[str, int]] = {}
    for row in counts:
        by_queue.setdefault(row["queue"], {})[row["state"]] = int(row["count"])
    ages = {row["queue"]: row["age_seconds"] for row in oldest}
    queues = [
        QueueStatus(q, {str(s): by_queue[q].get(str(s), 0) for s in JobState}, ages.get(q))
        for q in sorted(by_queue)
    ]
    orphaned = [OrphanedTask(r["queue"], r["task"], int(r["count"])) for r in orphans]
    return Status(queues, orphaned, [dict(w) for w in workers])


def configure_queue(name: str, changes: dict[str, Any]) -> Op[str]:
    return _read("queue_configure", configure_queue_params(name, changes), lambda rows: name)


def pause_queue(name: str) -> Op[str]:
    return _read("queue_pause", {"name": name, "now": None}, lambda rows: name)


def resume_queue(name: str) -> Op[bool]:
    return _read("queue_resume", {"name": name, "now": None}, bool)


def snooze_queue(name: str, seconds: float | timedelta, reason: str | None) -> Op[str]:
    duration = to_seconds(seconds, "snooze_queue(seconds)")
    params = {"name": name, "seconds": duration, "reason": reason, "now": None}
    return _read("queue_snooze", params, lambda rows: name)


def queues() -> Op[list[QueueInfo]]:
    return _read("queue_list", {}, lambda rows: [_queue_info(row) for row in rows])


def cron_schedules(
    now: datetime | None, declared: Mapping[str, Schedule]
) -> Plan[list[ScheduleStatus]]:
    rows = yield _read("cron_schedule_list", {}, Rows)
    at = yield database_now(now)
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


def _task_counts(rows: Rows) -> list[TaskCount]:
    return [TaskCount(row["queue"], row["task"], int(row["count"])) for row in rows]


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
