"""Health: what a worker's /healthz (liveness) and /readyz (readiness) answer.

Both are answered on the metrics server's own thread, so they can tell that the event loop
stopped turning (a handler that blocks it, an endless loop) while the loop cannot run a line:
a task on the loop notes the time every second, and the probe compares. The database is
pinged every few seconds on the loop; a worker whose database has not answered for longer
than the limit is unhealthy, so an orchestrator restarts it (or tells someone).

- /healthz: 200 while the loop turned within `stall_after` seconds and the database answered
  within `database_after`; else 503 with the reason.
- /readyz: 200 once the worker checked the schema and claims jobs (LISTEN or polling started),
  and while it is healthy and not stopping; else 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("conveyor.worker")

#: How often the loop notes that it turns, and how often the database is pinged (seconds).
TICK = 1.0
PING_EVERY = 5.0

Ping = Callable[[], Awaitable[object]]


class Health:
    """The worker's liveness and readiness, read from any thread."""

    def __init__(self, *, stall_after: float, database_after: float) -> None:
        self.stall_after = stall_after
        # several turns per limit, so a loop that turns is never taken for a stalled one
        self._tick_every = min(TICK, stall_after / 4)
        self.database_after = database_after
        now = time.monotonic()
        self._tick = now
        # the limit counts from the start: a worker that never reached its database is unhealthy
        self._answered = now
        self._ping: Ping | None = None
        self._ready = False
        self._stopping = False

    # -- told by the worker -------------------------------------------------------------------

    def database_answered(self) -> None:
        """The database just answered (the start-up check, a ping)."""
        self._answered = time.monotonic()

    def watch_database(self, ping: Ping) -> None:
        """Ping the database with `ping` from now on."""
        self._ping = ping

    def started(self) -> None:
        """The worker claims jobs: ready."""
        self._ready = True

    def stopping(self) -> None:
        """The worker was told to stop: no longer ready."""
        self._stopping = True

    async def run(self) -> None:
        """Note the loop's turns every TICK and ping the database every PING_EVERY seconds,
        until cancelled."""
        pinger = asyncio.create_task(self._ping_loop(), name="conveyor-health-ping")
        try:
            while True:
                self._tick = time.monotonic()
                await asyncio.sleep(self._tick_every)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _ping_loop(self) -> None:
        while True:
            if self._ping is not None:
                try:
                    async with asyncio.timeout(PING_EVERY):
                        await self._ping()
                    self.database_answered()
                except Exception as exc:  # noqa: BLE001 - any failure: the database did not answer
                    log.debug("health ping failed: %s", exc)
            await asyncio.sleep(PING_EVERY)

    # -- asked by the probes (another thread) -------------------------------------------------

    def liveness(self) -> tuple[bool, str]:
        """(healthy, reason)."""
        now = time.monotonic()
        stalled = now - self._tick
        if stalled > self.stall_after:
            return False, f"event loop stalled for {stalled:.1f}s (limit {self.stall_after:g}s)"
        silent = now - self._answered
        if silent > self.database_after:
            return False, (
                f"database unreachable for {silent:.0f}s (limit {self.database_after:g}s)"
            )
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason)."""
        if self._stopping:
            return False, "stopping"
        if not self._ready:
            return False, "starting: checking the schema and registering"
        return self.liveness()
