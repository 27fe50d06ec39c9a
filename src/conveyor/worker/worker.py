"""Worker: one process's runtime. Claims jobs, runs them, records outcomes, shuts down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from conveyor import logs
from conveyor._store.leader import LeaderLock
from conveyor._store.listener import CANCEL_CHANNEL, JOBS_CHANNEL, QUEUE_CHANNEL, Listener
from conveyor._store.postgres import PostgresStore
from conveyor.client import configure_queue_params
from conveyor.job import Job
from conveyor.maintenance.alerter import AlertEvaluator
from conveyor.maintenance.cron import CronEnqueuer
from conveyor.maintenance.flows import FlowAdvancer
from conveyor.maintenance.gauges import QueueGauges
from conveyor.maintenance.pruner import JobPruner
from conveyor.maintenance.rescuer import JobRescuer
from conveyor.maintenance.scheduler import JobScheduler
from conveyor.maintenance.vacuumer import TableVacuumer
from conveyor.metrics import MetricsServer, WorkerMetrics
from conveyor.migrate import Migrator
from conveyor.worker.completer import Completer
from conveyor.worker.config import WorkerConfig
from conveyor.worker.executor import Executor, JobTimeout
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.outcome import Abandoned, Failed, Outcome, Snoozed, Succeeded
from conveyor.worker.producer import Producer

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")

#: Seconds a stopping background loop, the deregistration or the leader's unlock may take
#: before shutdown goes on without it.
CLOSE_TIMEOUT = 5.0


@dataclass
class _Running:
    job: Job
    token: UUID
    task: asyncio.Task[None] | None = None
    abandon_reason: str | None = None


class Worker:
    """Runs the app's tasks from the configured queues until stop() is called.

    Only tasks registered on this app are claimed, so a rolling deploy never hands a job to a
    worker that does not know its task.
    """

    def __init__(
        self, app: Conveyor, config: WorkerConfig | None = None, *, worker_id: str | None = None
    ) -> None:
        self.app = app
        self.config = config or WorkerConfig()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.completed = 0
        self.failed = 0
        #: True when the worker stopped because one of its loops died (a bug); exit non-zero.
        self.broken = False
        self._running: dict[int, _Running] = {}
        self._held: dict[int, UUID] = {}
        self._durations: dict[int, float] = {}
        #: This worker's Prometheus metrics (served when config.metrics_port is set).
        self.metrics = WorkerMetrics(lambda: len(self._running))
        self._metrics_server: MetricsServer | None = None
        self._stop = asyncio.Event()
        self._started = asyncio.Event()

    # -- public -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get `shutdown_grace` seconds, then are put back."""
        self._stop.set()

    @property
    def started(self) -> asyncio.Event:
        """Set once the worker is claiming jobs."""
        return self._started

    @property
    def running_count(self) -> int:
        """Jobs whose handler is running now."""
        return len(self._running)

    async def run(self) -> None:
        """Run until stop() (or cancellation), then shut down gracefully."""
        url = self.app.database_url
        await self._check_schema(url)
        tasks = sorted(self.app.tasks)
        if not tasks:
            log.warning("worker %s has no tasks registered; it will claim nothing", self.id)
        # each running atomic job holds a connection for its transaction
        atomic = any(t.atomic for t in self.app.tasks.values())
        store = PostgresStore(
            url,
            max_connections=4 + (self.config.concurrency if atomic else 0),
            name=f"conveyor-worker-{os.getpid()}",
        )
        await store.open()
        threads = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="conveyor-job")
        self._store = store
        self._executor = Executor(self.app.tasks, store, threads)
        self._completer = Completer(store, self._on_recorded)
        self._producer = Producer(
            store,
            worker_id=self.id,
            queues=self.config.queues,
            tasks=tasks,
            task_max_attempts=[self.app.tasks[name].max_attempts for name in tasks],
            batch_size=self.config.batch_size,
            lease_seconds=self.config.lease_seconds,
            poll_interval=self.config.poll_interval,
            concurrency=self.config.concurrency,
            free_slots=lambda: self.config.concurrency - len(self._running),
            dispatch=self._dispatch,
        )
        leader = LeaderLock(url)
        listener = Listener(url, self._on_notify, lambda: self._producer.notify())
        heartbeat = Heartbeat(
            store,
            self.id,
            lambda: list(self._held.items()),
            self._on_lost,
            interval=self.config.heartbeat_interval,
            lease_seconds=self.config.lease_seconds,
        )
        await self._register(store, tasks)
        self._serve_metrics()
        background = [
            asyncio.create_task(listener.run(), name="conveyor-listener"),
            asyncio.create_task(self._completer.run(), name="conveyor-completer"),
            asyncio.create_task(heartbeat.run(), name="conveyor-heartbeat"),
        ]
        if self.config.maintenance:
            for service in self._services(store):
                background.append(asyncio.create_task(service.run(leader.attempt_elect)))
        # Wait briefly for LISTEN so a job enqueued right after start wakes us at once.
        try:
            await asyncio.wait_for(listener.connected.wait(), 5)
        except TimeoutError:
            log.warning("LISTEN not ready; relying on polling until it connects")
        producer = asyncio.create_task(self._producer.run(), name="conveyor-producer")
        log.info(
            "worker %s started: queues=%s concurrency=%d tasks=%d",
            self.id,
            ",".join(self.config.queues),
            self.config.concurrency,
            len(tasks),
        )
        self._started.set()
        try:
            await self._until_stopped_or_broken([producer, *background])
        finally:
            await self._shutdown(producer, background, store, leader, threads)

    async def _until_stopped_or_broken(self, loops: list[asyncio.Task[None]]) -> None:
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop, *loops], return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            return
        stop.cancel()
        for loop in done:
            # Loops retry database errors themselves; ending means a bug. Stop cleanly and let
            # the process exit non-zero so a supervisor restarts it.
            log.error(
                "worker loop %s ended unexpectedly", loop.get_name(), exc_info=loop.exception()
            )
        self.broken = True

    # -- running jobs -------------------------------------------------------------------------

    def _dispatch(self, job: Job, token: UUID) -> None:
        running = _Running(job, token)
        self._running[job.id] = running
        self._held[job.id] = token
        running.task = asyncio.create_task(self._run_job(running), name=f"conveyor-job-{job.id}")

    async def _run_job(self, running: _Running) -> None:
        job = running.job
        self.metrics.started(job)
        started = time.monotonic()
        outcome = await self._executor.execute(job, running.token)
        self._durations[job.id] = time.monotonic() - started
        self._running.pop(job.id, None)
        self._producer.slot_freed(job.queue)
        if isinstance(outcome, Abandoned):
            reason = running.abandon_reason or outcome.reason
            self._log_outcome(job, "stopped", logging.INFO, "job %d (%s) stopped: %s", reason)
            if running.abandon_reason != "shutdown":
                self._held.pop(job.id, None)
            return
        self._completer.submit(job, running.token, outcome)

    def _on_recorded(self, job: Job, outcome: Outcome, recorded: bool) -> None:
        self._held.pop(job.id, None)
        if not recorded:
            self._log_outcome(
                job,
                "refused",
                logging.WARNING,
                "job %d (%s): outcome refused, the job was taken over or cancelled meanwhile",
            )
        elif isinstance(outcome, Snoozed):
            self._log_outcome(
                job,
                "snoozed",
                logging.WARNING,
                "job %d (%s) snoozed queue %s for %gs: %s; the job waits, its attempt uncounted",
                job.queue,
                outcome.duration,
                outcome.reason,
            )
        elif isinstance(outcome, Succeeded):
            self.completed += 1
            self._log_outcome(
                job, "completed", logging.INFO, "job %d (%s) completed on attempt %d", job.attempt
            )
        elif isinstance(outcome, Failed):
            self.failed += 1
            retrying = outcome.retry_in is not None
            when = f"will retry in {outcome.retry_in:.1f}s" if retrying else "failed for good"
            self._log_outcome(
                job,
                "retrying" if retrying else "failed",
                logging.WARNING,
                "job %d (%s) attempt %d raised %s: %s; %s",
                job.attempt,
                outcome.error["type"],
                outcome.error["message"],
                when,
                error_type=outcome.error["type"],
            )

    def _log_outcome(
        self,
        job: Job,
        outcome: str,
        level: int,
        message: str,
        *args: Any,
        error_type: str | None = None,
    ) -> None:
        """The one log line (and the metrics) of an attempt's end."""
        duration = self._durations.pop(job.id, None)
        self.metrics.finished(job, outcome, duration)
        if not log.isEnabledFor(level):
            return
        fields = {
            **logs.job_fields(job),
            "outcome": outcome,
            "duration_ms": None if duration is None else round(duration * 1000, 3),
            "error_type": error_type,
        }
        log.log(level, message, job.id, job.task, *args, extra=fields)

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            self._producer.notify(payload)
        elif channel == CANCEL_CHANNEL and payload.isdigit():
            self._abandon(int(payload), "cancelled")
        elif channel == QUEUE_CHANNEL:
            self._producer.controls_changed(payload)

    def _on_lost(self, job_ids: set[int]) -> None:
        for job_id in job_ids:
            self._abandon(job_id, "its lease was lost (rescued by another worker or cancelled)")

    def _abandon(self, job_id: int, reason: str) -> None:
        running = self._running.get(job_id)
        if running is None or running.task is None:
            return
        running.abandon_reason = reason
        running.task.cancel()
        self._executor.interrupt(job_id, JobTimeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def _services(self, store: PostgresStore) -> list[Any]:
        retention = self.app.retention
        services: list[Any] = [
            JobScheduler(store, interval=self.config.promote_interval, clock=self.app.clock),
            JobRescuer(store, interval=self.config.rescue_interval, clock=self.app.clock),
            TableVacuumer(store),
            FlowAdvancer(store, interval=self.config.promote_interval, clock=self.app.clock),
            JobPruner(
                store,
                completed=retention.completed,
                cancelled=retention.cancelled,
                failed=retention.failed,
                idempotency_keys=retention.idempotency_keys,
                cron_slots=retention.cron_slots,
                interval=self.config.prune_interval,
                clock=self.app.clock,
            ),
        ]
        if self.config.metrics_port is not None:
            gauges = QueueGauges(store, interval=self.config.gauge_interval, clock=self.app.clock)
            self.metrics.registry.register(gauges)
            services.append(gauges)
        if self.app.schedules:
            services.append(
                CronEnqueuer(
                    store,
                    list(self.app.schedules.values()),
                    interval=self.config.cron_interval,
                    clock=self.app.clock,
                )
            )
        if self.app.alert_rules:
            services.append(AlertEvaluator.for_app(self.app, store))
        return services

    def _serve_metrics(self) -> None:
        if self.config.metrics_port is None:
            return
        server = MetricsServer(
            self.metrics.registry,
            host=self.config.metrics_host,
            port=self.config.metrics_port,
            credentials=self.config.metrics_credentials,
        )
        server.start()
        self._metrics_server = server
        log.info(
            "metrics at http://%s:%d/metrics%s",
            self.config.metrics_host,
            server.port,
            " (credentials required)" if self.config.metrics_credentials else "",
        )

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics endpoint listens on, once started (None when not serving)."""
        return None if self._metrics_server is None else self._metrics_server.port

    async def _check_schema(self, url: str) -> None:
        """Refuse a wrong schema at once; wait for a database that cannot be reached yet (down,
        or out of connections) instead of crashing."""
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(Migrator(url).check)
                return
            except psycopg.OperationalError as exc:
                log.warning("cannot reach the database (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _register(self, store: PostgresStore, tasks: list[str]) -> None:
        delay = 0.2
        while True:
            try:
                await store.worker_register(
                    worker_id=self.id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    queues=self.config.queues,
                    tasks=tasks,
                )
                for name, settings in self.app.queue_settings.items():
                    await store.execute("queue_configure", configure_queue_params(name, settings))
                return
            except Exception as exc:  # noqa: BLE001 - any connection trouble: wait and retry
                log.warning("cannot register worker (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _shutdown(
        self,
        producer: asyncio.Task[None],
        background: list[asyncio.Task[None]],
        store: PostgresStore,
        leader: LeaderLock,
        threads: ThreadPoolExecutor,
    ) -> None:
        """Stop claiming, give running jobs the grace period, put the rest back, record the
        outcomes, stop the loops and close. Every wait is bounded, so shutdown always ends."""
        try:
            # The producer ends before the running jobs are listed, so none starts after.
            await _stop_loops([producer])
            await self._finish_running_jobs(store)
            try:
                async with asyncio.timeout(10):
                    await self._completer.drain()
            except TimeoutError:
                log.warning("some job outcomes were not recorded; those jobs will be rescued")
            await _stop_loops(background)
        finally:
            await self._close(store, leader, threads)

    async def _finish_running_jobs(self, store: PostgresStore) -> None:
        running = [r.task for r in self._running.values() if r.task is not None]
        if running:
            log.info(
                "shutting down: waiting up to %.0fs for %d running jobs",
                self.config.shutdown_grace,
                len(running),
            )
            await asyncio.wait(running, timeout=self.config.shutdown_grace)
        leftover = list(self._running.values())
        for item in leftover:
            item.abandon_reason = "shutdown"
            if item.task is not None:
                item.task.cancel()
            self._executor.interrupt(item.job.id, JobTimeout)
        if leftover:
            await asyncio.wait([r.task for r in leftover if r.task is not None], timeout=5)
            held = [(r.job.id, r.token) for r in leftover]
            try:
                released = await store.job_release_many(held)
                log.info("put %d unfinished jobs back in their queues", released)
            except Exception as exc:  # noqa: BLE001 - their leases will expire instead
                log.warning("could not put jobs back (%s); their leases will expire", exc)
            for job_id, _ in held:
                self._held.pop(job_id, None)

    async def _close(
        self, store: PostgresStore, leader: LeaderLock, threads: ThreadPoolExecutor
    ) -> None:
        # The pruner forgets dead workers anyway.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await store.worker_deregister(self.id)
        await leader.close(timeout=CLOSE_TIMEOUT)
        await store.close()
        threads.shutdown(wait=False, cancel_futures=True)
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.close)
        log.info("worker %s stopped (completed=%d failed=%d)", self.id, self.completed, self.failed)


async def _stop_loops(loops: list[asyncio.Task[None]], timeout: float = CLOSE_TIMEOUT) -> None:
    """Cancel `loops` and wait for them to end, at most `timeout` seconds. A loop still running
    then (one that lost its cancellation, or waits on something that ignores it) is logged with
    the place it is stuck at, cancelled once more and left behind: never waited on forever."""
    ended = {loop for loop in loops if loop.done()}  # a broken loop, logged already
    for loop in loops:
        loop.cancel()
    if not loops:
        return
    done, stuck = await asyncio.wait(loops, timeout=timeout)
    for loop in done - ended:
        if not loop.cancelled() and loop.exception() is not None:
            log.warning(
                "worker loop %s failed as it stopped", loop.get_name(), exc_info=loop.exception()
            )
    for loop in stuck:
        log.error(
            "worker loop %s did not stop within %gs of its cancellation; leaving it behind"
            " (awaiting %s)",
            loop.get_name(),
            timeout,
            _awaiting(loop),
        )
        loop.cancel()


def _awaiting(task: asyncio.Task[Any]) -> str:
    """The chain of coroutines `task` is suspended in, outermost first (a task's own stack
    shows only its outermost coroutine)."""
    where: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        frame = awaited.cr_frame
        where.append(f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})")
        awaited = awaited.cr_await
    if awaited is not None:
        where.append(repr(awaited))
    return " -> ".join(where)
