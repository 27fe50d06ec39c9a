"""Clock: where time-dependent queries get their `now` from.

Leases, run-at times and retention use the database's clock, so worker hosts with skewed clocks
agree. A clock therefore answers `now()` with None ("let the database decide") in production,
and with a fixed instant in tests, which every query takes as `coalesce(%(now)s, now())`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from conveyor.durations import to_timedelta


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

    def advance(self, delta: float | timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` (seconds or a timedelta) or by timedelta keyword arguments
        (minutes=10). A negative timedelta moves back."""
        if delta is None:
            step = timedelta(**kwargs)
        elif isinstance(delta, timedelta):
            step = delta  # unchecked, so a test can move the clock back
        else:
            step = to_timedelta(delta, "advance(delta)")
        self.current += step
        return self.current

    def set(self, instant: datetime) -> None:
        """Jump to `instant`."""
        self.current = instant
