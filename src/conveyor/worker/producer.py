"""Producer: claims as many jobs as there are free slots, and sleeps until there may be more."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg
import psycopg_pool

from conveyor._store.protocol import QueueControl, Store
from conveyor.backoff import Backoff
from conveyor.job import Job

log = logging.getLogger("conveyor.worker")


class Producer:
    """Wakes on NOTIFY for its queues, on a freed slot when a queue may hold more, or on the
    fallback poll; then claims per queue, rotating the starting queue so none starves.

    Queue controls (conveyor.queue) are re-read on every poll and whenever one changes: a
    paused queue is not claimed from, a snoozed or rate-exhausted one not before its time
    (a timer, not polling), and a limited one through the limits. The claim statements check
    the controls themselves, so a stale copy here costs a wasted claim, never a broken limit."""

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        queues: Sequence[str],
        tasks: Sequence[str],
        task_max_attempts: Sequence[int],
        batch_size: int,
        lease_seconds: float,
        poll_interval: float,
        concurrency: int,
        free_slots: Callable[[], int],
        dispatch: Callable[[Job, UUID], None],
        refresh_tasks: Callable[[], Awaitable[tuple[list[str], list[int]]]] | None = None,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._queues = list(queues)
        self._tasks = list(tasks)
        self._task_max_attempts = list(task_max_attempts)
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._free_slots = free_slots
        self._dispatch = dispatch
        self._refresh_tasks = refresh_tasks
        self._wake = asyncio.Event()
        # Queues that may hold claimable jobs; all of them at start and after every poll.
        self._maybe_more: set[str] = set(self._queues)
        # Bumped on every notification, so a claim that raced with one does not forget it.
        self._generation: dict[str, int] = dict.fromkeys(self._queues, 0)
        self._turn = 0
        # Under load, wait for half a batch of free slots before claiming again: a few large
        # claims cost far less than many single-row ones.
        self._refill_at = max(1, min(batch_size, concurrency) // 2)
        self._controls: dict[str, QueueControl] = {}
        self._not_before: dict[str, float] = {}
        self._controls_stale = True

    def controls_changed(self, queue: str) -> None:
        """A queue's controls changed (pause, resume, snooze, limits): re-read them."""
        if queue in self._generation:
            self._controls_stale = True
            self._not_before.pop(queue, None)
            self.notify(queue)

    async def refresh_controls(self) -> None:
        """Re-read the controls of this worker's queues (and the tasks it claims, when they
        can change: endpoints are added and removed at run time)."""
        if self._refresh_tasks is not None:
            self._tasks, self._task_max_attempts = await self._refresh_tasks()
        self._controls = await self._store.queue_controls(self._queues)
        self._controls_stale = False
        now = time.monotonic()
        for name, control in self._controls.items():
            if control.snoozed_for > 0:
                self._not_before[name] = max(
                    self._not_before.get(name, 0.0), now + control.snoozed_for
                )

    def _next_timer(self) -> float:
        """Seconds to sleep: the poll interval, or less when a held-back queue comes due."""
        if not self._not_before:
            return self._poll_interval
        due = min(self._not_before.values()) - time.monotonic()
        return max(0.0, min(self._poll_interval, due))

    def _release_due(self) -> None:
        now = time.monotonic()
        for name in [q for q, at in self._not_before.items() if at <= now]:
            del self._not_before[name]
            self.notify(name)

    def notify(self, queue: str | None = None) -> None:
        """A job became available (in `queue`, or anywhere when None)."""
        targets = self._queues if queue is None else [queue] if queue in self._generation else []
        for name in targets:
            self._maybe_more.add(name)
            self._generation[name] += 1
        if targets:
            self._wake.set()

    def slot_freed(self, queue: str | None = None) -> None:
        """A running job (of `queue`) finished; claim again if some queue may hold more. In
        a limited queue a finished job frees room under the limit, so it may hold more."""
        control = self._controls.get(queue) if queue is not None else None
        if control is not None and control.limited and queue not in self._not_before:
            self._maybe_more.add(queue)  # type: ignore[arg-type]
            self._wake.set()
            return
        if self._maybe_more and self._free_slots() >= self._refill_at:
            self._wake.set()

    async def run(self) -> None:
        """Claim until cancelled; database errors back off and are logged, never fatal."""
        backoff = Backoff(first=0.1)
        while True:
            try:
                await self.fetch_once()
                backoff.reset()
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                delay = backoff.next()
                log.warning("cannot claim jobs (%s); retrying in %.1fs", exc, delay)
                await backoff.sleep(delay)
                self.notify()
                continue
            if self._maybe_more and self._free_slots() >= self._refill_at:
                continue
            timer = self._next_timer()
            try:
                # Not wait_for: on 3.11 it drops a cancel that lands as the wake fires, and the
                # producer would claim on through shutdown (asyncio.timeout never does).
                async with asyncio.timeout(timer):
                    await self._wake.wait()
            except TimeoutError:
                if timer >= self._poll_interval:
                    self._controls_stale = True
                    self.notify()
            self._wake.clear()
            self._release_due()

    async def fetch_once(self) -> int:
        """Claim from each queue that may hold jobs while slots are free; return the count."""
        claimed = 0
        if self._controls_stale:
            await self.refresh_controls()
        order = self._queues[self._turn :] + self._queues[: self._turn]
        self._turn = (self._turn + 1) % len(self._queues)
        for queue in order:
            free = self._free_slots()
            if free <= 0:
                break
            if queue not in self._maybe_more:
                continue
            if queue in self._not_before:
                self._maybe_more.discard(queue)  # the timer brings it back
                continue
            control = self._controls.get(queue)
            if control is not None and control.paused:
                self._maybe_more.discard(queue)
                continue
            limit = min(free, self._batch_size)
            token = uuid.uuid4()
            generation = self._generation[queue]
            if control is not None and control.limited:
                jobs, wait = await self._store.job_fetch_limited(**self._claim(queue, limit, token))
                if wait is None or wait > 0:
                    self._hold(queue, wait)
                    continue
            else:
                jobs = await self._store.job_fetch_available(**self._claim(queue, limit, token))
            if len(jobs) < limit and self._generation[queue] == generation:
                self._maybe_more.discard(queue)
            for job in jobs:
                self._dispatch(job, token)
            claimed += len(jobs)
        return claimed

    def _claim(self, queue: str, limit: int, token: UUID) -> dict[str, Any]:
        return {
            "queue": queue,
            "tasks": self._tasks,
            "task_max_attempts": self._task_max_attempts,
            "limit": limit,
            "lease_seconds": self._lease_seconds,
            "token": token,
            "worker_id": self._worker_id,
        }

    def _hold(self, queue: str, wait: float | None) -> None:
        """Nothing of `queue` may start: paused (None) until its controls change, else for
        `wait` seconds."""
        self._maybe_more.discard(queue)
        if wait is None:
            self._controls_stale = True
        else:
            self._not_before[queue] = time.monotonic() + wait
