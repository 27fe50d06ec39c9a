"""PgBouncer's cost: the W2 drain direct, through PgBouncer in transaction mode polling, and
through PgBouncer with LISTEN on a direct --listen-url, each with CPU per job of the worker,
of Postgres and of pgbouncer itself.

    python -m bench.pgbouncer --jobs 20000 --reps 3

The database is CONVEYOR_DATABASE_URL (a *bench* one, as for `python -m bench`); pgbouncer is
Debian's, started for the run by the tests' launcher (tests/pgbouncer.py) on a free port.
"""

from __future__ import annotations

import argparse
import json
import time
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

MODES = ("direct", "pgbouncer-polling", "pgbouncer-listen-url")


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
            deadline = time.monotonic() + 60
            while not _registered(mon):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not ready; see {workers.log_path}")
                time.sleep(0.05)
            time.sleep(0.5)  # its first (empty) claims and LISTEN, if any
            pids = [int(r[0]) for r in mon.execute("SELECT pid FROM conveyor.worker")]
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
    }


def _registered(mon: Any) -> bool:
    row = mon.execute("SELECT count(*) FROM conveyor.worker").fetchone()
    return bool(row and row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    url = database_url()
    prepare_database(url)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with pgbouncer(url, pool_size=20) as bouncer:
        assert bouncer.process is not None
        pid = bouncer.process.pid
        settings: dict[str, tuple[str, dict[str, str], int | None]] = {
            "direct": (url, {}, None),
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
    table = {
        mode: {key: summarize([r[key] for r in results], "")["median"] for key in results[0]}
        for mode, results in runs.items()
    }
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
