"""PgBouncer's cost: the W2 drain direct, through PgBouncer in transaction mode polling, and
through PgBouncer with LISTEN on a direct --listen-url, each with CPU per job of the worker,
of Postgres and of pgbouncer itself; then, per mode, what an idle worker costs Postgres (the
polling) and how long a job enqueued alone waits to start.

    python -m bench.pgbouncer --jobs 20000 --reps 3

The database is CONVEYOR_DATABASE_URL (a *bench* one, as for `python -m bench`); pgbouncer is
Debian's, started for the run by the tests' launcher (tests/pgbouncer.py) on a free port.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tests.pgbouncer import pgbouncer

from bench.app import app, noop
from bench.common import (
    CpuMeter,
    backend_pids,
    connect,
    database_url,
    log,
    prepare_database,
    summarize,
    truncate,
    wait_completed,
)
from bench.workers import WorkerGroup

#: direct-unprepared: direct connections in PgBouncer mode (LISTEN on the same URL), to tell
#: the cost of parsing every statement from the cost of the pooler's hop
RESULTS = Path(__file__).parent / "results"
MODES = ("direct", "direct-unprepared", "pgbouncer-polling", "pgbouncer-listen-url")


def drain(
    url: str,
    worker_url: str,
    env: dict[str, str],
    bouncer_pid: int | None,
    *,
    n: int,
    concurrency: int,
) -> dict[str, Any]:
    """One timed drain of `n` no-op jobs by one worker process connected to `worker_url`."""
    specs = [noop.spec(i=i) for i in range(n)]
    with connect(url) as mon:
        truncate(mon)
        workers = WorkerGroup(worker_url, concurrency=concurrency, env=env, label="pgbouncer")
        workers.start()
        try:
            pids = workers.wait_ready(mon, listening=False)
            time.sleep(0.5)  # its first (empty) claims and LISTEN, if any
            with connect(url, autocommit=False) as tx:
                ids = app.enqueue_many_tx(tx, specs)
                tx.commit()
                t0 = time.perf_counter()
            meters = {"worker": CpuMeter(pids), "postgres": CpuMeter(backend_pids(mon))}
            if bouncer_pid is not None:
                meters["pgbouncer"] = CpuMeter([bouncer_pid])
            for meter in meters.values():
                meter.begin()
            done, t1 = wait_completed(mon, min(ids), max(ids), n, timeout=60 + n / 100)
            cpu = {
                name: meter.end(backend_pids(mon) if name == "postgres" else ())
                for name, meter in meters.items()
            }
        finally:
            workers.stop()
    if not done:
        raise RuntimeError(f"drain of {n} did not finish; see {workers.log_path}")
    seconds = t1 - t0
    return {
        "rate": n / seconds,
        **{f"{k}_us_per_job": 1e6 * v["cpu_s"] / n for k, v in cpu.items()},
        "machine_busy_pct": cpu["worker"]["machine_busy_pct"],
    }


def idle_and_pickup(
    url: str, worker_url: str, env: dict[str, str], *, idle_seconds: float, jobs: int
) -> dict[str, Any]:
    """Postgres CPU per second of one idle worker, then the start latency (attempted_at -
    run_at, database clock) of `jobs` jobs enqueued one at a time, 100 ms apart."""
    with connect(url) as mon:
        truncate(mon)
        workers = WorkerGroup(worker_url, concurrency=10, env=env, label="pgbouncer-idle")
        workers.start()
        try:
            workers.wait_ready(mon, listening=False)
            time.sleep(1.0)
            meter = CpuMeter(backend_pids(mon))
            meter.begin()
            time.sleep(idle_seconds)
            idle = meter.end(backend_pids(mon))
            for i in range(jobs):
                app.enqueue_many_tx(mon, [noop.spec(i=i)])
                time.sleep(0.1)
            done, _ = wait_completed(mon, 0, 2**62, jobs, timeout=60)
            waits = sorted(
                float(r[0])
                for r in mon.execute(
                    "SELECT extract(epoch FROM attempted_at - run_at) * 1000 FROM conveyor.jobs"
                )
            )
        finally:
            workers.stop()
    if not done:
        raise RuntimeError(f"pick-up jobs did not complete; see {workers.log_path}")
    return {
        "idle_postgres_cpu_ms_per_s": 1000 * idle["cpu_s"] / idle_seconds,
        "pickup_p50_ms": waits[len(waits) // 2],
        "pickup_p95_ms": waits[int(len(waits) * 0.95)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pickup-jobs", type=int, default=50)
    args = parser.parse_args()
    url = database_url()
    prepare_database(url)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with pgbouncer(url, pool_size=20) as bouncer:
        assert bouncer.process is not None
        pid = bouncer.process.pid
        settings: dict[str, tuple[str, dict[str, str], int | None]] = {
            "direct": (url, {}, None),
            "direct-unprepared": (
                url,
                {"CONVEYOR_PGBOUNCER": "1", "CONVEYOR_LISTEN_URL": url},
                None,
            ),
            "pgbouncer-polling": (bouncer.url, {"CONVEYOR_PGBOUNCER": "1"}, pid),
            "pgbouncer-listen-url": (
                bouncer.url,
                {"CONVEYOR_PGBOUNCER": "1", "CONVEYOR_LISTEN_URL": url},
                pid,
            ),
        }
        for rep in range(args.reps):
            for mode in MODES:  # interleaved, so load drift hits every mode alike
                worker_url, env, bouncer_pid = settings[mode]
                result = drain(
                    url, worker_url, env, bouncer_pid, n=args.jobs, concurrency=args.concurrency
                )
                figures = {k: round(v, 1) for k, v in result.items()}
                log(f"rep {rep + 1} {mode}: {json.dumps(figures)}")
                runs[mode].append(result)
        for mode in MODES:
            worker_url, env, _ = settings[mode]
            quiet = idle_and_pickup(url, worker_url, env, idle_seconds=10, jobs=args.pickup_jobs)
            figures = {k: round(v, 1) for k, v in quiet.items()}
            log(f"{mode} idle and pick-up: {json.dumps(figures)}")
            for run in runs[mode]:
                run.update(quiet)
    table = {
        mode: {key: summarize([r[key] for r in results], "")["median"] for key in results[0]}
        for mode, results in runs.items()
    }
    print(json.dumps(table, indent=2))
    out = RESULTS / f"pgbouncer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"median": table, "runs": runs}, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
