"""WorkflowRun and WorkflowStep: a run and its recorded steps, as the Client returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The states of a run: the first three are unfinished.
RUN_STATES = ("running", "sleeping", "waiting", "completed", "failed", "cancelled")
FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class WorkflowStep:
    """One recorded step of a run: ctx.step (kind 'step'), a sleep, an event wait or a patch
    marker, at its position in the run."""

    position: int
    name: str
    kind: str
    #: completed, failed (its last attempt failed), retrying, sleeping or waiting
    state: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    #: a sleep's end, a wait's deadline, a retrying step's next attempt
    wake_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkflowStep:
        """A step from a row of conveyor.workflow_steps."""
        return cls(
            position=row["position"],
            name=row["name"],
            kind=row["kind"],
            state=row["state"],
            result=row["result"],
            error=row["error"],
            attempts=row["attempts"],
            wake_at=row["wake_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


@dataclass(frozen=True)
class WorkflowRun:
    """A run of a workflow: its state, arguments, result or error, what it waits for, and (from
    Client.get_workflow) its recorded steps."""

    id: str
    workflow: str
    #: running, sleeping, waiting, completed, failed or cancelled
    state: str
    args: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    queue: str
    #: the job that drives the run (a retried run gets a new one)
    job_id: int | None
    parent_run_id: str | None
    wait_event: str | None
    wait_key: str | None
    wait_deadline: datetime | None
    wake_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[WorkflowStep, ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any], steps: tuple[WorkflowStep, ...] = ()) -> WorkflowRun:
        """A run from a row of conveyor.workflow_runs."""
        return cls(
            id=row["id"],
            workflow=row["workflow"],
            state=row["state"],
            args=row["args"],
            result=row["result"],
            error=row["error"],
            queue=row["queue"],
            job_id=row["job_id"],
            parent_run_id=row["parent_run_id"],
            wait_event=row["wait_event"],
            wait_key=row["wait_key"],
            wait_deadline=row["wait_deadline"],
            wake_at=row["wake_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            steps=steps,
        )

    @property
    def finished(self) -> bool:
        """True once the run completed, failed or was cancelled."""
        return self.state in FINISHED


@dataclass(frozen=True)
class ChildError:
    """What ctx.map(..., on_failure="return") puts in its result list for a child that failed
    or was cancelled, instead of the child's result."""

    #: the child's place in the items
    index: int
    job_id: int
    #: the child run's id, when the child is a workflow
    run_id: str | None
    #: failed or cancelled
    state: str
    #: the child's last error: type, message, traceback, attempt (a cancelled child: type
    #: Cancelled)
    error: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The same as a JSON object (to return it from a workflow or a step)."""
        return {
            "index": self.index,
            "job_id": self.job_id,
            "run_id": self.run_id,
            "state": self.state,
            "error": self.error,
        }


@dataclass(frozen=True)
class FanOut:
    """One ctx.map or ctx.run_workflow of a run: its children counted."""

    position: int
    name: str
    #: map or child
    kind: str
    total: int
    #: children not finished yet
    remaining: int
    #: children that failed or were cancelled
    failed: int
    #: children let go so far under the map's concurrency bound
    released: int
    on_failure: str


@dataclass(frozen=True)
class WorkflowChild:
    """One child of a fan-out: its job, its run when it is a workflow, how it ended."""

    position: int
    index: int
    job_id: int
    run_id: str | None
    #: pending, completed, failed or cancelled
    state: str
    error: dict[str, Any] | None
    finished_at: datetime | None


@dataclass(frozen=True)
class WorkflowChildren:
    """A run's fan-outs and (the first of) their children, from Client.workflow_children."""

    fanouts: list[FanOut]
    children: list[WorkflowChild]
