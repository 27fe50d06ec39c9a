"""W2 drain: N pre-enqueued no-op jobs through real worker processes.

Workers start first and register; then N jobs are enqueued in ONE transaction. The clock starts
when the commit returns and stops when all N are completed in conveyor.job_done (polled every
50 ms). Worker start-up is outside the timed span.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.app import app, noop, noop_sync
from bench.common import (
    CpuMeter,
    backend_pids,
    connect,
    log,
    summarize,
    truncate,
    wait_completed,
)
from bench.profile_summary import summarize_raw
from bench.workers import LOG_DIR, Profiler, WorkerGroup


def drain_once(
    url: str,
    n: int,
    *,
    processes: int = 1,
    concurrency: int = 100,
    handler: str = "async",
    clean: bool = True,
    profile_to: Path | None = None,
    label: str = "W2",
) -> dict[str, Any]:
    """One timed drain; `clean=False` keeps whatever filler the caller loaded (W4)."""
    task = noop_sync if handler == "sync" else noop
    specs = [task.spec(i=i) for i in range(n)]  # built before the clock, like the workers
    with connect(url) as mon:
        if clean:
            truncate(mon)
        else:
            mon.execute("DELETE FROM conveyor.worker")
        workers = WorkerGroup(url, processes=processes, concurrency=concurrency, label=label)
        workers.start()
        profiler = None
        try:
            pids = workers.wait_ready(mon)
            if profile_to is not None:
                profiler = Profiler(pids[0], profile_to)
                profiler.start()
            with connect(url, autocommit=False) as tx:
                ids = app.enqueue_many_tx(tx, specs)
                tx.commit()
                t0 = time.perf_counter()
            worker_cpu = CpuMeter(pids)
            worker_cpu.begin()
            server = backend_pids(mon)
            db_cpu = CpuMeter(server)
            db_cpu.begin()
            lo, hi = min(ids), max(ids)
            done, t1 = wait_completed(mon, lo, hi, n, timeout=60 + n / 100)
            seconds = t1 - t0
            wcpu = worker_cpu.end()
            dcpu = db_cpu.end(backend_pids(mon))
            if profiler is not None:
                profiler.stop()
                profiler = None
        finally:
            if profiler is not None:
                profiler.stop()
            workers.stop()
    if not done:
        raise RuntimeError(f"{label}: drain of {n} did not finish (see {workers.log_path})")
    rate = n / seconds
    log(
        f"{label} drain n={n} processes={processes}: {seconds:.2f}s = {rate:,.0f} jobs/s"
        f" (worker cpu {wcpu['cpu_s']:.1f}s, postgres cpu {dcpu['cpu_s']:.1f}s,"
        f" steal {wcpu['machine_steal_pct']}%)"
    )
    return {
        "jobs": n,
        "seconds": round(seconds, 3),
        "rate": rate,
        "ids": (lo, hi),
        "worker_cpu_s": wcpu["cpu_s"],
        "postgres_cpu_s": dcpu["cpu_s"],
        "machine_busy_pct": wcpu["machine_busy_pct"],
        "steal_pct": wcpu["machine_steal_pct"],
    }


def _figure(runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    per_job = [1e6 * r["worker_cpu_s"] / r["jobs"] for r in runs]
    pg_per_job = [1e6 * r["postgres_cpu_s"] / r["jobs"] for r in runs]
    return summarize(
        [r["rate"] for r in runs],
        "jobs/s",
        seconds=[r["seconds"] for r in runs],
        worker_cpu_us_per_job=summarize(per_job, "us")["median"],
        postgres_cpu_us_per_job=summarize(pg_per_job, "us")["median"],
        steal_pct=[r["steal_pct"] for r in runs],
        machine_busy_pct=[r["machine_busy_pct"] for r in runs],
        **extra,
    )


def run(
    url: str,
    *,
    n: int,
    reps: int,
    processes: tuple[int, ...] = (1, 2),
    concurrency: int = 100,
    handler: str = "async",
    profile: bool = True,
) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in processes}
    for rep in range(reps):
        for p in processes:  # interleaved, so load drift hits both settings alike
            log(f"W2 rep {rep + 1}/{reps}, {p} process(es)")
            runs[p].append(
                drain_once(url, n, processes=p, concurrency=concurrency, handler=handler)
            )
    out: dict[str, Any] = {
        f"drain_{p}p": _figure(runs[p], jobs=n, processes=p, concurrency=concurrency)
        for p in processes
    }
    out["handler"] = handler
    if profile:
        raw = LOG_DIR / "w2-worker-profile.raw"
        log("W2 profiled run (py-spy on the worker, 1 process; not part of the timings)")
        prof = drain_once(url, n, processes=1, concurrency=concurrency, profile_to=raw)
        summary = summarize_raw(raw)
        summary["rate_while_profiled"] = round(prof["rate"], 1)
        summary["worker_cpu_s"] = prof["worker_cpu_s"]
        summary["postgres_cpu_s"] = prof["postgres_cpu_s"]
        summary["seconds"] = prof["seconds"]
        summary["raw_file"] = str(raw)
        out["profile"] = summary
    with connect(url) as conn:
        truncate(conn)
    return out
