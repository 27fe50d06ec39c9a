"""Startup: the waits before a worker claims anything, each cut short by stop().

A worker started before its database (a deploy that brings both up, a database restarting)
waits for it instead of crashing, but refuses at once what waiting cannot fix: a wrong schema,
a database that does not exist, a refused password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg

from conveyor._store.diagnose import trouble_of
from conveyor.backoff import Backoff
from conveyor.errors import ConfigError
from conveyor.migrate import Migrator

log = logging.getLogger("conveyor.worker")


class Startup:
    """Checks the schema and registers the worker, retrying passing trouble with backoff until
    it works or `stop` is set."""

    def __init__(self, url: str, stop: asyncio.Event) -> None:
        self._url = url
        self._stop = stop

    async def check_schema(self) -> bool:
        """Refuse a wrong schema or a database that can never be reached as configured at
        once; wait for one that cannot be reached yet (down, starting, out of connections).
        Return False when stop() came first."""
        backoff = Backoff(sleep=self.pause)
        while not self._stop.is_set():
            check = asyncio.ensure_future(Migrator(self._url).acheck())
            stop = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait([check, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not check.done():
                check.cancel()  # stop() came first: abandon the connection attempt
                return False
            try:
                check.result()
                return True
            except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
                trouble = trouble_of(exc)
                if trouble.lasting:
                    raise ConfigError(f"cannot start the worker: {trouble}") from None
                delay = backoff.next()
                log.warning("cannot reach the database (%s); retrying in %.1fs", exc, delay)
                await backoff.sleep(delay)
        return False

    async def register(self, register: Callable[[], Awaitable[None]]) -> bool:
        """Run `register` (the worker's row and the app's queue settings), waiting out
        connection trouble; return False when stop() came first."""
        backoff = Backoff(sleep=self.pause)
        while not self._stop.is_set():
            try:
                await register()
                return True
            except Exception as exc:  # noqa: BLE001 - any connection trouble: wait and retry
                delay = backoff.next()
                log.warning("cannot register worker (%s); retrying in %.1fs", exc, delay)
                await backoff.sleep(delay)
        return False

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
