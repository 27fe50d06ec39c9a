"""People see alert episodes: Client.alert_episodes, `conveyor alerts list`, and the
dashboard's queue page, which lists the open ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import conveyor
from conveyor import QueueDepthAbove
from conveyor._store.postgres import PostgresStore
from conveyor.cli import cli
from conveyor.dashboard import create_app
from conveyor.maintenance.alerter import AlertEvaluator

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> conveyor.FrozenClock:
    return conveyor.FrozenClock(START)


@pytest.fixture
async def app(db: str, clock: conveyor.FrozenClock) -> AsyncIterator[conveyor.Conveyor]:
    application = conveyor.Conveyor(db, clock=clock)
    yield application
    await application.aclose()


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(db, name="alert-episodes-test")
    await opened.open()
    yield opened
    await opened.close()


def add_available(conn: psycopg.Connection[Any], queue: str, count: int) -> None:
    conn.execute(
        "INSERT INTO conveyor.job (task, queue, state, run_at, created_at)"
        " SELECT 'shop.send', %s, 'available', %s, %s FROM generate_series(1, %s)",
        (queue, START, START, count),
    )


@pytest.fixture
async def three_episodes(
    app: conveyor.Conveyor,
    store: PostgresStore,
    clock: conveyor.FrozenClock,
    conn: psycopg.Connection[Any],
) -> None:
    """emails: firing (15 > 10 for 1 min); sms: resolved after firing; push: still pending."""
    app.alert(QueueDepthAbove(10, for_=timedelta(minutes=1)), name="backlog")
    alerter = AlertEvaluator.for_app(app, store)
    add_available(conn, "emails", 15)
    add_available(conn, "sms", 12)
    await alerter.run_once()
    clock.advance(minutes=1)
    await alerter.run_once()  # emails and sms fire
    conn.execute("DELETE FROM conveyor.job WHERE queue = 'sms'")
    add_available(conn, "push", 11)
    clock.advance(seconds=15)
    await alerter.run_once()  # sms resolves; push is pending


async def test_client_lists_open_episodes_first(
    app: conveyor.Conveyor, three_episodes: None
) -> None:
    found = await app.async_client().alert_episodes()
    assert [(e.state, e.subject) for e in found] == [
        ("pending", "push"),
        ("firing", "emails"),
        ("resolved", "sms"),
    ]
    emails = found[1]
    assert emails.rule == "backlog" and emails.last_value == 15
    assert emails.pending_since == START and emails.fire_count == 1
    open_only = app.client().alert_episodes(open_only=True)
    assert [e.subject for e in open_only] == ["push", "emails"]


def test_cli_lists_episodes(db: str, three_episodes: None) -> None:
    runner = CliRunner()
    text = runner.invoke(cli, ["--database-url", db, "alerts", "list"])
    assert text.exit_code == 0, text.output
    # exactly the sample in docs/cli.md and docs/alerts.md
    assert text.stdout.splitlines() == [
        "pending   backlog [push] value=11 (since 2026-05-01 12:01:15 UTC)",
        "firing    backlog [emails] value=15 (since 2026-05-01 12:00:00, fired 12:01:00 UTC)",
        "resolved  backlog [sms] value=0 (since 2026-05-01 12:00:00, fired 12:01:00,"
        " resolved 12:01:15 UTC)",
    ]
    as_json = runner.invoke(cli, ["--database-url", db, "alerts", "list", "--open", "--json"])
    assert [e["state"] for e in json.loads(as_json.stdout)] == ["pending", "firing"]


def test_cli_says_when_there_are_none(db: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", db, "alerts", "list", "--open"])
    assert result.exit_code == 0 and result.stdout.strip() == "no alert episodes open"


def test_dashboard_queue_page_shows_open_episodes(
    app: conveyor.Conveyor, three_episodes: None
) -> None:
    with TestClient(create_app(app)) as web:
        html = web.get("/").text
    assert "<h2>Alerts</h2>" in html
    assert '<span class="state failed">firing</span>' in html
    assert '<span class="state retryable">pending</span>' in html
    assert "<td>sms</td>" not in html  # resolved episodes are not shown


def test_dashboard_has_no_alerts_section_without_open_episodes(app: conveyor.Conveyor) -> None:
    with TestClient(create_app(app)) as web:
        assert "<h2>Alerts</h2>" not in web.get("/").text
