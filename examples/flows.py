"""Flows: a report built from per-region parts, a batch with a completion callback, and
progress reported by a running job.

    python examples/flows.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio

import conveyor
from conveyor import JobContext

app = conveyor.Conveyor()


@app.task(name="flows.region_sales", max_attempts=1)
async def region_sales(region: str, ctx: JobContext) -> int:
    for step in range(1, 5):
        await ctx.aprogress(step * 25, f"{region}: {step} of 4 months")
        await asyncio.sleep(0.01)
    if region == "mars":
        raise ValueError("no sales data for mars")
    return {"north": 120, "south": 80, "east": 45}[region]


@app.task(name="flows.report")
async def report(ctx: JobContext) -> str:
    parts = await ctx.achildren()  # in the order given, each with state and result
    done = [p for p in parts if p.state == "completed"]
    return f"{sum(p.result for p in done)} sold in {len(done)} of {len(parts)} regions"


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    regions = [region_sales.spec(region=r) for r in ("north", "south", "east")]
    # The report waits for the three parts; a failing part would fail it ('fail' policy).
    flow = await app.aenqueue_flow(report.spec(), regions)
    # A batch: the callback runs when every job has finished, however it ended.
    batch = await app.aenqueue_batch(
        [region_sales.spec(region=r) for r in ("north", "mars")], on_complete=report.spec()
    )
    client = app.async_client()
    print(f"report {flow.parent_id}: {(await client.get_job(flow.parent_id)).state}")

    worker = conveyor.Worker(app, conveyor.WorkerConfig(promote_interval=0.1))
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(30):
        while not all(
            [(await client.get_job(i)).state.finished for i in (flow.parent_id, batch.parent_id)]
        ):
            await asyncio.sleep(0.05)
    worker.stop()
    await running

    print(f"flow report: {(await client.get_job(flow.parent_id)).result}")
    print(f"batch callback: {(await client.get_job(batch.parent_id)).result}")
    part = await client.get_job(flow.child_ids[0])
    print(f"last progress of job {part.id}: {part.progress and part.progress['message']}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
