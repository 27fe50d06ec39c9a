"""AlertEvaluator: measures each alert rule, fires and resolves its episodes, and delivers the
notifications to the channels.

Runs on the elected leader only. The episodes and the notification outbox live in Postgres,
so a new leader neither fires again what the old one fired nor forgets an open episode, and a
notification that could not be delivered (Slack down for a moment) is tried again on the next
pass, up to AlertSettings.delivery_attempts times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor._store.alerts import (
    AlertStatements,
    DeliveryResult,
    FailedArrivals,
    PendingNotification,
)
from conveyor._store.protocol import Store
from conveyor.alert_rules import RuleEvent
from conveyor.alerts import Alert, AlertSettings, AlertStatus, Channel, Rule
from conveyor.clock import Clock, SystemClock
from conveyor.maintenance.service import PeriodicService

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.alerts")

#: How long one evaluator holds the notifications it is delivering.
CLAIM_SECONDS = 120.0
#: The longest one channel may take to deliver one alert (a hung callback must not stall
#: the evaluator); a webhook's own timeout is usually shorter.
SEND_TIMEOUT = 30.0


@dataclass(frozen=True)
class AlertPass:
    """What one pass did: alerts fired and resolved, notifications delivered and failed."""

    fired: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
    delivered: int = 0
    failed: int = 0


@dataclass
class _Readings:
    """Per queue, available jobs and the oldest one's age in seconds: read once per pass,
    when a rule first needs them, and shared by all rules."""

    depth: dict[str, float]
    oldest: dict[str, float]


@dataclass
class _Measurements:
    """What one rule measures with, in its evaluation's transaction."""

    tx: AlertStatements
    readings: _Readings | None
    settle: timedelta
    clock: Clock

    def queue_depths(self) -> Mapping[str, float]:
        return self._queues().depth

    def oldest_available(self) -> Mapping[str, float]:
        return self._queues().oldest

    def _queues(self) -> _Readings:
        assert self.readings is not None, "read before the first rule that reads_queues"
        return self.readings

    async def failed_arrivals(
        self, rule: str, queue: str | None, task: str | None
    ) -> Sequence[FailedArrivals]:
        return await self.tx.alert_failed_arrivals(
            rule=rule, queue=queue, task=task, settle=self.settle, now=self.clock.now()
        )

    async def failed_remaining(
        self, queue: str | None, task: str | None
    ) -> Mapping[tuple[str, str], int]:
        return await self.tx.alert_failed_remaining(queue=queue, task=task)


class AlertEvaluator(PeriodicService):
    """Each pass measures every rule, applies the readings to the rule's episodes in one
    statement (which also queues the notifications), then delivers what is queued."""

    def __init__(
        self,
        store: Store,
        rules: Mapping[str, Rule],
        channels: Sequence[Channel],
        *,
        settings: AlertSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings or AlertSettings()
        super().__init__(self._settings.interval.total_seconds())
        self._store = store
        self._rules = dict(rules)
        self._channels = {c.name: c for c in channels}
        self._clock = clock or SystemClock()

    @classmethod
    def for_app(cls, app: Conveyor, store: Store) -> AlertEvaluator:
        """The evaluator of `app`'s rules and channels, on its clock."""
        return cls(
            store,
            app.alert_rules,
            list(app.alert_channels.values()),
            settings=app.alert_settings,
            clock=app.clock,
        )

    async def run_once(self) -> AlertPass:
        """Evaluate every rule and deliver pending notifications; return what happened."""
        fired: list[Alert] = []
        resolved: list[Alert] = []
        readings: _Readings | None = None
        for name, rule in self._rules.items():
            if readings is None and rule.reads_queues:
                readings = await self._read_queues()
            for alert in await self._evaluate(name, rule, readings):
                (fired if alert.status == "firing" else resolved).append(alert)
        delivered, failed = await self._deliver()
        await self._store.alert_episode_prune(
            self._settings.keep_resolved.total_seconds(), now=self._clock.now()
        )
        return AlertPass(tuple(fired), tuple(resolved), delivered, failed)

    # -- evaluating ---------------------------------------------------------------------------

    async def _read_queues(self) -> _Readings:
        readings = _Readings({}, {})
        for row in await self._store.queue_depths(now=self._clock.now()):
            if row.state == "available":
                readings.depth[row.queue] = float(row.count)
                readings.oldest[row.queue] = float(row.oldest_seconds or 0)
        return readings

    async def _evaluate(self, name: str, rule: Rule, readings: _Readings | None) -> list[Alert]:
        # One transaction: failures seen (the watermark moved) are also recorded, or neither,
        # and a second evaluator waits for the watermark instead of reading the same window.
        async with self._store.alert_transaction() as tx:
            measure = _Measurements(tx, readings, self._settings.failed_settle, self._clock)
            observations = await rule.observe(name, measure)
            events = await tx.alert_episode_observe(
                rule=name,
                observations=observations,
                hold=rule.hold,
                refire=rule.refire,
                channels=list(self._channels),
                now=self._clock.now(),
            )
        return [
            self._alert(name, e.subject, e.status, e.value, e.since, e.at, e.details, e.episode_id)
            for e in events
        ]

    # -- delivering ---------------------------------------------------------------------------

    async def _deliver(self) -> tuple[int, int]:
        """Send every claimed notification in order; after a channel fails once in a pass,
        its later notifications wait for the next pass (in order, without a timeout each)."""
        claimed = await self._store.alert_notification_claim(
            list(self._channels), lease_seconds=CLAIM_SECONDS, now=self._clock.now()
        )
        results: list[DeliveryResult] = []
        down: set[str] = set()
        for note in claimed:
            if note.channel in down:
                results.append(DeliveryResult(note.id, "skipped"))
                continue
            error = await self._send(note)
            if error is None:
                results.append(DeliveryResult(note.id, "delivered"))
            else:
                down.add(note.channel)
                results.append(DeliveryResult(note.id, "failed", error))
        if results:
            abandoned = await self._store.alert_notification_finish(
                results, max_attempts=self._settings.delivery_attempts, now=self._clock.now()
            )
            for gone in abandoned:
                log.error(
                    "alert notification %d to channel %r abandoned after %d attempts",
                    gone.notification_id,
                    gone.channel,
                    gone.attempts,
                )
        delivered = sum(r.outcome == "delivered" for r in results)
        return delivered, sum(r.outcome == "failed" for r in results)

    async def _send(self, note: PendingNotification) -> str | None:
        alert = self._alert(
            note.rule,
            note.subject,
            note.status,
            note.value,
            note.since,
            note.at,
            note.details,
            note.episode_id,
        )
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self._channels[note.channel].send(alert)
        except TimeoutError:
            return self._failed(note, f"no answer within {SEND_TIMEOUT:g}s")
        except Exception as exc:  # noqa: BLE001 - any channel error: log, retry next pass
            return self._failed(note, f"{type(exc).__name__}: {exc}"[:500])
        return None

    def _failed(self, note: PendingNotification, error: str) -> str:
        retry = (
            "retried on the next pass"
            if note.attempts + 1 < self._settings.delivery_attempts
            else "the last attempt"
        )
        log.warning(
            "alert %s [%s] %s: channel %r failed (attempt %d of %d, %s): %s",
            note.rule,
            note.subject,
            note.status,
            note.channel,
            note.attempts + 1,
            self._settings.delivery_attempts,
            retry,
            error,
        )
        return error

    def _alert(
        self,
        rule_name: str,
        subject: str,
        status: AlertStatus,
        value: float,
        since: datetime,
        at: datetime,
        details: Mapping[str, Any],
        episode: int,
    ) -> Alert:
        rule = self._rules.get(rule_name)
        lasted = at - since
        if rule is not None:
            message = rule.message(RuleEvent(subject, status, value, lasted, details))
        else:  # a notification queued before a deploy removed its rule
            message = f"{subject}: {status} (value {value:g})"
        return Alert(rule_name, subject, status, value, since, at, message, dict(details), episode)
