"""Every worker serves Prometheus metrics; queue gauges come from the elected worker only."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from tests.helpers import eventually, fast_config, job_states, require_tool, running_worker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, authorization: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


async def test_counters_and_histograms_after_a_known_workload(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="ok")
    def ok() -> None: ...

    @app.task(name="flaky", max_attempts=2, backoff=conveyor.RetryPolicy(base=0.01, jitter=0))
    def flaky() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        ok.enqueue()
    flaky.enqueue()
    async with running_worker(app, fast_config(metrics_port=0)) as worker:
        await eventually(
            lambda: job_states(conn).get("completed") == 3 and job_states(conn).get("failed") == 1
        )
        assert worker.metrics_port
        status, text = await asyncio.to_thread(scrape, worker.metrics_port)
    assert status == 200
    found = samples(text)
    ok_labels = {"queue": "default", "task": "ok"}
    flaky_labels = {"queue": "default", "task": "flaky"}
    assert value(found, "conveyor_jobs_completed_total", **ok_labels) == 3
    assert value(found, "conveyor_jobs_retried_total", **flaky_labels) == 1
    assert value(found, "conveyor_jobs_failed_total", **flaky_labels) == 1
    assert value(found, "conveyor_jobs_completed_total", **flaky_labels) is None
    assert value(found, "conveyor_job_duration_seconds_count", **ok_labels) == 3
    assert value(found, "conveyor_job_duration_seconds_count", **flaky_labels) == 2
    assert value(found, "conveyor_job_start_latency_seconds_count", **ok_labels) == 3
    assert value(found, "conveyor_job_start_latency_seconds_count", **flaky_labels) == 2
    assert value(found, "conveyor_jobs_running") == 0


async def test_jobs_running_gauge_counts_running_handlers(app: conveyor.Conveyor) -> None:
    release = asyncio.Event()

    @app.task(name="slow")
    async def slow() -> None:
        await release.wait()

    slow.enqueue()
    slow.enqueue()
    async with running_worker(app, fast_config(metrics_port=0)) as worker:
        port = worker.metrics_port
        assert port

        async def two_running() -> bool:
            _, text = await asyncio.to_thread(scrape, port)
            return value(samples(text), "conveyor_jobs_running") == 2

        await eventually(two_running)
        release.set()


async def test_only_the_elected_worker_exports_queue_depths(app: conveyor.Conveyor) -> None:
    @app.task(name="later", queue="reports")
    def later() -> None: ...

    for _ in range(5):
        later.enqueue()  # nobody serves "reports": they stay available
    later.with_options(delay=3600).enqueue()
    config = fast_config(metrics_port=0, gauge_interval=0.1)
    async with running_worker(app, config) as first, running_worker(app, config) as second:
        ports = [first.metrics_port, second.metrics_port]

        async def depths() -> list[Samples]:
            texts = await asyncio.gather(*(asyncio.to_thread(scrape, p) for p in ports if p))
            return [samples(text) for _, text in texts]

        async def one_exports() -> list[Samples] | None:
            found = await depths()
            exporting = [
                f
                for f in found
                if value(f, "conveyor_queue_jobs", queue="reports", state="available")
            ]
            return exporting if len(exporting) == 1 else None

        (leader,) = await eventually(one_exports)
        assert value(leader, "conveyor_queue_jobs", queue="reports", state="available") == 5
        assert value(leader, "conveyor_queue_jobs", queue="reports", state="scheduled") == 1
        assert value(leader, "conveyor_queue_jobs", queue="reports", state="running") == 0
        age = value(leader, "conveyor_queue_oldest_available_age_seconds", queue="reports")
        assert age is not None and age >= 0
        # and it stays one: the other worker never exports them
        for _ in range(5):
            found = await depths()
            assert (
                sum(
                    1
                    for f in found
                    if value(f, "conveyor_queue_jobs", queue="reports", state="available")
                )
                == 1
            )
            await asyncio.sleep(0.05)


async def test_metrics_refuse_requests_without_credentials(app: conveyor.Conveyor) -> None:
    @app.task(name="ok")
    def ok() -> None: ...

    credentials = conveyor.Credentials(token="s3cret-token", username="prom", password="pa55")
    config = fast_config(metrics_port=0, metrics_credentials=credentials)
    async with running_worker(app, config) as worker:
        port = worker.metrics_port
        assert port
        basic = "Basic " + base64.b64encode(b"prom:pa55").decode()
        wrong_basic = "Basic " + base64.b64encode(b"prom:nope").decode()
        results = await asyncio.gather(
            asyncio.to_thread(scrape, port),
            asyncio.to_thread(scrape, port, "Bearer wrong"),
            asyncio.to_thread(scrape, port, wrong_basic),
            asyncio.to_thread(scrape, port, "Bearer s3cret-token"),
            asyncio.to_thread(scrape, port, basic),
        )
    codes = [code for code, _ in results]
    assert codes == [401, 401, 401, 200, 200]
    assert "conveyor_jobs_running" not in results[0][1]
    assert "conveyor_jobs_running" in results[3][1]


def test_metrics_beyond_loopback_need_credentials() -> None:
    with pytest.raises(conveyor.ConfigError, match="without credentials"):
        conveyor.WorkerConfig(metrics_port=9464, metrics_host="0.0.0.0")
    conveyor.WorkerConfig(
        metrics_port=9464, metrics_host="0.0.0.0", metrics_credentials=conveyor.Credentials("t")
    )
    conveyor.WorkerConfig(metrics_port=9464, metrics_host="::1")


async def test_exposition_passes_promtool(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    promtool = require_tool("promtool", "Debian: apt-get install prometheus")

    @app.task(name="ok", queue="mail")
    def ok() -> None: ...

    ok.enqueue()
    config = fast_config(queues=("mail",), metrics_port=0, gauge_interval=0.1)
    async with running_worker(app, config) as worker:
        await eventually(lambda: job_states(conn).get("completed") == 1)
        port = worker.metrics_port
        assert port

        async def with_depths() -> str | None:
            _, text = await asyncio.to_thread(scrape, port)
            return text if "conveyor_queue_jobs{" in text else None

        text = await eventually(with_depths)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


async def test_a_worker_that_lost_the_lead_stops_exporting_queue_depths_at_once(db: str) -> None:
    """As a host cut off while it led finds when its link is back: its last snapshot, fresh by
    the clock (which stands still here), is dropped on the first pass that finds it no longer
    leads."""
    from conveyor._store.postgres import PostgresStore
    from conveyor.maintenance.gauges import QueueGauges

    store = PostgresStore(db, name="gauges-test")
    await store.open()
    try:
        gauges = QueueGauges(store, interval=0.01, monotonic=lambda: 0.0)
        leading = True

        async def is_leader() -> bool:
            return leading

        runner = asyncio.create_task(gauges.run(is_leader))
        try:
            await eventually(gauges.fresh, timeout=10)
            leading = False
            await eventually(lambda: not gauges.fresh(), timeout=10)
        finally:
            runner.cancel()
    finally:
        await store.close()
