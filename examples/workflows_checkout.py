"""Durable workflows: a checkout that reserves stock, charges the card, sleeps, waits for the
warehouse to say "shipped", then e-mails the customer. Each step runs once, however often the
run resumes; the sleep and the wait hold no worker while they last.

    python examples/workflows_checkout.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import uuid4

import conveyor
from conveyor.client import AsyncClient

app = conveyor.Conveyor()
calls: dict[str, int] = {}


def reserve_stock(order_id: int) -> dict[str, Any]:
    calls["reserve"] = calls.get("reserve", 0) + 1
    return {"hold": f"H-{order_id}", "items": 2}


async def charge_card(order_id: int, amount: int) -> str:
    calls["charge"] = calls.get("charge", 0) + 1
    return f"ch_{order_id}_{amount}"


def send_shipped_email(order_id: int, carrier: str) -> str:
    calls["email"] = calls.get("email", 0) + 1
    return f"mailed order {order_id} via {carrier}"


@app.workflow(name="shop.checkout")
async def checkout(ctx: conveyor.WorkflowContext, order_id: int) -> dict[str, Any]:
    hold = await ctx.step("reserve", reserve_stock, order_id=order_id)
    charge = await ctx.step("charge", charge_card, order_id, 30, max_attempts=5, backoff=2.0)
    await ctx.sleep(timedelta(seconds=1))  # an hour in real life: the run is parked meanwhile
    shipped = await ctx.wait_for_event(
        "order.shipped", key=str(order_id), timeout=timedelta(days=7)
    )
    if shipped is None:
        return {"hold": hold, "charge": charge, "shipped": None}  # a week without news
    mail = await ctx.step("email", send_shipped_email, order_id, shipped["carrier"])
    return {"hold": hold, "charge": charge, "shipped": shipped, "mail": mail}


async def until(client: AsyncClient, run_id: str, state: str) -> Any:
    async with asyncio.timeout(30):
        while (run := await client.get_workflow(run_id)).state != state:
            await asyncio.sleep(0.05)
    return run


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    # run_id makes the start idempotent: a second start(order_id=42, run_id=...) returns it
    # (unique per run of this script, so it can run again on the same database)
    run_id = await checkout.astart(order_id=42, run_id=f"checkout-42-{uuid4()}")
    client = app.async_client()

    worker = conveyor.Worker(app, conveyor.WorkerConfig(promote_interval=0.1))
    running = asyncio.create_task(worker.run())
    waiting = await until(client, run_id, "waiting")
    print(f"checkout 42 waits for {waiting.wait_event!r} key {waiting.wait_key!r}")
    # The warehouse (any process, or SQL: SELECT conveyor.send_event(...)) says it shipped.
    await app.asend_event("order.shipped", key="42", payload={"carrier": "DHL"})
    run = await until(client, run_id, "completed")
    worker.stop()
    await running

    print(f"steps: {', '.join(f'{s.name} ({s.state})' for s in run.steps)}")
    print(f"each step ran once: {calls}")
    print(f"checkout 42: {run.state}, shipped by {run.result['shipped']['carrier']}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
