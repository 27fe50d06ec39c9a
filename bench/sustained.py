"""W5 sustained: one enqueuer at a fixed rate, one worker process with a short retention (so
the pruner runs), sampled every 10 s: throughput, latency, table sizes, dead and live rows."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.app import RETENTION_ENV, app
from bench.common import _cpu_of, _proc_stat, connect, log, truncate
from bench.latency import paced_send
from bench.workers import WorkerGroup

RETENTION_SECONDS = 120
LAG = 1.0  # seconds: a window closes a second late, so outcomes still being committed count

_WINDOW = """
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lat) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lat) AS p99
  FROM (SELECT 1000 * ((result #>> '{}')::float8 - (args ->> 't')::float8) AS lat
          FROM conveyor.job_done
         WHERE finished_at > %(lo)s AND finished_at <= %(hi)s AND state = 'completed') w
"""
_SIZES = """
SELECT pg_total_relation_size('conveyor.job') AS job_total,
       pg_indexes_size('conveyor.job') AS job_indexes,
       pg_total_relation_size('conveyor.job_done') AS done_total,
       pg_indexes_size('conveyor.job_done') AS done_indexes,
       (SELECT count(*) FROM conveyor.job WHERE state = 'available') AS backlog
"""
_TUPLES = """
SELECT relname, n_live_tup, n_dead_tup, vacuum_count, autovacuum_count
  FROM pg_stat_user_tables WHERE schemaname = 'conveyor' AND relname IN ('job', 'job_done')
"""


class _Machine:
    """CPU use over each window: the whole machine (steal too) and our worker process."""

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.stat = _proc_stat()
        self.worker = _cpu_of([worker_pid]).get(worker_pid, 0.0)
        self.wall = time.perf_counter()

    def window(self) -> dict[str, Any]:
        stat, wall = _proc_stat(), time.perf_counter()
        worker = _cpu_of([self.worker_pid]).get(self.worker_pid, self.worker)
        delta = [b - a for a, b in zip(self.stat, stat, strict=True)]
        total = sum(delta) or 1
        out = {
            "machine_busy_pct": round(100 * (total - delta[3] - delta[4]) / total, 1),
            "machine_steal_pct": round(100 * delta[7] / total, 1),
            "worker_cpu_pct": round(100 * (worker - self.worker) / (wall - self.wall), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "worker_rss_mb": round(_rss_of(self.worker_pid) / 1e6, 1),
        }
        self.stat, self.worker, self.wall = stat, worker, wall
        return out


def _rss_of(pid: int) -> int:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


_CONNECTIONS = """
SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database()
   AND (application_name LIKE 'conveyor-worker%%'
        OR application_name IN ('conveyor-listener', 'conveyor-leader'))
"""


def _sample(conn: psycopg.Connection[Any], lo: Any, t_start: float) -> tuple[dict[str, Any], Any]:
    row = conn.execute("SELECT now() - make_interval(secs => %s)", (LAG,)).fetchone()
    assert row is not None
    hi = row[0]
    w = conn.execute(_WINDOW, {"lo": lo, "hi": hi}).fetchone()
    s = conn.execute(_SIZES).fetchone()
    assert w is not None and s is not None
    seconds = (hi - lo).total_seconds()
    sample: dict[str, Any] = {
        "t": round(time.perf_counter() - t_start, 1),
        "throughput": round(int(w[0]) / seconds, 1) if seconds > 0 else None,
        "p50_ms": round(float(w[1]), 2) if w[1] is not None else None,
        "p99_ms": round(float(w[2]), 2) if w[2] is not None else None,
        "job_bytes": int(s[0]),
        "job_index_bytes": int(s[1]),
        "job_done_bytes": int(s[2]),
        "job_done_index_bytes": int(s[3]),
        "backlog": int(s[4]),
        "worker_connections": int(conn.execute(_CONNECTIONS).fetchone()[0]),  # type: ignore[index]
    }
    for name, live, dead, vac, autovac in conn.execute(_TUPLES).fetchall():
        key = "job" if name == "job" else "job_done"
        sample[f"{key}_live"] = int(live)
        sample[f"{key}_dead"] = int(dead)
        sample[f"{key}_vacuums"] = int(vac) + int(autovac)
    return sample, hi


def run(
    url: str, *, rate: float, seconds: float, every: float = 10.0, concurrency: int = 100
) -> dict[str, Any]:
    env = {RETENTION_ENV: str(RETENTION_SECONDS)}
    samples: list[dict[str, Any]] = []
    with connect(url) as mon:
        truncate(mon)
        workers = WorkerGroup(url, processes=1, concurrency=concurrency, env=env, label="W5")
        workers.start()
        try:
            pids = workers.wait_ready(mon)
            machine = _Machine(pids[0])
            row = mon.execute("SELECT now()").fetchone()
            assert row is not None
            lo = row[0]
            t_start = time.perf_counter()

            async def go() -> dict[str, Any]:
                sender = asyncio.create_task(paced_send(rate, seconds))
                nonlocal lo
                next_at = t_start + every
                while not sender.done() or not samples or samples[-1]["t"] < seconds:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += every
                    sample, lo = await asyncio.to_thread(_sample, mon, lo, t_start)
                    sample.update(machine.window())
                    samples.append(sample)
                    log(
                        f"W5 t={sample['t']:.0f}s {sample['throughput']}/s"
                        f" p50 {sample['p50_ms']} p99 {sample['p99_ms']} ms"
                        f" job {sample['job_bytes'] / 1e6:.1f}MB"
                        f" job_done {sample['job_done_bytes'] / 1e6:.1f}MB"
                        f" dead {sample.get('job_dead')}/{sample.get('job_done_dead')}"
                        f" busy {sample['machine_busy_pct']}% load {sample['loadavg_1m']}"
                        f" rss {sample['worker_rss_mb']}MB conns {sample['worker_connections']}"
                    )
                    if time.perf_counter() - t_start > seconds + 60:
                        break  # bound: the sender stops itself at seconds + 10
                result = await sender
                await app.aclose()
                return result

            sent = asyncio.run(go())
        finally:
            workers.stop()
        truncate(mon)
    sent.pop("ids", None)
    return {
        "rate": rate,
        "seconds": seconds,
        "retention_completed_s": RETENTION_SECONDS,
        "prune_interval_s": 60,
        "sample_every_s": every,
        "sender": sent,
        "samples": samples,
        "verdict": verdict(samples, rate, seconds),
    }


def verdict(samples: list[dict[str, Any]], rate: float, seconds: float) -> dict[str, Any]:
    """Flat means: throughput holds the rate, latency does not creep, tables stop growing once
    retention and pruning are in steady state (after retention + one prune interval)."""
    steady_from = RETENTION_SECONDS + 60 + 20
    body = [s for s in samples if 10 < s["t"] <= seconds]
    steady = [s for s in body if s["t"] >= steady_from]
    out: dict[str, Any] = {}
    if body:
        tp = [s["throughput"] for s in body if s["throughput"] is not None]
        out["throughput_min"] = min(tp)
        out["throughput_max"] = max(tp)
        out["throughput_within_10pct"] = all(abs(x - rate) <= 0.1 * rate for x in tp)
        third = max(1, len(body) // 3)
        first = sorted(s["p99_ms"] for s in body[:third] if s["p99_ms"] is not None)
        last = sorted(s["p99_ms"] for s in body[-third:] if s["p99_ms"] is not None)
        if first and last:
            out["p99_first_third_median_ms"] = first[len(first) // 2]
            out["p99_last_third_median_ms"] = last[len(last) // 2]
    if len(steady) >= 2:
        span_min = (steady[-1]["t"] - steady[0]["t"]) / 60
        for key in ("job_bytes", "job_done_bytes"):
            growth = steady[-1][key] - steady[0][key]
            out[f"{key}_growth_mb_per_min_steady"] = round(growth / 1e6 / span_min, 2)
        rss = [x["worker_rss_mb"] for x in steady if x.get("worker_rss_mb")]
        if rss:
            out["worker_rss_mb_steady_first_last"] = [rss[0], rss[-1]]
            out["worker_rss_mb_steady_max"] = max(rss)
        conns = [x["worker_connections"] for x in steady if "worker_connections" in x]
        if conns:
            out["worker_connections_steady_min_max"] = [min(conns), max(conns)]
    else:
        out["note"] = f"run shorter than the steady state ({steady_from}s): sizes not judged"
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [x["t"] / 60 for x in s]
    fig, ax = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    a = ax[0][0]
    a.plot(t, [x["throughput"] for x in s], marker=".", label="completed/s")
    a.axhline(result["rate"], color="grey", ls="--", lw=1, label=f"target {result['rate']:g}/s")
    a.set_title("throughput (jobs/s, 10 s windows)")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8, loc="lower left")
    if s and "machine_busy_pct" in s[0]:
        b = a.twinx()
        b.plot(t, [x["machine_busy_pct"] for x in s], color="tab:red", lw=0.8, alpha=0.6)
        b.plot(t, [x["worker_cpu_pct"] / 2 for x in s], color="tab:green", lw=0.8, alpha=0.6)
        b.set_ylim(0, 100)
        b.set_ylabel("% of 2 cores: machine (red), worker (green)", fontsize=7)
    a = ax[0][1]
    a.plot(t, [x["p50_ms"] for x in s], marker=".", label="p50")
    a.plot(t, [x["p99_ms"] for x in s], marker=".", label="p99")
    a.set_title("enqueue-to-start latency (ms)")
    a.set_yscale("log")
    a.legend(fontsize=8)
    a = ax[1][0]
    a.plot(t, [x["job_bytes"] / 1e6 for x in s], label="conveyor.job")
    a.plot(t, [x["job_done_bytes"] / 1e6 for x in s], label="conveyor.job_done")
    a.plot(t, [x["job_done_index_bytes"] / 1e6 for x in s], ls=":", label="job_done indexes")
    a.plot(t, [x["job_index_bytes"] / 1e6 for x in s], ls=":", label="job indexes")
    a.set_title("pg_total_relation_size (MB)")
    a.set_xlabel("minutes")
    a.legend(fontsize=8)
    a = ax[1][1]
    a.plot(t, [x.get("job_dead", 0) for x in s], label="job dead")
    a.plot(t, [x.get("job_live", 0) for x in s], ls=":", label="job live")
    a.plot(t, [x.get("job_done_dead", 0) for x in s], label="job_done dead")
    a.plot(t, [x.get("job_done_live", 0) for x in s], ls=":", label="job_done live")
    a.set_title("n_dead_tup / n_live_tup")
    a.set_xlabel("minutes")
    a.legend(fontsize=8)
    fig.suptitle(
        f"W5: {result['rate']:g} jobs/s for {result['seconds'] / 60:g} min, one worker,"
        f" completed retention {result['retention_completed_s']}s"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
