"""Clock: where time-dependent queries get their `now` from.

Leases, run-at times and retention use the database's clock, so worker hosts with skewed clocks
agree. A clock therefore answers `now()` with None ("let the database decide") in production,
and with a fixed instant in tests, which every query takes as `coalesce(%(now)s, now())`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the `now` passed to time-dependent queries."""

    def now(self) -> datetime | None:
        """Return the instant to use, or None to use the database's clock."""
        ...


class SystemClock:
    """The database's own clock: what production uses."""

    def now(self) -> datetime | None:
        return None


@dataclass
class FrozenClock:
    """A clock that stands still until told to move: for tests."""

    current: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword arguments (minutes=10)."""
        self.current += delta if delta is not None else timedelta(**kwargs)
        return self.current

    def set(self, instant: datetime) -> None:
        """Jump to `instant`."""
        self.current = instant
