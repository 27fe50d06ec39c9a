"""Metrics: a worker's Prometheus metrics, and the /metrics endpoint that serves them.

Each worker counts what it ran in its own registry: jobs completed, failed and retried per task
and queue, how long handlers ran, how long due jobs waited to start, and jobs running now.
Queue depths and the oldest job's age describe the whole database, so only the elected leader
exports them (maintenance/gauges.py); summing over workers stays correct.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from conveyor.http_auth import Credentials, check_bind
from conveyor.job import Job

#: Handler run times: from a millisecond to five minutes.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Waits from due to started: from a millisecond to an hour.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600)

_LABELS = ("queue", "task")

#: A health probe: (healthy, reason), asked on the server's thread.
Probe = Callable[[], tuple[bool, str]]


class WorkerMetrics:
    """Counters, histograms and gauges of one worker, in `registry` (a new one by default)."""

    def __init__(
        self,
        running: Callable[[], int],
        registry: CollectorRegistry | None = None,
        *,
        stuck_threads: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._completed = Counter(
            "conveyor_jobs_completed", "Jobs whose handler returned.", _LABELS, registry=r
        )
        self._failed = Counter(
            "conveyor_jobs_failed",
            "Jobs that failed for good (moved to the failed state).",
            _LABELS,
            registry=r,
        )
        self._retried = Counter(
            "conveyor_jobs_retried", "Failed attempts that will be retried.", _LABELS, registry=r
        )
        self._duration = Histogram(
            "conveyor_job_duration_seconds",
            "Time a handler ran, per attempt, whatever its outcome.",
            _LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._latency = Histogram(
            "conveyor_job_start_latency_seconds",
            "Time from a job being due (enqueued, or its scheduled or retry time) to its start.",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._deliveries = Counter(
            "conveyor_deliveries",
            "HTTP deliveries to endpoints, by the class of the answer (2xx, 3xx, 4xx, 5xx) or"
            " 'error' when none came (timeout, connection, refused address).",
            ("endpoint", "status_class"),
            registry=r,
        )
        self._delivery_duration = Histogram(
            "conveyor_delivery_duration_seconds",
            "Time from sending a delivery to its answer (or its failure), per endpoint.",
            ("endpoint",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        running_gauge = Gauge("conveyor_jobs_running", "Jobs running on this worker.", registry=r)
        running_gauge.set_function(lambda: float(running()))
        stuck_gauge = Gauge(
            "conveyor_worker_stuck_threads",
            "Threads still running a sync handler whose attempt already ended (timed out or"
            " stopped); each holds one slot of the worker's concurrency until it returns.",
            registry=r,
        )
        stuck_gauge.set_function(lambda: float(stuck_threads()))
        self._workflow_runs = Counter(
            "conveyor_workflow_runs",
            "Workflow runs started (first attempt), completed and failed, per workflow.",
            ("workflow", "event"),
            registry=r,
        )
        self._workflow_steps = Counter(
            "conveyor_workflow_steps",
            "Workflow steps by outcome: completed, failed (for good), retrying, sleeping,"
            " waiting, event, timeout.",
            ("workflow", "outcome"),
            registry=r,
        )
        self._counters = {
            "completed": self._completed,
            "failed": self._failed,
            "retrying": self._retried,
        }
        # labels() looks a child up under a lock and checks its values each time: twice a
        # job; the children of a (queue, task) are kept here instead
        self._children: dict[tuple[str, str, str], Any] = {}

    def _child(self, kind: str, metric: Counter | Histogram, queue: str, task: str) -> Any:
        key = (kind, queue, task)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(queue, task)
        return child

    def started(self, job: Job) -> None:
        """Record the wait of a job that just started (both times are the database's)."""
        if job.attempted_at is not None:
            wait = (job.attempted_at - job.run_at).total_seconds()
            self._child("latency", self._latency, job.queue, job.task).observe(max(wait, 0.0))

    def finished(self, job: Job, outcome: str, duration: float | None) -> None:
        """Record an attempt's end: its outcome as Worker._log_outcome names it."""
        counter = self._counters.get(outcome)
        if counter is not None:
            self._child(outcome, counter, job.queue, job.task).inc()
        if duration is not None:
            self._child("duration", self._duration, job.queue, job.task).observe(duration)

    def workflow_run(self, workflow: str, event: str) -> None:
        """Count a run's start or end (started, completed, failed)."""
        self._workflow_runs.labels(workflow, event).inc()

    def workflow_step(self, workflow: str, outcome: str) -> None:
        """Count a step's outcome as the engine recorded it."""
        self._workflow_steps.labels(workflow, outcome).inc()

    def delivered(self, endpoint: str, status: int | None, duration: float) -> None:
        """Record one delivery attempt: the HTTP status of its answer, None when none came."""
        status_class = "error" if status is None else f"{status // 100}xx"
        self._deliveries.labels(endpoint, status_class).inc()
        self._delivery_duration.labels(endpoint).observe(duration)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news


class MetricsServer:
    """Serves a registry at /metrics on a background thread, behind optional credentials, and
    the health `probes` (path: probe) beside it."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        credentials: Credentials | None = None,
        probes: Mapping[str, Probe] | None = None,
    ) -> None:
        self._credentials = credentials or Credentials()
        # /healthz and /readyz: answered without credentials (an orchestrator's probe carries
        # none), and telling nothing but a state and its reason
        self._probes = dict(probes or {})
        check_bind(host, self._credentials, "metrics")
        self._metrics_app = make_wsgi_app(registry)
        self._server = make_server(host, port, self._app, _Server, _QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="conveyor-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on (useful after asking for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = self._probes.get(environ.get("PATH_INFO", "/"))
        if probe is not None:
            healthy, reason = probe()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{reason}\n".encode()]
        if not self._credentials.accepts(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", self._credentials.challenge),
                    ("Content-Type", "text/plain; charset=utf-8"),
                ],
            )
            return [b"credentials required\n"]
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/metrics/"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"metrics are at /metrics\n"]
        result: Iterable[bytes] = self._metrics_app(environ, start_response)
        return result
