"""Task.with_options() returns a frozen Enqueuer; the task itself never changes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

import conveyor
from conveyor.task import Enqueuer


@pytest.fixture
def charge() -> conveyor.Task[None]:
    app = conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)

    @app.task(name="shop.charge", queue="payments", priority=3)
    def charge(order_id: int) -> None:
        return None

    return charge


def test_with_options_returns_a_frozen_enqueuer(charge: conveyor.Task[None]) -> None:
    urgent = charge.with_options(queue="urgent")
    assert isinstance(urgent, Enqueuer)
    with pytest.raises(dataclasses.FrozenInstanceError):
        urgent.options = urgent.options  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        urgent.options.queue = "other"  # type: ignore[misc]


def test_with_options_leaves_the_task_unchanged(charge: conveyor.Task[None]) -> None:
    charge.with_options(queue="urgent", priority=9)
    spec = charge.spec(order_id=1)
    assert (spec.queue, spec.priority) == ("payments", 3)


def test_options_lay_over_the_task_and_each_other(charge: conveyor.Task[None]) -> None:
    later = charge.with_options(queue="urgent").with_options(delay=timedelta(minutes=1))
    spec = later.spec(order_id=1)
    assert (spec.task, spec.queue, spec.priority, spec.delay) == ("shop.charge", "urgent", 3, 60.0)


def test_enqueuer_checks_arguments_like_the_task(charge: conveyor.Task[None]) -> None:
    with pytest.raises(conveyor.PayloadError, match="unexpected argument"):
        charge.with_options(queue="urgent").spec(order=1)


def test_bad_options_raise_config_error(charge: conveyor.Task[None]) -> None:
    with pytest.raises(conveyor.ConfigError, match="max_attempts must be >= 1"):
        charge.with_options(max_attempts=0)
    with pytest.raises(conveyor.ConfigError, match="delay must be >= 0"):
        charge.with_options(delay=-1)
