"""WorkflowEngine: runs one attempt of a workflow run's job: replay, then record how it ended.

The executor hands it every job whose task is a workflow. It loads the run and its recorded
steps, calls the workflow function from the top with a WorkflowContext, and ends in one of:
the run completed or failed (recorded here; the completer then ends the job as for any task),
parked (the context already put the job back in the database until a time or an event), or
lost (the worker no longer holds the job: nothing more is written).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from uuid import UUID

from conveyor import codec
from conveyor._store import workflows as ops
from conveyor._store.workflows import Begun, Fence
from conveyor.errors import JobTimeout, NonDeterminismError, PayloadError, WorkflowError
from conveyor.job import Job
from conveyor.workflow.context import WorkflowContext
from conveyor.workflow.driver import (
    Database,
    InTransaction,
    Invoke,
    Lost,
    Parked,
    Script,
    Unavailable,
    adrive,
    drive,
)
from conveyor.workflow.records import describe

if TYPE_CHECKING:
    from conveyor.workflow.definition import Workflow


class WorkflowMetrics(Protocol):
    """What the engine counts (the worker's metrics)."""

    def workflow_run(self, workflow: str, event: str) -> None: ...

    def workflow_step(self, workflow: str, outcome: str) -> None: ...


@dataclass(frozen=True)
class Ended:
    """How one attempt of a run's job ended."""

    kind: Literal["completed", "failed", "parked", "lost"]
    result_json: str | None = None
    error: dict[str, Any] | None = None
    reason: str = ""


class WorkflowEngine:
    """Replays runs for the executor; never raises for what the workflow does (its errors fail
    the run), only for what the database does (then the job's own retry policy applies)."""

    def __init__(
        self,
        db: Database,
        *,
        rng: random.Random | None = None,
        metrics: WorkflowMetrics | None = None,
    ) -> None:
        self._db = db
        self._rng = rng or random.Random()
        self._metrics = metrics

    async def arun(self, workflow: Workflow, job: Job, token: UUID) -> Ended:
        """One attempt of an async workflow's job, on the event loop."""
        try:
            return await adrive(self._attempt(workflow, job, token, is_async=True), self._db)
        except Unavailable as trouble:
            raise trouble.cause from None

    def run(self, workflow: Workflow, job: Job, token: UUID) -> Ended:
        """One attempt of a sync workflow's job, in the worker's thread."""
        try:
            return drive(self._attempt(workflow, job, token, is_async=False), self._db)
        except Unavailable as trouble:
            raise trouble.cause from None

    def _attempt(
        self, workflow: Workflow, job: Job, token: UUID, *, is_async: bool
    ) -> Script[Ended]:
        run_id = job.args.get("run_id")
        if not isinstance(run_id, str):
            return _failed(f"job {job.id} of workflow {workflow.name!r} has no run_id argument")
        fence = Fence(job.id, token, workflow.app.clock.now())
        begun = yield InTransaction(lambda conn: ops.begin(run_id, fence))
        if begun is None:
            return _failed(f"no workflow run {run_id!r} (deleted or pruned)")
        if begun is False:
            return Ended("lost", reason="the run's job was taken over or cancelled")
        ended = _already_ended(begun)
        if ended is not None:
            return ended
        if begun.workflow != workflow.name:
            return _failed(f"run {run_id!r} belongs to workflow {begun.workflow!r}")
        if begun.first:
            self._count_run(workflow.name, "started")
        ctx = self._context(workflow, job, fence, begun, is_async)
        try:
            value = yield Invoke(workflow.fn, (ctx,), begun.args)
        except Parked as parked:
            return Ended("parked", reason=str(parked))
        except Lost as lost:
            return Ended("lost", reason=str(lost))
        except JobTimeout:
            raise  # the job's own timeout: its retry policy decides, the run goes on
        except Exception as exc:  # noqa: BLE001 - the workflow's own failure ends the run
            error = describe(ctx.broken or exc, job.attempt)
            return (yield from self._finish(workflow, run_id, fence, "failed", None, error))
        problem = ctx.broken or _unvisited(ctx, begun)
        if problem is not None:
            error = describe(problem, job.attempt)
            return (yield from self._finish(workflow, run_id, fence, "failed", None, error))
        try:
            result_json = _encode(value, workflow.max_result_bytes)
        except PayloadError as exc:
            error = describe(exc, job.attempt)
            return (yield from self._finish(workflow, run_id, fence, "failed", None, error))
        return (yield from self._finish(workflow, run_id, fence, "completed", result_json, None))

    def _finish(
        self,
        workflow: Workflow,
        run_id: str,
        fence: Fence,
        state: Literal["completed", "failed"],
        result_json: str | None,
        error: dict[str, Any] | None,
    ) -> Script[Ended]:
        error_json = None if error is None else codec.encode_result(error)
        finished = yield InTransaction(
            lambda conn: ops.finish(
                run_id, fence, state=state, result_json=result_json, error_json=error_json
            )
        )
        if not finished:
            return Ended("lost", reason="the run was cancelled or its job taken over")
        self._count_run(workflow.name, state)
        return Ended(state, result_json=result_json, error=error)

    def _context(
        self, workflow: Workflow, job: Job, fence: Fence, begun: Begun, is_async: bool
    ) -> WorkflowContext:
        metrics = self._metrics
        return WorkflowContext(
            run_id=begun.id,
            workflow=workflow.name,
            job=job,
            fence=fence,
            steps=begun.steps,
            now=begun.now,
            db=self._db,
            is_async=is_async,
            max_steps=workflow.max_steps,
            max_result_bytes=workflow.max_result_bytes,
            rng=self._rng,
            on_step=None
            if metrics is None
            else (lambda outcome: metrics.workflow_step(workflow.name, outcome)),
        )

    def _count_run(self, workflow: str, event: str) -> None:
        if self._metrics is not None:
            self._metrics.workflow_run(workflow, event)


def _already_ended(begun: Begun) -> Ended | None:
    """A run that ended before this attempt (its job was rescued after the run's end was
    recorded, say) ends its job the same way again."""
    if begun.state == "completed":
        result = None if begun.result is None else codec.encode_result(begun.result)
        return Ended("completed", result_json=result)
    if begun.state in ("failed", "cancelled"):
        error = begun.error or {"type": "WorkflowError", "message": f"the run is {begun.state}"}
        return Ended("failed", error=error)
    return None


def _unvisited(ctx: WorkflowContext, begun: Begun) -> WorkflowError | None:
    """The function returned before reaching steps the run recorded: the code changed."""
    left = sorted(p for p in begun.steps if p >= ctx.positions_used)
    if not left:
        return None
    step = begun.steps[left[0]]
    return NonDeterminismError(
        f"workflow {begun.workflow!r} run {begun.id!r}: the code returned after"
        f" {ctx.positions_used} step(s) but the run recorded {step.kind} {step.name!r} at"
        f" position {step.position}; the code changed under a run in flight (guard the change"
        " with ctx.patched())"
    )


def _encode(value: Any, max_bytes: int) -> str | None:
    encoded = codec.encode_result(value)
    size = 0 if encoded is None else len(encoded.encode())
    if size > max_bytes:
        raise PayloadError(
            f"the workflow's result is {size:,} bytes, over the {max_bytes:,}-byte limit; store"
            " it elsewhere (a table, object storage) and return its id"
        )
    return encoded


def _failed(message: str) -> Ended:
    return Ended("failed", error={"type": "WorkflowError", "message": message, "attempt": 0})
