"""Job.from_row builds the same frozen Job that Job(...) does, from a claimed row."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.job import Job, JobState

NOW = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "task": "send",
        "queue": "mail",
        "state": "running",
        "priority": 2,
        "attempt": 1,
        "max_attempts": 5,
        "args": {"to": "a@example.com"},
        "errors": None,
        "unique_key": None,
        "timeout_seconds": 30.0,
        "created_at": NOW,
        "run_at": NOW,
        "attempted_at": NOW,
        "finished_at": None,
        "result": None,
        "worker_id": "w1",
        "correlation_id": "req-1",
    }
    return row | changes


def test_a_row_makes_the_job_init_would_make() -> None:
    row = _row()
    built = Job(
        **{k: v for k, v in row.items() if k not in ("state", "errors")},
        state=JobState.RUNNING,
        errors=[],
    )
    job = Job.from_row(row)
    assert job == built
    assert job.state is JobState.RUNNING and job.errors == [] and job.unreadable == {}
    assert job.progress is None and job.trace_context is None
    assert [f.name for f in dataclasses.fields(job)] == list(vars(job))


def test_the_job_stays_frozen_and_each_has_its_own_unreadable() -> None:
    first, second = Job.from_row(_row()), Job.from_row(_row(id=8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.id = 9  # type: ignore[misc]
    assert first.unreadable is not second.unreadable


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="'sleeping' is not a valid JobState"):
        Job.from_row(_row(state="sleeping"))
