"""Connections: the app's own pools, handed to whatever needs a connection of the app.

The app's enqueue and the Client take connections from here and from nothing else: the Client
is given a Connections, not the app, so it needs no knowledge of the app (and imports none).
One sync pool, and one async pool per event loop (a pool belongs to the loop it was opened on).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor._store.pool_check import IdleCheck
from conveyor._store.pooler import connect_options
from conveyor.errors import DatabaseUnavailableError


class Connections:
    """The pools of one app, opened on first use with the URL `url()` returns then (and
    without server-side prepared statements when `pgbouncer()` says a pooler is in between)."""

    def __init__(self, url: Callable[[], str], pgbouncer: Callable[[], bool] = bool) -> None:
        self._url = url
        self._pgbouncer = pgbouncer
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._apools: dict[int, AsyncConnectionPool[Any]] = {}
        self._idle_check = IdleCheck()
        self._busy = _Busy()

    @property
    def busy(self) -> int:
        """How many of this app's connections are out of their pools (sync and async)."""
        return self._busy.count

    def connection(self) -> AbstractContextManager[Connection[Any]]:
        """A pooled sync connection in autocommit mode; DatabaseUnavailableError when none
        can be had."""
        with self._lock:
            if self._pool is None:
                # connections idle a while are checked: enqueue survives database restarts
                self._pool = ConnectionPool(
                    open=True,
                    check=self._idle_check.check,
                    **self._settings(),
                )
            pool = self._pool
        return _Guard(pool.connection(), self._idle_check, self._busy)

    def aconnection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A pooled async connection of the running loop's pool, as connection() does."""
        # One pool per event loop: a pool belongs to the loop it was opened on.
        loop = asyncio.get_running_loop()
        pool = self._apools.get(id(loop))
        if pool is None:
            pool = AsyncConnectionPool(
                open=False,
                check=self._idle_check.acheck,
                **self._settings(),
            )
            self._apools[id(loop)] = pool
        return _AsyncGuard(pool, self._idle_check, self._busy)

    def _settings(self) -> dict[str, Any]:
        return {
            "conninfo": self._url(),
            "min_size": 1,
            "max_size": 16,  # 16 concurrent enqueuers commit at once (group commit)
            "timeout": 10.0,
            "kwargs": {
                "application_name": "conveyor-client",
                "autocommit": True,
                **connect_options(self._pgbouncer()),
            },
        }

    def close(self) -> None:
        """Close the sync pool."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        """Close the async pool of the running loop (and the sync pool)."""
        pool = self._apools.pop(id(asyncio.get_running_loop()), None)
        if pool is not None:
            await pool.close()
        self.close()


class _Busy:
    """A count of connections out of the pools, safe across threads."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n


class _Guard(AbstractContextManager[Connection[Any]]):
    """Turns pool timeouts and lost connections into DatabaseUnavailableError; notes when the
    connection went back (here, not in a pool `reset` callback: with one, the pool hands every
    returned connection to its worker thread, a thread switch on each enqueue)."""

    def __init__(
        self, cm: AbstractContextManager[Connection[Any]], idle: IdleCheck, busy: _Busy
    ) -> None:
        self._cm = cm
        self._idle = idle
        self._busy = busy
        self._conn: Connection[Any] | None = None

    def __enter__(self) -> Connection[Any]:
        try:
            self._conn = self._cm.__enter__()
        except Exception as exc:
            raise _unavailable(exc) from exc
        self._busy.add(1)
        return self._conn

    def __exit__(self, *exc: Any) -> Any:
        if self._conn is not None:
            self._busy.add(-1)
            self._idle.returned(self._conn)
        return self._cm.__exit__(*exc)


class _AsyncGuard(AbstractAsyncContextManager[AsyncConnection[Any]]):
    def __init__(self, pool: AsyncConnectionPool[Any], idle: IdleCheck, busy: _Busy) -> None:
        self._pool = pool
        self._idle = idle
        self._busy = busy
        self._cm: Any = None
        self._conn: AsyncConnection[Any] | None = None

    async def __aenter__(self) -> AsyncConnection[Any]:
        try:
            if self._pool.closed:
                await self._pool.open(wait=False)
            self._cm = self._pool.connection()
            conn: AsyncConnection[Any] = await self._cm.__aenter__()
        except Exception as exc:
            raise _unavailable(exc) from exc
        self._conn = conn
        self._busy.add(1)
        return conn

    async def __aexit__(self, *exc: Any) -> Any:
        if self._conn is not None:
            self._busy.add(-1)
            self._idle.returned(self._conn)
        return await self._cm.__aexit__(*exc)


def _unavailable(exc: Exception) -> Exception:
    from psycopg import OperationalError
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout | OperationalError):
        return DatabaseUnavailableError(
            f"cannot reach the database to enqueue ({exc}); nothing was written. Check that"
            " Postgres is up and CONVEYOR_DATABASE_URL is right"
        )
    return exc
