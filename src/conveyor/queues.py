"""Queue controls: limits shared by every worker, written to conveyor.queue.

A queue's controls live in the database, so every worker process on every machine obeys the
same ones: at most N running jobs of the queue, at most N per concurrency key (a field of the
job's args, e.g. a tenant id), at most N jobs started per period, and at most N jobs waiting.
Pause and snooze are states of the same row.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from conveyor.durations import to_seconds
from conveyor.errors import ConfigError

OnFull = Literal["reject", "drop_oldest", "drop_newest"]
ON_FULL: tuple[OnFull, ...] = ("reject", "drop_oldest", "drop_newest")

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


@dataclass(frozen=True, init=False)
class RateLimit:
    """At most `count` jobs start per window of `per` (seconds or a timedelta; windows follow
    one another): `RateLimit(100, per=60)`, or `RateLimit.parse("100/minute")`."""

    count: int
    per: timedelta

    def __init__(self, count: int, per: float | timedelta) -> None:
        # a written-out __init__: `per` is given as seconds or a timedelta, stored as a timedelta
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "per", timedelta(seconds=to_seconds(per, "rate limit per")))
        if self.count < 1 or self.per <= timedelta(0):
            raise ConfigError(
                f"rate limit {self.count} per {self.per} is not positive; e.g. RateLimit(100,"
                " timedelta(minutes=1)) or '100/minute'"
            )

    @classmethod
    def parse(cls, value: RateLimit | str) -> RateLimit:
        """Read '100/minute', '20/s', '5/10s' or '1000/hour'."""
        if isinstance(value, RateLimit):
            return value
        match = _RATE.match(value.lower())
        unit = _UNITS.get(match[3]) if match else None
        if match is None or unit is None:
            raise ConfigError(
                f"rate limit {value!r} is not COUNT/PERIOD; write e.g. '100/minute', '20/s' or"
                " '5/10s' (units: s, m, h, d)"
            )
        amount = float(match[2]) if match[2] else 1.0
        return cls(int(match[1]), timedelta(seconds=amount * unit))

    def __str__(self) -> str:
        return f"{self.count}/{self.per.total_seconds():g}s"


@dataclass(frozen=True, init=False)
class QueueLimits:
    """Limits of one queue. None means no limit. `key` names the args field whose value is a
    job's concurrency key; `key_concurrency` jobs per key may run at once. `rate_limit` is a
    RateLimit or its text ('100/minute'); `max_depth` jobs may wait, and `on_full` says what
    happens to the next one."""

    concurrency: int | None = None
    key: str | None = None
    key_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    max_depth: int | None = None
    on_full: OnFull = field(default="reject")

    def __init__(
        self,
        concurrency: int | None = None,
        key: str | None = None,
        key_concurrency: int | None = None,
        rate_limit: RateLimit | str | None = None,
        max_depth: int | None = None,
        on_full: OnFull = "reject",
    ) -> None:
        # a written-out __init__: the rate limit may be given as text, and is stored parsed
        rate = RateLimit.parse(rate_limit) if rate_limit is not None else None
        for name, value in (
            ("concurrency", concurrency),
            ("key", key),
            ("key_concurrency", key_concurrency),
            ("rate_limit", rate),
            ("max_depth", max_depth),
            ("on_full", on_full),
        ):
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        for name in ("concurrency", "key_concurrency", "max_depth"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
        if (self.key is None) != (self.key_concurrency is None):
            raise ConfigError(
                "a per-key limit needs both key (the args field, e.g. 'tenant_id') and"
                " key_concurrency (how many jobs per key may run at once)"
            )
        if self.key == "":
            raise ConfigError("key must name an args field, e.g. 'tenant_id'")
        if self.on_full not in ON_FULL:
            raise ConfigError(f"on_full must be one of {', '.join(ON_FULL)}, got {self.on_full!r}")


def configure_params(
    name: str, values: QueueLimits, fields: tuple[str, ...], now: datetime | None
) -> dict[str, Any]:
    """Parameters of the queue_configure query for the given fields."""
    rate = values.rate_limit
    return {
        "name": name,
        "fields": list(fields),
        "concurrency": values.concurrency,
        "key_arg": values.key,
        "key_concurrency": values.key_concurrency,
        "rate_limit": rate.count if rate else None,
        "rate_period": rate.per.total_seconds() if rate else None,
        "max_depth": values.max_depth,
        "on_full": values.on_full,
        "now": now,
    }


#: Every field a configure call can set; `key` covers key and key_concurrency, `max_depth`
#: covers max_depth and on_full.
FIELDS = ("concurrency", "key", "rate_limit", "max_depth")
_GROUPS = {"key_concurrency": "key", "on_full": "max_depth"}


def validate_queue_settings(changes: dict[str, Any]) -> QueueLimits:
    """Check queue settings by name and value; raise ConfigError naming the fix."""
    unknown = sorted(set(changes) - set(FIELDS) - set(_GROUPS))
    if unknown:
        known = [*FIELDS, *_GROUPS]
        hints = [difflib.get_close_matches(u, known, 1) for u in unknown]
        hint = (
            "; did you mean " + ", ".join(repr(h[0]) for h in hints if h) + "?"
            if any(hints)
            else ""
        )
        raise ConfigError(
            f"unknown queue setting(s) {', '.join(map(repr, unknown))}{hint} (settings:"
            f" {', '.join(known)})"
        )
    return QueueLimits(**changes)


def configure_queue_params(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Parameters of queue_configure for the named settings only."""
    values = validate_queue_settings(changes)
    fields = tuple(sorted({_GROUPS.get(k, k) for k in changes}))
    return configure_params(name, values, fields, None)


def declared_settings(
    name: str, limits: QueueLimits | None, keywords: dict[str, Any]
) -> dict[str, Any]:
    """The settings app.queue(name, limits) declares: the limits set (not None), with their
    partners (key_concurrency with key, on_full with max_depth). The others are left as they
    are in the database, so a limit set at run time (CLI, dashboard) is kept. `keywords` is
    the deprecated form, app.queue(name, concurrency=4): exactly the settings named."""
    if keywords:
        if limits is not None:
            raise ConfigError(
                f"app.queue({name!r}, ...) takes a QueueLimits or keyword settings, not both"
            )
        warnings.warn(
            "app.queue(name, **settings) is deprecated; pass a QueueLimits instead:"
            f" app.queue({name!r}, QueueLimits({', '.join(f'{k}=...' for k in keywords)}))",
            DeprecationWarning,
            stacklevel=3,  # the caller of app.queue()
        )
        validate_queue_settings(keywords)
        return dict(keywords)
    if limits is None:
        return {}
    if not isinstance(limits, QueueLimits):
        raise ConfigError(
            f"app.queue({name!r}, ...) takes a QueueLimits, got {type(limits).__name__}"
        )
    settings: dict[str, Any] = {}
    if limits.concurrency is not None:
        settings["concurrency"] = limits.concurrency
    if limits.key is not None:
        settings.update(key=limits.key, key_concurrency=limits.key_concurrency)
    if limits.rate_limit is not None:
        settings["rate_limit"] = limits.rate_limit
    if limits.max_depth is not None:
        settings.update(max_depth=limits.max_depth, on_full=limits.on_full)
    return settings


@dataclass(frozen=True)
class QueueInfo:
    """A queue's controls as stored, with its waiting and running counts."""

    name: str
    paused: bool
    snoozed_until: datetime | None
    snooze_reason: str | None
    limits: QueueLimits
    dropped: int
    waiting: int
    running: int

    def to_dict(self) -> dict[str, Any]:
        rate = self.limits.rate_limit
        return {
            "name": self.name,
            "paused": self.paused,
            "snoozed_until": self.snoozed_until.isoformat() if self.snoozed_until else None,
            "snooze_reason": self.snooze_reason,
            "concurrency": self.limits.concurrency,
            "key": self.limits.key,
            "key_concurrency": self.limits.key_concurrency,
            "rate_limit": str(rate) if rate else None,
            "max_depth": self.limits.max_depth,
            "on_full": self.limits.on_full,
            "dropped": self.dropped,
            "waiting": self.waiting,
            "running": self.running,
        }
