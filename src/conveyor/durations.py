"""Durations and instants given by users: one place that turns them into checked values.

Every option that takes a duration accepts float seconds or a `timedelta`. Each is checked
here, so a NaN, an infinity or a run time no reader can load is refused where it is given,
with the option's name, instead of surfacing later in a worker or a dashboard.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from conveyor.errors import ConfigError

#: Longest duration any option takes: 100 years. A longer one is a unit mistake (ms for s).
MAX_SECONDS = 100 * 365.25 * 24 * 3600.0

#: Run times must lie in this range: Python's datetime holds years 1 to 9999, and a day of
#: margin keeps every time zone's rendering of the instant inside it.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def to_seconds(value: float | timedelta, name: str, *, positive: bool = False) -> float:
    """Return `value` as seconds, or raise ConfigError naming `name` and the fix."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(
            f"{name} must be a number of seconds or a timedelta, got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be a finite number of seconds, got {seconds!r}")
    if seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be {bound} seconds, got {seconds:g}")
    if seconds > MAX_SECONDS:
        raise ConfigError(
            f"{name} is {seconds:g} seconds, over the 100-year maximum; check the unit"
            " (seconds, not milliseconds)"
        )
    return seconds


def optional_seconds(
    value: float | timedelta | None, name: str, *, positive: bool = False
) -> float | None:
    """to_seconds(), passing None through."""
    return None if value is None else to_seconds(value, name, positive=positive)


def check_run_at(run_at: datetime, name: str = "run_at") -> datetime:
    """Return `run_at` if it is timezone-aware and within EARLIEST..LATEST, else raise."""
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ConfigError(
            f"{name} must be timezone-aware (e.g. datetime.now(UTC) + timedelta(hours=1))"
        )
    try:
        in_range = EARLIEST <= run_at <= LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise ConfigError(
            f"{name} {run_at.isoformat()} is out of range; give a time between"
            f" {EARLIEST.date()} and {LATEST.date()}"
        )
    return run_at


def to_timedelta(value: float | timedelta, name: str, *, positive: bool = False) -> timedelta:
    """to_seconds(), as a timedelta (a timedelta given is returned as it is, once checked)."""
    seconds = to_seconds(value, name, positive=positive)
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


class _Missing:
    """No default: the field must be given."""


_MISSING = _Missing()


class _DurationField:
    """A duration field of a frozen dataclass: given as float seconds or a timedelta, checked
    by to_seconds() when the object is built. A descriptor, so the dataclass's __init__ (and a
    type checker) accepts both forms while the attribute reads as one type."""

    def __init__(
        self,
        default: float | timedelta | _Missing = _MISSING,
        *,
        positive: bool = False,
        label: str | None = None,
    ) -> None:
        self._default = default
        self._positive = positive
        self._label = label
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._label = self._label or f"{owner.__name__}({name}=...)"

    def _check(self, value: float | timedelta) -> float:
        return to_seconds(value, self._label or self._name, positive=self._positive)

    def _default_seconds(self) -> float:
        if isinstance(self._default, _Missing):
            # the dataclass reads the class attribute for a default: none, so it is required
            raise AttributeError(self._name)
        return self._check(self._default)


class Duration(_DurationField):
    """A dataclass field that takes float seconds or a timedelta and holds a timedelta:
    `completed: Duration = Duration(timedelta(hours=24))`."""

    def __get__(self, obj: object | None, owner: type | None = None) -> timedelta:
        if obj is None:
            return timedelta(seconds=self._default_seconds())
        value: timedelta = obj.__dict__[self._name]
        return value

    def __set__(self, obj: object, value: float | timedelta) -> None:
        # frozen dataclasses refuse assignment before it gets here; their __init__ does not
        seconds = self._check(value)
        obj.__dict__[self._name] = (
            value if isinstance(value, timedelta) else timedelta(seconds=seconds)
        )


class Seconds(_DurationField):
    """A dataclass field that takes float seconds or a timedelta and holds float seconds:
    `base: Seconds = Seconds(1.0)`."""

    def __get__(self, obj: object | None, owner: type | None = None) -> float:
        if obj is None:
            return self._default_seconds()
        value: float = obj.__dict__[self._name]
        return value

    def __set__(self, obj: object, value: float | timedelta) -> None:
        obj.__dict__[self._name] = self._check(value)
