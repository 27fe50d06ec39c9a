"""procrastinate (PostgreSQL) runner for Conveyor's side-by-side benchmark.

    python bench/peers/procrastinate_run.py --workload drain --jobs 2000 [--concurrency 50]

Uses database bench_procrastinate (created if missing); its public schema is
dropped and procrastinate's schema applied afresh at the start of every run.
Prints one JSON line on stdout; logs go to stderr. Re-executes itself with
bench/.peers/venv/bin/python when procrastinate is not importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _pycommon as pc

pc.ensure_peer_venv("procrastinate")

import logging  # noqa: E402

import procrastinate  # noqa: E402

# The app lives in this script on purpose (tasks are registered by explicit
# name), so procrastinate's "app in __main__" advice does not apply here.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

PEER = "procrastinate"
DBNAME = "bench_procrastinate"
QUEUE = "conveyor_bench"
DEFAULT_CONCURRENCY = 50


def make_app(url: str, state: dict[str, Any]) -> tuple[procrastinate.App, Any]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue=QUEUE)
    async def noop(i: int | None = None, t: float | None = None, warmup: bool = False) -> None:
        if t is not None:
            lat = pc.wall_ms() - t
            if warmup:
                state["warm"] += 1
            else:
                state["samples"].append(lat)
        state["handled"] += 1

    return app, noop


def worker_kwargs(concurrency: int, wait: bool) -> dict[str, Any]:
    # Library defaults for everything else: listen_notify=True,
    # fetch_job_polling_interval=5.0 s (fallback only), delete_jobs="never".
    return {
        "queues": [QUEUE],
        "concurrency": concurrency,
        "wait": wait,
        "install_signal_handlers": False,
    }


async def bulk_defer(task: Any, n: int) -> None:
    for start in range(0, n, pc.BATCH):
        await task.batch_defer_async(*({"i": i} for i in range(start, min(n, start + pc.BATCH))))


async def count_unfinished(app: procrastinate.App) -> int:
    rows = await app.connector.execute_query_all_async(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    )
    return int(rows[0]["n"])


async def main(args: Any, base: dict[str, Any]) -> dict[str, Any]:
    concurrency = args.concurrency or DEFAULT_CONCURRENCY
    url = await pc.reset_database(DBNAME)
    state: dict[str, Any] = {"handled": 0, "warm": 0, "samples": []}
    app, noop = make_app(url, state)
    ver = version("procrastinate")
    pc.log(f"procrastinate {ver} workload={args.workload} concurrency={concurrency}")

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        n = args.jobs

        if args.workload == "enqueue_single":
            t0 = time.perf_counter()
            for i in range(n):
                await noop.defer_async(i=i)
            secs = time.perf_counter() - t0
            return {
                "jobs": n,
                "seconds": round(secs, 4),
                "rate": pc.rate_of(n, secs),
                "version": ver,
            }

        if args.workload == "enqueue_bulk":
            t0 = time.perf_counter()
            await bulk_defer(noop, n)
            secs = time.perf_counter() - t0
            return {
                "jobs": n,
                "seconds": round(secs, 4),
                "rate": pc.rate_of(n, secs),
                "batch": pc.BATCH,
                "version": ver,
            }

        if args.workload == "drain":
            await bulk_defer(noop, n)
            queued = await count_unfinished(app)
            if queued != n:
                raise RuntimeError(f"pre-enqueue left {queued} jobs, expected {n}")
            bound = max(30.0, args.timeout - 30)
            t0 = time.perf_counter()
            # wait=False: the worker returns once it finds no job left and its
            # running jobs have finished (their status written).
            drain_worker = app.run_worker_async(**worker_kwargs(concurrency, wait=False))
            await asyncio.wait_for(drain_worker, bound)
            secs = time.perf_counter() - t0
            left = await count_unfinished(app)
            if state["handled"] != n or left != 0:
                raise RuntimeError(
                    f"drain inconsistent: handled={state['handled']} unfinished={left} of {n}"
                )
            return {
                "jobs": n,
                "seconds": round(secs, 4),
                "rate": pc.rate_of(n, secs),
                "concurrency": concurrency,
                "version": ver,
            }

        # latency
        worker = asyncio.create_task(app.run_worker_async(**worker_kwargs(concurrency, wait=True)))
        try:
            for _ in range(5):
                await noop.defer_async(t=pc.wall_ms(), warmup=True)
            await pc.warm_up(state, worker)
            await asyncio.sleep(0.5)

            sent, send_secs = await pc.paced_send(
                args.rate, args.duration, lambda i: noop.defer_async(t=pc.wall_ms())
            )
            ok = await pc.wait_for(lambda: len(state["samples"]) >= sent, 30)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker, 10)
        res = {
            **pc.latency_summary(state["samples"]),
            "sent": sent,
            "target_rate": args.rate,
            "duration": args.duration,
            "send_seconds": round(send_secs, 4),
            "concurrency": concurrency,
            "version": ver,
        }
        if not ok:
            res["error"] = f"only {len(state['samples'])} of {sent} jobs processed"
        return res


if __name__ == "__main__":
    pc.run_main(PEER, main)
