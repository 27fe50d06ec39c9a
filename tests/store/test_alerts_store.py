"""The alert statements on real Postgres: episode transitions, the notification outbox's
claims (a crashed deliverer's claim runs out), retries and pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from conveyor._store.alerts import DeliveryResult, Observation, ObservationState
from conveyor._store.postgres import PostgresStore

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db)
    await opened.open()
    yield opened
    await opened.close()


async def observe(
    store: PostgresStore, state: ObservationState | None, at: datetime, hold: int = 0
) -> list[Any]:
    """One observation of queue 'emails' (none when `state` is None) for rule 'backlog'."""
    observations = [Observation("emails", 5.0, state)] if state else []
    return await store.alert_episode_observe(
        rule="backlog",
        observations=observations,
        hold=timedelta(minutes=hold),
        refire=False,
        channels=["log", "slack"],
        now=at,
    )


async def test_observe_opens_fires_after_hold_and_resolves(store: PostgresStore) -> None:
    assert await observe(store, "fire", T0, hold=2) == []
    assert await observe(store, "fire", T0 + timedelta(minutes=1), hold=2) == []
    (fired,) = await observe(store, "fire", T0 + timedelta(minutes=2), hold=2)
    assert (fired.status, fired.since, fired.at, fired.fire_count) == (
        "firing",
        T0,
        T0 + timedelta(minutes=2),
        1,
    )
    assert await observe(store, "fire", T0 + timedelta(minutes=3), hold=2) == []
    (resolved,) = await observe(store, "clear", T0 + timedelta(minutes=4), hold=2)
    assert (resolved.status, resolved.episode_id) == ("resolved", fired.episode_id)
    assert await observe(store, None, T0 + timedelta(minutes=5), hold=2) == []


async def test_a_claim_hides_notifications_until_it_runs_out(store: PostgresStore) -> None:
    await observe(store, "fire", T0)
    claimed = await store.alert_notification_claim(["log", "slack"], lease_seconds=60, now=T0)
    assert [(n.channel, n.status, n.attempts) for n in claimed] == [
        ("log", "firing", 0),
        ("slack", "firing", 0),
    ]
    assert await store.alert_notification_claim(["slack"], now=T0 + timedelta(seconds=59)) == []
    # the deliverer died: its claim runs out and another evaluator takes the rows
    again = await store.alert_notification_claim(["slack"], now=T0 + timedelta(seconds=60))
    assert [n.id for n in again] == [claimed[1].id]


async def test_finish_records_deliveries_retries_and_abandons(
    store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    await observe(store, "fire", T0)
    log, slack = await store.alert_notification_claim(["log", "slack"], now=T0)
    gone = await store.alert_notification_finish(
        [DeliveryResult(log.id, "delivered"), DeliveryResult(slack.id, "failed", "HTTP 503")],
        max_attempts=2,
        now=T0,
    )
    assert gone == []
    (retry,) = await store.alert_notification_claim(["log", "slack"], now=T0)
    assert (retry.id, retry.attempts) == (slack.id, 1)
    skipped = await store.alert_notification_finish(
        [DeliveryResult(slack.id, "skipped")], max_attempts=2, now=T0
    )
    assert skipped == []
    (retry,) = await store.alert_notification_claim(["slack"], now=T0)
    assert retry.attempts == 1, "a skipped try does not count"
    (abandoned,) = await store.alert_notification_finish(
        [DeliveryResult(slack.id, "failed", "HTTP 503")], max_attempts=2, now=T0
    )
    assert (abandoned.channel, abandoned.attempts) == ("slack", 2)
    assert await store.alert_notification_claim(["slack"], now=T0) == []
    row = conn.execute(
        "SELECT last_error, abandoned_at IS NOT NULL FROM conveyor.alert_notification"
        " WHERE id = %s",
        (slack.id,),
    ).fetchone()
    assert row == ("HTTP 503", True)


async def test_prune_deletes_old_resolved_episodes_with_their_notifications(
    store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    await observe(store, "fire", T0)
    await observe(store, "clear", T0 + timedelta(minutes=1))
    await observe(store, "fire", T0 + timedelta(minutes=2))  # a new episode, still open
    day = 86_400.0
    assert await store.alert_episode_prune(day, now=T0 + timedelta(hours=23)) == 0
    assert await store.alert_episode_prune(day, now=T0 + timedelta(days=2)) == 1
    rows = conn.execute(
        "SELECT e.resolved_at IS NULL, count(n.id) FROM conveyor.alert_episode e"
        " LEFT JOIN conveyor.alert_notification n ON n.episode_id = e.id GROUP BY e.id"
    ).fetchall()
    assert rows == [(True, 2)]


async def test_failed_arrivals_start_at_the_first_call_and_wait_to_settle(
    store: PostgresStore, conn: psycopg.Connection[Any]
) -> None:
    def fail(at: datetime) -> None:
        conn.execute(
            "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, args,"
            " errors, created_at, run_at, finished_at) VALUES (nextval('conveyor.job_id_seq'),"
            " 't', 'q', 'failed', 0, 1, '{}', '[]', %s, %s, %s)",
            (at, at, at),
        )

    settle = timedelta(seconds=5)
    fail(T0 - timedelta(seconds=10))
    arrivals = await store.alert_failed_arrivals(
        rule="r", queue=None, task=None, settle=settle, now=T0
    )
    assert arrivals == []
    fail(T0 + timedelta(seconds=1))
    early = await store.alert_failed_arrivals(
        rule="r", queue=None, task=None, settle=settle, now=T0 + timedelta(seconds=5)
    )
    assert early == [], "not settled yet"
    (settled,) = await store.alert_failed_arrivals(
        rule="r", queue=None, task=None, settle=settle, now=T0 + timedelta(seconds=6)
    )
    assert (settled.queue, settled.task, settled.count, settled.errors) == (
        "q",
        "t",
        1,
        {"unknown": 1},
    )
    again = await store.alert_failed_arrivals(
        rule="r", queue=None, task=None, settle=settle, now=T0 + timedelta(seconds=60)
    )
    assert again == []
