"""Alert rules, channels and settings are validated when made, with errors that name the fix;
the Slack body keeps to what incoming webhooks accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import conveyor
from conveyor import (
    Alert,
    AlertSettings,
    CallbackChannel,
    ConfigError,
    JobFailed,
    LogChannel,
    OldestAvailableOlderThan,
    QueueDepthAbove,
    WebhookChannel,
)


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: QueueDepthAbove(-1), "threshold must be 0 or more, got -1"),
        (lambda: QueueDepthAbove(1.5), "threshold must be an int number of jobs"),
        (lambda: QueueDepthAbove(10, for_=300), "for_ must be a timedelta, like for_=timedelta"),
        (lambda: QueueDepthAbove(10, for_=timedelta(minutes=-1)), "for_ must not be negative"),
        (lambda: QueueDepthAbove(10, queue=""), "queue must be a queue name, or None"),
        (lambda: OldestAvailableOlderThan(600), "age must be a timedelta, like age=timedelta"),
        (lambda: OldestAvailableOlderThan(timedelta(0)), "age must be more than zero"),
        (lambda: JobFailed(task=""), "task must be a task name or None"),
        (lambda: WebhookChannel("hooks.slack.com/x"), "url must start with https://"),
        (lambda: WebhookChannel("https://h/x", timeout=0), "timeout must be positive"),
        (lambda: CallbackChannel("notify"), "fn must be callable"),
        (lambda: AlertSettings(interval=timedelta(0)), "interval must be more than zero"),
        (lambda: AlertSettings(interval=15), "interval must be a timedelta"),
        (lambda: AlertSettings(delivery_attempts=0), "delivery_attempts must be 1 or more"),
    ],
)
def test_invalid_rules_channels_and_settings_say_what_to_change(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make()


def test_rules_get_default_names_and_a_name_is_taken_once(app: conveyor.Conveyor) -> None:
    assert app.alert(QueueDepthAbove(100)) == "queue_depth_above_100"
    assert app.alert(QueueDepthAbove(5, queue="emails")) == "queue_depth_above_5[emails]"
    assert app.alert(OldestAvailableOlderThan(timedelta(minutes=10))) == (
        "oldest_available_older_than_600s"
    )
    assert app.alert(JobFailed(queue="emails", task="shop.send")) == "job_failed[emails]:shop.send"
    assert app.alert(QueueDepthAbove(100)) == "queue_depth_above_100", "the same rule again"
    with pytest.raises(ConfigError, match="'backlog' already exists; give this one its own name="):
        app.alert(QueueDepthAbove(1), name="backlog")
        app.alert(QueueDepthAbove(2), name="backlog")
    with pytest.raises(ConfigError, match="takes a rule"):
        app.alert("queue depth > 5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="1 to 200 characters"):
        app.alert(JobFailed(), name="")


def test_channels_need_distinct_names_and_a_log_channel_replaces_the_default(
    app: conveyor.Conveyor,
) -> None:
    assert list(app.alert_channels) == ["log"]
    app.alert_channel(LogChannel(logger="myapp.alerts"))
    assert app.alert_channels["log"] == LogChannel(logger="myapp.alerts")
    app.alert_channel(WebhookChannel("https://hooks.slack.com/services/T/B/x"))
    with pytest.raises(ConfigError, match="'webhook' already exists; give this one its own name="):
        app.alert_channel(WebhookChannel("https://example.com/other"))
    app.alert_channel(WebhookChannel("https://example.com/other", name="ops"))

    def page(alert: Alert) -> None:
        pass

    app.alert_channel(CallbackChannel(page))
    assert list(app.alert_channels) == ["log", "webhook", "ops", f"callback:{page.__qualname__}"]
    with pytest.raises(ConfigError, match="takes a channel"):
        app.alert_channel("https://hooks.slack.com")  # type: ignore[arg-type]


def test_the_webhook_url_stays_out_of_reprs() -> None:
    channel = WebhookChannel("https://hooks.slack.com/services/T/B/secret")
    assert "secret" not in repr(channel)


def test_slack_body_is_text_and_blocks() -> None:
    alert = Alert(
        rule="backlog",
        subject="emails",
        status="firing",
        value=1500,
        since=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        at=datetime(2026, 5, 1, 12, 5, tzinfo=UTC),
        message="queue 'emails' has 1500 available jobs, above 1000 for 5m" + "!" * 4000,
    )
    body = WebhookChannel("https://hooks.slack.com/services/T/B/x").payload(alert)
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":red_circle: [FIRING] backlog (emails): queue 'emails'")
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert len(section["text"]["text"]) <= 3000 and len(body["text"]) <= 3000
    assert context == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "since 2026-05-01 12:00:00 UTC, value 1500"}],
    }
