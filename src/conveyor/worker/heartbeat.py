"""Heartbeat: renews the leases of running jobs and marks the worker alive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import psycopg
import psycopg_pool

from conveyor._store.protocol import Store

log = logging.getLogger("conveyor.worker")


class Heartbeat:
    """Every interval: extend held leases; report jobs whose lease was lost to `on_lost`."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        held: Callable[[], list[tuple[int, UUID]]],
        on_lost: Callable[[set[int]], None],
        *,
        register: Callable[[], Awaitable[None]] | None = None,
        interval: float,
        lease_seconds: float,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._held = held
        self._on_lost = on_lost
        self._register = register
        self._interval = interval
        self._lease_seconds = lease_seconds

    async def run_once(self) -> set[int]:
        """Renew once; return the ids of jobs no longer held."""
        held = self._held()
        lost: set[int] = set()
        if held:
            kept = await self._store.job_extend_lease(held, self._lease_seconds)
            lost = {job_id for job_id, _ in held} - kept
            if lost:
                self._on_lost(lost)
        if not await self._store.worker_heartbeat(self._worker_id) and self._register:
            # our row is gone (the schema was re-created, or the pruner took us for dead
            # while this process was frozen): register again so `conveyor status` sees us
            log.warning("worker %s was not registered; registering again", self._worker_id)
            await self._register()
        return lost

    async def run(self) -> None:
        """Renew until cancelled; database errors are logged and retried next beat."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                log.warning("cannot renew leases (%s); will retry", exc)
