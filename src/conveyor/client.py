"""Client: inspect and act on jobs and queues. The CLI and the dashboard use only this.

Each operation is written once as an _Op in client_ops.py (named queries, their parameters and
how to read the rows); Client runs ops on a sync connection and AsyncClient on an async one,
loading rows so that no stored value can break a list or a page (client_rows.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor._store.queries import sql
from conveyor.client_ops import CRON_OVERDUE, _Op, _Ops
from conveyor.client_rows import afetch, fetch
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
from conveyor.job import Job, JobState
from conveyor.queues import QueueInfo, configure_queue_params, validate_queue_settings

if TYPE_CHECKING:
    from conveyor.app import Conveyor

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


class Client:
    """Sync admin API over the app's own connection pool."""

    def __init__(self, app: Conveyor) -> None:
        self._app = app

    def _run(self, op: _Op[T]) -> T:
        with self._app._connection() as conn:
            return op.read([fetch(conn, sql(name), params) for name, params in op.queries])

    def get_job(self, job_id: int) -> Job:
        """Return one job with its errors; raise JobNotFoundError when there is none."""
        return self._run(_Ops.get(job_id))

    def children(self, parent_id: int) -> list[Job]:
        """The children of a flow parent (or a batch's callback), in the order given."""
        return self._run(_Ops.children(parent_id))

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
        return self.page_jobs(
            state=state, queue=queue, task=task, search=search, before_id=before_id, limit=limit
        ).jobs

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
        return self._run(
            _Ops.page_jobs(
                state=state,
                queue=queue,
                task=task,
                search=search,
                before_id=before_id,
                limit=limit,
                scan_limit=scan_limit,
            )
        )

    def throughput(self, *, minutes: int = 60) -> Throughput:
        """Jobs finished per minute, queue and state over the last `minutes` (database clock);
        jobs already pruned by retention are not counted."""
        return self._run(_Ops.throughput(minutes * 60.0))

    def failed_by_task(self, *, limit: int = 100) -> list[TaskCount]:
        """Failed jobs per queue and task, most first."""
        return self._run(_Ops.failed_by_task(limit))

    def alert_episodes(self, *, open_only: bool = False, limit: int = 50) -> list[AlertEpisode]:
        """Alert episodes: open ones (pending, firing) first, then the latest resolved."""
        return self._run(_Ops.alert_episodes(open_only, limit))

    def waiting_elsewhere(self, tasks: Iterable[str], queues: Iterable[str]) -> list[TaskCount]:
        """Waiting jobs of `tasks` in queues other than `queues`, per queue and task: a worker
        serving only `queues` never claims them."""
        return self._run(_Ops.waiting_elsewhere(tasks, queues))

    def retry(self, *job_ids: int) -> list[int]:
        """Run failed or cancelled jobs again with a fresh round of attempts."""
        return self._run(_Ops.retry(job_ids, None, None, only_failed=False))

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Run every failed job of a task and/or queue again."""
        return self._run(_Ops.retry(None, task, queue, only_failed=True))

    def cancel(self, *job_ids: int) -> list[int]:
        """Cancel jobs that have not finished (a running one is told to stop)."""
        return self._run(_Ops.cancel(job_ids))

    def delete(self, *job_ids: int) -> list[int]:
        """Delete jobs for good (not running ones: cancel those first)."""
        return self._run(_Ops.delete(job_ids))

    def status(self) -> Status:
        """Counts by state per queue, oldest available age, and tasks no live worker knows."""
        return self._run(_Ops.status())

    def configure_queue(self, name: str, **changes: Any) -> None:
        """Set limits of a queue for every worker: concurrency, key with key_concurrency,
        rate_limit ('100/minute' or RateLimit), max_depth with on_full. None removes one;
        settings not named stay as they are."""
        self._run(_Ops.configure_queue(name, changes))

    def pause_queue(self, name: str) -> None:
        """Stop new jobs of a queue from starting; running jobs finish, enqueue goes on."""
        self._run(_Ops.pause_queue(name))

    def resume_queue(self, name: str) -> bool:
        """Let a paused (or snoozed) queue's jobs start again; False if it had no controls."""
        return self._run(_Ops.resume_queue(name))

    def snooze_queue(
        self, name: str, seconds: float | timedelta, reason: str | None = None
    ) -> None:
        """Hold a queue's jobs back for `seconds` (or a timedelta; its downstream is down)."""
        self._run(_Ops.snooze_queue(name, seconds, reason))

    def queues(self) -> list[QueueInfo]:
        """Every queue with controls or jobs: controls, waiting and running counts."""
        return self._run(_Ops.queues())

    def cron_schedules(self) -> list[ScheduleStatus]:
        """Every cron schedule workers have recorded, plus this app's own, with each one's
        last enqueued time and job and its next time."""
        return self._run(_Ops.cron_schedules(self._app.clock.now(), self._app.schedules))


class AsyncClient:
    """Async twin of Client, for async apps and the dashboard."""

    def __init__(self, app: Conveyor) -> None:
        self._app = app

    async def _run(self, op: _Op[T]) -> T:
        async with self._app._aconnection() as conn:
            results = [await afetch(conn, sql(name), params) for name, params in op.queries]
            return op.read(results)

    async def get_job(self, job_id: int) -> Job:
        """Async twin of Client.get_job()."""
        return await self._run(_Ops.get(job_id))

    async def children(self, parent_id: int) -> list[Job]:
        """Async twin of Client.children()."""
        return await self._run(_Ops.children(parent_id))

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
        page = await self.page_jobs(
            state=state, queue=queue, task=task, search=search, before_id=before_id, limit=limit
        )
        return page.jobs

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
        return await self._run(
            _Ops.page_jobs(
                state=state,
                queue=queue,
                task=task,
                search=search,
                before_id=before_id,
                limit=limit,
                scan_limit=scan_limit,
            )
        )

    async def throughput(self, *, minutes: int = 60) -> Throughput:
        """Async twin of Client.throughput()."""
        return await self._run(_Ops.throughput(minutes * 60.0))

    async def failed_by_task(self, *, limit: int = 100) -> list[TaskCount]:
        """Async twin of Client.failed_by_task()."""
        return await self._run(_Ops.failed_by_task(limit))

    async def alert_episodes(
        self, *, open_only: bool = False, limit: int = 50
    ) -> list[AlertEpisode]:
        """Async twin of Client.alert_episodes()."""
        return await self._run(_Ops.alert_episodes(open_only, limit))

    async def waiting_elsewhere(
        self, tasks: Iterable[str], queues: Iterable[str]
    ) -> list[TaskCount]:
        """Async twin of Client.waiting_elsewhere()."""
        return await self._run(_Ops.waiting_elsewhere(tasks, queues))

    async def retry(self, *job_ids: int) -> list[int]:
        """Async twin of Client.retry()."""
        return await self._run(_Ops.retry(job_ids, None, None, only_failed=False))

    async def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[int]:
        """Async twin of Client.retry_failed()."""
        return await self._run(_Ops.retry(None, task, queue, only_failed=True))

    async def cancel(self, *job_ids: int) -> list[int]:
        """Async twin of Client.cancel()."""
        return await self._run(_Ops.cancel(job_ids))

    async def delete(self, *job_ids: int) -> list[int]:
        """Async twin of Client.delete()."""
        return await self._run(_Ops.delete(job_ids))

    async def status(self) -> Status:
        """Async twin of Client.status()."""
        return await self._run(_Ops.status())

    async def configure_queue(self, name: str, **changes: Any) -> None:
        """Async twin of Client.configure_queue()."""
        await self._run(_Ops.configure_queue(name, changes))

    async def pause_queue(self, name: str) -> None:
        """Async twin of Client.pause_queue()."""
        await self._run(_Ops.pause_queue(name))

    async def resume_queue(self, name: str) -> bool:
        """Async twin of Client.resume_queue()."""
        return await self._run(_Ops.resume_queue(name))

    async def snooze_queue(
        self, name: str, seconds: float | timedelta, reason: str | None = None
    ) -> None:
        """Async twin of Client.snooze_queue()."""
        await self._run(_Ops.snooze_queue(name, seconds, reason))

    async def queues(self) -> list[QueueInfo]:
        """Async twin of Client.queues()."""
        return await self._run(_Ops.queues())

    async def cron_schedules(self) -> list[ScheduleStatus]:
        """Async twin of Client.cron_schedules()."""
        return await self._run(_Ops.cron_schedules(self._app.clock.now(), self._app.schedules))
