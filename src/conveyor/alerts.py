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
from typing import Any, Literal, Protocol

from conveyor.errors import ConfigError
from conveyor.errors import DeliveryError as DeliveryError  # its old home: imports keep working

AlertStatus = Literal["firing", "resolved"]

_NAME_LIMIT = 200
#: The most characters of one Slack message section (Slack refuses longer ones).
_SLACK_TEXT_LIMIT = 3000


@dataclass(frozen=True)
class QueueDepthAbove:
    """Fire when a queue holds more than `threshold` available jobs for at least `for_`.

    With `queue=None` every queue is watched on its own. An episode resolves when the depth is
    back at or below the threshold; a dip below it before `for_` has passed starts over.
    """

    threshold: int
    for_: timedelta = timedelta(0)
    queue: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise ConfigError(
                f"QueueDepthAbove: threshold must be an int number of jobs, got {self.threshold!r}"
            )
        if self.threshold < 0:
            raise ConfigError(f"QueueDepthAbove: threshold must be 0 or more, got {self.threshold}")
        _check_duration("QueueDepthAbove", "for_", self.for_, "for_=timedelta(minutes=5)")
        _check_queue("QueueDepthAbove", self.queue)

    @property
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""
        return _scoped(f"queue_depth_above_{self.threshold}", self.queue)

    def message(self, subject: str, status: AlertStatus, value: float, lasted: timedelta) -> str:
        """Say what happened in one line."""
        if status == "firing":
            return (
                f"queue {subject!r} has {value:g} available jobs, above {self.threshold}"
                f" for {_span(lasted)}"
            )
        return (
            f"queue {subject!r} is back to {value:g} available jobs (at or below"
            f" {self.threshold}) after {_span(lasted)}"
        )


@dataclass(frozen=True)
class OldestAvailableOlderThan:
    """Fire when the oldest available job of a queue has waited longer than `age`.

    With `queue=None` every queue is watched on its own. Resolves when no available job of
    the queue has waited that long.
    """

    age: timedelta
    queue: str | None = None

    def __post_init__(self) -> None:
        _check_duration("OldestAvailableOlderThan", "age", self.age, "age=timedelta(minutes=10)")
        if self.age <= timedelta(0):
            raise ConfigError("OldestAvailableOlderThan: age must be more than zero")
        _check_queue("OldestAvailableOlderThan", self.queue)

    @property
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""
        return _scoped(f"oldest_available_older_than_{int(self.age.total_seconds())}s", self.queue)

    def message(self, subject: str, status: AlertStatus, value: float, lasted: timedelta) -> str:
        """Say what happened in one line."""
        waited = _span(timedelta(seconds=value))
        if status == "firing":
            return (
                f"queue {subject!r}: the oldest available job has waited {waited}, longer"
                f" than {_span(self.age)}"
            )
        return (
            f"queue {subject!r}: no available job has waited longer than {_span(self.age)}"
            f" any more (after {_span(lasted)})"
        )


@dataclass(frozen=True)
class JobFailed:
    """Fire when jobs arrive in `failed` (their attempts used up, or FailNow).

    Failures are grouped per queue and task: each evaluation that finds new ones sends one
    alert per group with the count, a few job ids and the error types, however many failed.
    The episode resolves when no failed job of that queue and task is left (all retried or
    deleted). Filter with `queue` and `task`.
    """

    queue: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        _check_queue("JobFailed", self.queue)
        if self.task is not None and (not isinstance(self.task, str) or not self.task):
            raise ConfigError(f"JobFailed: task must be a task name or None, got {self.task!r}")

    @property
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""
        name = _scoped("job_failed", self.queue)
        return f"{name}:{self.task}" if self.task else name

    def message(self, status: AlertStatus, details: Mapping[str, Any], lasted: timedelta) -> str:
        """Say what happened in one line."""
        where = f"{details.get('task')} on queue {details.get('queue')!r}"
        if status == "resolved":
            return f"no failed job of {where} is left (retried or deleted) after {_span(lasted)}"
        count = int(details.get("new", 0))
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(dict(details.get("errors", {})).items()))
        ids = ", ".join(str(i) for i in details.get("job_ids", []))
        more = ", ..." if count > len(details.get("job_ids", [])) else ""
        return f"{count} job(s) of {where} failed ({errors}); jobs {ids}{more}"


#: The rules app.alert() takes.
Rule = QueueDepthAbove | OldestAvailableOlderThan | JobFailed


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
            _check_duration("AlertSettings", name, value, f"{name}=timedelta(seconds=15)")
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
    if not isinstance(rule, QueueDepthAbove | OldestAvailableOlderThan | JobFailed):
        raise ConfigError(
            f"app.alert() takes a rule (QueueDepthAbove, OldestAvailableOlderThan or"
            f" JobFailed from conveyor.alerts), got {rule!r}"
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


def _check_duration(owner: str, name: str, value: object, example: str) -> None:
    if not isinstance(value, timedelta):
        raise ConfigError(f"{owner}: {name} must be a timedelta, like {example}; got {value!r}")
    if value < timedelta(0):
        raise ConfigError(f"{owner}: {name} must not be negative, got {value}")


def _check_queue(owner: str, queue: object) -> None:
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigError(f"{owner}: queue must be a queue name, or None for every queue")


def _scoped(name: str, queue: str | None) -> str:
    return f"{name}[{queue}]" if queue else name


def _span(delta: timedelta) -> str:
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
