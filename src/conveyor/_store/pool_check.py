"""Connection checks for the client pools: a round trip only when one may be needed.

`check_connection` on every checkout costs a round trip per enqueue (a quarter of a single
enqueue's time). An idle client connection receives nothing from the server, unless the server
is closing it (a restart, `pg_terminate_backend`): then its socket turns readable. So a
connection is checked with a round trip when its socket has something to read, or when it sat
idle long enough for a silent cut (a proxy's idle timeout) to be likely.
"""

from __future__ import annotations

import select
import time
import weakref

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

#: Connections idle longer than this are checked with a round trip before use.
CHECK_AFTER_IDLE = 2.0


class IdleCheck:
    """The `check` callback of a pool; `returned()` remembers when each connection came back."""

    def __init__(self, after_idle: float = CHECK_AFTER_IDLE) -> None:
        self._after_idle = after_idle
        self._returned: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()

    def _stale(self, conn: Connection | AsyncConnection) -> bool:
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > self._after_idle:
            return True
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):  # closed socket
            return True
        return bool(readable)

    def check(self, conn: Connection) -> None:
        if self._stale(conn):
            ConnectionPool.check_connection(conn)

    async def acheck(self, conn: AsyncConnection) -> None:
        if self._stale(conn):
            await AsyncConnectionPool.check_connection(conn)

    def returned(self, conn: Connection | AsyncConnection) -> None:
        """Note that `conn` goes back to its pool now (call it just before giving it back)."""
        self._returned[conn] = time.monotonic()
