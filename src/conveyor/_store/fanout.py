"""Fan-out operations (the fan-out section of sql/workflow.sql): start a run's children, park
until the last one ends, read their outcomes. The count-down and the parent's wake-up happen in
the database, in the transaction that ends each child's job (migration 0012's trigger)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from conveyor._store.ops import Op, Plan, Rows
from conveyor._store.workflows import Fence, Refused, park


@dataclass(frozen=True)
class FanOut:
    """The children of one fan-out step: one task (or workflow) and its arguments per child."""

    run_id: str
    position: int
    name: str
    #: 'map' (ctx.map) or 'child' (ctx.run_workflow)
    kind: str
    task: str
    is_workflow: bool
    #: a JSON array with one object of keyword arguments per child
    items_json: str
    concurrency: int
    on_failure: Literal["fail", "return"]
    queue: str
    priority: int
    max_attempts: int | None
    timeout_seconds: float | None
    correlation_id: str | None

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "position": self.position,
            "name": self.name,
            "kind": self.kind,
            "task": self.task,
            "is_workflow": self.is_workflow,
            "items": self.items_json,
            "concurrency": self.concurrency,
            "on_failure": self.on_failure,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "correlation_id": self.correlation_id,
        }


@dataclass(frozen=True)
class Child:
    """One child's outcome as recorded by the trigger: state pending, completed, failed or
    cancelled; `result` (completed) or `error` (the job's last error)."""

    idx: int
    job_id: int
    child_run_id: str | None
    state: str
    result: Any
    error: dict[str, Any] | None


def start(fan: FanOut, fence: Fence) -> Plan[bool]:
    """Record the fan-out, create its children and park the parent until the last one ends, in
    one transaction; False (nothing written) when the parent's lease is gone."""
    rows = yield Op("workflow_fanout_start", {**fan.params(), **fence.params()}, _rows)
    if not rows:
        return False
    parked = yield park(fan.run_id, fence, state="waiting", wake_at=None)
    if not parked:
        raise Refused
    return True


def park_unless_done(
    run_id: str, position: int, fence: Fence
) -> Plan[tuple[str, dict[str, Any] | None] | None]:
    """A replay found the fan-out step waiting: lock the step and park again if it still is.
    Returns the step's state ('waiting' when parked) and error; None when the lease is gone."""
    rows = yield Op("workflow_fanout_lock", {"run_id": run_id, "position": position}, _rows)
    state = str(rows[0]["state"]) if rows else "missing"
    error = rows[0]["error"] if rows else None
    if state != "waiting":
        return state, error
    parked = yield park(run_id, fence, state="waiting", wake_at=None)
    return (state, error) if parked else None


def children(run_id: str, position: int) -> Op[list[Child]]:
    """The children of a fan-out in input order."""

    def read(rows: Rows) -> list[Child]:
        return [
            Child(
                idx=r["idx"],
                job_id=r["job_id"],
                child_run_id=r["child_run_id"],
                state=r["state"],
                result=r["result"],
                error=r["error"],
            )
            for r in rows
        ]

    return Op("workflow_children_list", {"run_id": run_id, "position": position}, read)


def _rows(rows: Rows) -> Rows:
    return rows
