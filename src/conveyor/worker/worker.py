"""Worker: one process's runtime. Claims jobs, runs them, records outcomes, shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from uuid import UUID

from conveyor import logs
from conveyor._store.leader import LeaderLease
from conveyor._store.listener import CANCEL_CHANNEL, JOBS_CHANNEL, QUEUE_CHANNEL, Listener
from conveyor._store.postgres import PostgresStore
from conveyor._store.protocol import Store
from conveyor.errors import JobTimeout
from conveyor.job import Job
from conveyor.maintenance.service import PeriodicService
from conveyor.metrics import MetricsServer, WorkerMetrics
from conveyor.worker.completer import Completer
from conveyor.worker.config import WorkerConfig
from conveyor.worker.delivery import AllowList, Deliverer
from conveyor.worker.delivery.answer import DELIVERY_MAX_ATTEMPTS
from conveyor.worker.delivery.deliverer import delivery_ssl_context
from conveyor.worker.executor import Executor
from conveyor.worker.health import Health
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.loops import stop_loops
from conveyor.worker.outcome import Abandoned, Outcome
from conveyor.worker.pickup import pickup_mode
from conveyor.worker.producer import Producer
from conveyor.worker.report import OutcomeReport
from conveyor.worker.running import RunningJob, RunningJobs
from conveyor.worker.runtime import Runtime
from conveyor.worker.services import maintenance_services
from conveyor.worker.startup import Startup

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")


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
        #: True when the worker stopped because one of its loops died (a bug); exit non-zero.
        self.broken = False
        #: Every claimed job whose outcome is not recorded yet.
        self._jobs = RunningJobs(self.config.concurrency)
        #: What this run holds open; built by run() once the database is reachable.
        self._runtime: Runtime | None = None
        #: This worker's Prometheus metrics (served when config.metrics_port is set).
        self.metrics = WorkerMetrics(
            lambda: self.running_count, stuck_threads=lambda: self.stuck_threads
        )
        self._metrics_server: MetricsServer | None = None
        #: What /healthz and /readyz answer (on the metrics port).
        self.health = Health(
            stall_after=self.config.health_stall_seconds,
            database_after=self.config.health_database_seconds,
        )
        self._report = OutcomeReport(self.metrics)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        #: POSTs endpoint jobs; built with the runtime.
        self._deliverer: Deliverer

    # -- public -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get `shutdown_grace` seconds, then are put back."""
        self._stop.set()
        self.health.stopping()

    @property
    def started(self) -> asyncio.Event:
        """Set once the worker is claiming jobs."""
        return self._started

    @property
    def completed(self) -> int:
        """Attempts that completed their job, since start."""
        return self._report.completed

    @property
    def failed(self) -> int:
        """Attempts that failed (retried or not), since start."""
        return self._report.failed

    @property
    def running_count(self) -> int:
        """Jobs whose attempt is under way now."""
        return self._jobs.running_count

    @property
    def stuck_threads(self) -> int:
        """Threads still running a sync handler whose attempt already ended (it timed out or
        was stopped, but the code cannot be interrupted): each holds a slot until it returns."""
        return self._jobs.stuck_threads

    async def run(self) -> None:
        """Run until stop() (or cancellation), then shut down gracefully."""
        # metrics and health are served from the start: a worker waiting for its database is
        # alive but not ready
        self._serve_metrics()
        watch = asyncio.create_task(self.health.run(), name="conveyor-health")
        try:
            await self._run()
        finally:
            await stop_loops([watch])
            await self._close_metrics()

    async def _run(self) -> None:
        startup = Startup(self.app.database_url, self._stop)
        if not await startup.check_schema():
            log.info("worker %s stopped before it started", self.id)
            return
        self.health.database_answered()
        runtime = await self._open_runtime()
        if self.config.metrics_port is not None:  # no probe asks otherwise
            self.health.watch_database(runtime.store.database_ping)
        if not await startup.register(runtime.register):
            await runtime.abandon()
            log.info("worker %s stopped before it started", self.id)
            return
        background = runtime.start_background(self._services(runtime.store))
        await runtime.wait_for_listen()
        producer = runtime.start_producer()
        self._announce_started()
        try:
            await self._until_stopped_or_broken([producer, *background])
        finally:
            await self._shutdown(runtime, producer, background)

    async def _open_runtime(self) -> Runtime:
        """Open the store and build the collaborators of this run, wired to this worker."""
        tasks = sorted(self.app.tasks)
        url = self.app.database_url
        # each running atomic job (or a workflow's atomic step) holds a connection for its
        # transaction
        atomic = any(t.atomic or t.workflow is not None for t in self.app.tasks.values())
        store = PostgresStore(
            url,
            max_connections=4 + (self.config.concurrency if atomic else 0),
            name=f"conveyor-worker-{os.getpid()}",
            pgbouncer=self.app.pgbouncer,
            relaxed_transitions=not self.config.durable_transitions,
        )
        listen_url = pickup_mode(self.app, self.config)
        await store.open()
        threads = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="conveyor-job")
        deliverer = Deliverer(
            allow=AllowList.parse(self.config.allow_networks),
            metrics=self.metrics,
            max_connections=self.config.concurrency,
            http2=self.config.http2,
            ssl_context=delivery_ssl_context(self.config.ca_file),
        )
        self._deliverer = deliverer
        producer = Producer(
            store,
            worker_id=self.id,
            queues=self.config.queues,
            tasks=tasks,
            task_max_attempts=[self.app.tasks[name].max_attempts for name in tasks],
            batch_size=self.config.batch_size,
            lease_seconds=self.config.lease_seconds,
            poll_interval=(
                self.config.poll_interval if listen_url else self.config.pickup_poll_interval
            ),
            concurrency=self.config.concurrency,
            free_slots=self._jobs.free_slots,
            dispatch=self._dispatch,
            refresh_tasks=lambda: self._refresh_endpoints(store),
        )
        self._runtime = Runtime(
            store=store,
            threads=threads,
            executor=Executor(
                self.app.tasks,
                store,
                threads,
                on_thread_free=self._on_thread_free,
                deliverer=deliverer,
                metrics=self.metrics,
            ),
            completer=Completer(store, self._on_recorded),
            producer=producer,
            leader=LeaderLease(store, self.id, ttl=self.config.lease_seconds),
            listener=(
                Listener(listen_url, self._on_notify, lambda: producer.notify())
                if listen_url
                else None
            ),
            heartbeat=Heartbeat(
                store,
                self.id,
                self._jobs.held,
                self._on_lost,
                interval=self.config.heartbeat_interval,
                lease_seconds=self.config.lease_seconds,
                register=lambda: self._register_row(store),
            ),
            register=lambda: self._register(store),
            deliverer=deliverer,
        )
        return self._runtime

    async def _refresh_endpoints(self, store: PostgresStore) -> tuple[list[str], list[int]]:
        """Re-read the endpoints; return the tasks to claim (the app's, then the endpoints')
        and their attempts."""
        endpoints = [e for e in await store.endpoint_list() if e.name not in self.app.tasks]
        if self._deliverer.update(endpoints):
            log.info(
                "worker %s delivers to endpoints: %s",
                self.id,
                ", ".join(self._deliverer.names) or "none",
            )
        tasks = sorted(self.app.tasks)
        attempts = [self.app.tasks[name].max_attempts for name in tasks]
        names = self._deliverer.names
        return tasks + names, attempts + [DELIVERY_MAX_ATTEMPTS] * len(names)

    def _services(self, store: Store) -> list[PeriodicService]:
        if not self.config.maintenance:
            return []
        return maintenance_services(self.app, self.config, store, self.metrics)

    def _announce_started(self) -> None:
        log.info(
            "worker %s started: queues=%s concurrency=%d tasks=%d",
            self.id,
            ",".join(self.config.queues),
            self.config.concurrency,
            len(self.app.tasks),
        )
        self._started.set()
        self.health.started()

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
        running = self._jobs.add(job, token)
        running.task = asyncio.create_task(self._run_job(running), name=f"conveyor-job-{job.id}")

    async def _run_job(self, running: RunningJob) -> None:
        job, executor = running.job, self._rt.executor
        outcome: Outcome = Abandoned("cancelled before it started")
        started = time.monotonic()
        try:
            outcome = await executor.execute(running)
        except asyncio.CancelledError:
            pass  # cancelled before the executor took it: nothing ran
        except BaseException as exc:
            log.exception("job %d (%s): the worker failed to run it", job.id, job.task)
            outcome = executor.outcome_of_error(job, exc)
        finally:
            # whatever happened above, the slot is given back and the outcome goes on
            running.duration = time.monotonic() - started
            self._jobs.end(running)
            self._rt.producer.slot_freed(job.queue)
            self._settle(running, outcome)

    def _settle(self, running: RunningJob, outcome: Outcome) -> None:
        job = running.job
        if running.thread is not None:
            # a sync handler the timeout or a cancel could not interrupt (yet)
            asyncio.get_running_loop().call_later(1.0, self._report_stuck, running)
        if isinstance(outcome, Abandoned):
            reason = running.abandon_reason or outcome.reason
            self._report.stopped(running, reason)
            if running.abandon_reason != "shutdown":
                self._jobs.take(job)
            return
        self._rt.completer.submit(job, running.token, outcome)

    def _report_stuck(self, running: RunningJob) -> None:
        if not running.stuck:
            return
        job = running.job
        log.warning(
            "job %d (%s): its sync handler is still running after its attempt ended and cannot"
            " be interrupted; %d of %d threads are stuck, and this worker runs that many fewer"
            " jobs until they return",
            job.id,
            job.task,
            self.stuck_threads,
            self.config.concurrency,
            extra={**logs.job_fields(job), "stuck_threads": self.stuck_threads},
        )

    def _on_thread_free(self, running: RunningJob) -> None:
        """A handler's thread returned; if its attempt had ended before, its slot is free
        only now."""
        self._jobs.thread_returned(running)
        if not running.ended:
            return
        job = running.job
        if job.id not in self._jobs:
            log.info(
                "job %d: the thread of attempt %d returned; %d threads still stuck",
                job.id,
                job.attempt,
                self.stuck_threads,
            )
        self._rt.producer.slot_freed(None)

    def _on_recorded(self, ended: list[tuple[Job, Outcome, bool]]) -> None:
        self._report.attempts_ended(
            [
                (self._jobs.take(job) or RunningJob(job, uuid.UUID(int=0)), outcome, recorded)
                for job, outcome, recorded in ended
            ]
        )

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            self._rt.producer.notify(payload)
        elif channel == CANCEL_CHANNEL and payload.isdigit():
            self._abandon(int(payload), "cancelled")
        elif channel == QUEUE_CHANNEL:
            self._rt.producer.controls_changed(payload)

    def _on_lost(self, job_ids: set[int]) -> None:
        for job_id in job_ids:
            self._abandon(job_id, "its lease was lost (rescued by another worker or cancelled)")

    def _abandon(self, job_id: int, reason: str) -> None:
        running = self._jobs.current(job_id)
        if running is None or running.task is None or running.ended:
            return
        running.abandon_reason = reason
        running.task.cancel()
        if self._runtime is not None:
            self._runtime.executor.interrupt(running, JobTimeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def _serve_metrics(self) -> None:
        if self.config.metrics_port is None:
            return
        server = MetricsServer(
            self.metrics.registry,
            host=self.config.metrics_host,
            port=self.config.metrics_port,
            credentials=self.config.metrics_credentials,
            probes={"/healthz": self.health.liveness, "/readyz": self.health.readiness},
        )
        server.start()
        self._metrics_server = server
        log.info(
            "metrics at http://%s:%d/metrics%s; health at /healthz and /readyz",
            self.config.metrics_host,
            server.port,
            " (credentials required)" if self.config.metrics_credentials else "",
        )

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics endpoint listens on, once started (None when not serving)."""
        return None if self._metrics_server is None else self._metrics_server.port

    async def _register_row(self, store: PostgresStore) -> None:
        await store.worker_register(
            worker_id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.config.queues,
            tasks=sorted(self.app.tasks) + self._deliverer.names,
        )

    async def _register(self, store: PostgresStore) -> None:
        """This worker's row, the app's queue settings and endpoints."""
        for endpoint in self.app.endpoints.values():
            await store.endpoint_upsert(endpoint)
        await self._refresh_endpoints(store)
        if not self.app.tasks and not self._deliverer.names:
            log.warning(
                "worker %s has no tasks and no endpoints; it claims nothing until an endpoint"
                " is added (conveyor endpoint add)",
                self.id,
            )
        await self._register_row(store)
        for name, settings in self.app.queue_settings.items():
            await store.queue_configure(name, settings)

    async def _shutdown(
        self,
        runtime: Runtime,
        producer: asyncio.Task[None],
        background: list[asyncio.Task[None]],
    ) -> None:
        """Stop claiming, give running jobs the grace period, put the rest back, record the
        outcomes, stop the loops and close. Every wait is bounded, so shutdown always ends."""
        try:
            # The producer ends before the running jobs are listed, so none starts after.
            await stop_loops([producer])
            await self._finish_running_jobs(runtime)
            await self._drain_outcomes(runtime.completer)
            await stop_loops(background)
        finally:
            await runtime.close(self.id)
            log.info(
                "worker %s stopped (completed=%d failed=%d)", self.id, self.completed, self.failed
            )

    async def _finish_running_jobs(self, runtime: Runtime) -> None:
        running = [r.task for r in self._jobs if r.task is not None and not r.ended]
        if running:
            log.info(
                "shutting down: waiting up to %.0fs for %d running jobs",
                self.config.shutdown_grace,
                len(running),
            )
            await asyncio.wait(running, timeout=self.config.shutdown_grace)
        leftover = [r for r in self._jobs if not r.ended]
        for item in leftover:
            item.abandon_reason = "shutdown"
            if item.task is not None:
                item.task.cancel()
            runtime.executor.interrupt(item, JobTimeout)
        if leftover:
            await asyncio.wait([r.task for r in leftover if r.task is not None], timeout=5)
            held = [(r.job.id, r.token) for r in leftover]
            try:
                released = await runtime.store.job_release_many(held)
                log.info("put %d unfinished jobs back in their queues", released)
            except Exception as exc:  # noqa: BLE001 - their leases will expire instead
                log.warning("could not put jobs back (%s); their leases will expire", exc)
            for item in leftover:
                self._jobs.take(item.job)

    @staticmethod
    async def _drain_outcomes(completer: Completer) -> None:
        try:
            async with asyncio.timeout(10):
                await completer.drain()
        except TimeoutError:
            log.warning("some job outcomes were not recorded; those jobs will be rescued")

    async def _close_metrics(self) -> None:
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.close)

    @property
    def _rt(self) -> Runtime:
        assert self._runtime is not None, "the worker's runtime is built by run()"
        return self._runtime
