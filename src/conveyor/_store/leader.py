"""LeaderLock: one process at a time runs the maintenance services (a session advisory lock).

The lock lives as long as its connection: when the leader dies or is cut off, Postgres releases
it and another worker takes over on its next attempt.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from conveyor._store.ops import Op, Rows, ignore
from conveyor._store.runner import arun

log = logging.getLogger("conveyor.leader")


class LeaderLock:
    """Try to become the leader; stay leader while the connection lives."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock: asyncio.Lock | None = None
        self.is_leader = False

    async def attempt_elect(self) -> bool:
        """Return True when this process holds the leader lock (taking it if it is free)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._attempt_elect()

    async def _attempt_elect(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self.is_leader = False
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="conveyor-leader"
                )
            if self.is_leader:
                # Prove the session (and with it the lock) is still alive.
                await self._conn.execute("SELECT 1")
                return True
            self.is_leader = await arun(self._conn, Op("leader_try_lock", {}, _locked))
        except psycopg.OperationalError as exc:
            log.warning("leader election failed (%s); will retry", exc)
            await self.close()
        return self.is_leader

    async def close(self, timeout: float = 5.0) -> None:
        """Give up the lock by closing the session, within `timeout` seconds: a server that
        does not answer (cut off) cannot hold shutdown; it frees the lock with the session."""
        was_leader, self.is_leader = self.is_leader, False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if was_leader and not conn.broken:
                # Unlock first: the server may take a moment to end a closed session.
                async with asyncio.timeout(timeout):
                    await arun(conn, Op("leader_unlock", {}, ignore))
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not unlock the leader lock (%s); closing its session", exc)
        finally:
            await conn.close()


def _locked(rows: Rows) -> bool:
    return bool(rows and rows[0]["leader"])
