"""Backoff: the waits of a retry loop that keeps trying until its trouble passes.

Every loop that retries the database (the worker's start-up, the producer, the completer, the
listener) waits through one of these, so they all back off the same way:

    backoff = Backoff(first=0.1)
    while True:
        try:
            await fetch()
            backoff.reset()
        except psycopg.OperationalError as exc:
            delay = backoff.next()
            log.warning("cannot fetch (%s); retrying in %.1fs", exc, delay)
            await backoff.sleep(delay)

`next()` and `sleep()` are separate so the loop can say how long it waits before it waits.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable

from conveyor.errors import ConfigError

Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    """Waits that grow by `factor` from `first` up to `most` seconds; reset() after a success.

    `jitter` (0 to 1) takes up to that share off each wait at random, drawn from `rng`, so
    loops that failed together do not retry together; it is off by default. `sleep` is how a
    wait is spent (asyncio.sleep, or one that wakes early on shutdown; a fake in tests).
    """

    def __init__(
        self,
        first: float = 0.2,
        most: float = 10.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        _check(first, most, factor, jitter)
        self._first = first
        self._most = most
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._sleep = sleep or asyncio.sleep
        self._next = first

    def next(self) -> float:
        """The wait before the next try (each call grows the one after, up to `most`)."""
        delay = self._next
        self._next = min(delay * self._factor, self._most)
        if self._jitter:
            delay -= delay * self._jitter * self._rng.random()
        return delay

    def reset(self) -> None:
        """The last try worked: start from the shortest wait again."""
        self._next = self._first

    async def sleep(self, delay: float) -> None:
        """Spend `delay` seconds (a value next() returned) before the next try."""
        await self._sleep(delay)


def _check(first: float, most: float, factor: float, jitter: float) -> None:
    for name, value in (("first", first), ("most", most), ("factor", factor), ("jitter", jitter)):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise ConfigError(f"Backoff: {name} must be a finite number, got {value!r}")
    if first <= 0:
        raise ConfigError(f"Backoff: first must be more than 0 seconds, got {first}")
    if most < first:
        raise ConfigError(f"Backoff: most ({most}) must be at least first ({first})")
    if factor < 1:
        raise ConfigError(f"Backoff: factor must be 1 or more, got {factor}")
    if not 0 <= jitter <= 1:
        raise ConfigError(f"Backoff: jitter must be between 0 and 1, got {jitter}")
