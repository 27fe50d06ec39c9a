"""Schedule: a cron expression in a time zone, and the job it enqueues at each of its times.

The times of a schedule ("slots") come from cronsim, which evaluates cron expressions the way
Debian's cron does, daylight-saving changes included. A schedule at fixed times (no `*` at the
start of its minute and hour fields, such as `30 2 * * *`) follows the wall clock: a time
skipped when clocks go forward runs at the end of the gap (02:30 becomes 03:00), and a time
repeated when clocks go back runs once, at its first occurrence. A schedule whose minute or
hour field starts with `*` (`*/5 * * * *`, `0 * * * *`) follows real time through both
changes, so it keeps its interval.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from conveyor.errors import ConfigError
from conveyor.spec import JobSpec

#: What to do with the times a schedule missed while no worker ran.
CATCH_UP: Final = ("skip", "once")

MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELDS = (
    "5 fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or JAN-DEC)"
    " day-of-week (0-7 or SUN-SAT), e.g. '*/5 * * * *', or one of " + ", ".join(sorted(set(MACROS)))
)
_KEY_PREFIX = "cron:"
# Widening look-back windows when searching for the latest time of a schedule: the first one
# that holds a time gives the answer, after about as many steps as it holds times.
_WINDOWS = (
    timedelta(minutes=2),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=32),
    timedelta(days=400),
    None,
)


@dataclass(frozen=True)
class Schedule:
    """A periodic job: at every time of `cron` in `timezone`, one job built from `spec`.

    `catch_up` says what happens to times missed while no worker ran: "skip" drops them,
    "once" enqueues one job for the latest of them. A time counts as missed once it is
    `grace` old. Built by `@app.periodic` or `app.add_schedule`, which validate it.
    """

    name: str
    cron: str
    timezone: str
    catch_up: str
    grace: timedelta
    spec: JobSpec
    expression: str = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 200:
            raise ConfigError(f"a schedule name must be 1 to 200 characters, got {self.name!r}")
        if self.catch_up not in CATCH_UP:
            close = difflib.get_close_matches(str(self.catch_up), CATCH_UP, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"schedule {self.name!r}: catch_up must be 'skip' or 'once', got"
                f" {self.catch_up!r}{hint}"
            )
        if self.grace <= timedelta(0):
            raise ConfigError(f"schedule {self.name!r}: grace must be > 0, got {self.grace}")
        object.__setattr__(self, "expression", _expression(self.cron, self.name))
        object.__setattr__(self, "zone", _zone(self.timezone, self.name))

    @property
    def task(self) -> str:
        """The name of the task whose jobs this schedule enqueues."""
        return self.spec.task

    def next_after(self, instant: datetime) -> datetime | None:
        """The first time of the schedule strictly after `instant` (UTC), or None if none
        comes within 50 years."""
        for slot in self._slots_from(instant):
            if slot > instant:
                return slot
        return None

    def latest_between(self, start: datetime, end: datetime) -> datetime | None:
        """The last time of the schedule in [start, end] (UTC), or None."""
        for width in _WINDOWS:
            low = start if width is None else max(start, end - width)
            found = None
            for slot in self._slots_from(low):
                if slot > end:
                    break
                if slot >= low:
                    found = slot
            if found is not None or low == start:
                return found
        return None  # unreachable: the last window starts at `start`

    def job_key(self, slot: datetime) -> str:
        """The unique key of the job for `slot`: it names the schedule and the slot."""
        return f"{_KEY_PREFIX}{self.name}@{slot.astimezone(UTC).isoformat()}"

    def _slots_from(self, instant: datetime) -> Iterator[datetime]:
        # cronsim yields times after its start, truncated to the second; start a second early
        # so a time equal to `instant` is seen. On a fixed-time schedule it walks the wall
        # clock, so inside a repeated hour it can yield a time before `instant`: callers filter.
        start = (instant - timedelta(seconds=1)).astimezone(self.zone)
        for local in CronSim(self.expression, start):
            yield local.astimezone(UTC)


def slot_of_key(unique_key: str | None) -> datetime | None:
    """The slot a cron job was enqueued for, read back from its unique key (else None)."""
    if not unique_key or not unique_key.startswith(_KEY_PREFIX):
        return None
    _, at, stamp = unique_key.rpartition("@")
    if not at:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _expression(cron: str, name: str) -> str:
    if not isinstance(cron, str) or not cron.strip():
        raise ConfigError(f"schedule {name!r}: cron must be a cron expression with {_FIELDS}")
    text = " ".join(cron.split())
    expression = MACROS.get(text.lower(), text)
    fields = expression.split()
    if len(fields) != 5:
        raise ConfigError(
            f"schedule {name!r}: cron expression {cron!r} has {len(fields)} field(s); give"
            f" {_FIELDS}"
        )
    try:
        next(CronSim(expression, datetime(2000, 1, 1)))
    except CronSimError as exc:
        raise ConfigError(
            f"schedule {name!r}: invalid cron expression {cron!r} ({str(exc).lower()}); give"
            f" {_FIELDS}"
        ) from None
    except StopIteration:
        raise ConfigError(
            f"schedule {name!r}: cron expression {cron!r} never matches a date; check its"
            " day-of-month, month and day-of-week fields"
        ) from None
    return expression


def _zone(timezone: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        close = difflib.get_close_matches(str(timezone), sorted(available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"schedule {name!r}: unknown timezone {timezone!r}{hint} (use an IANA name such as"
            " 'Europe/Berlin', 'America/New_York' or 'UTC')"
        ) from None
