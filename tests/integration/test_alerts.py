"""The AlertEvaluator on real Postgres with a frozen clock: episodes fire once and resolve,
failed jobs are grouped, a leader change re-fires nothing, and every channel delivers (the
webhook to a real local HTTP server, retried while it is down)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor import (
    Alert,
    AlertSettings,
    CallbackChannel,
    JobFailed,
    OldestAvailableOlderThan,
    QueueDepthAbove,
    WebhookChannel,
)
from conveyor._store.alerts import _InTransaction
from conveyor._store.postgres import PostgresStore
from conveyor.maintenance import alerter as alerter_module
from conveyor.maintenance.alerter import AlertEvaluator, AlertPass
from tests.alert_hook import Hook

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SETTLE = timedelta(seconds=5)


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock(START)


@pytest.fixture
async def app(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Conveyor]:
    application = conveyor.Conveyor(
        db, clock=clock, alert_settings=AlertSettings(delivery_attempts=3, failed_settle=SETTLE)
    )
    yield application
    await application.aclose()


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db, name="alerts-test")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def received(app: conveyor.Conveyor) -> list[Alert]:
    """Every alert delivered to a sync callback channel on `app`."""
    alerts: list[Alert] = []
    app.alert_channel(CallbackChannel(alerts.append, name="collect"))
    return alerts


def add_available(
    conn: psycopg.Connection[Any], count: int, *, queue: str = "emails", at: datetime = START
) -> None:
    conn.execute(
        "INSERT INTO conveyor.job (task, queue, state, run_at, created_at)"
        " SELECT 'shop.send', %s, 'available', %s, %s FROM generate_series(1, %s)",
        (queue, at, at, count),
    )


def take_available(conn: psycopg.Connection[Any], count: int, *, queue: str = "emails") -> None:
    conn.execute(
        "DELETE FROM conveyor.job WHERE id IN (SELECT id FROM conveyor.job"
        " WHERE queue = %s AND state = 'available' ORDER BY id LIMIT %s)",
        (queue, count),
    )


def add_failed(
    conn: psycopg.Connection[Any],
    count: int,
    *,
    at: datetime,
    task: str = "shop.send",
    queue: str = "emails",
    error: str = "SMTPError",
) -> list[int]:
    rows = conn.execute(
        "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts,"
        " args, errors, created_at, run_at, finished_at)"
        " SELECT nextval('conveyor.job_id_seq'), %(task)s, %(queue)s, 'failed', 0, 5, 5, '{}',"
        " jsonb_build_array(jsonb_build_object('type', %(error)s::text, 'message', 'boom')),"
        " %(at)s, %(at)s, %(at)s FROM generate_series(1, %(count)s) RETURNING id",
        {"task": task, "queue": queue, "error": error, "at": at, "count": count},
    ).fetchall()
    return sorted(row[0] for row in rows)


def evaluator(app: conveyor.Conveyor, store: PostgresStore) -> AlertEvaluator:
    return AlertEvaluator.for_app(app, store)


def summary(result: AlertPass) -> list[tuple[str, str, str]]:
    return [(a.status, a.rule, a.subject) for a in (*result.fired, *result.resolved)]


def episodes(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT rule, subject, fired_at IS NOT NULL, resolved_at IS NOT NULL"
        " FROM conveyor.alert_episode ORDER BY id"
    ).fetchall()


# -- queue depth ------------------------------------------------------------------------------


async def test_depth_fires_exactly_once_after_holding_for_the_duration(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    received: list[Alert],
) -> None:
    app.alert(QueueDepthAbove(10, for_=timedelta(minutes=5)), name="backlog")
    add_available(conn, 11)
    alerter = evaluator(app, store)
    passes = []
    for _ in range(10):  # every 30 s for 5 minutes: pending, not yet firing
        passes.append(await alerter.run_once())
        clock.advance(seconds=30)
    assert all(p == AlertPass() for p in passes), passes
    fired = await alerter.run_once()
    assert summary(fired) == [("firing", "backlog", "emails")]
    assert fired.fired[0].value == 11
    assert fired.fired[0].since == START
    assert "11 available jobs, above 10 for 5m" in fired.fired[0].message
    for _ in range(20):
        clock.advance(seconds=30)
        assert await alerter.run_once() == AlertPass()
    assert [(a.status, a.subject) for a in received] == [("firing", "emails")]


async def test_depth_resolves_when_cleared_and_a_later_breach_is_a_new_episode(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    received: list[Alert],
) -> None:
    app.alert(QueueDepthAbove(10, for_=timedelta(minutes=1)), name="backlog")
    alerter = evaluator(app, store)
    add_available(conn, 15)
    await alerter.run_once()
    clock.advance(minutes=1)
    assert summary(await alerter.run_once()) == [("firing", "backlog", "emails")]
    take_available(conn, 5)  # exactly at the threshold: cleared
    clock.advance(minutes=2)
    resolved = await alerter.run_once()
    assert summary(resolved) == [("resolved", "backlog", "emails")]
    assert resolved.resolved[0].value == 10
    assert "back to 10 available jobs" in resolved.resolved[0].message
    assert await alerter.run_once() == AlertPass()
    add_available(conn, 1)
    clock.advance(minutes=1)
    assert await alerter.run_once() == AlertPass(), "a new episode waits for its own minute"
    clock.advance(minutes=1)
    assert summary(await alerter.run_once()) == [("firing", "backlog", "emails")]
    assert [a.status for a in received] == ["firing", "resolved", "firing"]
    assert received[0].episode != received[2].episode
    assert episodes(conn) == [("backlog", "emails", True, True), ("backlog", "emails", True, False)]


async def test_a_dip_before_the_duration_starts_the_wait_over(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    app.alert(QueueDepthAbove(0, for_=timedelta(minutes=5)), name="any")
    alerter = evaluator(app, store)
    add_available(conn, 1)
    await alerter.run_once()
    clock.advance(minutes=4)
    take_available(conn, 1)
    assert await alerter.run_once() == AlertPass(), "a pending episode resolves silently"
    assert episodes(conn) == []
    add_available(conn, 1)
    await alerter.run_once()
    clock.advance(minutes=4)
    assert await alerter.run_once() == AlertPass()
    clock.advance(minutes=1)
    assert summary(await alerter.run_once()) == [("firing", "any", "emails")]


async def test_depth_is_watched_per_queue_or_for_one_queue(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    app.alert(QueueDepthAbove(2))
    app.alert(QueueDepthAbove(2, queue="reports"))
    add_available(conn, 3, queue="emails")
    add_available(conn, 3, queue="reports")
    add_available(conn, 1, queue="small")
    result = await evaluator(app, store).run_once()
    assert sorted(summary(result)) == [
        ("firing", "queue_depth_above_2", "emails"),
        ("firing", "queue_depth_above_2", "reports"),
        ("firing", "queue_depth_above_2[reports]", "reports"),
    ]


# -- oldest available -------------------------------------------------------------------------


async def test_oldest_available_fires_once_and_resolves_when_the_job_is_taken(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    received: list[Alert],
) -> None:
    app.alert(OldestAvailableOlderThan(timedelta(minutes=10)), name="stale")
    alerter = evaluator(app, store)
    add_available(conn, 1, queue="reports")
    clock.advance(minutes=10)
    assert await alerter.run_once() == AlertPass(), "exactly 10 minutes is not older"
    clock.advance(seconds=1)
    fired = await alerter.run_once()
    assert summary(fired) == [("firing", "stale", "reports")]
    assert fired.fired[0].value == 601
    clock.advance(minutes=5)
    assert await alerter.run_once() == AlertPass()
    take_available(conn, 1, queue="reports")
    assert summary(await alerter.run_once()) == [("resolved", "stale", "reports")]
    assert [a.status for a in received] == ["firing", "resolved"]


# -- failed jobs ------------------------------------------------------------------------------


async def test_failed_jobs_fire_one_alert_per_task_per_batch(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    received: list[Alert],
) -> None:
    app.alert(JobFailed(), name="failures")
    alerter = evaluator(app, store)
    add_failed(conn, 3, at=START - timedelta(hours=1), task="old.failure")
    assert await alerter.run_once() == AlertPass(), "failures from before alerting are history"

    clock.advance(seconds=10)
    ids = add_failed(conn, 500, at=clock.now(), error="SMTPError")
    add_failed(conn, 2, at=clock.now(), error="Timeout")
    add_failed(conn, 1, at=clock.now(), task="shop.charge", queue="payments")
    assert await alerter.run_once() == AlertPass(), "failures are looked at once settled"
    clock.advance(SETTLE)
    batch = await alerter.run_once()
    assert summary(batch) == [
        ("firing", "failures", "emails/shop.send"),
        ("firing", "failures", "payments/shop.charge"),
    ]
    emails = batch.fired[0]
    assert emails.value == 502
    assert emails.details["job_ids"] == ids[:5]
    assert emails.details["errors"] == {"SMTPError": 500, "Timeout": 2}
    assert emails.message.startswith("502 job(s) of shop.send on queue 'emails' failed")
    for _ in range(5):
        clock.advance(seconds=15)
        assert await alerter.run_once() == AlertPass(), "no repeats without new failures"

    add_failed(conn, 4, at=clock.now())
    clock.advance(SETTLE)
    again = await alerter.run_once()
    assert summary(again) == [("firing", "failures", "emails/shop.send")]
    assert again.fired[0].value == 4
    assert again.fired[0].episode == emails.episode, "the same episode, a new batch"
    assert len(received) == 3


async def test_failed_episode_resolves_when_no_failed_job_is_left(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    app.alert(JobFailed(queue="emails"), name="failures")
    alerter = evaluator(app, store)
    await alerter.run_once()
    ids = add_failed(conn, 3, at=clock.advance(seconds=1))
    add_failed(conn, 1, at=clock.now(), queue="other")
    clock.advance(SETTLE)
    assert summary(await alerter.run_once()) == [("firing", "failures", "emails/shop.send")]
    app.client().retry(ids[0], ids[1])
    clock.advance(seconds=15)
    assert await alerter.run_once() == AlertPass(), "one failed job is still there"
    app.client().delete(ids[2])
    resolved = await alerter.run_once()
    assert summary(resolved) == [("resolved", "failures", "emails/shop.send")]
    assert "no failed job of shop.send on queue 'emails' is left" in resolved.resolved[0].message


async def test_failures_seen_by_a_pass_that_broke_are_alerted_by_the_next(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.alert(JobFailed(), name="failures")
    alerter = evaluator(app, store)
    await alerter.run_once()
    add_failed(conn, 2, at=clock.advance(seconds=1))
    clock.advance(SETTLE)
    with monkeypatch.context() as patch:

        async def database_gone(*args: Any, **kwargs: Any) -> None:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        patch.setattr(_InTransaction, "alert_episode_observe", database_gone)
        with pytest.raises(psycopg.OperationalError):
            await alerter.run_once()
    clock.advance(seconds=15)
    retried = await alerter.run_once()
    assert summary(retried) == [("firing", "failures", "emails/shop.send")]
    assert retried.fired[0].value == 2


# -- leader change ----------------------------------------------------------------------------


async def test_a_new_leader_does_not_fire_or_resolve_again(
    app: conveyor.Conveyor,
    db: str,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    received: list[Alert],
) -> None:
    app.alert(QueueDepthAbove(0, for_=timedelta(minutes=1)), name="backlog")
    app.alert(JobFailed(), name="failures")
    other_store = PostgresStore(db, name="alerts-test-2")
    await other_store.open()
    try:
        old, new = evaluator(app, store), evaluator(app, other_store)
        await old.run_once()
        add_available(conn, 1)
        add_failed(conn, 2, at=clock.advance(seconds=1))
        await old.run_once()  # opens the depth episode
        clock.advance(minutes=1)
        results = await asyncio.gather(old.run_once(), new.run_once())  # both think they lead
        fired = [a for r in results for a in r.fired]
        assert sorted((a.rule, a.subject) for a in fired) == [
            ("backlog", "emails"),
            ("failures", "emails/shop.send"),
        ]
        clock.advance(seconds=30)
        assert await new.run_once() == AlertPass(), "the new leader knows what fired"
        take_available(conn, 1)
        results = await asyncio.gather(old.run_once(), new.run_once())
        assert sorted(summary(results[0]) + summary(results[1])) == [
            ("resolved", "backlog", "emails")
        ]
        assert sorted((a.status, a.rule) for a in received) == [
            ("firing", "backlog"),
            ("firing", "failures"),
            ("resolved", "backlog"),
        ], "each notification is delivered once"
    finally:
        await other_store.close()


# -- channels ---------------------------------------------------------------------------------


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


async def test_webhook_receives_slack_json_for_fire_and_resolve(
    app: conveyor.Conveyor,
    store: PostgresStore,
    conn: psycopg.Connection[Any],
    hook: Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert_channel(WebhookChannel(hook.url, name="slack"))
    alerter = evaluator(app, store)
    add_available(conn, 3)
    # httpx2's own logger too: conveyor.logs.configure() (run by other tests in this process)
    # sets it to WARNING, and this test reads its request line
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx2"):
        assert (await alerter.run_once()).delivered == 2  # log and slack
    assert "/services/T0/B0/secret" not in caplog.text, "the webhook URL is a secret"
    assert "POST http://127.0.0.1:" in caplog.text
    take_available(conn, 3)
    await alerter.run_once()
    assert [b["text"].split(":")[1] for b in hook.bodies] == ["red_circle", "large_green_circle"]
    first = hook.bodies[0]
    assert set(first) == {"text", "blocks"}
    assert first["text"].startswith(":red_circle: [FIRING] backlog (emails): queue 'emails'")
    assert [b["type"] for b in first["blocks"]] == ["section", "context"]
    assert first["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "[RESOLVED] backlog (emails)" in hook.bodies[1]["text"]


async def test_a_webhook_that_is_down_is_logged_and_delivered_on_a_later_pass(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
    hook: Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert(OldestAvailableOlderThan(timedelta(seconds=1)), name="stale")
    app.alert_channel(WebhookChannel(hook.url, name="slack"))
    alerter = evaluator(app, store)
    add_available(conn, 1)
    clock.advance(seconds=2)
    hook.statuses = [503]
    with caplog.at_level(logging.WARNING, logger="conveyor.alerts"):
        down = await alerter.run_once()
    assert len(down.fired) == 2 and down.failed == 1, "one try, then the channel waits"
    assert hook.bodies == []
    warnings = [r.getMessage() for r in caplog.records if "channel 'slack' failed" in r.message]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0]
    assert hook.url not in caplog.text, "the webhook URL is a secret"
    clock.advance(seconds=15)
    up = await alerter.run_once()
    assert (up.fired, up.delivered, up.failed) == ((), 2, 0)
    assert [b["text"].split("]")[1].split("(")[0].strip() for b in hook.bodies] == [
        "backlog",
        "stale",
    ], "delivered in the order they fired"


async def test_a_notification_is_abandoned_after_the_last_attempt(
    app: conveyor.Conveyor,
    store: PostgresStore,
    conn: psycopg.Connection[Any],
    hook: Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert_channel(WebhookChannel(hook.url, name="slack"))
    alerter = evaluator(app, store)
    add_available(conn, 1)
    hook.statuses = [500, 500, 500, 200]
    with caplog.at_level(logging.ERROR, logger="conveyor.alerts"):
        failures = [(await alerter.run_once()).failed for _ in range(4)]
    assert failures == [1, 1, 1, 0]  # delivery_attempts=3
    assert hook.bodies == []
    assert "abandoned after 3 attempts" in caplog.text


async def test_a_failing_callback_never_breaks_the_evaluator(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    calls: list[str] = []

    def flaky(alert: Alert) -> None:
        calls.append(alert.status)
        if len(calls) == 1:
            raise RuntimeError("pager service hiccup")

    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert_channel(CallbackChannel(flaky))
    alerter = evaluator(app, store)
    add_available(conn, 1)
    assert (await alerter.run_once()).failed == 1
    assert (await alerter.run_once()).delivered == 1
    assert calls == ["firing", "firing"]


async def test_sync_and_async_callbacks_each_get_every_alert(
    app: conveyor.Conveyor, store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    sync_seen: list[tuple[str, str]] = []
    async_seen: list[tuple[str, str]] = []

    def on_sync(alert: Alert) -> None:
        sync_seen.append((alert.status, threading.current_thread().name))

    async def on_async(alert: Alert) -> None:
        await asyncio.sleep(0)
        async_seen.append((alert.status, alert.subject))

    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert_channel(CallbackChannel(on_sync))
    app.alert_channel(CallbackChannel(on_async))
    alerter = evaluator(app, store)
    add_available(conn, 1)
    await alerter.run_once()
    take_available(conn, 1)
    await alerter.run_once()
    assert [s for s, _ in sync_seen] == ["firing", "resolved"]
    assert all(t != threading.main_thread().name for _, t in sync_seen), "run in a thread"
    assert async_seen == [("firing", "emails"), ("resolved", "emails")]


async def test_the_log_gets_one_line_per_fire_and_resolve(
    app: conveyor.Conveyor,
    store: PostgresStore,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.alert(QueueDepthAbove(0), name="backlog")
    alerter = evaluator(app, store)
    add_available(conn, 2)
    with caplog.at_level(logging.INFO, logger="conveyor.alerts"):
        for _ in range(3):
            await alerter.run_once()
        take_available(conn, 2)
        for _ in range(3):
            await alerter.run_once()
    records = [r for r in caplog.records if r.name == "conveyor.alerts"]
    fields = [{k: v for k, v in vars(r).items() if k.startswith("alert_")} for r in records]
    assert [(f["alert_rule"], f["alert_status"], f["alert_value"]) for f in fields] == [
        ("backlog", "firing", 2),
        ("backlog", "resolved", 0),
    ], "JSON logs get the alert as fields"
    lines = [(r.levelname, r.getMessage()) for r in records]
    assert lines == [
        (
            "WARNING",
            "alert firing backlog [emails]: queue 'emails' has 2 available jobs, above 0 for 0s",
        ),
        (
            "INFO",
            "alert resolved backlog [emails]: queue 'emails' is back to 0 available jobs"
            " (at or below 0) after 0s",
        ),
    ]


async def test_a_callback_that_hangs_times_out_and_is_retried(
    app: conveyor.Conveyor,
    store: PostgresStore,
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alerter_module, "SEND_TIMEOUT", 0.05)
    answered: list[str] = []

    async def slow_pager(alert: Alert) -> None:
        if not answered:
            answered.append("hung")
            await asyncio.Event().wait()
        answered.append(alert.status)

    app.alert(QueueDepthAbove(0), name="backlog")
    app.alert_channel(CallbackChannel(slow_pager))
    alerter = evaluator(app, store)
    add_available(conn, 1)
    assert (await alerter.run_once()).failed == 1
    assert (await alerter.run_once()).delivered == 1
    assert answered == ["hung", "firing"]
