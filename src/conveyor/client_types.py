"""What the Client returns besides jobs: queue status, cron schedules, pages and charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.job import Job

#: A worker not seen for this long is not counted as live.
LIVE_WORKER_SECONDS = 60.0


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
class JobPage:
    """One page of a job list, newest first.

    `next_before_id` is what to pass as `before_id` for the next (older) page, or None when
    there is nothing older. A text search reads at most `scanned` rows per page; when it finds
    fewer matches than the page holds, `next_before_id` continues after the rows it read.
    """

    jobs: list[Job]
    next_before_id: int | None
    scanned: int | None = None


@dataclass(frozen=True)
class MinuteCount:
    """Jobs of one queue that finished in one state during one minute."""

    minute: datetime
    queue: str
    state: str
    count: int


@dataclass(frozen=True)
class Throughput:
    """Finished jobs per minute over a recent window, by queue and state (from job_done)."""

    since: datetime
    until: datetime
    minutes: list[MinuteCount]

    def series(self, *, queue: str | None = None, state: str | None = None) -> list[int]:
        """Counts per minute from `since`, oldest first, summed over what matches."""
        start = self.since.replace(second=0, microsecond=0)
        size = int((self.until - start).total_seconds() // 60) + 1
        counts = [0] * size
        for m in self.minutes:
            if (queue is None or m.queue == queue) and (state is None or m.state == state):
                slot = int((m.minute - start).total_seconds() // 60)
                if 0 <= slot < size:
                    counts[slot] += m.count
        return counts


@dataclass(frozen=True)
class TaskCount:
    """How many jobs of one task in one queue are in some state (e.g. failed)."""

    queue: str
    task: str
    count: int


@dataclass(frozen=True)
class AlertEpisode:
    """One episode of an alert rule for one subject (a queue, or "queue/task").

    `pending` until the condition has held long enough, `firing` once it fired, `resolved` when
    it cleared (`fired_at` None means it cleared before it ever fired).
    """

    id: int
    rule: str
    subject: str
    pending_since: datetime
    fired_at: datetime | None
    fire_count: int
    resolved_at: datetime | None
    last_value: float | None
    details: dict[str, Any] | None

    @property
    def state(self) -> str:
        """pending, firing or resolved."""
        if self.resolved_at is not None:
            return "resolved"
        return "pending" if self.fired_at is None else "firing"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (times as ISO 8601 strings)."""
        out = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in self.__dict__.items()
        }
        out["state"] = self.state
        return out
