"""The benchmark's Conveyor app: no-op tasks on queue `bench`.

Workers load it as `bench.app:app`; it reads CONVEYOR_DATABASE_URL on first use. With
CONVEYOR_BENCH_RETENTION_SECONDS set (W5), completed jobs are kept only that long, so the
pruner has work to do during a sustained run.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from conveyor import Conveyor, Retention

QUEUE = "bench"
RETENTION_ENV = "CONVEYOR_BENCH_RETENTION_SECONDS"


def _retention() -> Retention | None:
    seconds = os.environ.get(RETENTION_ENV)
    return Retention(completed=timedelta(seconds=float(seconds))) if seconds else None


app = Conveyor(retention=_retention())


@app.task(name="bench.noop", queue=QUEUE)
async def noop(i: int = 0) -> None:
    """Do nothing: one handler call per job, so the queue's own costs are what is measured."""


@app.task(name="bench.noop_relaxed", queue=QUEUE, durable_enqueue=False)
async def noop_relaxed(i: int = 0) -> None:
    """noop whose enqueues commit without waiting for the WAL flush (W1's relaxed figures)."""


@app.task(name="bench.noop_sync", queue=QUEUE)
def noop_sync(i: int = 0) -> None:
    """Do nothing in the worker's thread pool (sync handlers)."""


@app.task(name="bench.stamp", queue=QUEUE)
async def stamp(t: float) -> float:
    """Return the wall time at which the handler started; `t` is the enqueue wall time."""
    return time.time()
