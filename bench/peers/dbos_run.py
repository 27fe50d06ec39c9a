"""DBOS Transact runner for `python -m bench workflows` (bench/workflows.py).

    bench/.peers/dbos-venv/bin/python bench/peers/dbos_run.py --database-url URL \\
        --runs 1000 --sequential 200 --reps 3

The same workflow as bench.workflow_app:steps: 10 no-op steps, returning the seconds between
step returns. Per step: runs one at a time; throughput: N runs at most --concurrency at once,
all in this one process (DBOS runs workflows in the process that starts them). Fan-out
(--fanout N, 0 to skip): a workflow that enqueues N no-op child workflows on a DBOS queue (no
limit, then worker_concurrency=100; default polling interval) and waits for their results, as
bench.workflow_app:fanout does with ctx.map. The system database at URL is dropped and created
afresh. Prints one JSON line on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from importlib.metadata import version
from typing import Any

import psycopg
from dbos import DBOS, DBOSConfig
from psycopg.conninfo import conninfo_to_dict, make_conninfo

STEPS = 10


@DBOS.step()
async def noop_step() -> None:
    """Do nothing: what is measured is DBOS's checkpoint of the step."""


@DBOS.workflow()
async def steps(n: int) -> list[float]:
    gaps = []
    last = time.perf_counter()
    for _ in range(n):
        await noop_step()
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


#: The fan-out's queues: (key in the output, queue name, worker_concurrency).
FANOUT_QUEUES = (("unbounded", "bench_fanout", None), ("concurrency_100", "bench_fanout_100", 100))
QUEUES: dict[str, Any] = {}


@DBOS.workflow()
async def child(i: int) -> int:
    """A fan-out's child: no step, returns at once."""
    return i


@DBOS.workflow()
async def fan(n: int, queue_name: str) -> int:
    queue = QUEUES[queue_name]
    handles = [await queue.enqueue_async(child, i) for i in range(n)]
    results = [await h.get_result() for h in handles]
    return len(results)


def percentile(values: list[float], p: float) -> float:
    rank = math.ceil(p / 100.0 * len(values))
    return values[min(len(values), max(1, rank)) - 1]


async def per_step(n: int) -> dict[str, Any]:
    gaps: list[float] = []
    latencies: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        handle = await DBOS.start_workflow_async(steps, STEPS)
        result = await handle.get_result()
        latencies.append(time.perf_counter() - t0)
        gaps.extend(result[1:])
    gaps_ms = sorted(1000 * g for g in gaps)
    lat_ms = sorted(1000 * s for s in latencies)
    return {
        "runs": n,
        "step_ms_median": round(statistics.median(gaps_ms), 3),
        "step_ms_p95": round(percentile(gaps_ms, 95), 3),
        "step_ms_p99": round(percentile(gaps_ms, 99), 3),
        "run_latency_ms_median": round(statistics.median(lat_ms), 2),
        "run_latency_ms_p95": round(percentile(lat_ms, 95), 2),
    }


async def throughput(runs: int, reps: int, concurrency: int) -> dict[str, Any]:
    rates, seconds = [], []
    for rep in range(reps):
        limit = asyncio.Semaphore(concurrency)

        async def one(limit: asyncio.Semaphore) -> None:
            async with limit:
                handle = await DBOS.start_workflow_async(steps, STEPS)
                await handle.get_result()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(limit) for _ in range(runs)))
        took = time.perf_counter() - t0
        rates.append(runs * STEPS / took)
        seconds.append(took)
        print(f"dbos throughput rep {rep + 1}: {runs * STEPS / took:,.0f} steps/s", file=sys.stderr)
    return {
        "runs": runs,
        "steps": runs * STEPS,
        "concurrency": concurrency,
        "steps_per_s_median": round(statistics.median(rates), 1),
        "steps_per_s_runs": [round(r, 1) for r in rates],
        "seconds": [round(s, 2) for s in seconds],
    }


async def fanout(url: str, n: int, reps: int) -> dict[str, Any]:
    """Start `fan` and wait for its result; then, from dbos.workflow_status (epoch ms), the
    parent's end minus its last child's end."""
    out: dict[str, Any] = {"children": n}
    with psycopg.connect(url, autocommit=True) as mon:
        for key, queue_name, _ in FANOUT_QUEUES:
            rows: list[dict[str, float]] = []
            for rep in range(reps):
                t0 = time.perf_counter()
                handle = await DBOS.start_workflow_async(fan, n, queue_name)
                result = await handle.get_result()
                took = time.perf_counter() - t0
                parent_id = handle.get_workflow_id()
                times = mon.execute(
                    "SELECT count(*) FILTER (WHERE c.status = 'SUCCESS'),"
                    "       p.updated_at - max(c.updated_at), max(c.updated_at) - p.created_at"
                    "  FROM dbos.workflow_status p"
                    "  JOIN dbos.workflow_status c ON c.workflow_uuid LIKE p.workflow_uuid || '-%%'"
                    " WHERE p.workflow_uuid = %s GROUP BY p.workflow_uuid",
                    (parent_id,),
                ).fetchone()
                if result != n or times is None or times[0] != n:
                    raise RuntimeError(f"dbos fan-out {parent_id}: {result!r}, {times}")
                rows.append(
                    {
                        "seconds": took,
                        "children_per_s": n / took,
                        "last_child_finished_ms": float(times[2]),
                        "parent_overhead_ms": float(times[1]),
                    }
                )
                print(
                    f"dbos fan-out {key} rep {rep + 1}: {n} children in {took:.2f}s,"
                    f" parent {times[1]} ms after its last child",
                    file=sys.stderr,
                )
            figure: dict[str, Any] = {"reps": reps}
            for name in rows[0]:
                values = [r[name] for r in rows]
                figure[f"{name}_median"] = round(statistics.median(values), 3)
                figure[f"{name}_runs"] = [round(v, 3) for v in values]
            out[key] = figure
    return out


def fresh_database(url: str) -> None:
    dbname = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", required=True)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--fanout", type=int, default=1000, help="children of the fan-out (0: skip)")
    args = p.parse_args()
    fresh_database(args.database_url)
    config: DBOSConfig = {
        "name": "conveyor-bench",
        "system_database_url": args.database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    for _, queue_name, limit in FANOUT_QUEUES:
        QUEUES[queue_name] = await DBOS.register_queue_async(queue_name, worker_concurrency=limit)
    try:
        out = {
            "version": version("dbos"),
            "per_step": await per_step(args.sequential),
            "throughput": await throughput(args.runs, args.reps, args.concurrency),
        }
        if args.fanout:
            out["fanout"] = await fanout(args.database_url, args.fanout, args.reps)
    finally:
        DBOS.destroy()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
