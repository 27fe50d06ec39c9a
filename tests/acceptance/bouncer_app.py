"""The app that the PgBouncer tests run in real `conveyor worker` processes: a task that does
nothing but return, so what is measured and checked is the queue's own traffic."""

from __future__ import annotations

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
