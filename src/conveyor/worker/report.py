"""OutcomeReport: the one log line, and the metrics, of every attempt's end."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from conveyor import logs
from conveyor.metrics import WorkerMetrics
from conveyor.worker.outcome import Failed, Outcome, Parked, Snoozed, Succeeded
from conveyor.worker.running import RunningJob

log = logging.getLogger("conveyor.worker")

#: An attempt whose outcome the completer tried to record, and whether it was.
Ended = tuple[RunningJob, Outcome, bool]


class OutcomeReport:
    """Logs each attempt's outcome with the job's fields (JSON logs carry them as keys) and
    counts it in the worker's metrics, a batch of attempts at a time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self.completed = 0
        self.failed = 0

    def attempts_ended(self, ended: Iterable[Ended]) -> None:
        """Report the outcomes the completer tried to record in one flush."""
        logs.write_lines(log, [self._line(*item) for item in ended])

    def stopped(self, running: RunningJob, reason: str) -> None:
        """Report an attempt stopped without an outcome (shutdown, cancel, lost lease)."""
        line = self._fields(running, "stopped", logging.INFO, "job %d (%s) stopped: %s", reason)
        logs.write_lines(log, [line])

    def _line(self, running: RunningJob, outcome: Outcome, recorded: bool) -> logs.Line:
        job = running.job
        if not recorded:
            return self._fields(
                running,
                "refused",
                logging.WARNING,
                "job %d (%s): outcome refused, the job was taken over or cancelled meanwhile",
            )
        if isinstance(outcome, Snoozed):
            return self._fields(
                running,
                "snoozed",
                logging.WARNING,
                "job %d (%s) snoozed queue %s for %gs: %s; the job waits, its attempt uncounted",
                job.queue,
                outcome.duration,
                outcome.reason,
            )
        if isinstance(outcome, Parked):
            return self._fields(
                running, "parked", logging.INFO, "job %d (%s) parked: %s", outcome.reason
            )
        if isinstance(outcome, Succeeded):
            self.completed += 1
            return self._fields(
                running,
                "completed",
                logging.INFO,
                "job %d (%s) completed on attempt %d",
                job.attempt,
            )
        assert isinstance(outcome, Failed)
        self.failed += 1
        retrying = outcome.retry_in is not None
        when = (
            f"will retry in {outcome.retry_in:.1f}s"
            if retrying
            else "cancelled"
            if outcome.cancel
            else "failed for good"
        )
        return self._fields(
            running,
            "retrying" if retrying else "cancelled" if outcome.cancel else "failed",
            logging.WARNING,
            "job %d (%s) attempt %d raised %s: %s; %s",
            job.attempt,
            outcome.error["type"],
            outcome.error["message"],
            when,
            error_type=outcome.error["type"],
            # a delivery's answer: its HTTP status (None when none came)
            http_status=outcome.error.get("status"),
        )

    def _fields(
        self,
        running: RunningJob,
        outcome: str,
        level: int,
        message: str,
        *args: Any,
        error_type: str | None = None,
        http_status: int | None = None,
    ) -> logs.Line:
        """The log line of an attempt's end (its metrics are counted here too)."""
        job, duration = running.job, running.duration
        self._metrics.finished(job, outcome, duration)
        fields = {
            **logs.job_fields(job),
            "outcome": outcome,
            "duration_ms": None if duration is None else round(duration * 1000, 3),
            "error_type": error_type,
        }
        if http_status is not None:
            fields["http_status"] = http_status
        return (level, message, (job.id, job.task, *args), fields)
