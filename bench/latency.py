"""W3 enqueue-to-start latency: an idle worker, jobs sent one at a time at a steady rate.

Each job carries its enqueue wall time (`time.time()` just before the enqueue call) and the
handler returns `time.time()` at its start; latency = start - enqueue, read from conveyor.jobs.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psycopg

from bench.app import app, stamp
from bench.common import ENV_URL, connect, log, percentile, summarize, truncate, wait_completed
from bench.workers import WorkerGroup

MAX_IN_FLIGHT = 8  # the app's async pool size: sends overlap only when one is late
PER_SENDER = 600.0  # jobs/s one sender process is asked for at most


async def paced_send(
    rate: float,
    duration: float,
    *,
    batch: int = 1,
    on_tick: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Send round(rate*duration) stamp jobs, the i-th due at start + i/rate (open loop: a slow
    send does not delay the next one's clock, up to MAX_IN_FLIGHT at once). Bounded: gives up
    once duration + 10 s have passed."""
    total = max(1, round(rate * duration / batch))
    tick_rate = rate / batch
    start = time.perf_counter()
    hard_stop = start + duration + 10
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    ids: list[int] = []
    pending: set[asyncio.Task[None]] = set()
    worst_lag = 0.0

    call_ms: list[float] = []

    async def one() -> None:
        try:
            t = time.time()
            if batch == 1:
                ids.append(await stamp.aenqueue(t=t))
            else:
                ids.extend(await app.aenqueue_many([stamp.spec(t=t) for _ in range(batch)]))
            call_ms.append(1000 * (time.time() - t))
        finally:
            slots.release()

    for i in range(total):
        due = start + i / tick_rate
        now = time.perf_counter()
        if now > hard_stop:
            break
        if due > now:
            await asyncio.sleep(due - now)
        await slots.acquire()
        worst_lag = max(worst_lag, time.perf_counter() - due)
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        if on_tick is not None:
            on_tick(i)
    if pending:
        await asyncio.gather(*pending)
    seconds = time.perf_counter() - start
    return {
        "sent": len(ids),
        "ids": ids,
        "send_seconds": round(seconds, 3),
        "achieved_rate": round(len(ids) / seconds, 1),
        "worst_send_lag_ms": round(1000 * worst_lag, 1),
        "enqueue_call_p50_ms": round(sorted(call_ms)[len(call_ms) // 2], 3) if call_ms else None,
    }


def latencies_ms(conn: psycopg.Connection[Any], ids: list[int]) -> list[float]:
    rows = conn.execute(
        "SELECT 1000 * ((result #>> '{}')::float8 - (args ->> 't')::float8)"
        " FROM conveyor.jobs WHERE id = ANY(%s) AND state = 'completed'",
        (ids,),
    ).fetchall()
    return sorted(float(r[0]) for r in rows)


def _sender(url: str, rate: float, duration: float, batch: int) -> dict[str, Any]:
    """The sender process: warm its pool, then send at `rate`."""
    os.environ[ENV_URL] = url

    async def go() -> dict[str, Any]:
        warm = [await stamp.aenqueue(t=time.time()) for _ in range(5)]
        await asyncio.sleep(0.5)
        result = await paced_send(rate, duration, batch=batch)
        result["warm"] = warm
        await app.aclose()
        return result

    return asyncio.run(go())


def send(url: str, rate: float, duration: float) -> dict[str, Any]:
    """Send at `rate` from one process: one job per call up to PER_SENDER jobs/s; above it (one
    Python process enqueueing one job at a time tops out near 1,000/s here, and more sender
    processes only fight the worker for the two cores) 100 enqueue_many calls per second."""
    batch = 1 if rate <= PER_SENDER else math.ceil(rate / 100)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        result = pool.submit(_sender, url, rate, duration, batch).result(timeout=duration + 90)
    result["batch"] = batch
    return result


def breakdown_ms(conn: psycopg.Connection[Any], ids: list[int]) -> dict[str, float | None]:
    """Medians of the path's segments, all on this host's clock: the client's stamp, the insert
    statement's start (created_at), the claim statement's start (attempted_at), the handler."""
    row = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY 1000 * (extract(epoch FROM"
        "           created_at) - (args ->> 't')::float8)),"
        "       percentile_cont(0.5) WITHIN GROUP (ORDER BY 1000 * extract(epoch FROM"
        "           attempted_at - created_at)),"
        "       percentile_cont(0.5) WITHIN GROUP (ORDER BY 1000 * ((result #>> '{}')::float8"
        "           - extract(epoch FROM attempted_at)))"
        "  FROM conveyor.jobs WHERE id = ANY(%s) AND state = 'completed'",
        (ids,),
    ).fetchone()
    keys = ("stamp_to_insert_ms", "insert_to_claim_ms", "claim_to_handler_ms")
    values = row or (None, None, None)
    return {
        k: round(float(v), 3) if v is not None else None for k, v in zip(keys, values, strict=True)
    }


def latency_once(url: str, rate: float, duration: float, concurrency: int = 100) -> dict[str, Any]:
    with connect(url) as mon:
        truncate(mon)
        workers = WorkerGroup(url, processes=1, concurrency=concurrency, label="W3")
        workers.start()
        try:
            workers.wait_ready(mon)
            sent = send(url, rate, duration)
            ids = sent.pop("ids")
            warm = sent.pop("warm")
            done, _ = wait_completed(mon, min(ids), max(ids), len(ids), timeout=30)
            lat = latencies_ms(mon, ids)
            segments = breakdown_ms(mon, ids)
            warm_lat = latencies_ms(mon, warm)
        finally:
            workers.stop()
        truncate(mon)
    out = {
        "count": len(lat),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "mean_ms": sum(lat) / len(lat) if lat else None,
        "warmup_max_ms": warm_lat[-1] if warm_lat else None,
        "all_done": done,
        **segments,
        **sent,
    }
    log(
        f"W3 rate={rate:g}/s for {duration:g}s: batch {out['batch']}, sent {out['sent']}"
        f" at {out['achieved_rate']}/s; p50 {out['p50_ms']:.2f} p95 {out['p95_ms']:.2f}"
        f" p99 {out['p99_ms']:.2f} ms"
    )
    return out


def run(
    url: str,
    *,
    rates: dict[str, float],
    duration: float,
    reps: int,
    concurrency: int = 100,
    drain_rate: float | None = None,
) -> dict[str, Any]:
    """One figure set per named rate (e.g. the fixed rate and 50% of the measured drain rate)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rates}
    for rep in range(reps):
        for name, rate in rates.items():
            log(f"W3 {name} rep {rep + 1}/{reps}")
            runs[name].append(latency_once(url, rate, duration, concurrency))
    out: dict[str, Any] = {}
    for name, rate in rates.items():
        rr = runs[name]
        out[name] = {
            "rate": rate,
            "duration_s": duration,
            "load_vs_drain_1p": round(rate / drain_rate, 2) if drain_rate else None,
            "achieved_rate": summarize([r["achieved_rate"] for r in rr], "jobs/s"),
            **{
                key: summarize([r[key] for r in rr], "ms")
                for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")
            },
            "sent": [r["sent"] for r in rr],
            "batch": rr[0]["batch"] if rr else None,
            **{
                key: summarize([r[key] for r in rr], "ms")["median"]
                for key in (
                    "enqueue_call_p50_ms",
                    "stamp_to_insert_ms",
                    "insert_to_claim_ms",
                    "claim_to_handler_ms",
                )
            },
            "all_done": all(r["all_done"] for r in rr),
            "worst_send_lag_ms": [r["worst_send_lag_ms"] for r in rr],
        }
    return out
