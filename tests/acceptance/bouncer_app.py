"""The app that the PgBouncer and health tests run in real `conveyor worker` processes: tasks
that do nothing but return (what is measured is the queue's own traffic), and one that blocks
the event loop."""

from __future__ import annotations

import time

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use


@app.task(name="touch")
def touch(n: int) -> int:
    """Return `n`."""
    return n


@app.task(name="atouch")
async def atouch(n: int) -> int:
    """Return `n`, from an async handler."""
    return n


@app.task(name="block_loop", max_attempts=1)
async def block_loop(seconds: float) -> None:
    """Block the worker's event loop for `seconds` (a bug: a blocking call in async code)."""
    time.sleep(seconds)
