"""Where a job's pick-up time goes, hop by hop: `python -m bench.pickup_hops [--jobs N]`.

One worker process (this module with `worker`) notes the wall time of each hop of the path
from NOTIFY to handler; one sender (this process) enqueues `bench.stamp` jobs one at a time,
10 ms apart, each stamped with the wall time just before its enqueue call. The medians, in ms
after that stamp (same host clock):

  enqueue call returned | insert statement started (created_at) | NOTIFY received by the
  worker | claim called | claim statement started (attempted_at) | claim returned | dispatched
  | handler started

CONVEYOR_RELAXED_TRANSITIONS=1 runs the worker with relaxed transitions (docs/worker.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import ENV_URL, connect, database_url, prepare_database, truncate
from bench.workers import WorkerGroup

ROOT = Path(__file__).resolve().parents[1]


def _worker(out: Path) -> None:
    """Run a worker with a wall-time mark at each hop; write the marks to `out` at exit."""
    from bench import app as bench_app
    from conveyor._store import postgres
    from conveyor.worker import worker as worker_module
    from conveyor.worker.config import WorkerConfig, relaxed_transitions_from_env

    marks: dict[int, dict[str, float]] = {}
    last: dict[str, float] = {}
    on_notify = worker_module.Worker._on_notify
    claim = postgres.PostgresStore.job_fetch_available
    dispatch = worker_module.Worker._dispatch

    def noted_notify(self: Any, channel: str, payload: str) -> None:
        last["notify"] = time.time()
        on_notify(self, channel, payload)

    async def noted_claim(self: Any, **kw: Any) -> Any:
        called = time.time()
        jobs = await claim(self, **kw)
        returned = time.time()
        for job in jobs:
            marks[job.id] = {
                "stamp": float(job.args.get("t", 0)),
                "notify": last.get("notify", 0.0),
                "claim_called": called,
                "claim_returned": returned,
            }
        return jobs

    def noted_dispatch(self: Any, job: Any, token: Any) -> None:
        marks.get(job.id, {})["dispatched"] = time.time()
        dispatch(self, job, token)

    worker_module.Worker._on_notify = noted_notify  # type: ignore[method-assign]
    postgres.PostgresStore.job_fetch_available = noted_claim  # type: ignore[method-assign]
    worker_module.Worker._dispatch = noted_dispatch  # type: ignore[method-assign]

    async def main() -> None:
        config = WorkerConfig(
            queues=(bench_app.QUEUE,),
            concurrency=100,
            durable_transitions=not relaxed_transitions_from_env(),
        )
        worker = worker_module.Worker(bench_app.app, config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        await worker.run()

    asyncio.run(main())
    out.write_text(json.dumps(marks))


class _HopsWorker(WorkerGroup):
    """This module's marked worker, started, awaited and stopped as `conveyor worker` is."""

    def __init__(self, url: str, out: Path) -> None:
        super().__init__(url, env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}, label="hops")
        self.out = out

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.pickup_hops", "worker", str(self.out)]


def _send(n: int) -> tuple[list[int], list[float]]:
    from bench.app import stamp

    ids: list[int] = []
    calls: list[float] = []
    for _ in range(n):
        t = time.time()
        ids.append(stamp.enqueue(t=t))
        calls.append(1000 * (time.time() - t))
        time.sleep(0.01)
    return ids, calls


def run(url: str, jobs: int) -> dict[str, float]:
    os.environ[ENV_URL] = url
    out = Path(tempfile.mkdtemp(prefix="conveyor-hops-")) / "marks.json"
    with connect(url) as mon:
        truncate(mon)
        worker = _HopsWorker(url, out)
        worker.start()
        try:
            worker.wait_ready(mon)
            ids, calls = _send(jobs)
            deadline = time.monotonic() + 30
            while _completed(mon, ids) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
        rows = mon.execute(
            "SELECT id, 1000 * (extract(epoch FROM created_at) - (args ->> 't')::float8),"
            "       1000 * (extract(epoch FROM attempted_at) - (args ->> 't')::float8),"
            "       1000 * ((result #>> '{}')::float8 - (args ->> 't')::float8)"
            "  FROM conveyor.jobs WHERE id = ANY(%s) AND state = 'completed'",
            (ids,),
        ).fetchall()
        truncate(mon)
    loaded: dict[str, dict[str, float]] = json.loads(out.read_text())
    marks = list(loaded.values())

    def after_stamp(key: str) -> float:
        values = [1000 * (m[key] - m["stamp"]) for m in marks if m.get(key) and m["stamp"]]
        return round(float(statistics.median(values)), 3)

    return {
        "jobs": len(rows),
        "enqueue_call_returned": round(statistics.median(calls), 3),
        "insert_started": round(statistics.median(float(r[1]) for r in rows), 3),
        "notify_received": after_stamp("notify"),
        "claim_called": after_stamp("claim_called"),
        "claim_started": round(statistics.median(float(r[2]) for r in rows), 3),
        "claim_returned": after_stamp("claim_returned"),
        "dispatched": after_stamp("dispatched"),
        "handler_started": round(statistics.median(float(r[3]) for r in rows), 3),
    }


def _completed(mon: psycopg.Connection[Any], ids: list[int]) -> int:
    row = mon.execute(
        "SELECT count(*) FROM conveyor.jobs WHERE id = ANY(%s) AND state = 'completed'", (ids,)
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        _worker(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.pickup_hops")
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    url = database_url()
    prepare_database(url)
    result = run(url, args.jobs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
