"""Helpers for testing your own tasks against a real database.

async def test_receipt_is_sent(app):
    send_receipt.enqueue(order_id=1)
    assert [j.args for j in enqueued(app, "send_receipt")] == [{"order_id": 1}]
    result = await drain(app)
    assert result.completed == 1
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from conveyor.durations import to_seconds
from conveyor.job import Job, JobState
from conveyor.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from conveyor.app import Conveyor


@dataclass(frozen=True)
class Drained:
    """What a drain() run did."""

    completed: int
    failed_attempts: int
    left_waiting: int


def enqueued(app: Conveyor, task: str | None = None, *, queue: str | None = None) -> list[Job]:
    """Jobs waiting to run (available, scheduled or retryable), oldest first."""
    client = app.client()
    waiting: list[Job] = []
    for state in (JobState.AVAILABLE, JobState.SCHEDULED, JobState.RETRYABLE):
        waiting += client.list_jobs(state=state, task=task, queue=queue, limit=1000)
    return sorted(waiting, key=lambda job: job.id)


async def drain(
    app: Conveyor,
    *,
    queues: tuple[str, ...] = ("default",),
    timeout: float | timedelta = 30.0,
    concurrency: int = 4,
) -> Drained:
    """Run a worker in this event loop until no job of `queues` is available or running.

    Jobs scheduled for later, and retries whose backoff has not passed, stay waiting and are
    counted in `left_waiting`. Raises TimeoutError when jobs are still running at `timeout`
    (seconds or a timedelta).
    """
    timeout = to_seconds(timeout, "timeout", positive=True)
    worker = Worker(
        app,
        WorkerConfig(
            queues=queues, concurrency=concurrency, poll_interval=0.1, promote_interval=0.1
        ),
    )
    runner = asyncio.create_task(worker.run())
    client = app.async_client()
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout):
            await worker.started.wait()
        while True:
            status = await client.status()
            busy = sum(
                q.counts[JobState.AVAILABLE] + q.counts[JobState.RUNNING]
                for q in status.queues
                if q.queue in queues
            )
            if busy == 0 and worker.running_count == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{busy} jobs still available or running after {timeout}s")
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await runner
    waiting = sum(
        q.counts[JobState.SCHEDULED] + q.counts[JobState.RETRYABLE]
        for q in (await client.status()).queues
        if q.queue in queues
    )
    return Drained(worker.completed, worker.failed, waiting)
