"""Workflow: what @app.workflow returns, and how runs start and events are sent.

A workflow is registered as a task of the same name (its driving job's task), so a worker of
the app claims its runs' jobs with the queue's controls; the task's `workflow` attribute tells
the executor to hand them to the engine. Starting a run and sending an event go through the
SQL functions `conveyor.start_workflow` and `conveyor.send_event`, the same ones every other
language calls, so there is one implementation of each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from conveyor import codec
from conveyor._store import workflows as ops
from conveyor._store.ops import Op
from conveyor._store.runner import arun, run
from conveyor.errors import ConfigError, PayloadError
from conveyor.retry import RetryPolicy
from conveyor.task import Task, _keyword_parameters
from conveyor.workflow.context import DEFAULT_MAX_STEPS
from conveyor.workflow.records import check_event_key

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.clock import Clock
    from conveyor.connections import Connections

#: Largest event payload (conveyor.send_event refuses more too).
MAX_EVENT_PAYLOAD_BYTES = 64 * 1024


class Workflow:
    """A durable workflow registered with @app.workflow. `start(**args)` starts a run; a worker
    of the app runs it, step by step, resuming after sleeps, events, crashes and deploys."""

    def __init__(
        self,
        app: Conveyor,
        fn: Callable[..., Any],
        *,
        name: str | None,
        queue: str,
        max_attempts: int,
        priority: int,
        timeout: float | timedelta | None,
        backoff: RetryPolicy | float | timedelta | None,
        max_steps: int,
        max_result_bytes: int | None,
    ) -> None:
        if max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise ConfigError(
                f"workflow {name or fn.__qualname__!r}: its first parameter receives the"
                " WorkflowContext (def checkout(ctx: conveyor.WorkflowContext, order_id: int))"
            )
        self.app = app
        self.fn = fn
        self.max_steps = max_steps
        self.max_result_bytes = max_result_bytes or app.max_payload_bytes
        # the driving job's task: queue, attempts (of the job, on crashes and database errors),
        # timeout (of one replay) and backoff are the task's
        self.task: Task[Any] = Task(
            app,
            fn,
            name=name,
            queue=queue,
            max_attempts=max_attempts,
            priority=priority,
            timeout=timeout,
            backoff=backoff,
            atomic=False,
            fail_on=(),
        )
        self.task.workflow = self
        self.name = self.task.name
        self.queue = queue
        self.is_async = self.task.is_async
        signature = inspect.signature(fn).replace(parameters=params[1:])
        self._accepted, self._required, self._any_keyword = _keyword_parameters(signature, None)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)

    def __repr__(self) -> str:
        return f"<Workflow {self.name} queue={self.queue}>"

    def start(self, *, run_id: str | None = None, **args: Any) -> str:
        """Start a run on the app's own connection (committed when this returns); return its
        id. A `run_id` already used returns that run's id and starts no second run."""
        with self.app._connections.connection() as conn:
            return run(conn, self._start_op(args, run_id))

    def start_tx(self, conn: Any, /, *, run_id: str | None = None, **args: Any) -> str:
        """Start a run inside the caller's open transaction (psycopg, SQLAlchemy or Django):
        invisible until commit, and gone if it rolls back."""
        return run(conn, self._start_op(args, run_id))

    async def astart(self, *, run_id: str | None = None, **args: Any) -> str:
        """Async twin of start()."""
        async with self.app._connections.aconnection() as conn:
            return await arun(conn, self._start_op(args, run_id))

    async def astart_tx(self, conn: Any, /, *, run_id: str | None = None, **args: Any) -> str:
        """Async twin of start_tx()."""
        return await arun(conn, self._start_op(args, run_id))

    def _start_op(self, args: dict[str, Any], run_id: str | None) -> Op[str]:
        self._check_arguments(args)
        if run_id is not None:
            codec.check_key(run_id, "run_id")
            if not run_id or len(run_id.encode()) > 200:
                raise PayloadError("run_id must be 1 to 200 bytes; pass a hash of a longer id")
        args_json = codec.encode_args(args, max_bytes=self.app.max_payload_bytes)
        return ops.start(self.name, args_json, run_id, self.queue, self.task.priority)

    def _check_arguments(self, args: Mapping[str, Any]) -> None:
        unknown = set() if self._any_keyword else args.keys() - self._accepted
        missing = self._required - args.keys()
        if unknown or missing:
            problems = [f"unexpected argument(s) {', '.join(sorted(unknown))}"] if unknown else []
            if missing:
                problems.append(f"missing argument(s) {', '.join(sorted(missing))}")
            params = ", ".join(sorted(self._accepted)) or "none"
            raise PayloadError(
                f"workflow {self.name!r}: {'; '.join(problems)} (its parameters: {params})"
            )


class WorkflowMethods:
    """The app's workflow methods (mixed into Conveyor): @app.workflow and send_event."""

    tasks: dict[str, Task[Any]]
    clock: Clock
    max_payload_bytes: int
    _connections: Connections

    @overload
    def workflow(self, fn: Callable[..., Any], /) -> Workflow: ...

    @overload
    def workflow(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 5,
        priority: int = 0,
        timeout: float | timedelta | None = None,
        backoff: RetryPolicy | float | timedelta | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_result_bytes: int | None = None,
    ) -> Callable[[Callable[..., Any]], Workflow]: ...

    def workflow(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 5,
        priority: int = 0,
        timeout: float | timedelta | None = None,
        backoff: RetryPolicy | float | timedelta | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        max_result_bytes: int | None = None,
    ) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
        """Register a durable workflow (async def or def; its first parameter receives the
        WorkflowContext); use as @app.workflow or @app.workflow(name=..., queue=...).

        The options are @app.task's, for the job that drives each run: `max_attempts` counts
        its attempts lost to crashes or database errors (sleeps and waits do not count),
        `timeout` bounds one replay. `max_steps` (default 10,000) bounds the steps of one run,
        `max_result_bytes` (default the app's max_payload_bytes) each step's result and the
        run's. See docs/workflows.md.
        """
        app: Conveyor = self  # type: ignore[assignment]

        def register(func: Callable[..., Any]) -> Workflow:
            declared = Workflow(
                app,
                func,
                name=name,
                queue=queue,
                max_attempts=max_attempts,
                priority=priority,
                timeout=timeout,
                backoff=backoff,
                max_steps=max_steps,
                max_result_bytes=max_result_bytes,
            )
            existing = self.tasks.get(declared.name)
            if existing is not None and existing.fn is not func:
                raise ConfigError(f"a task or workflow named {declared.name!r} is registered")
            self.tasks[declared.name] = declared.task
            return declared

        return register(fn) if fn is not None else register

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The registered workflows by name."""
        return {n: t.workflow for n, t in self.tasks.items() if t.workflow is not None}

    def send_event(self, name: str, *, key: str = "", payload: Any = None) -> int:
        """Send an event (committed when this returns); return its id. The oldest run waiting
        for (name, key) takes it and wakes; with none waiting it is kept for the first run
        that waits (for 7 days by default)."""
        with self._connections.connection() as conn:
            return run(conn, _send_op(name, key, payload))

    def send_event_tx(self, conn: Any, /, name: str, *, key: str = "", payload: Any = None) -> int:
        """send_event() inside the caller's open transaction: nothing is sent if it rolls
        back."""
        return run(conn, _send_op(name, key, payload))

    async def asend_event(self, name: str, *, key: str = "", payload: Any = None) -> int:
        """Async twin of send_event()."""
        async with self._connections.aconnection() as conn:
            return await arun(conn, _send_op(name, key, payload))

    async def asend_event_tx(
        self, conn: Any, /, name: str, *, key: str = "", payload: Any = None
    ) -> int:
        """Async twin of send_event_tx()."""
        return await arun(conn, _send_op(name, key, payload))


def _send_op(name: str, key: str, payload: Any) -> Op[int]:
    if not isinstance(name, str) or not name:
        raise ConfigError("an event needs a name (a non-empty string)")
    codec.check_key(name, "the event name")
    check_event_key(key)
    encoded = codec.encode_result({} if payload is None else payload) or "{}"
    size = len(encoded.encode())
    if size > MAX_EVENT_PAYLOAD_BYTES:
        raise PayloadError(
            f"the event's payload is {size:,} bytes, over the {MAX_EVENT_PAYLOAD_BYTES:,}-byte"
            " limit; store the data elsewhere and send its id"
        )
    return ops.send_event(name, key, encoded)
