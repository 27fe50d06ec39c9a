"""Client: inspect and act on jobs and queues. The CLI and the dashboard use only this.

Each operation is written once in _store/admin.py; Client runs it with the sync runner on a
connection of the app's pools and AsyncClient with the async one. The `_tx` methods run the same
operation on the caller's connection, inside the caller's open transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor._store import admin
from conveyor._store import cron as cron_ops
from conveyor._store import endpoints as endpoint_ops
from conveyor._store import workflows as workflow_ops
from conveyor._store.admin import CRON_OVERDUE
from conveyor._store.ops import Op, Plan
from conveyor._store.runner import arun, run
from conveyor.client_tokens import AsyncTokenMethods, TokenMethods
from conveyor.client_types import (
    LIVE_WORKER_SECONDS,
    AlertEpisode,
    JobPage,
    MinuteCount,
    OrphanedTask,
    QueueStatus,
    ScheduleStatus,
    Status,
    TaskCount,
    Throughput,
)
from conveyor.endpoints import DEFAULT_TIMEOUT, Endpoint, check_timeout, endpoint_changes
from conveyor.job import Job, JobState
from conveyor.queues import QueueInfo, configure_queue_params, validate_queue_settings
from conveyor.workflow.types import WorkflowChildren, WorkflowRun

if TYPE_CHECKING:
    from conveyor.clock import Clock
    from conveyor.connections import Connections
    from conveyor.cron import Schedule

__all__ = [
    "CRON_OVERDUE",
    "LIVE_WORKER_SECONDS",
    "SEARCH_SCAN_LIMIT",
    "AlertEpisode",
    "AsyncClient",
    "Client",
    "JobPage",
    "MinuteCount",
    "OrphanedTask",
    "QueueStatus",
    "ScheduleStatus",
    "Status",
    "TaskCount",
    "Throughput",
    "configure_queue_params",
    "validate_queue_settings",
]

T = TypeVar("T")

#: A text search reads at most this many of the newest rows that pass the other filters per
#: page, so it costs the same on a million jobs as on a thousand.
SEARCH_SCAN_LIMIT = 20_000


class _Base:
    """What Client and AsyncClient hold: where connections come from, and what cron_schedules
    adds of the app's own (its clock and declared schedules)."""

    def __init__(
        self, connections: Connections, *, clock: Clock, schedules: Mapping[str, Schedule]
    ) -> None:
        self._connections = connections
        self._clock = clock
        self._schedules = schedules


class Client(_Base, TokenMethods):
    """Sync admin API over the app's own connection pool (from app.client())."""

    def _run(self, work: Op[T] | Plan[T]) -> T:
        with self._connections.connection() as conn:
            return run(conn, work)

    def get_job(self, job_id: int) -> Job:
        """Return one job with its errors; raise JobNotFoundError when there is none."""
        return self._run(admin.get(job_id))

    def children(self, parent_id: int) -> list[Job]:
        """The children of a flow parent (or a batch's callback), in the order given."""
        return self._run(admin.children(parent_id))

    def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        search: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest jobs first; pass the last id seen as `before_id` for the next page.

        `search` keeps jobs whose JSON args contain the text (case-insensitive); it reads at
        most SEARCH_SCAN_LIMIT filtered rows, so use page_jobs() to continue a search."""
        page = admin.page_jobs(state, queue, task, search, before_id, limit, SEARCH_SCAN_LIMIT)
        return self._run(page).jobs

    def page_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        search: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        scan_limit: int = SEARCH_SCAN_LIMIT,
    ) -> JobPage:
        """One page of list_jobs() with the `before_id` of the next page."""
        return self._run(admin.page_jobs(state, queue, task, search, before_id, limit, scan_limit))

    def throughput(self, *, minutes: int = 60) -> Throughput:
        """Jobs finished per minute, queue and state over the last `minutes` (database clock);
        jobs already pruned by retention are not counted."""
        return self._run(admin.throughput(minutes * 60.0))

    def failed_by_task(self, *, limit: int = 100) -> list[TaskCount]:
        """Failed jobs per queue and task, most first."""
        return self._run(admin.failed_by_task(limit))

    def alert_episodes(self, *, open_only: bool = False, limit: int = 50) -> list[AlertEpisode]:
        """Alert episodes: open ones (pending, firing) first, then the latest resolved."""
        return self._run(admin.alert_episodes(open_only, limit))

    def waiting_elsewhere(self, tasks: Iterable[str], queues: Iterable[str]) -> list[TaskCount]:
        """Waiting jobs of `tasks` in queues other than `queues`, per queue and task: a worker
        serving only `queues` never claims them."""
        return self._run(admin.waiting_elsewhere(tasks, queues))

    def retry(self, *job_ids: int) -> list[int]:
        """Run failed or cancelled jobs again with a fresh round of attempts."""
        return self._run(admin.retry(job_ids, None, None, only_failed=False))

    def retry_tx(self, conn: Any, /, *job_ids: int) -> list[int]:
        """retry() inside the caller's open transaction (psycopg, SQLAlchemy or Django): the
        jobs run again only once it commits, and stay as they were if it rolls back."""
        return run(conn, admin.retry(job_ids, None, None, only_failed=False))

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Run every failed job of a task and/or queue again."""
        return self._run(admin.retry(None, task, queue, only_failed=True))

    def cancel(self, *job_ids: int) -> list[int]:
        """Cancel jobs that have not finished (a running one is told to stop)."""
        return self._run(admin.cancel(job_ids))

    def cancel_tx(self, conn: Any, /, *job_ids: int) -> list[int]:
        """cancel() inside the caller's open transaction: the jobs are cancelled (and a running
        one told to stop) only once it commits, and stay as they were if it rolls back."""
        return run(conn, admin.cancel(job_ids))

    def delete(self, *job_ids: int) -> list[int]:
        """Delete jobs for good (not running ones: cancel those first)."""
        return self._run(admin.delete(job_ids))

    def get_workflow(self, run_id: str) -> WorkflowRun:
        """One workflow run with its recorded steps; WorkflowNotFoundError when there is none."""
        return self._run(workflow_ops.get(run_id))

    def list_workflows(
        self, *, state: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[WorkflowRun]:
        """Workflow runs, newest first (without their steps)."""
        return self._run(workflow_ops.list_runs(state=state, workflow=workflow, limit=limit))

    def workflow_children(self, run_id: str, *, limit: int = 100) -> WorkflowChildren:
        """A run's fan-outs (ctx.map, ctx.run_workflow) with their counts, and the first
        `limit` of their children in order."""
        return self._run(workflow_ops.children(run_id, limit))

    def cancel_workflow(self, run_id: str) -> bool:
        """Cancel an unfinished run, its sleep or wait and its job; False if it had finished."""
        return self._run(workflow_ops.cancel(run_id, self._clock.now()))

    def retry_workflow(self, run_id: str) -> bool:
        """Resume a failed run from its failed step (completed steps are kept and not run
        again), or an unfinished run whose job is gone; False for any other run."""
        return self._run(workflow_ops.retry(run_id, self._clock.now())) is not None

    def status(self) -> Status:
        """Counts by state per queue, oldest available age, and tasks no live worker knows."""
        return self._run(admin.status())

    def configure_queue(self, name: str, **changes: Any) -> None:
        """Set limits of a queue for every worker: concurrency, key with key_concurrency,
        rate_limit ('100/minute' or RateLimit), max_depth with on_full. None removes one;
        settings not named stay as they are."""
        self._run(admin.configure_queue(name, changes))

    def pause_queue(self, name: str) -> None:
        """Stop new jobs of a queue from starting; running jobs finish, enqueue goes on."""
        self._run(admin.pause_queue(name))

    def resume_queue(self, name: str) -> bool:
        """Let a paused (or snoozed) queue's jobs start again; False if it had no controls."""
        return self._run(admin.resume_queue(name))

    def snooze_queue(
        self, name: str, seconds: float | timedelta, reason: str | None = None
    ) -> None:
        """Hold a queue's jobs back for `seconds` (or a timedelta; its downstream is down)."""
        self._run(admin.snooze_queue(name, seconds, reason))

    def queues(self) -> list[QueueInfo]:
        """Every queue with controls or jobs: controls, waiting and running counts."""
        return self._run(admin.queues())

    def cron_schedules(self) -> list[ScheduleStatus]:
        """Every cron schedule workers have recorded, plus this app's own, with each one's
        last enqueued time and job and its next time."""
        return self._run(admin.cron_schedules(self._clock.now(), self._schedules))

    def add_cron_schedule(
        self, name: str, cron: str, *, endpoint: str, timezone: str = "UTC", catch_up: str = "skip"
    ) -> None:
        """Store a schedule that POSTs a job of `endpoint` at every time of `cron`; every
        worker (`conveyor deliver` too) runs it. ConfigError for a bad expression, zone or a
        taken name, EndpointNotFoundError for an unknown endpoint."""
        self._run(_cron_add(self._clock, name, cron, endpoint, timezone, catch_up))

    def remove_cron_schedule(self, name: str) -> None:
        """Forget a cron schedule; ConfigError when there is none."""
        self._run(cron_ops.remove(name))

    def add_endpoint(
        self,
        name: str,
        url: str,
        secret: str | tuple[str, ...],
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        queue: str = "default",
        retry_4xx: bool = False,
    ) -> Endpoint:
        """Add an HTTP endpoint: jobs whose task is `name` are POSTed, signed with `secret`
        (a literal, a `whsec_` secret or `env:NAME`), to `url`; ConfigError if it exists."""
        endpoint = Endpoint(name, url, _secrets(secret), check_timeout(timeout), queue, retry_4xx)
        self._run(endpoint_ops.insert(endpoint))
        return endpoint

    def endpoints(self) -> list[Endpoint]:
        """Every HTTP endpoint, by name."""
        return self._run(endpoint_ops.list_all())

    def get_endpoint(self, name: str) -> Endpoint:
        """One endpoint; raise EndpointNotFoundError when there is none."""
        return self._run(endpoint_ops.get(name))

    def set_endpoint(self, name: str, **changes: Any) -> None:
        """Change an endpoint's url, secret (replaces both), add_secret (a second one, for
        rotation), timeout, queue or retry_4xx; settings not named stay."""
        self._run(endpoint_ops.update(name, endpoint_changes(**changes)))

    def remove_endpoint(self, name: str) -> None:
        """Remove an endpoint; raise EndpointNotFoundError when there is none."""
        self._run(endpoint_ops.remove(name))


class AsyncClient(_Base, AsyncTokenMethods):
    """Async twin of Client, for async apps and the dashboard (from app.async_client())."""

    async def _run(self, work: Op[T] | Plan[T]) -> T:
        async with self._connections.aconnection() as conn:
            return await arun(conn, work)

    async def get_job(self, job_id: int) -> Job:
        """Async twin of Client.get_job()."""
        return await self._run(admin.get(job_id))

    async def children(self, parent_id: int) -> list[Job]:
        """Async twin of Client.children()."""
        return await self._run(admin.children(parent_id))

    async def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        search: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Async twin of Client.list_jobs()."""
        page = admin.page_jobs(state, queue, task, search, before_id, limit, SEARCH_SCAN_LIMIT)
        return (await self._run(page)).jobs

    async def page_jobs(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        search: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        scan_limit: int = SEARCH_SCAN_LIMIT,
    ) -> JobPage:
        """Async twin of Client.page_jobs()."""
        op = admin.page_jobs(state, queue, task, search, before_id, limit, scan_limit)
        return await self._run(op)

    async def throughput(self, *, minutes: int = 60) -> Throughput:
        """Async twin of Client.throughput()."""
        return await self._run(admin.throughput(minutes * 60.0))

    async def failed_by_task(self, *, limit: int = 100) -> list[TaskCount]:
        """Async twin of Client.failed_by_task()."""
        return await self._run(admin.failed_by_task(limit))

    async def alert_episodes(
        self, *, open_only: bool = False, limit: int = 50
    ) -> list[AlertEpisode]:
        """Async twin of Client.alert_episodes()."""
        return await self._run(admin.alert_episodes(open_only, limit))

    async def waiting_elsewhere(
        self, tasks: Iterable[str], queues: Iterable[str]
    ) -> list[TaskCount]:
        """Async twin of Client.waiting_elsewhere()."""
        return await self._run(admin.waiting_elsewhere(tasks, queues))

    async def retry(self, *job_ids: int) -> list[int]:
        """Async twin of Client.retry()."""
        return await self._run(admin.retry(job_ids, None, None, only_failed=False))

    async def retry_tx(self, conn: Any, /, *job_ids: int) -> list[int]:
        """Async twin of Client.retry_tx()."""
        return await arun(conn, admin.retry(job_ids, None, None, only_failed=False))

    async def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Async twin of Client.retry_failed()."""
        return await self._run(admin.retry(None, task, queue, only_failed=True))

    async def cancel(self, *job_ids: int) -> list[int]:
        """Async twin of Client.cancel()."""
        return await self._run(admin.cancel(job_ids))

    async def cancel_tx(self, conn: Any, /, *job_ids: int) -> list[int]:
        """Async twin of Client.cancel_tx()."""
        return await arun(conn, admin.cancel(job_ids))

    async def delete(self, *job_ids: int) -> list[int]:
        """Async twin of Client.delete()."""
        return await self._run(admin.delete(job_ids))

    async def get_workflow(self, run_id: str) -> WorkflowRun:
        """Async twin of Client.get_workflow()."""
        return await self._run(workflow_ops.get(run_id))

    async def list_workflows(
        self, *, state: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[WorkflowRun]:
        """Async twin of Client.list_workflows()."""
        return await self._run(workflow_ops.list_runs(state=state, workflow=workflow, limit=limit))

    async def workflow_children(self, run_id: str, *, limit: int = 100) -> WorkflowChildren:
        """Async twin of Client.workflow_children()."""
        return await self._run(workflow_ops.children(run_id, limit))

    async def cancel_workflow(self, run_id: str) -> bool:
        """Async twin of Client.cancel_workflow()."""
        return await self._run(workflow_ops.cancel(run_id, self._clock.now()))

    async def retry_workflow(self, run_id: str) -> bool:
        """Async twin of Client.retry_workflow()."""
        return await self._run(workflow_ops.retry(run_id, self._clock.now())) is not None

    async def status(self) -> Status:
        """Async twin of Client.status()."""
        return await self._run(admin.status())

    async def configure_queue(self, name: str, **changes: Any) -> None:
        """Async twin of Client.configure_queue()."""
        await self._run(admin.configure_queue(name, changes))

    async def pause_queue(self, name: str) -> None:
        """Async twin of Client.pause_queue()."""
        await self._run(admin.pause_queue(name))

    async def resume_queue(self, name: str) -> bool:
        """Async twin of Client.resume_queue()."""
        return await self._run(admin.resume_queue(name))

    async def snooze_queue(
        self, name: str, seconds: float | timedelta, reason: str | None = None
    ) -> None:
        """Async twin of Client.snooze_queue()."""
        await self._run(admin.snooze_queue(name, seconds, reason))

    async def queues(self) -> list[QueueInfo]:
        """Async twin of Client.queues()."""
        return await self._run(admin.queues())

    async def cron_schedules(self) -> list[ScheduleStatus]:
        """Async twin of Client.cron_schedules()."""
        return await self._run(admin.cron_schedules(self._clock.now(), self._schedules))

    async def add_cron_schedule(
        self, name: str, cron: str, *, endpoint: str, timezone: str = "UTC", catch_up: str = "skip"
    ) -> None:
        """Async twin of Client.add_cron_schedule()."""
        await self._run(_cron_add(self._clock, name, cron, endpoint, timezone, catch_up))

    async def remove_cron_schedule(self, name: str) -> None:
        """Async twin of Client.remove_cron_schedule()."""
        await self._run(cron_ops.remove(name))

    async def add_endpoint(
        self,
        name: str,
        url: str,
        secret: str | tuple[str, ...],
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        queue: str = "default",
        retry_4xx: bool = False,
    ) -> Endpoint:
        """Async twin of Client.add_endpoint()."""
        endpoint = Endpoint(name, url, _secrets(secret), check_timeout(timeout), queue, retry_4xx)
        await self._run(endpoint_ops.insert(endpoint))
        return endpoint

    async def endpoints(self) -> list[Endpoint]:
        """Async twin of Client.endpoints()."""
        return await self._run(endpoint_ops.list_all())

    async def get_endpoint(self, name: str) -> Endpoint:
        """Async twin of Client.get_endpoint()."""
        return await self._run(endpoint_ops.get(name))

    async def set_endpoint(self, name: str, **changes: Any) -> None:
        """Async twin of Client.set_endpoint()."""
        await self._run(endpoint_ops.update(name, endpoint_changes(**changes)))

    async def remove_endpoint(self, name: str) -> None:
        """Async twin of Client.remove_endpoint()."""
        await self._run(endpoint_ops.remove(name))


def _cron_add(
    clock: Clock, name: str, cron: str, endpoint: str, timezone: str, catch_up: str
) -> Op[None]:
    # checked like an app's schedule; it starts with its first time after now
    from conveyor.cron import Schedule
    from conveyor.spec import JobSpec

    schedule = Schedule(
        name=name,
        cron=cron,
        timezone=timezone,
        catch_up=catch_up,
        grace=timedelta(seconds=60),
        spec=JobSpec(task=endpoint, args_json="{}"),
    )
    now = clock.now() or datetime.now(UTC)
    return cron_ops.add(
        name=name,
        cron=cron,
        timezone=timezone,
        catch_up=catch_up,
        endpoint=endpoint,
        next_slot=schedule.next_after(now),
    )


def _secrets(secret: str | tuple[str, ...]) -> tuple[str, ...]:
    return (secret,) if isinstance(secret, str) else tuple(secret)
