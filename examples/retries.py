"""Retries: backoff after an exception, Retry(after=...), FailNow, fail_on, and a timeout.

    python examples/retries.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio

import conveyor
from conveyor import FailNow, JobContext, Retry, RetryPolicy

app = conveyor.Conveyor()
quick = RetryPolicy(base=0.2, factor=2, jitter=0)  # waits 0.2 s, 0.4 s, 0.8 s ...


@app.task(name="retries.flaky", max_attempts=5, backoff=quick)
def flaky(ctx: JobContext) -> str:
    if ctx.attempt < 3:
        raise ConnectionError(f"service down on attempt {ctx.attempt}")
    return f"worked on attempt {ctx.attempt}"


@app.task(name="retries.rate_limited", max_attempts=3)
async def rate_limited(ctx: JobContext) -> str:
    if ctx.attempt == 1:
        raise Retry(after=0.3, reason="HTTP 429: try again in 0.3 s")
    return "sent"


@app.task(name="retries.missing_order", max_attempts=5)
def missing_order(order_id: int) -> None:
    raise FailNow(f"order {order_id} does not exist")


@app.task(name="retries.bad_input", max_attempts=5, fail_on=[ValueError])
def bad_input(amount: str) -> float:
    return float(amount)  # ValueError: fails at once, no retry


@app.task(name="retries.slow", max_attempts=2, timeout=0.2, backoff=quick)
async def slow() -> None:
    await asyncio.sleep(5)


async def run_worker_until_finished(job_ids: list[int]) -> None:
    """Run a worker in this process until every job in `job_ids` has finished."""
    config = conveyor.WorkerConfig(promote_interval=0.1, poll_interval=0.2)
    worker = conveyor.Worker(app, config)
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
    job_ids = await app.aenqueue_many(
        [
            flaky.spec(),
            rate_limited.spec(),
            missing_order.spec(order_id=42),
            bad_input.spec(amount="twelve"),
            slow.spec(),
        ]
    )
    await run_worker_until_finished(job_ids)
    client = app.async_client()
    for job_id in job_ids:
        job = await client.get_job(job_id)
        errors = ", ".join(e["type"].rsplit(".", 1)[-1] for e in job.errors) or "none"
        print(
            f"{job.task}: {job.state} after {job.attempt} attempt(s);"
            f" errors: {errors}; result: {job.result!r}"
        )
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
