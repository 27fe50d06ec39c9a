"""What one attempt came to, as the completer records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Succeeded:
    """The handler returned; `result_json` is its return value as JSON (or None)."""

    result_json: str | None
    idempotency: tuple[tuple[str, str | None], ...] = ()
    #: True when an atomic task already completed the job in its own transaction.
    recorded: bool = False


@dataclass(frozen=True)
class Failed:
    """The attempt failed; retry after `retry_in` seconds, or never when it is None."""

    error: dict[str, Any]
    retry_in: float | None
    #: End the job as cancelled rather than failed (an endpoint answered 410 Gone).
    cancel: bool = False


@dataclass(frozen=True)
class Abandoned:
    """The attempt was stopped without an outcome (shutdown put it back, or cancel/lease loss
    took it away); nothing is recorded."""

    reason: str


@dataclass(frozen=True)
class Snoozed:
    """The handler raised SnoozeQueue: put the job back uncounted, hold the queue back."""

    duration: float
    reason: str


@dataclass(frozen=True)
class Parked:
    """A workflow run slept, waits for an event or a step's backoff: the engine already put its
    job back in the database (scheduled, the attempt uncounted); nothing more to record."""

    reason: str


Outcome = Succeeded | Failed | Snoozed | Abandoned | Parked
