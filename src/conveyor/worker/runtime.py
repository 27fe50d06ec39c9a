"""Runtime: the collaborators of one run of a worker, started and closed together.

The Worker builds it once the database is reachable (it wires the worker's callbacks in), then
only starts loops and closes; so the worker's own code reads as the steps of a run, and
every piece that must be closed is in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from conveyor._store.leader import LeaderLease
from conveyor._store.listener import Listener
from conveyor._store.protocol import Store
from conveyor.maintenance.service import PeriodicService
from conveyor.worker.completer import Completer
from conveyor.worker.delivery import Deliverer
from conveyor.worker.executor import Executor
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.loops import CLOSE_TIMEOUT
from conveyor.worker.producer import Producer

log = logging.getLogger("conveyor.worker")

#: How long a worker waits for LISTEN at start before relying on polling.
LISTEN_WAIT = 5.0


class OpenStore(Store, Protocol):
    """A Store the worker opened, and so must close."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Runtime:
    """Everything one run of a worker holds open."""

    store: OpenStore
    threads: ThreadPoolExecutor
    executor: Executor
    completer: Completer
    producer: Producer
    leader: LeaderLease
    #: None behind PgBouncer without a direct listen URL: the producer polls instead.
    listener: Listener | None
    heartbeat: Heartbeat
    #: POSTs the jobs of endpoints; its pooled connections close with the run.
    deliverer: Deliverer
    #: Registers the worker (its row, the app's queue settings); retried by Startup.
    register: Callable[[], Awaitable[None]]

    def start_background(self, services: Sequence[PeriodicService]) -> list[asyncio.Task[None]]:
        """Start the loops that run beside the producer: listener, completer, heartbeat, and
        the maintenance `services` (each acting when this worker leads, if it must)."""
        background = [
            asyncio.create_task(self.completer.run(), name="conveyor-completer"),
            asyncio.create_task(self.heartbeat.run(), name="conveyor-heartbeat"),
        ]
        if self.listener is not None:
            background.append(asyncio.create_task(self.listener.run(), name="conveyor-listener"))
        for service in services:
            background.append(asyncio.create_task(service.run(self.leader.attempt_elect)))
        return background

    async def wait_for_listen(self) -> None:
        """Wait briefly for LISTEN, so a job enqueued right after start wakes the worker at
        once; past that, polling covers until the listener connects."""
        if self.listener is None:
            return
        try:
            async with asyncio.timeout(LISTEN_WAIT):
                await self.listener.connected.wait()
        except TimeoutError:
            log.warning("LISTEN not ready; relying on polling until it connects")

    def start_producer(self) -> asyncio.Task[None]:
        """Start claiming jobs."""
        return asyncio.create_task(self.producer.run(), name="conveyor-producer")

    async def abandon(self) -> None:
        """Close what was opened, for a run that stopped before it started."""
        await self.store.close()
        await self.deliverer.aclose()
        self.threads.shutdown(wait=False)

    async def close(self, worker_id: str) -> None:
        """Deregister, give up leadership and close; every wait is bounded."""
        # The pruner forgets dead workers anyway.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.store.worker_deregister(worker_id)
        await self.leader.close(timeout=CLOSE_TIMEOUT)
        await self.store.close()
        with contextlib.suppress(Exception):
            await self.deliverer.aclose()
        self.threads.shutdown(wait=False, cancel_futures=True)
