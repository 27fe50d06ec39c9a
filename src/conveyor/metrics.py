"""Metrics: a worker's Prometheus metrics, and the /metrics endpoint that serves them.

Each worker counts what it ran in its own registry: jobs completed, failed and retried per task
and queue, how long handlers ran, how long due jobs waited to start, and jobs running now.
Queue depths and the oldest job's age describe the whole database, so only the elected leader
exports them (maintenance/gauges.py); summing over workers stays correct.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from conveyor.http_auth import Credentials, check_bind
from conveyor.job import Job

#: Handler run times: from a millisecond to five minutes.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Waits from due to started: from a millisecond to an hour.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600)

_LABELS = ("queue", "task")

#: A health probe: (healthy, reason), asked on the server's thread.
Probe = Callable[[], tuple[bool, str]]


class JobSeries(Collector):
    """The per-job series (outcomes counted, durations and start latencies as histograms) of
    one worker, kept as plain numbers and turned into metrics when scraped.

    prometheus_client's Counter and Histogram take a lock and walk their buckets on every
    update: a few microseconds a job, which a worker draining thousands of jobs a second
    feels (docs/benchmarks.md, issue 15). These are updated from the event loop only, a batch
    of outcomes at a time; a scrape (on the metrics server's thread) copies them first, so it
    may miss an update in flight, never see a torn series: each histogram's count is the sum
    of its buckets as copied."""

    _COUNTERS = (
        ("completed", "conveyor_jobs_completed", "Jobs whose handler returned."),
        ("failed", "conveyor_jobs_failed", "Jobs that failed for good (now in state failed)."),
        ("retrying", "conveyor_jobs_retried", "Failed attempts that will be retried."),
    )
    _HISTOGRAMS = (
        (
            "duration",
            "conveyor_job_duration_seconds",
            "Time a handler ran, per attempt, whatever its outcome.",
            DURATION_BUCKETS,
        ),
        (
            "latency",
            "conveyor_job_start_latency_seconds",
            "Time from a job being due (enqueued, or its scheduled or retry time) to its start.",
            LATENCY_BUCKETS,
        ),
    )

    def __init__(self) -> None:
        #: (outcome, queue, task) -> attempts
        self._counts: dict[tuple[str, str, str], int] = {}
        #: (kind, queue, task) -> observations per bucket (the last one: +Inf), then their sum
        self._histograms: dict[tuple[str, str, str], list[float]] = {}
        self._bounds = {kind: bounds for kind, _, _, bounds in self._HISTOGRAMS}

    def count(self, outcome: str, queue: str, task: str) -> None:
        key = (outcome, queue, task)
        self._counts[key] = self._counts.get(key, 0) + 1

    def observe(self, kind: str, queue: str, task: str, value: float) -> None:
        key = (kind, queue, task)
        series = self._histograms.get(key)
        bounds = self._bounds[kind]
        if series is None:
            series = self._histograms[key] = [0.0] * (len(bounds) + 2)
        series[bisect_left(bounds, value)] += 1
        series[-1] += value

    def describe(self) -> Iterable[Metric]:
        for _, name, text in self._COUNTERS:
            yield CounterMetricFamily(name, text, labels=_LABELS)
        for _, name, text, _ in self._HISTOGRAMS:
            yield HistogramMetricFamily(name, text, labels=_LABELS)

    def collect(self) -> Iterator[Metric]:
        counts = list(self._counts.items())  # one C call under the GIL: never torn
        histograms = [(key, list(values)) for key, values in list(self._histograms.items())]
        for outcome, name, text in self._COUNTERS:
            family = CounterMetricFamily(name, text, labels=_LABELS)
            for (kind, queue, task), value in counts:
                if kind == outcome:
                    family.add_metric([queue, task], value)
            yield family
        for kind, name, text, bounds in self._HISTOGRAMS:
            histogram = HistogramMetricFamily(name, text, labels=_LABELS)
            edges = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
            for (series_kind, queue, task), values in histograms:
                if series_kind != kind:
                    continue
                cumulative, buckets = 0.0, []
                for edge, observed in zip(edges, values[:-1], strict=True):
                    cumulative += observed
                    buckets.append((edge, cumulative))
                histogram.add_metric([queue, task], buckets, values[-1])
            yield histogram


#: The outcomes JobSeries counts (the rest only have their durations observed).
_COUNTED = frozenset(outcome for outcome, _, _ in JobSeries._COUNTERS)


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
        self._jobs = JobSeries()
        r.register(self._jobs)
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

    def finished(self, job: Job, outcome: str, duration: float | None) -> None:
        """Record an attempt's end (its outcome as OutcomeReport names it): how long it ran
        and how long it had waited to start (both times of the wait are the database's)."""
        queue, task = job.queue, job.task
        series = self._jobs
        if outcome in _COUNTED:
            series.count(outcome, queue, task)
        if duration is not None:
            series.observe("duration", queue, task, duration)
            if job.attempted_at is not None:
                wait = (job.attempted_at - job.run_at).total_seconds()
                series.observe("latency", queue, task, max(wait, 0.0))

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
