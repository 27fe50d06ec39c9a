"""Control flow a handler can raise: retry later, fail now without retrying, or snooze the
queue because its downstream is down."""

from __future__ import annotations

from datetime import timedelta

from conveyor.durations import to_seconds


class Retry(Exception):  # noqa: N818 - reads as an instruction: raise Retry(after=30)
    """Raise in a handler to retry the job after a given time.

    The attempt counts toward max_attempts, like any failure; when attempts are exhausted the
    job goes to `failed`.
    """

    def __init__(self, after: float | timedelta = 0.0, reason: str = "retry requested") -> None:
        seconds = to_seconds(after, "Retry(after=...)")
        super().__init__(reason)
        self.after = seconds
        self.reason = reason


class FailNow(Exception):  # noqa: N818 - an instruction, like Retry
    """Raise (or subclass and raise) to fail the job at once, without further attempts.

    Use it for errors a retry cannot fix: a missing record, invalid input.
    """


class SnoozeQueue(Exception):  # noqa: N818 - an instruction, like Retry
    """Raise in a handler when the queue's downstream is down (the mail provider answers 503):
    the job goes back to its queue without counting the attempt, and no job of the queue
    starts on any worker for `duration`, instead of every job burning its attempts.
    """

    def __init__(self, duration: float | timedelta, reason: str = "downstream unavailable") -> None:
        seconds = to_seconds(duration, "SnoozeQueue(duration)", positive=True)
        super().__init__(reason)
        self.duration = seconds
        self.reason = reason
