"""A new alert rule is one AlertRule subclass: the evaluator asks it what to measure, how long
to hold and what to say, and fires and resolves its episodes like the built-in rules'."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor import Alert, AlertSettings, CallbackChannel
from conveyor._store.alerts import Observation
from conveyor._store.postgres import PostgresStore
from conveyor.alert_rules import AlertRule, Measurements, RuleEvent
from conveyor.maintenance.alerter import AlertEvaluator

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class QueueIdle(AlertRule):
    """Fire when `queue` has had no available job for `for_` (a producer that stopped)."""

    queue: str
    for_: timedelta = timedelta(minutes=1)

    @property
    def hold(self) -> timedelta:
        return self.for_

    @property
    def default_name(self) -> str:
        return f"queue_idle[{self.queue}]"

    async def observe(self, name: str, measure: Measurements) -> list[Observation]:
        depth = measure.queue_depths().get(self.queue, 0.0)
        return [Observation(self.queue, depth, "fire" if depth == 0 else "clear")]

    def message(self, event: RuleEvent) -> str:
        busy = "idle" if event.status == "firing" else "busy again"
        return f"queue {event.subject!r} {busy}"


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock(START)


@pytest.fixture
async def app(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Conveyor]:
    application = conveyor.Conveyor(db, clock=clock, alert_settings=AlertSettings())
    yield application
    await application.aclose()


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db, name="alert-rules-test")
    await opened.open()
    yield opened
    await opened.close()


async def test_a_rule_defined_outside_conveyor_fires_after_its_hold_and_resolves(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    received: list[Alert] = []
    app.alert_channel(CallbackChannel(received.append, name="collect"))
    assert app.alert(QueueIdle("emails")) == "queue_idle[emails]"
    alerter = AlertEvaluator.for_app(app, store)
    assert (await alerter.run_once()).fired == ()  # idle, but not for a minute yet
    clock.advance(minutes=2)
    fired = await alerter.run_once()
    assert [(a.status, a.subject, a.message) for a in fired.fired] == [
        ("firing", "emails", "queue 'emails' idle")
    ]
    conn.execute(
        "INSERT INTO conveyor.job (task, queue, state, run_at, created_at)"
        " VALUES ('shop.send', 'emails', 'available', %s, %s)",
        (START, START),
    )
    resolved = await alerter.run_once()
    assert [(a.status, a.message) for a in resolved.resolved] == [
        ("resolved", "queue 'emails' busy again")
    ]
    assert [a.status for a in received] == ["firing", "resolved"]
