"""Workflow operations (sql/workflow.sql): what the engine records for a run, and the Client's
reads and actions on runs and events.

The engine runs each of its writes in a transaction of its own; every one is fenced by the
driving job's lease token, so a worker that lost the job records nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from conveyor._store.ops import Call, Op, Plan, Rows, found
from conveyor.errors import WorkflowNotFoundError
from conveyor.workflow.types import (
    FanOut,
    WorkflowChild,
    WorkflowChildren,
    WorkflowRun,
    WorkflowStep,
)


@dataclass(frozen=True)
class Fence:
    """The driving job and the lease token of this worker's claim: what every write checks."""

    job_id: int
    token: UUID
    #: The app's clock (None: the database's).
    now: datetime | None

    def params(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "token": self.token, "now": self.now}


@dataclass(frozen=True)
class Begun:
    """A run as its replay starts: its row, its recorded steps, and the time to compare with."""

    id: str
    workflow: str
    state: str
    args: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    first: bool
    now: datetime
    steps: dict[int, WorkflowStep]


@dataclass(frozen=True)
class StepWrite:
    """What to record at a step's position."""

    run_id: str
    position: int
    name: str
    kind: str
    state: str
    attempts: int = 0
    result_json: str | None = None
    error_json: str | None = None
    #: Wake this many seconds from now (a sleep, a wait's deadline, a retry's backoff) ...
    wake_seconds: float | None = None
    #: ... or at this instant (sleep_until).
    wake_at: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "position": self.position,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "attempts": self.attempts,
            "result": self.result_json,
            "error": self.error_json,
            "wake_seconds": self.wake_seconds,
            "wake_at": self.wake_at,
        }


#: What record() reads: None when the fence refused the write, else the step's wake time
#: (None for a step without one) in a one-element tuple.
Recorded = tuple[datetime | None] | None


def begin(run_id: str, fence: Fence) -> Plan[Begun | bool | None]:
    """Start a replay: the run (running again) and its steps. None when no run has this id;
    False when the job's lease is gone."""
    rows = yield Op("workflow_run_begin", {"run_id": run_id, **fence.params()}, _rows)
    if not rows:
        exists = yield Op("workflow_run_get", {"run_id": run_id}, found)
        return False if exists else None
    row = rows[0]
    step_rows = yield Op("workflow_step_list", {"run_id": run_id}, _rows)
    steps = {s.position: s for s in map(WorkflowStep.from_row, step_rows)}
    return Begun(
        id=row["id"],
        workflow=row["workflow"],
        state=row["state"],
        args=row["args"],
        result=row["result"],
        error=row["error"],
        first=bool(row["first"]),
        now=row["now"],
        steps=steps,
    )


def record(write: StepWrite, fence: Fence) -> Op[Recorded]:
    """Record a step while the lease holds; a completed step is never written over."""

    def read(rows: Rows) -> Recorded:
        return (rows[0]["wake_at"],) if rows else None

    return Op("workflow_step_record", {**write.params(), **fence.params()}, read)


def park(
    run_id: str,
    fence: Fence,
    *,
    state: str,
    wake_at: datetime | None,
    event: str | None = None,
    key: str | None = None,
    position: int | None = None,
) -> Op[bool]:
    """Put the run's job back until `wake_at` (None: until an event), its attempt uncounted."""
    params = {
        "run_id": run_id,
        "state": state,
        "wake_at": wake_at,
        "event": event,
        "key": key,
        "position": position,
        **fence.params(),
    }
    return Op("workflow_park", params, found)


def record_and_park(write: StepWrite, fence: Fence, *, state: str) -> Plan[bool]:
    """Record a step that waits for a time (a sleep, a retry's backoff) and park the run until
    then, in one transaction; False (and nothing written) when the lease is gone."""
    recorded = yield record(write, fence)
    if recorded is None:
        return False
    parked = yield park(write.run_id, fence, state=state, wake_at=recorded[0])
    if not parked:
        raise _Refused
    return True


@dataclass(frozen=True)
class WaitResult:
    """What a wait found: an event (its id and payload), a timeout, or that it parked."""

    outcome: str  # "event", "timeout", "parked" or "refused"
    event_id: int | None = None
    payload: Any = None


def wait(
    write: StepWrite, fence: Fence, *, event: str, key: str, deadline_passed: bool
) -> Plan[WaitResult]:
    """Take the oldest matching event for this run, or time out, or park the run waiting; in
    one transaction under the (event, key) lock that send_event takes, so no event is lost."""
    yield Op("workflow_event_lock", {"name": event, "key": key}, found)
    params = {"name": event, "key": key, "run_id": write.run_id, "now": fence.now}
    rows = yield Op("workflow_event_consume", params, _rows)
    if rows:
        event_id, payload = rows[0]["id"], rows[0]["payload"]
        result = _event_result(event_id, payload)
        done = replace(write, state="completed", result_json=result)
        if (yield record(done, fence)) is None:
            raise _Refused
        return WaitResult("event", event_id, payload)
    if deadline_passed:
        done = replace(write, state="completed", result_json='{"timed_out":true}')
        if (yield record(done, fence)) is None:
            raise _Refused
        return WaitResult("timeout")
    recorded = yield record(write, fence)
    if recorded is None:
        raise _Refused
    parked = yield park(
        write.run_id,
        fence,
        state="waiting",
        wake_at=recorded[0],
        event=event,
        key=key,
        position=write.position,
    )
    if not parked:
        raise _Refused
    return WaitResult("parked")


def atomic_step(
    write: StepWrite, fence: Fence, call: Call, encode: Callable[[Any], str | None]
) -> Plan[tuple[bool, str | None]]:
    """Run the user's step function on this transaction's connection and record its result in
    the same transaction: the step's writes and its record commit together or not at all.
    Returns (True, the result's JSON), or (False, None) when the lease was gone before it ran."""
    held = yield Op("workflow_job_hold", fence.params(), found)
    if not held:
        return False, None
    try:
        encoded = encode((yield call))
    except Exception as exc:
        raise StepRaised(exc) from exc  # rolls the transaction back, the step's writes with it
    if (yield record(replace(write, result_json=encoded), fence)) is None:
        raise _Refused
    return True, encoded


def finish(
    run_id: str, fence: Fence, *, state: str, result_json: str | None, error_json: str | None
) -> Op[bool]:
    """End the run (completed or failed) while the lease holds and nobody cancelled it."""
    params = {
        "run_id": run_id,
        "state": state,
        "result": result_json,
        "error": error_json,
        **fence.params(),
    }
    return Op("workflow_run_finish", params, found)


class StepRaised(Exception):  # noqa: N818
    """An atomic step's function (or its result's encoding) raised: `cause`, not the database."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


class _Refused(Exception):  # noqa: N818
    """A later write of a plan was refused: roll back what the plan wrote before it."""


#: Raised out of a plan whose fenced write was refused; the engine treats it as a lost lease.
Refused = _Refused


def _event_result(event_id: int, payload: Any) -> str:
    return json.dumps({"event_id": event_id, "payload": payload}, separators=(",", ":"))


def _rows(rows: Rows) -> Rows:
    return rows


# -- the Client's operations ----------------------------------------------------------------------


def start(
    workflow: str, args_json: str, run_id: str | None, queue: str | None, priority: int | None
) -> Op[str]:
    """Start a run through conveyor.start_workflow (idempotent on run_id)."""
    params = {
        "workflow": workflow,
        "args": args_json,
        "run_id": run_id,
        "queue": queue,
        "priority": priority,
    }
    return Op("workflow_start", params, lambda rows: str(rows[0]["id"]))


def send_event(name: str, key: str, payload_json: str) -> Op[int]:
    """Send an event through conveyor.send_event; return its id."""
    params = {"name": name, "key": key, "payload": payload_json}
    return Op("workflow_send_event", params, lambda rows: int(rows[0]["id"]))


def get(run_id: str) -> Plan[WorkflowRun]:
    """A run with its recorded steps."""
    rows = yield Op("workflow_run_get", {"run_id": run_id}, _rows, lenient=True)
    if not rows:
        raise WorkflowNotFoundError(f"no workflow run with id {run_id!r} (it may have been pruned)")
    steps = yield Op("workflow_step_list", {"run_id": run_id}, _rows, lenient=True)
    return WorkflowRun.from_row(rows[0], tuple(map(WorkflowStep.from_row, steps)))


def list_runs(
    *,
    state: str | None,
    workflow: str | None,
    limit: int,
    before: WorkflowRun | None = None,
) -> Op[list[WorkflowRun]]:
    """Runs newest first (without their steps)."""
    params: Mapping[str, Any] = {
        "state": state,
        "workflow": workflow,
        "limit": limit,
        "before_created": before.created_at if before else None,
        "before_id": before.id if before else None,
    }
    return Op(
        "workflow_run_list",
        params,
        lambda rows: [WorkflowRun.from_row(r) for r in rows],
        lenient=True,
    )


def cancel(run_id: str, now: datetime | None) -> Op[bool]:
    """Cancel an unfinished run and its job; False when it had already finished (or is not)."""
    return Op("workflow_run_cancel", {"run_id": run_id, "now": now}, found)


def retry(run_id: str, now: datetime | None) -> Op[int | None]:
    """Resume a failed run from its failed step with a new job; that job's id, or None when the
    run is not failed."""
    return Op(
        "workflow_run_retry",
        {"run_id": run_id, "now": now},
        lambda rows: int(rows[0]["job_id"]) if rows else None,
    )


def prune(
    *,
    completed_seconds: float,
    cancelled_seconds: float,
    failed_seconds: float,
    limit: int,
    now: datetime | None,
) -> Op[tuple[int, int]]:
    """Delete finished runs past retention and expired events; (runs, events) deleted."""
    params = {
        "completed_seconds": completed_seconds,
        "cancelled_seconds": cancelled_seconds,
        "failed_seconds": failed_seconds,
        "limit": limit,
        "now": now,
    }
    return Op("workflow_prune", params, lambda rows: (rows[0]["runs"], rows[0]["events"]))


def children(run_id: str, limit: int) -> Plan[WorkflowChildren]:
    """A run's fan-outs and their first `limit` children."""
    fanouts = yield Op("workflow_fanout_list", {"run_id": run_id}, Rows)
    kids = yield Op("workflow_child_list", {"run_id": run_id, "limit": limit}, Rows)
    return WorkflowChildren(
        fanouts=[FanOut(**row) for row in fanouts],
        children=[
            WorkflowChild(
                position=row["position"],
                index=row["idx"],
                job_id=row["job_id"],
                run_id=row["child_run_id"],
                state=row["state"],
                error=row["error"],
                finished_at=row["finished_at"],
            )
            for row in kids
        ],
    )
