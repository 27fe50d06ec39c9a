"""OutcomeReport: the one log line, and the metrics, of every attempt's end."""

from __future__ import annotations

import logging
from typing import Any

from conveyor import logs
from conveyor.metrics import WorkerMetrics
from conveyor.worker.outcome import Failed, Outcome, Parked, Snoozed, Succeeded
from conveyor.worker.running import RunningJob

log = logging.getLogger("conveyor.worker")


class OutcomeReport:
    """Logs each attempt's outcome with the job's fields (JSON logs carry them as keys) and
    counts it in the worker's metrics."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self.completed = 0
        self.failed = 0

    def attempt_ended(self, running: RunningJob, outcome: Outcome, recorded: bool) -> None:
        """Report an outcome the completer tried to record (`recorded`: it was)."""
        job = running.job
        if not recorded:
            self._line(
                running,
                "refused",
                logging.WARNING,
                "job %d (%s): outcome refused, the job was taken over or cancelled meanwhile",
            )
        elif isinstance(outcome, Snoozed):
            self._line(
                running,
                "snoozed",
                logging.WARNING,
                "job %d (%s) snoozed queue %s for %gs: %s; the job waits, its attempt uncounted",
                job.queue,
                outcome.duration,
                outcome.reason,
            )
        elif isinstance(outcome, Parked):
            self._line(running, "parked", logging.INFO, "job %d (%s) parked: %s", outcome.reason)
        elif isinstance(outcome, Succeeded):
            self.completed += 1
            self._line(
                running,
                "completed",
                logging.INFO,
                "job %d (%s) completed on attempt %d",
                job.attempt,
            )
        elif isinstance(outcome, Failed):
            self.failed += 1
            retrying = outcome.retry_in is not None
            when = (
                f"will retry in {outcome.retry_in:.1f}s"
                if retrying
                else "cancelled"
                if outcome.cancel
                else "failed for good"
            )
            self._line(
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

    def stopped(self, running: RunningJob, reason: str) -> None:
        """Report an attempt stopped without an outcome (shutdown, cancel, lost lease)."""
        self._line(running, "stopped", logging.INFO, "job %d (%s) stopped: %s", reason)

    def _line(
        self,
        running: RunningJob,
        outcome: str,
        level: int,
        message: str,
        *args: Any,
        error_type: str | None = None,
        http_status: int | None = None,
    ) -> None:
        """The one log line (and the metrics) of an attempt's end."""
        job, duration = running.job, running.duration
        self._metrics.finished(job, outcome, duration)
        if not log.isEnabledFor(level):
            return
        fields = {
            **logs.job_fields(job),
            "outcome": outcome,
            "duration_ms": None if duration is None else round(duration * 1000, 3),
            "error_type": error_type,
        }
        if http_status is not None:
            fields["http_status"] = http_status
        # the record built here, not by log.log(): that one walks the stack for the caller's
        # file and line on every job, a third of the line's cost, for fields no line shows
        record = log.makeRecord(
            log.name, level, __file__, 0, message, (job.id, job.task, *args), None, extra=fields
        )
        log.handle(record)
