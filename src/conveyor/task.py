"""Task: a registered handler and the ways to enqueue a job for it."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_type_hints

from conveyor import codec, correlation
from conveyor._store.enqueue import insert_plan
from conveyor._store.runner import arun, run
from conveyor.durations import check_run_at, optional_seconds
from conveyor.errors import ConfigError, PayloadError
from conveyor.retry import RetryPolicy, as_policy
from conveyor.spec import JobSpec

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.workflow.definition import Workflow

R = TypeVar("R")


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-job options; None means the task's default."""

    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    delay: float | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    correlation_id: str | None = None

    def merged(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        correlation_id: str | None = None,
    ) -> EnqueueOptions:
        """These options with the given ones checked and laid over them (None: keep)."""
        if run_at is not None:
            check_run_at(run_at)
        if run_at is not None and delay is not None:
            raise ConfigError("give either delay or run_at, not both")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
        changes: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": optional_seconds(timeout, "timeout", positive=True),
            "delay": optional_seconds(delay, "delay"),
            "run_at": run_at,
            "unique_key": None if unique_key is None else codec.check_key(unique_key, "unique_key"),
            "correlation_id": correlation.validate(correlation_id),
        }
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Enqueuer(Generic[R]):
    """A task with per-job options fixed, returned by Task.with_options(). Frozen: it can be
    kept, shared between threads and reused; with_options() returns a new one."""

    task: Task[R]
    options: EnqueueOptions

    def with_options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Enqueuer[R]:
        """Return an enqueuer with these options laid over this one's."""
        options = self.options.merged(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            correlation_id=correlation_id,
        )
        return Enqueuer(self.task, options)

    def spec(self, **args: Any) -> JobSpec:
        """Validate arguments and return the job to insert (for app.enqueue_many)."""
        task = self.task
        task._check_arguments(args)
        o = self.options
        return JobSpec(
            task=task.name,
            args_json=codec.encode_args(args, max_bytes=task.app.max_payload_bytes),
            queue=o.queue or task.queue,
            priority=o.priority if o.priority is not None else task.priority,
            max_attempts=o.max_attempts or task.max_attempts,
            run_at=o.run_at,
            delay=o.delay,
            unique_key=o.unique_key,
            timeout_seconds=o.timeout or task.timeout,
            correlation_id=o.correlation_id or correlation.current_correlation_id(),
        )

    def enqueue(self, **args: Any) -> int:
        """Enqueue a job on the app's own connection; committed when this returns."""
        return self.task.app._enqueue_one(self.spec(**args))

    def enqueue_tx(self, conn: Any, /, **args: Any) -> int:
        """Enqueue inside the caller's open transaction (psycopg, SQLAlchemy or Django).

        The job is invisible to workers until the transaction commits, and gone if it rolls
        back.
        """
        plan = insert_plan(conn, [self.spec(**args)], self.task.app.clock.now())
        return run(conn, plan).ids[0]

    async def aenqueue(self, **args: Any) -> int:
        """Async twin of enqueue()."""
        return await self.task.app._aenqueue_one(self.spec(**args))

    async def aenqueue_tx(self, conn: Any, /, **args: Any) -> int:
        """Async twin of enqueue_tx(): psycopg AsyncConnection or SQLAlchemy AsyncSession."""
        plan = insert_plan(conn, [self.spec(**args)], self.task.app.clock.now())
        return (await arun(conn, plan)).ids[0]


class Task(Generic[R]):
    """A function registered with @app.task. Calling it runs it here and now; enqueue() runs it
    later in a worker."""

    def __init__(
        self,
        app: Conveyor,
        fn: Callable[..., R],
        *,
        name: str | None,
        queue: str,
        max_attempts: int,
        priority: int,
        timeout: float | timedelta | None,
        backoff: RetryPolicy | float | timedelta | None,
        atomic: bool,
        fail_on: tuple[type[BaseException], ...],
        options: EnqueueOptions | None = None,
        durable_enqueue: bool | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
        self.app = app
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = queue
        self.max_attempts = max_attempts
        self.priority = priority
        self.timeout = optional_seconds(timeout, "timeout", positive=True)
        self.retry_policy = as_policy(backoff)
        self.atomic = atomic
        self.fail_on = fail_on
        #: False: enqueues on the app's connections commit without waiting for the WAL flush;
        #: None: the app's durable_enqueue (docs/enqueue.md).
        self.durable_enqueue = durable_enqueue
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.context_param = _context_param(fn)
        self._accepted, self._required, self._any_keyword = _keyword_parameters(
            self.signature, self.context_param
        )
        #: Set when this task drives the runs of a workflow (@app.workflow).
        self.workflow: Workflow | None = None
        #: Every enqueue goes through an Enqueuer; the task's own has no per-job options.
        self._enqueuer = Enqueuer(self, options or EnqueueOptions())
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def with_options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Enqueuer[R]:
        """Return a frozen enqueuer of this task with per-job options (the task is unchanged).

        `task.with_options(queue="urgent", delay=30).enqueue(order_id=7)`; options not given
        keep the task's defaults. The enqueuer can be kept and reused, and refined with its
        own with_options().
        """
        return self._enqueuer.with_options(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            correlation_id=correlation_id,
        )

    def spec(self, **args: Any) -> JobSpec:
        """Validate arguments and return the job to insert (for app.enqueue_many)."""
        return self._enqueuer.spec(**args)

    def enqueue(self, **args: Any) -> int:
        """Enqueue a job on the app's own connection; committed when this returns."""
        return self._enqueuer.enqueue(**args)

    def enqueue_tx(self, conn: Any, /, **args: Any) -> int:
        """Enqueue inside the caller's open transaction (psycopg, SQLAlchemy or Django).

        The job is invisible to workers until the transaction commits, and gone if it rolls
        back.
        """
        return self._enqueuer.enqueue_tx(conn, **args)

    async def aenqueue(self, **args: Any) -> int:
        """Async twin of enqueue()."""
        return await self._enqueuer.aenqueue(**args)

    async def aenqueue_tx(self, conn: Any, /, **args: Any) -> int:
        """Async twin of enqueue_tx(): psycopg AsyncConnection or SQLAlchemy AsyncSession."""
        return await self._enqueuer.aenqueue_tx(conn, **args)

    def argument_error(self, args: dict[str, Any]) -> str | None:
        """Say why `args` cannot be passed to the handler, or None when they fit."""
        keys = args.keys()
        unknown = set() if self._any_keyword else keys - self._accepted
        missing = self._required - keys
        if not unknown and not missing:
            return None
        problems = []
        if unknown:
            problems.append(f"unexpected argument(s) {', '.join(sorted(unknown))}")
        if missing:
            problems.append(f"missing argument(s) {', '.join(sorted(missing))}")
        params = ", ".join(sorted(self._accepted)) or "none"
        return f"task {self.name!r}: {'; '.join(problems)} (its parameters: {params})"

    def _check_arguments(self, args: dict[str, Any]) -> None:
        problem = self.argument_error(args)
        if problem:
            raise PayloadError(problem)


def _keyword_parameters(
    signature: inspect.Signature, context_param: str | None
) -> tuple[frozenset[str], frozenset[str], bool]:
    accepted: set[str] = set()
    required: set[str] = set()
    any_keyword = False
    for param in signature.parameters.values():
        if param.name == context_param:
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            any_keyword = True
        elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
            if param.default is inspect.Parameter.empty:
                raise ConfigError(
                    f"parameter {param.name!r} is positional-only; job arguments are passed by"
                    " keyword, so make it a normal parameter"
                )
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            accepted.add(param.name)
            if param.default is inspect.Parameter.empty:
                required.add(param.name)
    return frozenset(accepted), frozenset(required), any_keyword


def _context_param(fn: Callable[..., Any]) -> str | None:
    from conveyor.context import JobContext

    try:
        hints = get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to raw ones
        hints = getattr(fn, "__annotations__", {})
    for name, hint in hints.items():
        if hint is JobContext or hint == "JobContext":
            return name
    return None
