"""WorkflowContext: what a workflow function receives, and the rules of a durable step.

Every call takes the next position of the run. If that position is recorded, the recorded
outcome is returned without running anything (after checking that the code asked for the same
step: the determinism guard); if not, the step runs and its outcome is recorded, fenced by the
job's lease. A sleep, an event wait or a step's backoff parks the run: its job goes back to the
database and the function stops (`driver.Parked`); when the job is due again, the function runs
from the top and the recorded steps replay.

In an async workflow each call returns an awaitable; in a sync one it returns the value. Both
are one script (driver.py), so the two cannot drift apart.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from conveyor import codec, logs
from conveyor._store import workflows as ops
from conveyor._store.ops import Call
from conveyor._store.workflows import Fence, StepWrite
from conveyor.durations import check_run_at, to_seconds
from conveyor.errors import (
    EventTimeout,
    JobTimeout,
    NonDeterminismError,
    PayloadError,
    StepFailed,
    WorkflowError,
)
from conveyor.job import Job
from conveyor.retry import RetryPolicy, as_policy
from conveyor.workflow.driver import Database, InTransaction, Invoke, Lost, Parked, Script
from conveyor.workflow.driver import adrive as _adrive
from conveyor.workflow.driver import drive as _drive
from conveyor.workflow.records import check_event_key, describe
from conveyor.workflow.types import WorkflowStep

log = logging.getLogger("conveyor.workflow")

#: Steps one run may take (ctx.step, sleeps, waits, patch markers) unless the workflow says.
DEFAULT_MAX_STEPS = 10_000
#: A step's default attempts and backoff.
DEFAULT_STEP_ATTEMPTS = 3


class WorkflowContext:
    """Handed to a workflow function as its first argument: durable steps, sleeps and event
    waits. In an `async def` workflow await each call; in a plain `def` one call it as is.

    Everything a workflow does that must not repeat (payments, e-mails, writes) goes into a
    `step`; the code between steps runs again on every resume, so it must take the same path
    given the same step results (no clocks, no random numbers outside steps).
    """

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        job: Job,
        fence: Fence,
        steps: dict[int, WorkflowStep],
        now: datetime,
        db: Database,
        is_async: bool,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_result_bytes: int = codec.DEFAULT_MAX_PAYLOAD_BYTES,
        rng: random.Random | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.job = job
        self._fence = fence
        self._steps = steps
        self._now = now
        self._db = db
        self._is_async = is_async
        self._max_steps = max_steps
        self._max_result_bytes = max_result_bytes
        self._rng = rng or random.Random()
        self._on_step = on_step
        self._position = 0
        #: Set when the run cannot go on (determinism, limits): it fails even if caught.
        self.broken: WorkflowError | None = None
        self.logger = logging.LoggerAdapter(log, {**logs.job_fields(job), "run_id": run_id})

    @property
    def positions_used(self) -> int:
        """How many positions the code has taken so far."""
        return self._position

    # -- the public calls ---------------------------------------------------------------------

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        max_attempts: int = DEFAULT_STEP_ATTEMPTS,
        backoff: RetryPolicy | float | timedelta | None = None,
        atomic: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once for this run and return its JSON result; on a resume,
        return the recorded result without running it.

        A failed attempt is retried after `backoff` (a RetryPolicy or a base delay) up to
        `max_attempts`, the run parked meanwhile; after the last, StepFailed is raised here.
        With `atomic=True`, `fn` gets the connection of the transaction that records the step
        as its first argument: its writes and the record commit together, exactly once.
        (`max_attempts`, `backoff` and `atomic` are this call's options, not `fn`'s.)
        """
        if max_attempts < 1:
            raise WorkflowError(f"step {name!r}: max_attempts must be >= 1, got {max_attempts}")
        policy = as_policy(backoff)
        if not self._is_async and inspect.iscoroutinefunction(fn):
            raise WorkflowError(
                f"step {name!r}: an async function in a sync workflow; make the workflow"
                " `async def`, or the step a plain function"
            )
        if atomic and inspect.iscoroutinefunction(fn) != self._is_async:
            kind = "an async" if self._is_async else "a sync"
            raise WorkflowError(
                f"atomic step {name!r}: in {kind} workflow the step function must be {kind} one"
                " too (it gets the transaction's connection of that kind)"
            )
        position = self._take(name, "step")
        script = self._step(position, name, fn, args, kwargs, max_attempts, policy, atomic)
        return self._run(script)

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> Any:
        """Sleep for `duration` (seconds or a timedelta), holding no worker and no connection:
        the run is parked and resumed by the scheduler when it is due."""
        seconds = to_seconds(duration, "sleep duration")
        position = self._take(name, "sleep")
        return self._run(self._sleep(position, name, seconds, None))

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> Any:
        """Sleep until `when` (a timezone-aware datetime), like sleep()."""
        check_run_at(when)
        position = self._take(name, "sleep")
        return self._run(self._sleep(position, name, None, when))

    def wait_for_event(
        self,
        name: str,
        *,
        key: str = "",
        timeout: float | timedelta | None = None,
        raise_on_timeout: bool = False,
    ) -> Any:
        """Wait for the event `name` with `key` (app.send_event, conveyor.send_event in SQL)
        and return its payload; None when `timeout` passes first (EventTimeout with
        `raise_on_timeout`). An event sent before the wait began counts: the oldest one not
        consumed yet is taken. No timeout waits for as long as it takes."""
        seconds = None if timeout is None else to_seconds(timeout, "timeout")
        check_event_key(key)
        position = self._take(name, "wait")
        return self._run(self._wait(position, name, key, seconds, raise_on_timeout))

    def patched(self, name: str) -> Any:
        """True where the run takes the code path of change `name`: a run that started before
        the change and already recorded a step here says False (and replays its old path);
        every other run records the marker and says True. See docs/workflows.md."""
        self._check_usable()
        recorded = self._steps.get(self._position)
        if recorded is not None and not (recorded.kind == "patch" and recorded.name == name):
            return self._run(_value(False))
        position = self._take(name, "patch")
        if recorded is not None:
            return self._run(_value(True))
        write = StepWrite(self.run_id, position, name, "patch", "completed", attempts=1)
        return self._run(self._record_marker(write))

    # -- the scripts --------------------------------------------------------------------------

    def _step(
        self,
        position: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        max_attempts: int,
        policy: RetryPolicy,
        atomic: bool,
    ) -> Script[Any]:
        recorded = self._steps.get(position)
        attempts = 0
        if recorded is not None:
            if recorded.state == "completed":
                return recorded.result
            if recorded.state == "failed":
                raise StepFailed(name, position, recorded.error or {})
            attempts = recorded.attempts
            if recorded.wake_at is not None and recorded.wake_at > self._now:
                yield from self._park_again(position, name, "step", recorded, "sleeping")
        attempt = attempts + 1
        write = StepWrite(self.run_id, position, name, "step", "completed", attempts=attempt)
        started = time.monotonic()
        failure: Exception | None = None
        encoded: str | None = None
        if atomic:
            call = Call(fn, args, kwargs)
            try:
                held, encoded = yield InTransaction(
                    lambda conn: ops.atomic_step(
                        write, self._fence, _with_conn(call, conn), self._encode
                    )
                )
            except ops.StepRaised as raised:  # the step's own failure; its writes rolled back
                failure = raised.cause
            else:
                if not held:
                    raise Lost("the worker lost the run's job before an atomic step")
        else:
            try:
                encoded = self._encode((yield Invoke(fn, args, kwargs)))
            except Exception as exc:  # noqa: BLE001 - the step's own failure, recorded
                failure = exc
            else:
                done = _done(write, encoded)
                if (yield InTransaction(lambda conn: ops.record(done, self._fence))) is None:
                    raise Lost("the step's result was refused: the worker lost the run's job")
        if failure is not None:
            if isinstance(failure, JobTimeout):
                raise failure  # the replay's own timeout, not the step's failure
            permanent = isinstance(failure, PayloadError)
            error = describe(failure, attempt)
            return (yield from self._failed(write, error, max_attempts, policy, permanent, started))
        self._log(position, name, "completed", attempt, started)
        return None if encoded is None else codec.decode(encoded)

    def _failed(
        self,
        write: StepWrite,
        error: dict[str, Any],
        max_attempts: int,
        policy: RetryPolicy,
        permanent: bool,
        started: float,
    ) -> Script[Any]:
        error_json = codec.encode_result(error)
        if permanent or write.attempts >= max_attempts:
            failed = StepWrite(
                write.run_id,
                write.position,
                write.name,
                "step",
                "failed",
                attempts=write.attempts,
                error_json=error_json,
            )
            if (yield InTransaction(lambda conn: ops.record(failed, self._fence))) is None:
                raise Lost("the step's failure was refused: the worker lost the run's job")
            self._log(write.position, write.name, "failed", write.attempts, started, error)
            raise StepFailed(write.name, write.position, error)
        delay = policy.delay(write.attempts, self._rng).total_seconds()
        retrying = StepWrite(
            write.run_id,
            write.position,
            write.name,
            "step",
            "retrying",
            attempts=write.attempts,
            error_json=error_json,
            wake_seconds=delay,
        )
        if not (
            yield InTransaction(
                lambda conn: ops.record_and_park(retrying, self._fence, state="sleeping")
            )
        ):
            raise Lost("the step's retry was refused: the worker lost the run's job")
        self._log(write.position, write.name, "retrying", write.attempts, started, error)
        raise Parked(f"step {write.name!r} retries in {delay:.1f}s")

    def _sleep(
        self, position: int, name: str, seconds: float | None, when: datetime | None
    ) -> Script[None]:
        recorded = self._steps.get(position)
        if recorded is not None:
            if recorded.state == "completed":
                return None
            if recorded.wake_at is not None and recorded.wake_at > self._now:
                yield from self._park_again(position, name, "sleep", recorded, "sleeping")
            done = StepWrite(
                self.run_id, position, name, "sleep", "completed", wake_at=recorded.wake_at
            )
            if (yield InTransaction(lambda conn: ops.record(done, self._fence))) is None:
                raise Lost("the sleep's end was refused: the worker lost the run's job")
            self._log(position, name, "completed", 1, time.monotonic())
            return None
        write = StepWrite(
            self.run_id, position, name, "sleep", "sleeping", wake_seconds=seconds, wake_at=when
        )
        if not (
            yield InTransaction(
                lambda conn: ops.record_and_park(write, self._fence, state="sleeping")
            )
        ):
            raise Lost("the sleep was refused: the worker lost the run's job")
        self._log(position, name, "sleeping", 1, time.monotonic())
        raise Parked(f"sleeping ({name!r})")

    def _wait(
        self, position: int, name: str, key: str, seconds: float | None, raise_on_timeout: bool
    ) -> Script[Any]:
        recorded = self._steps.get(position)
        if recorded is not None and recorded.state == "completed":
            return self._event_outcome(recorded.result, name, key, raise_on_timeout)
        passed = recorded is not None and recorded.wake_at is not None
        passed = passed and recorded.wake_at <= self._now  # type: ignore[union-attr, operator]
        write = StepWrite(
            self.run_id,
            position,
            name,
            "wait",
            "waiting",
            wake_seconds=seconds if recorded is None else None,
            wake_at=None if recorded is None else recorded.wake_at,
        )
        started = time.monotonic()
        found = yield InTransaction(
            lambda conn: ops.wait(write, self._fence, event=name, key=key, deadline_passed=passed)
        )
        self._log(
            position, name, "waiting" if found.outcome == "parked" else found.outcome, 1, started
        )
        if found.outcome == "parked":
            raise Parked(f"waiting for event {name!r} key {key!r}")
        if found.outcome == "event":
            return found.payload
        return self._event_outcome({"timed_out": True}, name, key, raise_on_timeout)

    def _park_again(
        self, position: int, name: str, kind: str, recorded: WorkflowStep, state: str
    ) -> Script[None]:
        """Woken before its time (a retried job, say): park until the recorded time again."""
        again = StepWrite(
            self.run_id,
            position,
            name,
            kind,
            recorded.state,
            attempts=recorded.attempts,
            error_json=None if recorded.error is None else codec.encode_result(recorded.error),
            wake_at=recorded.wake_at,
        )
        if not (
            yield InTransaction(lambda conn: ops.record_and_park(again, self._fence, state=state))
        ):
            raise Lost("parking the run was refused: the worker lost the run's job")
        raise Parked(f"{kind} {name!r} is not due yet")

    def _record_marker(self, write: StepWrite) -> Script[bool]:
        if (yield InTransaction(lambda conn: ops.record(write, self._fence))) is None:
            raise Lost("the patch marker was refused: the worker lost the run's job")
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _run(self, script: Script[Any]) -> Any:
        return _adrive(script, self._db) if self._is_async else _drive(script, self._db)

    def _check_usable(self) -> None:
        if self.broken is not None:
            raise self.broken

    def _take(self, name: str, kind: str) -> int:
        """Take the next position, checking it against what the run recorded there."""
        self._check_usable()
        position = self._position
        if position >= self._max_steps:
            self.broken = WorkflowError(
                f"run {self.run_id!r} reached its limit of {self._max_steps:,} steps; raise"
                " max_steps= on @app.workflow, or split the work into child runs"
            )
            raise self.broken
        recorded = self._steps.get(position)
        if recorded is not None and (recorded.kind != kind or recorded.name != name):
            self.broken = NonDeterminismError(
                f"workflow {self.workflow!r} run {self.run_id!r}: at position {position} the"
                f" run recorded {recorded.kind} {recorded.name!r} but the code asked for {kind}"
                f" {name!r}; the code changed under a run in flight (guard the change with"
                " ctx.patched(), or let old runs finish on the old code)"
            )
            raise self.broken
        self._position += 1
        return position

    def _encode(self, value: Any) -> str | None:
        encoded = codec.encode_result(value)
        size = 0 if encoded is None else len(encoded.encode())
        if size > self._max_result_bytes:
            raise PayloadError(
                f"the step's result is {size:,} bytes, over the {self._max_result_bytes:,}-byte"
                " limit; store it elsewhere (a table, object storage) and return its id"
            )
        return encoded

    @staticmethod
    def _event_outcome(result: Any, name: str, key: str, raise_on_timeout: bool) -> Any:
        if isinstance(result, dict) and result.get("timed_out"):
            if raise_on_timeout:
                raise EventTimeout(f"no event {name!r} with key {key!r} came before the timeout")
            return None
        return result.get("payload") if isinstance(result, dict) else None

    def _log(
        self,
        position: int,
        name: str,
        outcome: str,
        attempt: int,
        started: float,
        error: dict[str, Any] | None = None,
    ) -> None:
        """The one log line of a step's outcome (JSON logs carry the fields as keys)."""
        if self._on_step is not None:
            self._on_step(outcome)
        level = logging.WARNING if error else logging.INFO
        if not log.isEnabledFor(level):
            return
        fields = {
            **logs.job_fields(self.job),
            "run_id": self.run_id,
            "workflow": self.workflow,
            "step": name,
            "position": position,
            "step_attempt": attempt,
            "outcome": outcome,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
            "error_type": None if error is None else error.get("type"),
        }
        message = "workflow %s run %s step %d %r: %s (attempt %d)"
        log.log(
            level,
            message,
            self.workflow,
            self.run_id,
            position,
            name,
            outcome,
            attempt,
            extra=fields,
        )


def _value(value: Any) -> Script[Any]:
    return value
    yield  # a script that yields nothing: a generator all the same


def _done(write: StepWrite, encoded: str | None) -> StepWrite:
    return StepWrite(
        write.run_id,
        write.position,
        write.name,
        write.kind,
        "completed",
        attempts=write.attempts,
        result_json=encoded,
    )


def _with_conn(call: Call, conn: Any) -> Call:
    return Call(call.fn, (conn, *call.args), call.kwargs)
