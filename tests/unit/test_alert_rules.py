"""Each alert rule answers for itself: what it measures, how long a breach must hold, whether
it fires again, and what it says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest

import conveyor
from conveyor import ConfigError, JobFailed, OldestAvailableOlderThan, QueueDepthAbove
from conveyor._store.alerts import FailedArrivals, Observation
from conveyor.alert_rules import RuleEvent


class _Readings:
    """Measurements a test fills in by hand."""

    def __init__(
        self,
        depths: Mapping[str, float] | None = None,
        oldest: Mapping[str, float] | None = None,
        arrivals: Sequence[FailedArrivals] = (),
        remaining: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self._depths = depths or {}
        self._oldest = oldest or {}
        self._arrivals = arrivals
        self._remaining = remaining or {}
        self.asked: list[tuple[str, str | None, str | None]] = []

    def queue_depths(self) -> Mapping[str, float]:
        return self._depths

    def oldest_available(self) -> Mapping[str, float]:
        return self._oldest

    async def failed_arrivals(
        self, rule: str, queue: str | None, task: str | None
    ) -> Sequence[FailedArrivals]:
        self.asked.append((rule, queue, task))
        return self._arrivals

    async def failed_remaining(
        self, queue: str | None, task: str | None
    ) -> Mapping[tuple[str, str], int]:
        return self._remaining


def test_each_rule_says_what_it_reads_how_long_it_holds_and_whether_it_refires() -> None:
    depth = QueueDepthAbove(10, for_=timedelta(minutes=5))
    oldest = OldestAvailableOlderThan(timedelta(minutes=10))
    failed = JobFailed()
    assert (depth.reads_queues, depth.hold, depth.refire) == (True, timedelta(minutes=5), False)
    assert (oldest.reads_queues, oldest.hold, oldest.refire) == (True, timedelta(0), False)
    assert (failed.reads_queues, failed.hold, failed.refire) == (False, timedelta(0), True)


async def test_depth_observes_every_queue_or_one_whose_absence_is_zero() -> None:
    readings = _Readings(depths={"b": 11.0, "a": 3.0})
    assert await QueueDepthAbove(10).observe("r", readings) == [
        Observation("a", 3.0, "clear"),
        Observation("b", 11.0, "fire"),
    ]
    assert await QueueDepthAbove(0, queue="c").observe("r", readings) == [
        Observation("c", 0.0, "clear")
    ]


async def test_oldest_observes_the_wait_against_the_age_in_seconds() -> None:
    readings = _Readings(oldest={"emails": 601.0})
    rule = OldestAvailableOlderThan(timedelta(minutes=10), queue="emails")
    assert await rule.observe("r", readings) == [Observation("emails", 601.0, "fire")]


async def test_job_failed_fires_per_group_with_news_and_holds_the_rest() -> None:
    arrivals = [FailedArrivals("emails", "send", 2, (7, 8), {"SMTPError": 2})]
    readings = _Readings(arrivals=arrivals, remaining={("emails", "send"): 5, ("sms", "ping"): 1})
    observations = await JobFailed(queue=None, task=None).observe("failures", readings)
    assert readings.asked == [("failures", None, None)]
    assert observations == [
        Observation(
            "emails/send",
            2.0,
            "fire",
            {
                "queue": "emails",
                "task": "send",
                "new": 2,
                "job_ids": [7, 8],
                "errors": {"SMTPError": 2},
                "failed_now": 5,
            },
        ),
        Observation("sms/ping", 1.0, "hold"),
    ]


def test_each_rule_words_its_own_message() -> None:
    lasted = timedelta(minutes=5)
    assert QueueDepthAbove(10).message(RuleEvent("emails", "firing", 11, lasted)) == (
        "queue 'emails' has 11 available jobs, above 10 for 5m"
    )
    oldest = OldestAvailableOlderThan(timedelta(minutes=10))
    assert oldest.message(RuleEvent("emails", "resolved", 0, lasted)) == (
        "queue 'emails': no available job has waited longer than 10m any more (after 5m)"
    )
    details = {"queue": "emails", "task": "send", "new": 3, "job_ids": [1, 2], "errors": {"E": 3}}
    assert JobFailed().message(RuleEvent("emails/send", "firing", 3, lasted, details)) == (
        "3 job(s) of send on queue 'emails' failed (E x3); jobs 1, 2, ..."
    )


def test_app_alert_names_the_built_in_rules_when_given_something_else() -> None:
    app = conveyor.Conveyor("postgresql://unused/db", auto_migrate=False)
    message = (
        "app.alert() takes a rule (QueueDepthAbove, OldestAvailableOlderThan or JobFailed"
        " from conveyor.alerts), got 'backlog'"
    )
    with pytest.raises(ConfigError) as raised:
        app.alert("backlog")  # type: ignore[arg-type]
    assert str(raised.value) == message
