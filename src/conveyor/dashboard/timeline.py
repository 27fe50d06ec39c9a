"""A job's life as a list of dated events: created, due, each failed attempt, started,
finished, in time order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.job import Job, JobState


@dataclass(frozen=True)
class Event:
    """One moment of a job's life."""

    at: datetime
    label: str
    detail: str = ""
    kind: str = "info"


def timeline(job: Job) -> list[Event]:
    """Events of `job` oldest first; errors without a readable time are left out."""
    events = [Event(job.created_at, "created", f"in queue {job.queue}")]
    if job.run_at > job.created_at:
        events.append(Event(job.run_at, "due", "may run from here (the latest run_at)"))
    for error in job.errors:
        at = _parse(error.get("at"))
        if at is not None:
            detail = f"{error.get('type', 'Error')}: {error.get('message', '')}"
            events.append(Event(at, f"attempt {error.get('attempt', '?')} failed", detail, "bad"))
    if job.attempted_at is not None:
        events.append(Event(job.attempted_at, f"attempt {job.attempt} started"))
    if job.finished_at is not None:
        kind = "ok" if job.state == JobState.COMPLETED else "bad"
        events.append(Event(job.finished_at, str(job.state), kind=kind))
    progress = job.progress or {}
    at = _parse(progress.get("at"))
    if at is not None:
        events.append(
            Event(
                at, "progress", f"{progress.get('value')} {progress.get('message') or ''}".strip()
            )
        )
    return sorted(events, key=lambda e: e.at)


def _parse(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
