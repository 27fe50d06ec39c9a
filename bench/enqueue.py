"""W1 enqueue: one job per call (sync and async) and bulk batches of 1,000 (COPY)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.app import app, noop
from bench.common import connect, log, summarize, truncate

BULK_BATCH = 1000


def _sync_single(n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        noop.enqueue(i=i)
    return time.perf_counter() - t0


def _async_single(n: int) -> float:
    async def go() -> float:
        for i in range(20):  # open the loop's pool before the clock starts
            await noop.aenqueue(i=-i)
        t0 = time.perf_counter()
        for i in range(n):
            await noop.aenqueue(i=i)
        seconds = time.perf_counter() - t0
        await app.aclose()
        return seconds

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
        return time.perf_counter() - t0


def run(url: str, *, single: int, bulk: int, reps: int) -> dict[str, Any]:
    """Jobs per second for each way of enqueueing; the tables are emptied before every run."""
    modes = {
        "sync_single": (single, _sync_single),
        "async_single": (single, _async_single),
        "bulk_copy": (bulk, _bulk),
        "sync_single_own_conn": (single, lambda n: _own_connection(url, n)),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    with connect(url) as conn:
        for _ in range(50):  # open the app's sync pool before any clock starts
            noop.enqueue(i=-1)
        for rep in range(reps):
            # modes interleaved, so drift in machine load hits all of them alike
            for name, (n, fn) in modes.items():
                truncate(conn)
                c0 = time.process_time()
                seconds = fn(n)
                cpu[name].append(1e6 * (time.process_time() - c0) / n)
                rates[name].append(n / seconds)
                rate = n / seconds
                log(f"W1 {name} rep {rep + 1}/{reps}: {n} jobs in {seconds:.2f}s = {rate:,.0f}/s")
        truncate(conn)
    app.close()
    out: dict[str, Any] = {"batch": BULK_BATCH}
    for name, (n, _) in modes.items():
        # this process's CPU per job: building the job, the pool, the driver, the round trips
        per_job = summarize(cpu[name], "us")["median"]
        out[name] = summarize(rates[name], "jobs/s", jobs=n, client_cpu_us_per_job=per_job)
    return out
