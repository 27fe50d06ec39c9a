"""The workflow benchmark's app (bench/workflows.py): a 10-step no-op workflow on queue `bench`.

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
