"""W1 enqueue: one job per call (sync and async; one caller, and 16 concurrent callers) and bulk
batches of 1,000 (COPY).

Besides jobs/s, each figure carries the client process's CPU per job (`time.process_time()`
around the run: building the job, the pool, the driver, the round trips) and the CPU the
database's backends spent per job (their processes' CPU time, read with psutil before and after
the run; the server runs on this machine).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.app import app, noop, noop_relaxed
from bench.common import connect, log, summarize, truncate
from conveyor import Task

BULK_BATCH = 1000
#: Concurrent callers of the concurrent figures (threads, asyncio tasks).
CONCURRENCY = 16


def _sync_single(n: int, task: Task[Any] = noop) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        task.enqueue(i=i)
    return time.perf_counter() - t0


def _async_single(n: int) -> float:
    async def go() -> float:
        for i in range(20):  # open the loop's pool before the clock starts
            await noop.aenqueue(i=-i)
        t0 = time.perf_counter()
        for i in range(n):
            await noop.aenqueue(i=i)
        seconds = time.perf_counter() - t0
        _before_close()
        await app.aclose()
        return seconds

    return asyncio.run(go())


def _threads(n: int, task: Task[Any] = noop) -> float:
    """CONCURRENCY threads, each enqueueing its share one job per call."""
    share = n // CONCURRENCY
    start = threading.Barrier(CONCURRENCY + 1)

    def caller(k: int) -> None:
        start.wait()
        for i in range(k * share, (k + 1) * share):
            task.enqueue(i=i)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return (share * CONCURRENCY / n) * (time.perf_counter() - t0)


def _tasks(n: int) -> float:
    """CONCURRENCY asyncio tasks on one loop, each awaiting its share one job per call."""
    share = n // CONCURRENCY

    async def caller(k: int) -> None:
        for i in range(k * share, (k + 1) * share):
            await noop.aenqueue(i=i)

    async def go() -> float:
        # open the loop's pool (all its connections) before the clock starts
        await asyncio.gather(*(noop.aenqueue(i=-k) for k in range(4 * CONCURRENCY)))
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(CONCURRENCY)))
        seconds = time.perf_counter() - t0
        _before_close()
        await app.aclose()
        return (share * CONCURRENCY / n) * seconds

    return asyncio.run(go())


def _bulk(n: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, BULK_BATCH):
        app.enqueue_many([noop.spec(i=i) for i in range(start, min(n, start + BULK_BATCH))])
    return time.perf_counter() - t0


def _own_connection(url: str, n: int) -> float:
    """Diagnostic: enqueue_tx on one autocommit connection (no pool checkout per call)."""
    with connect(url) as conn:
        t0 = time.perf_counter()
        for i in range(n):
            noop.enqueue_tx(conn, i=i)
        seconds = time.perf_counter() - t0
        _before_close()
        return seconds


class _ServerCpu:
    """CPU seconds the database's backends (of this database, not this benchmark's own
    connection) used between start() and stop(); None without psutil or their processes.
    A run that closes its connections calls _before_close() first (their backends end)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._before: dict[int, float] = {}
        self._closing: dict[int, float] = {}

    def _times(self) -> dict[int, float]:
        import psutil

        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
        out: dict[int, float] = {}
        for (pid,) in rows:
            try:
                t = psutil.Process(pid).cpu_times()
            except Exception:  # noqa: BLE001 - gone, or not ours to read
                continue
            out[pid] = t.user + t.system
        return out

    def start(self) -> None:
        self._before = self._times()
        self._closing = {}

    def closing(self) -> None:
        self._closing = self._times()

    def stop(self) -> float | None:
        after = {**self._times(), **self._closing}
        if not after:
            return None
        return sum(t - self._before.get(pid, 0.0) for pid, t in after.items())


_meters: list[_ServerCpu] = []


def _before_close() -> None:
    for meter in _meters:
        meter.closing()


def run(url: str, *, single: int, bulk: int, reps: int) -> dict[str, Any]:
    """Jobs per second for each way of enqueueing; the tables are emptied before every run."""
    modes: dict[str, tuple[int, Callable[[int], float]]] = {
        "sync_single": (single, _sync_single),
        "async_single": (single, _async_single),
        f"threads{CONCURRENCY}_single": (single, _threads),
        f"tasks{CONCURRENCY}_single": (single, _tasks),
        # durable_enqueue=False: the commit does not wait for the WAL flush (docs/enqueue.md)
        "sync_single_relaxed": (single, lambda n: _sync_single(n, noop_relaxed)),
        f"threads{CONCURRENCY}_single_relaxed": (single, lambda n: _threads(n, noop_relaxed)),
        "bulk_copy": (bulk, _bulk),
        "sync_single_own_conn": (single, lambda n: _own_connection(url, n)),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    server: dict[str, list[float]] = {name: [] for name in modes}
    with connect(url) as conn:
        for _ in range(50):  # open the app's sync pool before any clock starts
            noop.enqueue(i=-1)
        meter = _ServerCpu(conn)
        _meters[:] = [meter]
        for rep in range(reps):
            # modes interleaved, so drift in machine load hits all of them alike
            for name, (n, fn) in modes.items():
                truncate(conn)
                meter.start()
                c0 = time.process_time()
                seconds = fn(n)
                cpu[name].append(1e6 * (time.process_time() - c0) / n)
                used = meter.stop()
                if used is not None:
                    server[name].append(1e6 * used / n)
                rates[name].append(n / seconds)
                rate = n / seconds
                log(
                    f"W1 {name} rep {rep + 1}/{reps}: {n} jobs in {seconds:.2f}s = {rate:,.0f}/s,"
                    f" client CPU {cpu[name][-1]:.0f} us/job"
                )
        truncate(conn)
    app.close()
    out: dict[str, Any] = {"batch": BULK_BATCH, "concurrency": CONCURRENCY}
    for name, (n, _) in modes.items():
        # this process's CPU per job: building the job, the pool, the driver, the round trips
        per_job = summarize(cpu[name], "us")["median"]
        on_server = summarize(server[name], "us")["median"] if server[name] else None
        out[name] = summarize(
            rates[name],
            "jobs/s",
            jobs=n,
            client_cpu_us_per_job=per_job,
            server_cpu_us_per_job=on_server,
        )
    return out
