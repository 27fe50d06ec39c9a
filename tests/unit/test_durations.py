"""Every public duration takes float seconds or a timedelta, checked by one helper."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

import conveyor
from conveyor.client_ops import _Ops
from conveyor.durations import to_seconds
from conveyor.retry import as_policy


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)


@pytest.mark.parametrize("two_minutes", [120, 120.0, timedelta(minutes=2)])
def test_each_entry_point_takes_both_forms(app: conveyor.Conveyor, two_minutes: object) -> None:
    d: float | timedelta = two_minutes  # type: ignore[assignment]

    @app.task(name="t", timeout=d, backoff=d)
    def t() -> None:
        return None

    assert (t.timeout, t.retry_policy.base) == (120.0, 120.0)
    spec = t.with_options(delay=d, timeout=d).spec()
    assert (spec.delay, spec.timeout_seconds) == (120.0, 120.0)
    assert conveyor.Retry(after=d).after == 120.0
    assert conveyor.SnoozeQueue(d).duration == 120.0
    assert conveyor.RetryPolicy(base=d, max_delay=d).max_delay == 120.0
    assert conveyor.Retention(completed=d).completed == timedelta(minutes=2)
    assert conveyor.RateLimit(5, per=d).per == timedelta(minutes=2)
    assert app.add_schedule(t, cron="* * * * *", name="s", grace=d).grace == timedelta(minutes=2)
    clock = conveyor.FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.advance(d) == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert _Ops.snooze_queue("q", d, None).queries[0][1]["seconds"] == 120.0


def test_bad_durations_raise_config_error_naming_the_option(app: conveyor.Conveyor) -> None:
    @app.task(name="t")
    def t() -> None:
        return None

    with pytest.raises(conveyor.ConfigError, match=r"Retention\(failed=\.\.\.\) must be >= 0"):
        conveyor.Retention(failed=-1)
    with pytest.raises(conveyor.ConfigError, match="backoff base must be a finite number"):
        conveyor.RetryPolicy(base=float("nan"))
    with pytest.raises(conveyor.ConfigError, match="backoff must be a RetryPolicy"):
        as_policy("fast")  # type: ignore[arg-type]
    with pytest.raises(conveyor.ConfigError, match="grace must be a number of seconds"):
        app.add_schedule("t", cron="* * * * *", grace="1m")  # type: ignore[arg-type]
    with pytest.raises(conveyor.ConfigError, match="over the 100-year maximum"):
        to_seconds(10**12, "timeout")


def test_duration_fields_stay_frozen_and_comparable() -> None:
    retention = conveyor.Retention(completed=60)
    assert retention == conveyor.Retention(completed=timedelta(minutes=1))
    assert hash(retention) == hash(conveyor.Retention(completed=timedelta(minutes=1)))
    assert dataclasses.replace(retention, failed=30).failed == timedelta(seconds=30)
    with pytest.raises(dataclasses.FrozenInstanceError):
        retention.completed = timedelta(0)  # type: ignore[misc]
    assert conveyor.Retention().failed == timedelta(days=14)
    assert conveyor.RetryPolicy().base == 1.0
