"""Durable fan-out: a sales report that looks up its inputs concurrently (ctx.gather), fans out
to one child job per store (ctx.map, at most 20 at once), combines their results in store
order, and publishes through a child workflow (ctx.run_workflow). The run holds no worker
while its 200 children run; one store's export is broken, and the report says which.

    python examples/workflows_report.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import conveyor
from conveyor.client import AsyncClient

app = conveyor.Conveyor()
STORES = 200
BROKEN_STORE = 137


def list_stores(region: str) -> list[int]:
    return list(range(STORES))


def exchange_rate(currency: str) -> float:
    return 1.25


@app.task(name="report.store_sales", max_attempts=2, backoff=0.1)
async def store_sales(store: int, rate: float) -> dict[str, Any]:
    """One child: a store's sales (a query against the store's database, in real life)."""
    if store == BROKEN_STORE:
        raise ConnectionError(f"store {store}: export endpoint timed out")
    return {"store": store, "sold": round((store % 7 + 1) * 10 * rate, 2)}


@app.workflow(name="report.publish")
async def publish(ctx: conveyor.WorkflowContext, title: str, total: float) -> str:
    """A child workflow: its steps are recorded in its own run."""
    return str(await ctx.step("upload", lambda: f"s3://reports/{title}.pdf ({total:,.2f})"))


@app.workflow(name="report.sales")
async def sales_report(ctx: conveyor.WorkflowContext, region: str) -> dict[str, Any]:
    stores, rate = await ctx.gather(
        ctx.step("stores", list_stores, region), ctx.step("rate", exchange_rate, "EUR")
    )
    rows = await ctx.map(
        store_sales,
        [{"store": s, "rate": rate} for s in stores],
        concurrency=20,
        on_failure="return",  # a failed store is reported, not fatal
    )
    ok = [r for r in rows if not isinstance(r, conveyor.ChildError)]
    failed = [r.to_dict() for r in rows if isinstance(r, conveyor.ChildError)]
    total = round(sum(r["sold"] for r in ok), 2)
    url = await ctx.run_workflow(publish, title=f"sales-{region}", total=total)
    return {"stores": len(ok), "total": total, "failed": failed, "url": url}


async def until(client: AsyncClient, run_id: str, state: str) -> Any:
    async with asyncio.timeout(60):
        while (run := await client.get_workflow(run_id)).state != state:
            await asyncio.sleep(0.05)
    return run


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    run_id = await sales_report.astart(region="emea")
    client = app.async_client()

    config = conveyor.WorkerConfig(concurrency=20, promote_interval=0.1)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    run = await until(client, run_id, "completed")
    worker.stop()
    await running

    result = run.result
    print(f"steps: {', '.join(f'{s.kind} {s.name} ({s.state})' for s in run.steps)}")
    for failure in result["failed"]:
        print(f"store {failure['index']} failed: {failure['error']['message']}")
    print(f"published {result['url']}")
    print(f"sales report: {result['stores']} of {STORES} stores, total {result['total']:,.2f}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
