"""Fan-out and fan-in: ctx.map (child jobs or child runs, results in input order),
ctx.run_workflow (one child run) and ctx.gather (steps run concurrently in one run).

A fan-out is one step of the run. Its first replay records the step (waiting), creates every
child in one statement (those past `concurrency` parked) and parks the run, holding no worker
slot. The database counts the children down as their jobs end (migration 0012's trigger, in
each ending job's transaction): it lets the next parked child go, and when the last one ends it
marks the step finished and wakes the run's job, once. The replay that follows reads the
children's outcomes from conveyor.workflow_children: a fan-out's results are not copied into
the step's record, so 10,000 results are not bound by the step result limit.

Mixed into WorkflowContext (context.py), whose positions, scripts and drivers it uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from conveyor import codec
from conveyor._store import fanout
from conveyor._store import workflows as ops
from conveyor._store.workflows import Fence, StepWrite
from conveyor.errors import ChildFailed, WorkflowError
from conveyor.job import Job
from conveyor.task import Enqueuer, Task
from conveyor.workflow.driver import InTransaction, Lost, Parked, Script, Unavailable
from conveyor.workflow.types import ChildError, WorkflowStep

#: Children one ctx.map call may start.
MAX_CHILDREN = 10_000

OnFailure = Literal["fail", "return"]


class FanOutCalls:
    """ctx.map, ctx.run_workflow and ctx.gather (see the module's docstring)."""

    run_id: str
    job: Job
    _fence: Fence
    _steps: dict[int, WorkflowStep]
    _is_async: bool
    #: Inside ctx.gather: the wake times (and run states) of the calls that must park the run
    #: once every call of the gather has settled; None outside a gather.
    _deferred: list[tuple[datetime, str]] | None = None

    def _take(self, name: str, kind: str) -> int:
        raise NotImplementedError

    def _run(self, script: Script[Any]) -> Any:
        raise NotImplementedError

    def _log(
        self,
        position: int,
        name: str,
        outcome: str,
        attempt: int,
        started: float,
        error: dict[str, Any] | None = None,
    ) -> None:
        raise NotImplementedError

    # -- the public calls ---------------------------------------------------------------------

    def map(
        self,
        target: Any,
        items: Iterable[Mapping[str, Any]],
        /,
        *,
        concurrency: int | None = None,
        on_failure: OnFailure = "fail",
        name: str | None = None,
    ) -> Any:
        """Run one child per item (a dict of keyword arguments) and return their results in
        the order of `items`, once every child has finished; the run is parked meanwhile.

        `target` is a task of the app (or `task.with_options(...)`) or a workflow (each child
        a child run). At most `concurrency` children run at once (default: all). A child that
        failed for good or was cancelled: with `on_failure="fail"` ChildFailed is raised here
        (naming the first such child by index, with its error); with `"return"` its place in
        the list holds a `ChildError` (index, job_id, run_id, state, error).
        """
        if on_failure not in ("fail", "return"):
            raise WorkflowError(f"on_failure must be 'fail' or 'return', got {on_failure!r}")
        if concurrency is not None and concurrency < 1:
            raise WorkflowError(f"concurrency must be >= 1 (or None), got {concurrency}")
        children = [_keywords(item) for item in items]
        if len(children) > MAX_CHILDREN:
            raise WorkflowError(
                f"ctx.map: {len(children):,} children, over the limit of {MAX_CHILDREN:,} per"
                " call; split the items over several calls or child workflows"
            )
        step_name = name or f"map:{_target_name(target)}"
        position = self._take(step_name, "map")
        limit = concurrency or max(len(children), 1)
        script = self._fan_out(position, step_name, "map", target, children, limit, on_failure)
        return self._run(_first_or_all(script, single=False))

    def run_workflow(self, workflow: Any, /, **args: Any) -> Any:
        """Start a child run of `workflow` with `args` and return its result once it has
        completed (the run is parked meanwhile); ChildFailed when it failed or was cancelled.
        Cancelling this run cancels the child run too."""
        if getattr(workflow, "task", None) is None or not hasattr(workflow, "fn"):
            raise WorkflowError(f"ctx.run_workflow takes a workflow, got {workflow!r}")
        position = self._take(workflow.name, "child")
        script = self._fan_out(position, workflow.name, "child", workflow, [args], 1, "fail")
        return self._run(_first_or_all(script, single=True))

    def gather(self, *calls: Any) -> Any:
        """Run steps concurrently: `await ctx.gather(ctx.step("a", fa), ctx.step("b", fb))`
        returns their results in order. Each call took its position when it was made, so the
        replay finds them in the same places whatever order they finished in. A step that
        must wait (a retry's backoff, a sleep) parks the run only once all the others have
        settled and recorded. Takes ctx.step and ctx.sleep calls (not waits or fan-outs).
        In a sync workflow each call already ran when it was made: gather returns the list."""
        if not self._is_async:
            return list(calls)
        return self._gather(calls)

    # -- the scripts --------------------------------------------------------------------------

    def _fan_out(
        self,
        position: int,
        name: str,
        kind: str,
        target: Any,
        items: list[dict[str, Any]],
        concurrency: int,
        on_failure: OnFailure,
    ) -> Script[list[Any]]:
        recorded = self._steps.get(position)
        started = time.monotonic()
        if recorded is None:
            if self._deferred is not None:
                raise WorkflowError(f"{name!r}: a fan-out cannot run inside ctx.gather")
            if not items:
                empty = StepWrite(
                    self.run_id,
                    position,
                    name,
                    kind,
                    "completed",
                    attempts=1,
                    result_json='{"total":0,"failed":0}',
                )
                if (yield InTransaction(lambda conn: ops.record(empty, self._fence))) is None:
                    raise Lost("the fan-out was refused: the worker lost the run's job")
                return []
            fan = self._plan(position, name, kind, target, items, concurrency, on_failure)
            if not (yield InTransaction(lambda conn: fanout.start(fan, self._fence))):
                raise Lost("the fan-out was refused: the worker lost the run's job")
            self._log(position, name, "waiting", 1, started)
            raise Parked(f"waiting for {len(items)} children of {name!r}")
        state, error = recorded.state, recorded.error
        if state == "waiting":
            now = yield InTransaction(
                lambda conn: fanout.park_unless_done(self.run_id, position, self._fence)
            )
            if now is None:
                raise Lost("parking the run was refused: the worker lost the run's job")
            state, error = now
            if state == "waiting":
                raise Parked(f"children of {name!r} are not all finished")
            self._log(position, name, state, 1, started, error)
        if state == "failed":
            raise _child_failed(name, error)
        kids = yield InTransaction(lambda conn: fanout.children(self.run_id, position))
        return _outcome(name, kids, on_failure)

    def _plan(
        self,
        position: int,
        name: str,
        kind: str,
        target: Any,
        items: list[dict[str, Any]],
        concurrency: int,
        on_failure: OnFailure,
    ) -> fanout.FanOut:
        if isinstance(target, Task) and target.workflow is not None:
            target = target.workflow  # the workflow's own task: start child runs
        if isinstance(target, Task | Enqueuer):
            specs = [target.spec(**item) for item in items]
            first = specs[0]
            return fanout.FanOut(
                self.run_id,
                position,
                name,
                kind,
                first.task,
                False,
                "[" + ",".join(s.args_json for s in specs) + "]",
                concurrency,
                on_failure,
                first.queue or "default",
                first.priority or 0,
                first.max_attempts,
                first.timeout_seconds,
                self.job.correlation_id,
            )
        task = getattr(target, "task", None)
        if not isinstance(task, Task) or not hasattr(target, "_check_arguments"):
            raise WorkflowError(f"ctx.map takes a task or a workflow of the app, got {target!r}")
        for item in items:
            target._check_arguments(item)
        max_bytes = task.app.max_payload_bytes
        encoded = [codec.encode_args(item, max_bytes=max_bytes) for item in items]
        return fanout.FanOut(
            self.run_id,
            position,
            name,
            kind,
            task.name,
            True,
            "[" + ",".join(encoded) + "]",
            concurrency,
            on_failure,
            task.queue or "default",
            task.priority or 0,
            task.max_attempts,
            task.timeout,
            self.job.correlation_id,
        )

    def _park(self, write: StepWrite, state: str, what: str) -> Script[None]:
        """Record a step that waits for a time (a sleep, a retry's backoff) and park the run
        until then. Inside ctx.gather, only record it: the gather parks the run once its other
        calls have settled (parking now would refuse their records)."""
        if self._deferred is None:
            parked = yield InTransaction(
                lambda conn: ops.record_and_park(write, self._fence, state=state)
            )
            if not parked:
                raise Lost(f"{what} was refused: the worker lost the run's job")
            return
        recorded = yield InTransaction(lambda conn: ops.record(write, self._fence))
        if recorded is None or recorded[0] is None:
            raise Lost(f"{what} was refused: the worker lost the run's job")
        self._deferred.append((recorded[0], state))

    async def _gather(self, calls: tuple[Awaitable[Any], ...]) -> list[Any]:
        if self._deferred is not None:
            raise WorkflowError("ctx.gather cannot be nested in another ctx.gather")
        self._deferred = []
        try:
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            wakes, self._deferred = self._deferred, None
        for signal in (Unavailable, Lost):
            for outcome in outcomes:
                if isinstance(outcome, signal):
                    raise outcome
        if wakes:
            wake_at, state = min(wakes)
            parked = await self._run(_park_at(self.run_id, self._fence, wake_at, state))
            if not parked:
                raise Lost("parking the run was refused: the worker lost the run's job")
            raise Parked(f"a step of ctx.gather waits until {wake_at.isoformat()}")
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(outcomes)


def _park_at(run_id: str, fence: Fence, wake_at: datetime, state: str) -> Script[bool]:
    parked = yield InTransaction(lambda conn: ops.park(run_id, fence, state=state, wake_at=wake_at))
    return bool(parked)


def _first_or_all(script: Script[list[Any]], *, single: bool) -> Script[Any]:
    results = yield from script
    return results[0] if single else results


def _child_failed(name: str, error: dict[str, Any] | None) -> WorkflowError:
    """The failure the database recorded for the step: its first failed child (by index) when
    the step ended, so every replay raises the same."""
    child = (error or {}).get("child")
    if not isinstance(child, dict):
        return WorkflowError(f"{name!r} failed: {(error or {}).get('message')}")
    return ChildFailed(
        name,
        int(child["index"]),
        int(child["job_id"]),
        child.get("run_id"),
        str(child["state"]),
        child.get("error") or {"type": "Cancelled", "message": "the child was cancelled"},
    )


def _outcome(name: str, kids: list[fanout.Child], on_failure: OnFailure) -> list[Any]:
    results: list[Any] = []
    for kid in kids:
        if kid.state == "completed":
            results.append(kid.result)
            continue
        if kid.state == "pending":
            raise WorkflowError(f"{name!r}: child {kid.idx} has not finished (the run ended?)")
        error = kid.error or {"type": "Cancelled", "message": "the child was cancelled"}
        if on_failure == "fail":
            raise ChildFailed(name, kid.idx, kid.job_id, kid.child_run_id, kid.state, error)
        results.append(ChildError(kid.idx, kid.job_id, kid.child_run_id, kid.state, error))
    return results


def _keywords(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise WorkflowError(
            "each item of ctx.map is a dict of one child's keyword arguments"
            f" ({{'store': 7}}), got {type(item).__name__}"
        )
    return dict(item)


def _target_name(target: Any) -> str:
    task = getattr(target, "task", None)
    name = getattr(task, "name", None) or getattr(target, "name", None)
    if not isinstance(name, str):
        raise WorkflowError(f"ctx.map takes a task or a workflow of the app, got {target!r}")
    return name
