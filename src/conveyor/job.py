"""Job: a frozen snapshot of one row of conveyor.jobs, and the states a job moves through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is in its life; docs/state_machine.md draws the arrows."""

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    RUNNING = "running"
    RETRYABLE = "retryable"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the states a job never leaves on its own."""
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


_STATES = {state.value: state for state in JobState}
_new = object.__new__

JOB_COLUMNS = (
    "id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,"
    " timeout_seconds, created_at, run_at, attempted_at, finished_at, result, worker_id"
)


@dataclass(frozen=True)
class Job:
    """One job as stored; `errors` lists every failed attempt, oldest first."""

    id: int
    task: str
    queue: str
    state: JobState
    priority: int
    attempt: int
    max_attempts: int | None
    args: dict[str, Any]
    errors: list[dict[str, Any]]
    unique_key: str | None
    timeout_seconds: float | None
    created_at: datetime
    run_at: datetime
    attempted_at: datetime | None
    finished_at: datetime | None
    result: Any
    worker_id: str | None
    #: The last progress a running job reported: {"value", "message", "at"}; None if none.
    progress: dict[str, Any] | None = None
    #: Ties the job to what caused it (a request id, the job that enqueued it); None if none.
    correlation_id: str | None = None
    #: W3C trace headers of the span that enqueued the job ({"traceparent": ...}); None if none.
    trace_context: dict[str, str] | None = None
    #: Columns holding what Python cannot (a time past year 9999 or infinite, JSON nested too
    #: deep), each with why ("run_at out of range (infinity)"); their values here are stand-ins.
    #: Filled by the Client only, so people can still see and act on such a job.
    unreadable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """Build a Job from a row of the JOB_COLUMNS query shape.

        A worker builds one per claimed job: the fields are stored at once rather than through
        the frozen dataclass's __init__ (a guarded setattr per field), and the state is looked
        up in a dict, not by calling the enum (3x faster in all: docs/benchmarks.md, issue
        15). The result is the same Job, equal to one built by __init__."""
        job = _new(cls)
        job.__dict__.update(
            id=row["id"],
            task=row["task"],
            queue=row["queue"],
            state=_STATES.get(row["state"]) or JobState(row["state"]),
            priority=row["priority"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            args=row["args"],
            errors=row["errors"] or [],
            unique_key=row["unique_key"],
            timeout_seconds=row["timeout_seconds"],
            created_at=row["created_at"],
            run_at=row["run_at"],
            attempted_at=row["attempted_at"],
            finished_at=row["finished_at"],
            result=row["result"],
            worker_id=row["worker_id"],
            progress=row.get("progress"),
            correlation_id=row.get("correlation_id"),
            trace_context=row.get("trace_context"),
            unreadable={},
        )
        return job

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["state"] = str(self.state)
        return out
