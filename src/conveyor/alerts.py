"""Alerts: rules the elected worker evaluates, the events they raise, and where those go.

    app.alert(QueueDepthAbove(1000, for_=timedelta(minutes=5)), name="emails-backlog")
    app.alert(JobFailed(queue="emails"))
    app.alert_channel(WebhookChannel(os.environ["SLACK_WEBHOOK_URL"]))

Each rule watches one or more subjects (a queue, or a queue and task). A breach opens an
episode, which fires once (JobFailed: once per batch of new failures) and resolves when the
condition clears; the LogChannel always logs both, other channels are added with
app.alert_channel(). See docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# The rules live in alert_rules.py; they are imported from here as well, as they always were.
from conveyor.alert_rules import AlertRule as AlertRule
from conveyor.alert_rules import AlertStatus as AlertStatus
from conveyor.alert_rules import JobFailed as JobFailed
from conveyor.alert_rules import OldestAvailableOlderThan as OldestAvailableOlderThan
from conveyor.alert_rules import QueueDepthAbove as QueueDepthAbove
from conveyor.alert_rules import check_duration, rule_names
from conveyor.errors import ConfigError
from conveyor.errors import DeliveryError as DeliveryError  # its old home: imports keep working

_NAME_LIMIT = 200
#: The most characters of one Slack message section (Slack refuses longer ones).
_SLACK_TEXT_LIMIT = 3000


#: The rules app.alert() takes: any AlertRule (conveyor.alert_rules holds them).
Rule = AlertRule


@dataclass(frozen=True)
class Alert:
    """One fire or resolve of a rule for one subject, as delivered to every channel.

    `subject` is a queue name (or "queue/task" for JobFailed); `value` is what was measured
    (jobs, seconds, or new failed jobs); `since` is when the episode began (first seen in
    breach); `at` is when it fired or resolved; `episode` identifies the episode.
    """

    rule: str
    subject: str
    status: AlertStatus
    value: float
    since: datetime
    at: datetime
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    episode: int = 0


class Channel(Protocol):
    """Where alerts go. `name` tells channels apart in the delivery records."""

    @property
    def name(self) -> str:
        """A name unique among the app's channels."""
        ...

    async def send(self, alert: Alert) -> None:
        """Deliver one alert; raise to have it retried later."""
        ...


@dataclass(frozen=True)
class LogChannel:
    """Log one line per fire (WARNING) and resolve (INFO). Always on; add one to change it."""

    logger: str = "conveyor.alerts"
    name: str = "log"

    async def send(self, alert: Alert) -> None:
        """Log the alert; JSON logs also get it as fields (alert_rule, alert_subject, ...)."""
        level = logging.WARNING if alert.status == "firing" else logging.INFO
        fields = {
            "alert_rule": alert.rule,
            "alert_subject": alert.subject,
            "alert_status": alert.status,
            "alert_value": alert.value,
            "alert_episode": alert.episode,
        }
        logging.getLogger(self.logger).log(
            level,
            "alert %s %s [%s]: %s",
            alert.status,
            alert.rule,
            alert.subject,
            alert.message,
            extra=fields,
        )


@dataclass(frozen=True)
class WebhookChannel:
    """POST each alert as Slack-compatible JSON (`text` and `blocks`) to `url`.

    Works with a Slack incoming webhook and with anything that accepts the same JSON. A
    failure (no answer within `timeout` seconds, or a status other than 2xx) is logged and
    retried on the evaluator's next pass. The URL is a secret: it is never logged.
    """

    url: str = field(repr=False)
    timeout: float = 5.0
    name: str = "webhook"

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                "WebhookChannel: url must start with https:// (or http://), like a Slack"
                " incoming webhook URL"
            )
        if not self.timeout > 0:
            raise ConfigError(f"WebhookChannel: timeout must be positive, got {self.timeout}")

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body posted for `alert`."""
        return slack_payload(alert)

    async def send(self, alert: Alert) -> None:
        """POST the alert; raise DeliveryError unless the answer is 2xx."""
        import httpx2  # only alerting to a webhook needs it

        _HIDE_URLS.watch(self.url)
        try:
            async with httpx2.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, json=self.payload(alert))
        except httpx2.HTTPError as exc:
            # str(exc) of a transport error names no URL; the request is not repeated here
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")


@dataclass(frozen=True)
class CallbackChannel:
    """Call `fn(alert)` for each alert: a plain function (run in a thread) or a coroutine
    function. An exception it raises is logged and the call retried on the next pass."""

    fn: Callable[[Alert], Awaitable[None] | None]
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError(f"CallbackChannel: fn must be callable, got {self.fn!r}")
        if not self.name:
            qualname = getattr(self.fn, "__qualname__", type(self.fn).__name__)
            object.__setattr__(self, "name", f"callback:{qualname}")

    async def send(self, alert: Alert) -> None:
        """Call the function."""
        if inspect.iscoroutinefunction(self.fn):
            await self.fn(alert)
            return
        result = await asyncio.to_thread(self.fn, alert)
        if inspect.isawaitable(result):
            await result


@dataclass(frozen=True)
class AlertSettings:
    """How the alert evaluator runs: every `interval`, retrying a failed delivery up to
    `delivery_attempts` times in all (once per pass), keeping resolved episodes for
    `keep_resolved`. Failed jobs are looked at once they are `failed_settle` old, so that a
    failure still committing is not missed."""

    interval: timedelta = timedelta(seconds=15)
    delivery_attempts: int = 10
    keep_resolved: timedelta = timedelta(days=30)
    failed_settle: timedelta = timedelta(seconds=5)

    def __post_init__(self) -> None:
        for name in ("interval", "keep_resolved", "failed_settle"):
            value = getattr(self, name)
            check_duration("AlertSettings", name, value, f"{name}=timedelta(seconds=15)")
        if self.interval <= timedelta(0):
            raise ConfigError("AlertSettings: interval must be more than zero")
        if isinstance(self.delivery_attempts, bool) or not isinstance(self.delivery_attempts, int):
            raise ConfigError("AlertSettings: delivery_attempts must be an int")
        if self.delivery_attempts < 1:
            raise ConfigError(
                f"AlertSettings: delivery_attempts must be 1 or more, got {self.delivery_attempts}"
            )


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The Slack incoming-webhook body for `alert`: a `text` fallback and two blocks."""
    icon = ":red_circle:" if alert.status == "firing" else ":large_green_circle:"
    title = _slack_escape(f"{icon} [{alert.status.upper()}] {alert.rule} ({alert.subject})")
    message = _slack_escape(alert.message)
    since = alert.since.astimezone(UTC)
    context = f"since {since:%Y-%m-%d %H:%M:%S} UTC, value {alert.value:g}"
    return {
        "text": f"{title}: {message}"[:_SLACK_TEXT_LIMIT],
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{title}*\n{message}"[:_SLACK_TEXT_LIMIT]},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions; these three are its control characters
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _HideWebhookUrls(logging.Filter):
    """httpx2 logs every request's URL at INFO; a webhook URL is a secret, so it is cut to its
    scheme and host in those records."""

    def __init__(self) -> None:
        super().__init__()
        self._urls: dict[str, str] = {}

    def watch(self, url: str) -> None:
        if not self._urls:
            logging.getLogger("httpx2").addFilter(self)
        scheme, _, rest = url.partition("://")
        self._urls[url] = f"{scheme}://{rest.split('/', 1)[0]}/(hidden)"

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._hide(arg) for arg in record.args)
        return True

    def _hide(self, arg: object) -> object:
        if type(arg).__name__ not in ("URL", "str"):
            return arg  # keep numbers for %d
        text = str(arg)
        for url, shown in self._urls.items():
            if text.startswith(url):
                return shown
        return arg


_HIDE_URLS = _HideWebhookUrls()


def add_rule(rules: dict[str, Rule], rule: Rule, name: str | None) -> str:
    """Register `rule` under `name` (default: the rule's own) in `rules`; return the name."""
    if not isinstance(rule, AlertRule):
        raise ConfigError(
            f"app.alert() takes a rule ({rule_names()} from conveyor.alerts), got {rule!r}"
        )
    chosen = rule.default_name if name is None else name
    if not isinstance(chosen, str) or not chosen.strip() or len(chosen) > _NAME_LIMIT:
        raise ConfigError(f"an alert rule name must be 1 to {_NAME_LIMIT} characters: {chosen!r}")
    existing = rules.get(chosen)
    if existing is not None and existing != rule:
        raise ConfigError(
            f"an alert rule named {chosen!r} already exists; give this one its own name="
        )
    rules[chosen] = rule
    return chosen


def add_channel(channels: dict[str, Channel], channel: Channel) -> None:
    """Register `channel` in `channels`; a LogChannel replaces the default one."""
    if not callable(getattr(channel, "send", None)) or not isinstance(
        getattr(channel, "name", None), str
    ):
        raise ConfigError(
            f"app.alert_channel() takes a channel (WebhookChannel, CallbackChannel,"
            f" LogChannel, or an object with a name and an async send(alert)), got {channel!r}"
        )
    replacing_default_log = isinstance(channel, LogChannel) and isinstance(
        channels.get(channel.name), LogChannel
    )
    if channel.name in channels and not replacing_default_log:
        raise ConfigError(
            f"an alert channel named {channel.name!r} already exists; give this one its own"
            f" name= (each channel's deliveries are recorded under its name)"
        )
    channels[channel.name] = channel
