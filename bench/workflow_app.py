"""The workflow benchmark's app (bench/workflows.py): a 10-step no-op workflow and a fan-out
workflow (one ctx.map over a no-op task) on queue `bench`.

An app of its own, apart from bench.app: a worker of an app with a workflow keeps a connection
per slot in its pool (for atomic steps), which the job workloads must not pay for.
"""

from __future__ import annotations

import time

from bench.app import QUEUE
from conveyor import Conveyor, WorkflowContext

app = Conveyor()


async def _noop_step() -> None:
    """A step that does nothing: what is measured is the engine's record of it."""


@app.workflow(name="bench.steps", queue=QUEUE, max_steps=1_000)
async def steps(ctx: WorkflowContext, n: int = 10) -> list[float]:
    """`n` no-op steps; return the seconds between one step's return and the next's (the
    first from the start of the function): each is one step's whole cost in the worker."""
    gaps = []
    last = time.perf_counter()
    for i in range(n):
        await ctx.step(f"s{i}", _noop_step)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


@app.task(name="bench.wf_noop", queue=QUEUE)
async def noop_task(i: int = 0) -> None:
    """A fan-out's child: does nothing, so what is measured is the children's jobs and the
    count-down that wakes the parent."""


@app.workflow(name="bench.fanout", queue=QUEUE)
async def fanout(ctx: WorkflowContext, n: int = 1_000, concurrency: int | None = None) -> int:
    """One step: `n` no-op child jobs through ctx.map (at most `concurrency` at once; None: all
    of them); return how many results came back."""
    results = await ctx.map(noop_task, [{"i": i} for i in range(n)], concurrency=concurrency)
    return len(results)
