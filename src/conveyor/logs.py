"""Logs: one JSON object per line for machines, a readable line on a terminal.

Every record logged while a job runs (by Conveyor or by the handler's own loggers) carries the
job's id, task, queue, attempt and correlation id, so a log search for one correlation id finds
the request and every job it caused. The worker writes one line per job outcome with its
duration and error type (see Worker._on_recorded).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from conveyor.job import Job

LogFormat = Literal["auto", "json", "console"]

#: The fields a job adds to every record logged while it runs, in console order.
JOB_FIELDS = ("job_id", "task", "queue", "attempt", "correlation_id")

_job: ContextVar[dict[str, Any] | None] = ContextVar("conveyor_log_job", default=None)


def job_fields(job: Job) -> dict[str, Any]:
    """The log fields that identify one attempt of `job`."""
    return {
        "job_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
        "correlation_id": job.correlation_id,
    }


@contextmanager
def job_scope(job: Job) -> Iterator[None]:
    """Tag every record logged inside the block with `job`'s fields."""
    token = _job.set(job_fields(job))
    try:
        yield
    finally:
        _job.reset(token)


class JobFieldsFilter(logging.Filter):
    """Copy the running job's fields onto each record that does not have them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _job.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class JsonLineFormatter(JsonFormatter):
    """{"time": ..., "level": ..., "logger": ..., "message": ..., <extra fields>}."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class ConsoleFormatter(logging.Formatter):
    """A readable line; a job's fields follow the message in brackets."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(
            f"{name}={getattr(record, name)}"
            for name in JOB_FIELDS
            if getattr(record, name, None) is not None
        )
        if not tags:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{tags}]{newline}{rest}"


def configure(
    level: str | int = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Send Conveyor's (and the handlers') logs to `stream` (stderr) in `fmt`: "console" for
    people, "json" for log pipelines, "auto" for console on a terminal and JSON elsewhere."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(JobFieldsFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # httpx2 logs each request at INFO: a second line per delivery besides the job's own
    # (docs/delivery.md: one line per attempt); its lines stay for DEBUG
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx2").setLevel(quiet)
