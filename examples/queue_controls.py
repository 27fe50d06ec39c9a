"""Queue controls shared by every worker: a per-tenant concurrency limit that is fair to small
tenants, a rate limit, backpressure, pause/resume, and a handler that snoozes its queue.

    python examples/queue_controls.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import asyncio
import time

import conveyor
from conveyor import JobContext, QueueLimits, SnoozeQueue

app = conveyor.Conveyor()
# Declared in code; every worker writes these to the database when it starts.
app.queue("reports", QueueLimits(key="tenant_id", key_concurrency=2))  # 2 running per tenant
app.queue("emails", QueueLimits(rate_limit="5/s", max_depth=100, on_full="reject"))

started: list[tuple[str, float]] = []
smtp_up = asyncio.Event()


@app.task(name="example.build_report", queue="reports")
async def build_report(tenant_id: str, n: int) -> None:
    started.append((tenant_id, time.monotonic()))
    await asyncio.sleep(0.05)


@app.task(name="example.send_email", queue="emails")
async def send_email(to: str, ctx: JobContext) -> str:
    if not smtp_up.is_set():
        smtp_up.set()  # it will be up after the snooze
        raise SnoozeQueue(0.5, "smtp answers 503")  # no attempt spent, the queue waits
    return f"sent to {to}"


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    client = app.async_client()
    config = conveyor.WorkerConfig(queues=("reports", "emails"), concurrency=20, poll_interval=0.2)
    worker = conveyor.Worker(app, config)
    running = asyncio.create_task(worker.run())
    await worker.started.wait()  # the declared limits are in the database now

    # A big tenant with 200 reports and a small one with 4: the small one is not starved.
    await app.aenqueue_many(
        [build_report.spec(tenant_id="big", n=n) for n in range(200)]
        + [build_report.spec(tenant_id="small", n=n) for n in range(4)]
    )
    emails = await app.aenqueue_many([send_email.spec(to=f"u{n}@example.com") for n in range(10)])
    try:
        await app.aenqueue_many([send_email.spec(to="x@example.com")] * 200)
    except conveyor.QueueFullError as exc:
        print(f"backpressure: {exc.queues[0]} refused 200 more jobs")

    await client.pause_queue("reports")
    print("reports paused; running ones finish, nothing new starts")
    await asyncio.sleep(0.3)
    await client.resume_queue("reports")

    async with asyncio.timeout(60):
        while (await client.get_job(emails[-1])).state != "completed" or len(started) < 204:
            await asyncio.sleep(0.1)
    worker.stop()
    await running

    small = [i for i, (tenant, _) in enumerate(started) if tenant == "small"]
    print(f"small tenant's 4 reports started among the first {max(small) + 1} of 204")
    first, last = started[0][1], started[-1][1]
    print(f"reports ran at most 2 per tenant: 204 in {last - first:.1f}s")
    for info in await client.queues():
        rate = info.to_dict()["rate_limit"] or "no"
        print(f"queue {info.name}: {rate} rate limit, dropped {info.dropped}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
