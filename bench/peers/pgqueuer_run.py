"""PgQueuer (PostgreSQL) runner for Conveyor's side-by-side benchmark.

    python bench/peers/pgqueuer_run.py --workload drain --jobs 2000 [--batch-size 10]

Uses database bench_pgqueuer (created if missing); its public schema is
dropped and PgQueuer's schema installed afresh at the start of every run.
Producer and consumer each use their own asyncpg connection, as in PgQueuer's
README. Prints one JSON line on stdout; logs go to stderr. Re-executes itself
with bench/.peers/venv/bin/python when pgqueuer is not importable.
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

pc.ensure_peer_venv("pgqueuer")

import asyncpg  # noqa: E402
from pgqueuer import PgQueuer  # noqa: E402
from pgqueuer.db import AsyncpgDriver  # noqa: E402
from pgqueuer.models import Job  # noqa: E402
from pgqueuer.queries import Queries  # noqa: E402
from pgqueuer.types import QueueExecutionMode  # noqa: E402

PEER = "pgqueuer"
DBNAME = "bench_pgqueuer"
ENTRYPOINT = "noop"
DEFAULT_BATCH_SIZE = 10  # QueueManager.run() / `pgq run` default


def make_worker(conn: asyncpg.Connection, state: dict[str, Any]) -> PgQueuer:
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        payload = job.payload or b""
        if payload.startswith(b"t:") or payload.startswith(b"w:"):
            lat = pc.wall_ms() - float(payload[2:])
            if payload.startswith(b"w:"):
                state["warm"] += 1
            else:
                state["samples"].append(lat)
        state["handled"] += 1

    return pgq


def run_kwargs(args: Any, mode: QueueExecutionMode) -> dict[str, Any]:
    # Library defaults otherwise: dequeue_timeout=30 s (LISTEN/NOTIFY wakes the
    # worker earlier), unlimited in-flight tasks unless --concurrency is given.
    kw: dict[str, Any] = {"batch_size": args.batch_size or DEFAULT_BATCH_SIZE, "mode": mode}
    if args.concurrency:
        kw["max_concurrent_tasks"] = args.concurrency
    return kw


async def bulk_enqueue(q: Queries, n: int) -> None:
    for start in range(0, n, pc.BATCH):
        k = min(pc.BATCH, n - start)
        await q.enqueue(
            [ENTRYPOINT] * k,
            [str(i).encode() for i in range(start, start + k)],
            [0] * k,
        )


async def unfinished(conn: asyncpg.Connection) -> int:
    # Finished jobs are removed from the queue table (history goes to pgqueuer_log).
    return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))


async def main(args: Any, base: dict[str, Any]) -> dict[str, Any]:
    url = await pc.reset_database(DBNAME)
    ver = version("pgqueuer")
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    pc.log(
        f"pgqueuer {ver} workload={args.workload} batch_size={batch_size} "
        f"max_concurrent_tasks={args.concurrency or 'unlimited'}"
    )
    pconn = await asyncpg.connect(url)
    wconn: asyncpg.Connection | None = None
    try:
        q = Queries(AsyncpgDriver(pconn))
        await q.install()
        n = args.jobs
        state: dict[str, Any] = {"handled": 0, "warm": 0, "samples": []}

        if args.workload == "enqueue_single":
            t0 = time.perf_counter()
            for i in range(n):
                await q.enqueue(ENTRYPOINT, str(i).encode())
            secs = time.perf_counter() - t0
            return {
                "jobs": n,
                "seconds": round(secs, 4),
                "rate": pc.rate_of(n, secs),
                "version": ver,
            }

        if args.workload == "enqueue_bulk":
            t0 = time.perf_counter()
            await bulk_enqueue(q, n)
            secs = time.perf_counter() - t0
            return {
                "jobs": n,
                "seconds": round(secs, 4),
                "rate": pc.rate_of(n, secs),
                "batch": pc.BATCH,
                "version": ver,
            }

        wconn = await asyncpg.connect(url)
        pgq = make_worker(wconn, state)
        common = {
            "batch_size": batch_size,
            "max_concurrent_tasks": args.concurrency,  # None = unlimited (library default)
            "version": ver,
        }

        if args.workload == "drain":
            await bulk_enqueue(q, n)
            if (left := await unfinished(pconn)) != n:
                raise RuntimeError(f"pre-enqueue left {left} jobs, expected {n}")
            bound = max(30.0, args.timeout - 30)
            t0 = time.perf_counter()
            # mode=drain: run() returns once the queue is empty and in-flight
            # jobs have finished (their completion log flushed on exit).
            await asyncio.wait_for(pgq.run(**run_kwargs(args, QueueExecutionMode.drain)), bound)
            secs = time.perf_counter() - t0
            left = await unfinished(pconn)
            if state["handled"] != n or left != 0:
                raise RuntimeError(
                    f"drain inconsistent: handled={state['handled']} unfinished={left} of {n}"
                )
            return {"jobs": n, "seconds": round(secs, 4), "rate": pc.rate_of(n, secs), **common}

        # latency
        worker = asyncio.create_task(pgq.run(**run_kwargs(args, QueueExecutionMode.continuous)))
        try:
            for _ in range(5):
                await q.enqueue(ENTRYPOINT, f"w:{pc.wall_ms()!r}".encode())
            await pc.warm_up(state, worker)
            await asyncio.sleep(0.5)

            sent, send_secs = await pc.paced_send(
                args.rate,
                args.duration,
                lambda i: q.enqueue(ENTRYPOINT, f"t:{pc.wall_ms()!r}".encode()),
            )
            ok = await pc.wait_for(lambda: len(state["samples"]) >= sent, 30)
        finally:
            pgq.shutdown.set()
            try:
                await asyncio.wait_for(worker, 15)
            except Exception as e:  # noqa: BLE001 - shutdown problems are logged only
                pc.log(f"worker shutdown: {type(e).__name__}: {e}")
                worker.cancel()
        res = {
            **pc.latency_summary(state["samples"]),
            "sent": sent,
            "target_rate": args.rate,
            "duration": args.duration,
            "send_seconds": round(send_secs, 4),
            **common,
        }
        if not ok:
            res["error"] = f"only {len(state['samples'])} of {sent} jobs processed"
        return res
    finally:
        for c in (wconn, pconn):
            if c is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.close(), 5)


if __name__ == "__main__":
    pc.run_main(PEER, main)
