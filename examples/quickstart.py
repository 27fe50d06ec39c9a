"""Quickstart: declare tasks, enqueue jobs, run a worker in this process until they finish.

    python examples/quickstart.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio

import conveyor

app = conveyor.Conveyor()


@app.task(name="quickstart.add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="quickstart.shout", queue="default", max_attempts=3)
def shout(text: str) -> str:
    return text.upper() + "!"


async def run_worker_until_finished(job_ids: list[int]) -> None:
    """Run a worker in this process until every job in `job_ids` has finished."""
    worker = conveyor.Worker(app, conveyor.WorkerConfig(concurrency=4))
    running = asyncio.create_task(worker.run())
    client = app.async_client()
    try:
        async with asyncio.timeout(30):
            while not running.done() and not all(
                [(await client.get_job(i)).state.finished for i in job_ids]
            ):
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    job_ids = [
        await add.aenqueue(a=2, b=3),
        await shout.aenqueue(text="hello"),
        await shout.with_options(priority=10).aenqueue(text="me first"),
    ]
    await run_worker_until_finished(job_ids)
    client = app.async_client()
    for job_id in job_ids:
        job = await client.get_job(job_id)
        print(f"job {job.id} {job.task}: {job.state}, result {job.result!r}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
