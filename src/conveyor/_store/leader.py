"""LeaderLease: one process at a time runs the maintenance services (a lease in a row).

The lease is a row of conveyor.leader renewed by the database clock, not a session advisory
lock: a session lock cannot be held through a transaction-mode pooler, which hands each
transaction to whichever server connection is free. The leader renews every third of the
lease; one that dies or is cut off stops renewing, and another worker takes the row once it
has expired: failover takes at most `ttl` seconds (a clean shutdown resigns at once).
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import psycopg_pool

from conveyor._store.protocol import Store

log = logging.getLogger("conveyor.leader")

#: A worker that does not lead asks again at most this often (seconds).
NOT_LEADER_RECHECK = 1.0


class LeaderLease:
    """Try to become the leader; stay leader while the lease is renewed in time."""

    def __init__(self, store: Store, holder: str, *, ttl: float) -> None:
        self._store = store
        self._holder = holder
        self._ttl = ttl
        self._lock: asyncio.Lock | None = None
        self._recheck_at = 0.0
        self.is_leader = False

    async def attempt_elect(self) -> bool:
        """Return True when this process holds the lease (taking it when it is free or
        expired). Answered from memory within a third of the lease since the last renewal;
        every service asks before each pass."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if time.monotonic() < self._recheck_at:
                return self.is_leader
            return await self._attempt_elect()

    async def _attempt_elect(self) -> bool:
        # measured from before the statement: the lease runs from the database's now()
        asked = time.monotonic()
        try:
            leader = await self._store.leader_attempt_elect(self._holder, self._ttl)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            # not renewed: another worker may take the lease once it expires; stop leading now
            log.warning("leader election failed (%s); will retry", exc)
            leader = False
        if leader and not self.is_leader:
            log.info("%s leads the maintenance services (lease %gs)", self._holder, self._ttl)
        elif self.is_leader and not leader:
            log.warning("%s no longer leads the maintenance services", self._holder)
        self.is_leader = leader
        wait = self._ttl / 3 if leader else min(self._ttl / 3, NOT_LEADER_RECHECK)
        self._recheck_at = asked + wait
        return leader

    async def close(self, timeout: float = 5.0) -> None:
        """Resign within `timeout` seconds, so another worker takes over at once; a database
        that does not answer cannot hold shutdown (the lease then simply expires)."""
        was_leader, self.is_leader = self.is_leader, False
        self._recheck_at = 0.0
        if not was_leader:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._store.leader_resign(self._holder)
        except (psycopg.Error, psycopg_pool.PoolTimeout, TimeoutError) as exc:
            log.warning("could not resign the leader lease (%s); it expires by itself", exc)
