"""Conveyor: the application object. Holds configuration and the task registry."""

from __future__ import annotations

import asyncio
import difflib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload
from weakref import WeakKeyDictionary

from conveyor._store import enqueue_own
from conveyor._store.enqueue import insert_plan
from conveyor._store.flow_insert import flow_plan
from conveyor._store.pooler import listen_url_from_env, pgbouncer_from_env
from conveyor._store.runner import arun, run
from conveyor.alerts import AlertSettings, Channel, LogChannel, Rule, add_channel, add_rule
from conveyor.clock import Clock, SystemClock
from conveyor.coalesce import AsyncCoalescer, Coalescer
from conveyor.codec import DEFAULT_MAX_PAYLOAD_BYTES
from conveyor.connections import Connections
from conveyor.cron import Schedule
from conveyor.durations import Duration
from conveyor.endpoints import DEFAULT_TIMEOUT, Endpoint, check_timeout
from conveyor.errors import ConfigError, UnknownTaskError
from conveyor.flow import Flow, OnChildFailure
from conveyor.migrate import Migration, Migrator
from conveyor.queues import QueueLimits, declared_settings
from conveyor.retry import RetryPolicy
from conveyor.schedules import ScheduleMethods
from conveyor.spec import JobSpec
from conveyor.task import Task
from conveyor.workflow.definition import WorkflowMethods

if TYPE_CHECKING:
    from conveyor.client import AsyncClient, Client

ENV_URL = "CONVEYOR_DATABASE_URL"
R = TypeVar("R")


@dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept before the pruner deletes them (each a timedelta or
    float seconds; read back as a timedelta)."""

    completed: Duration = Duration(timedelta(hours=24))
    cancelled: Duration = Duration(timedelta(hours=24))
    failed: Duration = Duration(timedelta(days=14))
    idempotency_keys: Duration = Duration(timedelta(days=7))
    #: Rows recording which cron slots were enqueued (each schedule's latest one is kept).
    cron_slots: Duration = Duration(timedelta(days=14))


class Conveyor(ScheduleMethods, WorkflowMethods):
    """A job queue on Postgres: declare tasks with @app.task (and durable workflows with
    @app.workflow), enqueue, run `conveyor worker`.

    With no `database_url` it reads CONVEYOR_DATABASE_URL; with neither it starts an embedded
    Postgres under ./.conveyor/ (the `embedded` extra) and migrates it on first use.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        retention: Retention | None = None,
        clock: Clock | None = None,
        embedded_dir: str | Path = ".conveyor",
        auto_migrate: bool | None = None,
        alert_settings: AlertSettings | None = None,
        durable_enqueue: bool = True,
        pgbouncer: bool | None = None,
        listen_url: str | None = None,
    ) -> None:
        if max_payload_bytes <= 0:
            raise ConfigError(f"max_payload_bytes must be positive, got {max_payload_bytes}")
        # CONVEYOR_DATABASE_URL is read on first use, so an app defined at import time picks
        # up settings made later (test fixtures, framework start-up).
        self._url = database_url or None
        # None: CONVEYOR_PGBOUNCER / CONVEYOR_LISTEN_URL, read on first use as the URL is
        self._pgbouncer = pgbouncer
        self._listen_url = listen_url or None
        self._embedded_dir = Path(embedded_dir)
        self._auto_migrate = auto_migrate
        self.max_payload_bytes = max_payload_bytes
        #: False: enqueue() and enqueue_many() on the app's connections commit without waiting
        #: for the WAL flush (synchronous_commit off for that transaction; docs/enqueue.md).
        self.durable_enqueue = durable_enqueue
        self.retention = retention or Retention()
        self.clock: Clock = clock or SystemClock()
        self.tasks: dict[str, Task[Any]] = {}
        #: Queue limits declared in code, written to the database when a worker starts.
        self.queue_settings: dict[str, dict[str, Any]] = {}
        #: HTTP endpoints declared in code, written by every worker at start.
        self.endpoints: dict[str, Endpoint] = {}
        self.schedules: dict[str, Schedule] = {}
        #: Alert rules by name, the channels alerts go to, and how the evaluator runs.
        self.alert_rules: dict[str, Rule] = {}
        self.alert_channels: dict[str, Channel] = {"log": LogChannel()}
        self.alert_settings = alert_settings or AlertSettings()
        self._lock = threading.RLock()
        self._migrated = False
        self._connections = Connections(lambda: self.database_url, lambda: self.pgbouncer)
        # concurrent task.enqueue() / aenqueue() calls share round trips (coalesce.py)
        self._coalescer = Coalescer(self._enqueue_line)
        self._acoalescers: WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncCoalescer] = (
            WeakKeyDictionary()
        )

    # -- configuration ------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The Postgres URL in use (starting the embedded server when none was given)."""
        with self._lock:
            if self._url is None:
                self._url = os.environ.get(ENV_URL) or None
            if self._url is None:
                from conveyor.embedded import embedded_url

                self._url = embedded_url(self._embedded_dir)
                if self._auto_migrate is None:
                    self._auto_migrate = True
            if self._auto_migrate and not self._migrated:
                Migrator(self._url).migrate()
                self._migrated = True
            return self._url

    @property
    def pgbouncer(self) -> bool:
        """The URL goes through PgBouncer in transaction mode: no server-side prepared
        statements; workers LISTEN only on `listen_url`, else poll. docs/deployment.md."""
        if self._pgbouncer is None:
            self._pgbouncer = pgbouncer_from_env()
        return self._pgbouncer

    @property
    def listen_url(self) -> str | None:
        """A direct URL (around the pooler) for the worker's LISTEN connection, if any."""
        if self._listen_url is None:
            self._listen_url = listen_url_from_env()
        return self._listen_url

    def set_pooler(self, *, pgbouncer: bool | None, listen_url: str | None) -> None:
        """Override the pooler settings (`conveyor worker --pgbouncer --listen-url`)."""
        if pgbouncer is not None:
            self._pgbouncer = pgbouncer
        if listen_url:
            self._listen_url = listen_url

    def set_default_database_url(self, url: str | None) -> None:
        """Use `url` unless the app was created with a URL of its own (the CLI's
        --database-url, which also reads CONVEYOR_DATABASE_URL)."""
        with self._lock:
            if url and self._url is None:
                self._url = url

    def migrate(self) -> list[Migration]:
        """Apply pending schema migrations; safe to call from many processes at once."""
        return Migrator(self.database_url).migrate()

    def queue(self, name: str, limits: QueueLimits | None = None, **settings: Any) -> None:
        """Declare a queue's limits in code: `app.queue("emails", QueueLimits(rate_limit=
        "100/minute"))`. Every worker of this app writes them to the database when it starts,
        so all workers share them. Limits left None here can still be set at run time.

        The keyword form, `app.queue(name, concurrency=4)`, is deprecated but still works.
        """
        self.queue_settings[name] = declared_settings(name, limits, settings)

    def endpoint(
        self,
        name: str,
        *,
        url: str,
        secret: str | tuple[str, ...],
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        queue: str = "default",
        retry_4xx: bool = False,
    ) -> Endpoint:
        """Declare an HTTP endpoint in code: jobs whose task is `name` are POSTed, signed, to
        `url` (docs/delivery.md). Like queues, every worker of this app writes the declaration
        to the database when it starts (replacing what `conveyor endpoint set` changed), and
        delivers the endpoint's jobs in the queues it serves. Give the secret as `env:NAME`
        to keep it out of the code and the database."""
        secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        declared = Endpoint(name, url, secrets, check_timeout(timeout), queue, retry_4xx)
        if name in self.tasks:
            raise ConfigError(f"{name!r} is a task of this app; an endpoint needs another name")
        self.endpoints[name] = declared
        return declared

    # -- tasks --------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task[Any]: ...

    @overload
    def task(
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
        atomic: bool = False,
        fail_on: Sequence[type[BaseException]] = (),
        durable_enqueue: bool | None = None,
    ) -> Callable[[Callable[..., Any]], Task[Any]]: ...

    def task(
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
        atomic: bool = False,
        fail_on: Sequence[type[BaseException]] = (),
        durable_enqueue: bool | None = None,
    ) -> Task[Any] | Callable[[Callable[..., Any]], Task[Any]]:
        """Register a sync or async function as a task; use as @app.task or @app.task(...)."""

        def register(func: Callable[..., Any]) -> Task[Any]:
            task: Task[Any] = Task(
                self,
                func,
                name=name,
                queue=queue,
                max_attempts=max_attempts,
                priority=priority,
                timeout=timeout,
                backoff=backoff,
                atomic=atomic,
                fail_on=tuple(fail_on),
                durable_enqueue=durable_enqueue,
            )
            if task.name in self.tasks and self.tasks[task.name].fn is not func:
                raise ConfigError(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    def get_task(self, name: str) -> Task[Any]:
        """Return the registered task called `name`."""
        try:
            return self.tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.tasks, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(
                f"no task named {name!r} is registered{hint} (known: {known})"
            ) from None

    # -- cron schedules -----------------------------------------------------------------------

    def periodic(
        self,
        *,
        cron: str,
        timezone: str = "UTC",
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        catch_up: str = "skip",
        queue: str | None = None,
        priority: int | None = None,
        grace: float | timedelta = 60.0,
    ) -> Callable[[Task[R]], Task[R]]:
        """Enqueue a job of the task below at every time of `cron` in `timezone`; put it above
        @app.task. See add_schedule() for the options."""

        def register(task: Task[R]) -> Task[R]:
            self.add_schedule(
                task,
                cron=cron,
                timezone=timezone,
                name=name,
                args=args,
                catch_up=catch_up,
                queue=queue,
                priority=priority,
                grace=grace,
            )
            return task

        return register

    # -- alerts -------------------------------------------------------------------------------

    def alert(self, rule: Rule, *, name: str | None = None) -> str:
        """Evaluate `rule` on the elected worker (QueueDepthAbove, OldestAvailableOlderThan,
        JobFailed from conveyor.alerts); return its name. `name` (default: derived from the
        rule) keys the rule's episodes in the database: keep it when you change a threshold."""
        return add_rule(self.alert_rules, rule, name)

    def alert_channel(self, channel: Channel) -> None:
        """Send every alert to `channel` too (WebhookChannel, CallbackChannel); the log
        always gets them, and a LogChannel given here replaces the default one."""
        add_channel(self.alert_channels, channel)

    # -- enqueue many -------------------------------------------------------------------------

    def enqueue_many(self, specs: Sequence[JobSpec]) -> list[int]:
        """Insert many jobs (built with task.spec(...)) in one round trip; return their ids."""
        return self._enqueue_own(specs, atomic=False)

    def _enqueue_one(self, spec: JobSpec) -> int:
        """task.enqueue(): one job on the app's own connection, sharing the round trip of
        other threads' calls in flight (coalesce.py)."""
        return self._coalescer.enqueue(spec)

    async def _aenqueue_one(self, spec: JobSpec) -> int:
        """task.aenqueue(): as _enqueue_one(), with the other tasks of this event loop."""
        loop = asyncio.get_running_loop()
        coalescer = self._acoalescers.get(loop)
        if coalescer is None:
            coalescer = self._acoalescers[loop] = AsyncCoalescer(self._aenqueue_line)
        return await coalescer.enqueue(spec)

    def _enqueue_line(self, specs: Sequence[JobSpec]) -> list[int]:
        """The coalescer's send: one job as enqueue_many(); a line of them all or nothing, in
        a transaction, so that a line refused as a whole can be sent again job by job."""
        return self._enqueue_own(specs, atomic=len(specs) > 1)

    async def _aenqueue_line(self, specs: Sequence[JobSpec]) -> list[int]:
        """Async twin of _enqueue_line()."""
        return await self._aenqueue_own(specs, atomic=len(specs) > 1)

    def _enqueue_own(self, specs: Sequence[JobSpec], *, atomic: bool) -> list[int]:
        """Insert `specs` on a connection of the app's pool (in a transaction when `atomic`)."""
        if not specs:
            return []
        relaxed = self._relaxed(specs)
        with (
            self._connections.connection() as conn,
            conn.transaction() if atomic else nullcontext(),
        ):
            alone = self._connections.busy <= 1
            return enqueue_own.enqueue(conn, specs, self.clock.now(), relaxed, alone)

    async def _aenqueue_own(self, specs: Sequence[JobSpec], *, atomic: bool) -> list[int]:
        """Async twin of _enqueue_own()."""
        if not specs:
            return []
        relaxed = self._relaxed(specs)
        async with (
            self._connections.aconnection() as conn,
            conn.transaction() if atomic else nullcontext(),
        ):
            alone = self._connections.busy <= 1
            return await enqueue_own.aenqueue(conn, specs, self.clock.now(), relaxed, alone)

    def enqueue_many_tx(self, conn: Any, specs: Sequence[JobSpec]) -> list[int]:
        """Insert many jobs in the caller's open transaction: invisible until commit, gone on
        rollback."""
        return run(conn, insert_plan(conn, specs, self.clock.now())).ids if specs else []

    async def aenqueue_many(self, specs: Sequence[JobSpec]) -> list[int]:
        """Async twin of enqueue_many()."""
        return await self._aenqueue_own(specs, atomic=False)

    async def aenqueue_many_tx(self, conn: Any, specs: Sequence[JobSpec]) -> list[int]:
        """Async twin of enqueue_many_tx()."""
        return (await arun(conn, insert_plan(conn, specs, self.clock.now()))).ids if specs else []

    def _relaxed(self, specs: Sequence[JobSpec]) -> bool:
        """True when every job's task has durable_enqueue off (the app's setting for tasks that
        leave it unset or are not registered here): only then may their commit skip the flush."""
        for spec in specs:
            task = self.tasks.get(spec.task)
            durable = None if task is None else task.durable_enqueue
            if self.durable_enqueue if durable is None else durable:
                return False
        return True

    # -- flows --------------------------------------------------------------------------------

    def enqueue_flow(
        self,
        parent: JobSpec,
        children: Sequence[JobSpec],
        *,
        on_child_failure: OnChildFailure = "fail",
    ) -> Flow:
        """Enqueue `parent` to run only after every child has finished (read their results
        with ctx.children()); a child that fails for good fails the parent at once ('fail')
        or not ('continue'). All in one transaction."""
        with self._connections.connection() as conn, conn.transaction():
            return self.enqueue_flow_tx(conn, parent, children, on_child_failure=on_child_failure)

    def enqueue_flow_tx(
        self,
        conn: Any,
        parent: JobSpec,
        children: Sequence[JobSpec],
        *,
        on_child_failure: OnChildFailure = "fail",
    ) -> Flow:
        """enqueue_flow() in the caller's open transaction: invisible until commit."""
        return run(conn, flow_plan(conn, parent, children, on_child_failure, self.clock.now()))

    async def aenqueue_flow(
        self,
        parent: JobSpec,
        children: Sequence[JobSpec],
        *,
        on_child_failure: OnChildFailure = "fail",
    ) -> Flow:
        """Async twin of enqueue_flow()."""
        async with self._connections.aconnection() as conn, conn.transaction():
            return await self.aenqueue_flow_tx(
                conn, parent, children, on_child_failure=on_child_failure
            )

    async def aenqueue_flow_tx(
        self,
        conn: Any,
        parent: JobSpec,
        children: Sequence[JobSpec],
        *,
        on_child_failure: OnChildFailure = "fail",
    ) -> Flow:
        """Async twin of enqueue_flow_tx()."""
        now = self.clock.now()
        return await arun(conn, flow_plan(conn, parent, children, on_child_failure, now))

    def enqueue_batch(self, jobs: Sequence[JobSpec], *, on_complete: JobSpec) -> Flow:
        """Enqueue `jobs` and a callback job that runs once all of them have finished, however
        they ended (a flow with on_child_failure='continue')."""
        return self.enqueue_flow(on_complete, jobs, on_child_failure="continue")

    async def aenqueue_batch(self, jobs: Sequence[JobSpec], *, on_complete: JobSpec) -> Flow:
        """Async twin of enqueue_batch()."""
        return await self.aenqueue_flow(on_complete, jobs, on_child_failure="continue")

    # -- connections --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the app's own connection pools."""
        self._connections.close()

    async def aclose(self) -> None:
        """Close the async pool of the running loop (and the sync pool)."""
        await self._connections.aclose()

    def client(self) -> Client:
        """Return a Client for inspecting and acting on jobs and queues."""
        from conveyor.client import Client

        return Client(self._connections, clock=self.clock, schedules=self.schedules)

    def async_client(self) -> AsyncClient:
        """Return an AsyncClient (the async twin of client())."""
        from conveyor.client import AsyncClient

        return AsyncClient(self._connections, clock=self.clock, schedules=self.schedules)
