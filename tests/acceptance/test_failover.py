"""Failover: a primary and a streaming replica (pg_basebackup, both started by the test);
worker processes and an enqueuer use one multi-host URL with target_session_attrs=read-write.
Mid-drain the primary is stopped (`pg_ctl stop -m immediate`, a crash) and the replica
promoted: the workers reconnect to the new primary (pools, listener, periodic services; one
worker is elected again) and finish every job it has.

With synchronous replication every enqueue the primary acknowledged is on the new primary.
With asynchronous replication an acknowledged enqueue can be lost; the test measures how many
were, and docs/operations.md reports it. Needs the Postgres server binaries (skipped without
them, except under CI=true, where it fails)."""

from __future__ import annotations

import itertools
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from bench.app import QUEUE, noop

import conveyor
from conveyor.errors import DatabaseUnavailableError
from conveyor.migrate import Migrator
from tests.acceptance.conftest import WorkerProcess, scalar
from tests.helpers import component_missing, wait_until
from tests.pgcluster import Cluster, ToolMissingError, free_port, make_root

pytestmark = pytest.mark.slow

PRELOADED = 3000
WORKERS = 2


@dataclass
class Pair:
    primary: Cluster
    replica: Cluster
    url: str  # both servers; libpq picks the one that takes writes


@pytest.fixture(params=["sync", "async"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    synchronous = request.param == "sync"
    root: Path | None = None
    servers: list[Cluster] = []
    try:
        root = make_root("cv-failover-")
        settings = {"synchronous_standby_names": "'replica'"} if synchronous else {}
        primary = Cluster.create(root, "primary", settings=settings)
        servers.append(primary)
        primary.start()
        replica = primary.replica("replica", slot="replica")
        servers.append(replica)
        # Promoted, it has no standby of its own: it must not wait for one.
        replica.configure({"synchronous_standby_names": "''"})
        replica.start()
        expected = "sync" if synchronous else "async"
        wait_until(lambda: _sync_state(primary) == expected, timeout=30)
        primary.execute("CREATE DATABASE conveyor")
        url = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/conveyor"
            "?target_session_attrs=read-write&connect_timeout=2"
        )
        Migrator(url).migrate()
        yield Pair(primary, replica, url)
    except ToolMissingError as exc:
        component_missing(str(exc))
    finally:
        for server in servers:
            server.stop("immediate")
            print(f"--- {server.datadir.name} log (tail):\n{server.log()[-3000:]}")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _sync_state(server: Cluster) -> str | None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica'"
            " AND state = 'streaming'"
        ).fetchone()
    return str(row[0]) if row else None


@dataclass
class Enqueuer:
    """Enqueues one job per call from a few threads, as web requests do, noting which enqueues
    were acknowledged (the commit returned, with its time) and which calls failed."""

    app: conveyor.Conveyor
    threads: int = 4
    acknowledged: list[tuple[int, float]] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_000))
    _running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._running.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._running:
            thread.join(30)

    def _run(self) -> None:
        while not self.stopping.is_set():
            n = next(self._numbers)
            try:
                self.app.enqueue_many([noop.spec(i=n)])
            except (DatabaseUnavailableError, psycopg.Error):
                self.failures.append(time.monotonic())
                time.sleep(0.05)
                continue
            self.acknowledged.append((n, time.monotonic()))


def _replica_behind(primary: Cluster) -> str:
    """How far the replica was behind just before the stop: WAL bytes not yet flushed and not
    yet replayed there, and the lags the primary last measured."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn),"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), flush_lag, replay_lag"
            " FROM pg_stat_replication WHERE application_name = 'replica'"
        ).fetchone()
    assert row is not None, "the replica is not streaming"
    unflushed, unreplayed, flush_lag, replay_lag = row
    return (
        f"{unflushed} B unflushed, {unreplayed} B unreplayed"
        f" (flush lag {flush_lag}, replay lag {replay_lag})"
    )


def _exports_queue_gauges(port: int) -> bool:
    """Whether the worker serving metrics on `port` exports the queue gauges (only the elected
    worker does)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return "\nconveyor_queue_jobs{" in response.read().decode()
    except OSError:
        return False


def _present(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT (args->>'i')::int FROM conveyor.jobs").fetchall()
    return {row[0] for row in rows}


def _unfinished(url: str) -> int:
    count: int = scalar(
        url, "SELECT count(*) FROM conveyor.jobs WHERE state NOT IN ('completed', 'discarded')"
    )
    return count


def test_workers_follow_a_failover_and_finish_the_drain(
    pair: Pair, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mode = request.node.callspec.params["pair"]
    app = conveyor.Conveyor(pair.url)
    app.enqueue_many([noop.spec(i=n) for n in range(PRELOADED)])
    ports = [free_port() for _ in range(WORKERS)]
    workers = [
        WorkerProcess(
            pair.url,
            ("--queues", QUEUE, "--concurrency", "10", "--metrics-port", str(ports[n])),
            tmp_path / f"worker-{n}.log",
            app="bench.app:app",
        )
        for n in range(WORKERS)
    ]
    enqueuer = Enqueuer(app)
    try:
        wait_until(
            lambda: scalar(pair.url, "SELECT count(*) FROM conveyor.worker") == WORKERS, timeout=90
        )
        enqueuer.start()
        wait_until(lambda: len(enqueuer.acknowledged) >= 200, timeout=30)
        # Mid-drain: some jobs done, most still to do.
        wait_until(
            lambda: (
                scalar(pair.url, "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'")
                >= PRELOADED // 10
            ),
            timeout=30,
        )
        behind = _replica_behind(pair.primary)
        acknowledged_before = len(enqueuer.acknowledged)
        pair.primary.stop("immediate")
        stopped = time.monotonic()
        last_ack_before_stop = max(t for _, t in enqueuer.acknowledged)
        pair.replica.promote()
        promoted = time.monotonic()

        # Enqueueing and working resume on the new primary.
        wait_until(lambda: enqueuer.acknowledged[-1][1] > promoted, timeout=30)
        first_enqueue = min(t for _, t in enqueuer.acknowledged if t > promoted)
        new = pair.replica.url("conveyor")
        done_at_promotion = scalar(
            new, "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'"
        )
        wait_until(
            lambda: (
                scalar(new, "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'")
                > done_at_promotion
            ),
            timeout=30,
        )
        first_completion = time.monotonic()

        # A job due a moment from now: the workers' schedulers make it available, so that
        # shows their periodic services reconnected too, and when.
        (scheduled,) = app.enqueue_many([noop.with_options(delay=0.1).spec(i=-1)])
        promoted_query = "SELECT state <> 'scheduled' FROM conveyor.jobs WHERE id = %s"
        wait_until(lambda: scalar(new, promoted_query, scheduled), timeout=60)
        maintenance = time.monotonic()
        enqueuer.stop()
        wait_until(lambda: _unfinished(new) == 0, timeout=60)
        # One elected worker still (the pruner, vacuumer and gauges run on it alone): only it
        # exports the queue gauges (a job due in an hour gives them something to count).
        app.enqueue_many([noop.with_options(delay=3600).spec(i=-2)])
        exporting = lambda: sum(_exports_queue_gauges(port) for port in ports)  # noqa: E731
        wait_until(lambda: exporting() == 1)
        for _ in range(3):
            assert exporting() <= 1, "two workers think they are elected"
            time.sleep(0.5)
        for worker in workers:
            assert worker.alive(), f"a worker died in the failover:\n{worker.log()}"
            wait_until(lambda w=worker: "listener reconnected" in w.log(), timeout=30)  # type: ignore[misc]
        listening = scalar(
            new,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'conveyor-listener'",
        )
        assert listening == WORKERS

        acknowledged = {n for n, _ in enqueuer.acknowledged}
        lost = acknowledged - _present(new)
        lost_preloaded = set(range(PRELOADED)) - _present(new)
        print(
            f"{mode}: {len(enqueuer.acknowledged)} enqueues acknowledged"
            f" ({acknowledged_before} before the stop), {len(lost)} lost {sorted(lost)[:10]};"
            f" last acknowledged {1000 * (stopped - last_ack_before_stop):.0f} ms before the stop;"
            f" replica behind by {behind};"
            f" promotion took {promoted - stopped:.2f} s; enqueue resumed"
            f" {first_enqueue - promoted:.2f} s and work {first_completion - promoted:.2f} s"
            f" after promotion, the scheduler {maintenance - promoted:.2f} s after;"
            f" {len(enqueuer.failures)} failed enqueue calls"
        )
        assert not lost_preloaded, "a job committed long before the stop was lost"
        if mode == "sync":
            assert not lost, "synchronous replication lost an acknowledged enqueue"

        for worker in workers:
            worker.send(signal.SIGTERM)
        assert [worker.wait(timeout=30) for worker in workers] == [0] * WORKERS
    finally:
        enqueuer.stop()
        for worker in workers:
            if worker.alive():
                worker.kill_all()
            print(f"--- {worker.log_path.name} (tail):\n{worker.log()[-4000:]}")
        app.close()
