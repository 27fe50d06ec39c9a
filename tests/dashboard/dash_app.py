"""The app the dashboard's browser test runs in a real `conveyor worker` process."""

from __future__ import annotations

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use


@app.task(name="dash.flaky", max_attempts=1)
def flaky(order_id: int, ctx: conveyor.JobContext) -> str:
    """Fail for good on the first attempt (a bug); succeed once an operator retries it."""
    if ctx.attempt == 1:
        raise RuntimeError(f"receipt service rejected order {order_id}")
    return f"receipt for order {order_id} sent"
