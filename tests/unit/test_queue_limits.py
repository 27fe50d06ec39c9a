"""app.queue() takes a QueueLimits; the keyword form still works and warns."""

from __future__ import annotations

from datetime import timedelta

import pytest

import conveyor
from conveyor import QueueLimits, RateLimit
from conveyor.queues import configure_queue_params, validate_queue_settings


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)


def test_queue_declares_only_the_limits_it_sets(app: conveyor.Conveyor) -> None:
    app.queue("emails", QueueLimits(rate_limit="100/minute", max_depth=10))
    app.queue("reports", QueueLimits(key="tenant_id", key_concurrency=2))
    app.queue("plain")
    assert app.queue_settings == {
        "emails": {
            "rate_limit": RateLimit(100, timedelta(minutes=1)),
            "max_depth": 10,
            "on_full": "reject",
        },
        "reports": {"key": "tenant_id", "key_concurrency": 2},
        "plain": {},
    }
    params = configure_queue_params("emails", app.queue_settings["emails"])
    assert (params["fields"], params["rate_period"]) == (["max_depth", "rate_limit"], 60.0)


def test_keyword_settings_still_work_and_warn(app: conveyor.Conveyor) -> None:
    with pytest.warns(DeprecationWarning, match=r"QueueLimits\(concurrency=\.\.\.\)"):
        app.queue("exports", concurrency=4)
    assert app.queue_settings["exports"] == {"concurrency": 4}
    with pytest.warns(DeprecationWarning), pytest.raises(conveyor.ConfigError, match="did you"):
        app.queue("exports", concurency=4)


def test_limits_and_keywords_together_are_refused(app: conveyor.Conveyor) -> None:
    with pytest.raises(conveyor.ConfigError, match="not both"):
        app.queue("x", QueueLimits(concurrency=1), max_depth=3)
    with pytest.raises(conveyor.ConfigError, match="takes a QueueLimits"):
        app.queue("x", {"concurrency": 1})  # type: ignore[arg-type]


def test_queue_limits_are_frozen_and_checked() -> None:
    limits = QueueLimits(concurrency=2)
    with pytest.raises(AttributeError):
        limits.concurrency = 3  # type: ignore[misc]
    with pytest.raises(conveyor.ConfigError, match="positive integer"):
        QueueLimits(max_depth=0)
    with pytest.raises(conveyor.ConfigError, match="key_concurrency"):
        QueueLimits(key="tenant_id")
    assert validate_queue_settings({"rate_limit": "5/s"}) == QueueLimits(rate_limit="5/s")


def test_rate_limit_period_takes_seconds_or_a_timedelta() -> None:
    assert RateLimit(100, 60) == RateLimit(100, timedelta(minutes=1))
    assert RateLimit(100, per=1.5).per == timedelta(seconds=1.5)
    with pytest.raises(conveyor.ConfigError, match="not positive"):
        RateLimit(100, 0)
    with pytest.raises(conveyor.ConfigError, match="number of seconds or a timedelta"):
        RateLimit(100, "1m")  # type: ignore[arg-type]
