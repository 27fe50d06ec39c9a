"""Shutdown always ends: the producer honours a cancel that lands as it wakes, and a loop that
will not stop is logged and left behind instead of holding the worker (and its leader lock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from conveyor._store.postgres import PostgresStore
from conveyor.worker.loops import stop_loops
from conveyor.worker.producer import Producer
from tests.helpers import eventually


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


def _parked(task: asyncio.Task[None]) -> bool:
    """The producer sleeps until woken (in Event.wait, or in wait_for around it)."""
    names = []
    coro = task.get_coro()
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        names.append(coro.cr_frame.f_code.co_qualname)
        coro = coro.cr_await
    return names[:1] == ["Producer.run"] and names[-1] in {"Event.wait", "wait_for"}


@pytest.mark.parametrize("loop_turns", [0, 1, 2, 3])
async def test_producer_stops_when_cancelled_as_a_notification_wakes_it(
    store: PostgresStore, loop_turns: int
) -> None:
    # On Python 3.11, asyncio.wait_for returns normally when the cancel arrives in the same
    # loop turns as the awaited event: the producer then claimed on for ever after shutdown.
    producer = Producer(
        store,
        worker_id="w1",
        queues=["default"],
        tasks=["t"],
        task_max_attempts=[1],
        batch_size=10,
        lease_seconds=30,
        poll_interval=60,
        concurrency=4,
        free_slots=lambda: 4,
        dispatch=lambda job, token: None,
    )
    task = asyncio.create_task(producer.run())
    await eventually(lambda: _parked(task))
    producer.notify()
    for _ in range(loop_turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=10)
    if not done:
        task.cancel()
    assert done, "the producer lost its cancellation and went on running"


async def test_a_loop_that_ignores_its_cancellation_is_logged_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    async def polite() -> None:
        await asyncio.Event().wait()

    stuck = asyncio.create_task(stubborn(), name="stubborn-loop")
    fine = asyncio.create_task(polite(), name="polite-loop")
    try:
        with caplog.at_level(logging.ERROR, logger="conveyor.worker"):
            await asyncio.wait_for(stop_loops([stuck, fine], timeout=0.5), 30)
        assert fine.cancelled()
        assert not stuck.done()
        [record] = caplog.records
        assert "stubborn-loop did not stop within 0.5s" in record.getMessage()
        assert "stubborn" in record.getMessage().split("awaiting")[1]  # where it is stuck
    finally:
        release.set()
        await stuck
