"""Alert rules: each one a class that answers for itself.

A rule says what it measures and which subjects are in breach (observe), how long a breach
must last before it fires (hold), whether an open episode fires again on each new breach
(refire), its default name and its one-line message. The evaluator
(conveyor.maintenance.alerter) only asks; so a new rule is one new AlertRule subclass here.

The rules are re-exported by conveyor.alerts, where they are documented for users.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from conveyor._store.alerts import Observation
from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor._store.alerts import FailedArrivals

AlertStatus = Literal["firing", "resolved"]


class Measurements(Protocol):
    """What a rule can measure during one evaluation (the evaluator provides it). The queue
    readings are taken once per pass and shared by every rule whose `reads_queues` is set."""

    def queue_depths(self) -> Mapping[str, float]:
        """Available jobs, per queue that has any."""
        ...

    def oldest_available(self) -> Mapping[str, float]:
        """Seconds the oldest available job has waited, per queue that has any."""
        ...

    async def failed_arrivals(
        self, rule: str, queue: str | None, task: str | None
    ) -> Sequence[FailedArrivals]:
        """Failed jobs that arrived since `rule` last looked (moves its watermark)."""
        ...

    async def failed_remaining(
        self, queue: str | None, task: str | None
    ) -> Mapping[tuple[str, str], int]:
        """Failed jobs left now, per (queue, task)."""
        ...


@dataclass(frozen=True)
class RuleEvent:
    """A fire or a resolve of one subject's episode, as a rule's message() reads it: `value`
    is what the rule observed, `lasted` how long the episode had lasted, `details` what the
    rule's observation carried."""

    subject: str
    status: AlertStatus
    value: float
    lasted: timedelta
    details: Mapping[str, Any] = field(default_factory=dict)


class AlertRule(ABC):
    """A condition the elected worker evaluates on every alert pass."""

    #: The rule reads the per-queue readings (read once per pass, before the first such rule).
    reads_queues: ClassVar[bool] = True
    #: An open episode fires again each time the rule observes a new breach ("fire"), instead
    #: of once per episode.
    refire: ClassVar[bool] = False

    @property
    def hold(self) -> timedelta:
        """How long a breach must last before its episode fires."""
        return timedelta(0)

    @property
    @abstractmethod
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""

    @abstractmethod
    async def observe(self, name: str, measure: Measurements) -> list[Observation]:
        """This pass's reading of every subject the rule watches (`name`: its registered
        name)."""

    @abstractmethod
    def message(self, event: RuleEvent) -> str:
        """Say in one line what `event` (a fire or a resolve of this rule) means."""


@dataclass(frozen=True)
class QueueDepthAbove(AlertRule):
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
        check_duration("QueueDepthAbove", "for_", self.for_, "for_=timedelta(minutes=5)")
        _check_queue("QueueDepthAbove", self.queue)

    @property
    def hold(self) -> timedelta:
        """A breach fires once it has lasted `for_`."""
        return self.for_

    @property
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""
        return _scoped(f"queue_depth_above_{self.threshold}", self.queue)

    async def observe(self, name: str, measure: Measurements) -> list[Observation]:
        """Each queue's available jobs, in breach above the threshold."""
        return _thresholds(measure.queue_depths(), self.queue, float(self.threshold))

    def message(self, event: RuleEvent) -> str:
        """Say what happened in one line."""
        subject, value, lasted = event.subject, event.value, event.lasted
        if event.status == "firing":
            return (
                f"queue {subject!r} has {value:g} available jobs, above {self.threshold}"
                f" for {span(lasted)}"
            )
        return (
            f"queue {subject!r} is back to {value:g} available jobs (at or below"
            f" {self.threshold}) after {span(lasted)}"
        )


@dataclass(frozen=True)
class OldestAvailableOlderThan(AlertRule):
    """Fire when the oldest available job of a queue has waited longer than `age`.

    With `queue=None` every queue is watched on its own. Resolves when no available job of
    the queue has waited that long.
    """

    age: timedelta
    queue: str | None = None

    def __post_init__(self) -> None:
        check_duration("OldestAvailableOlderThan", "age", self.age, "age=timedelta(minutes=10)")
        if self.age <= timedelta(0):
            raise ConfigError("OldestAvailableOlderThan: age must be more than zero")
        _check_queue("OldestAvailableOlderThan", self.queue)

    @property
    def default_name(self) -> str:
        """The name used when app.alert() is given none."""
        return _scoped(f"oldest_available_older_than_{int(self.age.total_seconds())}s", self.queue)

    async def observe(self, name: str, measure: Measurements) -> list[Observation]:
        """Each queue's oldest available job's wait, in breach past `age`."""
        return _thresholds(measure.oldest_available(), self.queue, self.age.total_seconds())

    def message(self, event: RuleEvent) -> str:
        """Say what happened in one line."""
        subject, waited = event.subject, span(timedelta(seconds=event.value))
        if event.status == "firing":
            return (
                f"queue {subject!r}: the oldest available job has waited {waited}, longer"
                f" than {span(self.age)}"
            )
        return (
            f"queue {subject!r}: no available job has waited longer than {span(self.age)}"
            f" any more (after {span(event.lasted)})"
        )


@dataclass(frozen=True)
class JobFailed(AlertRule):
    """Fire when jobs arrive in `failed` (their attempts used up, or FailNow).

    Failures are grouped per queue and task: each evaluation that finds new ones sends one
    alert per group with the count, a few job ids and the error types, however many failed.
    The episode resolves when no failed job of that queue and task is left (all retried or
    deleted). Filter with `queue` and `task`.
    """

    reads_queues: ClassVar[bool] = False
    refire: ClassVar[bool] = True

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

    async def observe(self, name: str, measure: Measurements) -> list[Observation]:
        """A "fire" per queue and task with new failures (their count, ids and errors), and
        a "hold" per queue and task that still has failed jobs; the rest clear."""
        arrivals = await measure.failed_arrivals(name, self.queue, self.task)
        remaining = await measure.failed_remaining(self.queue, self.task)
        observations = [
            Observation(
                subject=f"{a.queue}/{a.task}",
                value=float(a.count),
                state="fire",
                details={
                    "queue": a.queue,
                    "task": a.task,
                    "new": a.count,
                    "job_ids": list(a.job_ids),
                    "errors": a.errors,
                    "failed_now": remaining.get((a.queue, a.task), 0),
                },
            )
            for a in arrivals
        ]
        new = {o.subject for o in observations}
        observations += [
            Observation(subject=f"{queue}/{task}", value=float(count), state="hold")
            for (queue, task), count in remaining.items()
            if f"{queue}/{task}" not in new
        ]
        return observations

    def message(self, event: RuleEvent) -> str:
        """Say what happened in one line."""
        details = event.details
        where = f"{details.get('task')} on queue {details.get('queue')!r}"
        if event.status == "resolved":
            return (
                f"no failed job of {where} is left (retried or deleted) after {span(event.lasted)}"
            )
        count = int(details.get("new", 0))
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(dict(details.get("errors", {})).items()))
        ids = ", ".join(str(i) for i in details.get("job_ids", []))
        more = ", ..." if count > len(details.get("job_ids", [])) else ""
        return f"{count} job(s) of {where} failed ({errors}); jobs {ids}{more}"


def rule_names() -> str:
    """Conveyor's own rules, for an error message: "A, B or C"."""
    names = [r.__name__ for r in AlertRule.__subclasses__() if r.__module__ == __name__]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _thresholds(values: Mapping[str, float], queue: str | None, limit: float) -> list[Observation]:
    """Observations of "value above limit" for every queue measured, or for one queue (whose
    absence means zero)."""
    measured = dict(values) if queue is None else {queue: values.get(queue, 0.0)}
    return [
        Observation(subject=q, value=float(v), state="fire" if v > limit else "clear")
        for q, v in sorted(measured.items())
    ]


def check_duration(owner: str, name: str, value: object, example: str) -> None:
    """Refuse a `value` that is not a timedelta of zero or more, showing `example`."""
    if not isinstance(value, timedelta):
        raise ConfigError(f"{owner}: {name} must be a timedelta, like {example}; got {value!r}")
    if value < timedelta(0):
        raise ConfigError(f"{owner}: {name} must not be negative, got {value}")


def _check_queue(owner: str, queue: object) -> None:
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigError(f"{owner}: queue must be a queue name, or None for every queue")


def _scoped(name: str, queue: str | None) -> str:
    return f"{name}[{queue}]" if queue else name


def span(delta: timedelta) -> str:
    """A duration as people read it in an alert: 42s, 17m, 3h05m."""
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
