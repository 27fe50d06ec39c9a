"""Logs: one JSON object per line for machines, a readable line on a terminal.

Every record logged while a job runs (by Conveyor or by the handler's own loggers) carries the
job's id, task, queue, attempt and correlation id, so a log search for one correlation id finds
the request and every job it caused. The worker writes one line per job outcome with its
duration and error type (see Worker._on_recorded).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, time
from itertools import islice
from typing import Any, Literal, TextIO

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


class JsonLineFormatter(logging.Formatter):
    """{"time": ..., "level": ..., "logger": ..., "message": ..., <extra fields>}.

    Written here rather than taken from python-json-logger: the worker writes a line per job,
    and this formatter costs a fraction of that one's (docs/benchmarks.md, issue 15); the
    output is the same, key for key.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        # ISO 8601 in UTC to the millisecond; the part up to the second is reused while the
        # second lasts (a busy worker logs thousands of lines in one)
        second = int(record.created)
        if second != self._second:
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second, self._second_text = second, stamp
        millis = min(int((record.created - second) * 1000), 999)
        return f"{self._second_text}.{millis:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # LogRecord.__init__ sets its own attributes first: extras and filters' fields follow
        for name, value in islice(record.__dict__.items(), _INIT_ATTRIBUTES, None):
            if name not in _RECORD_ATTRIBUTES and name not in line:
                line[name] = value
        return _encoder.encode(line)


class _Encoder(json.JSONEncoder):
    """JSON for log fields: times as ISO 8601, anything else JSON cannot hold as its str()."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime | date | time):
            return o.isoformat()
        if isinstance(o, Exception | type):
            return repr(o) if isinstance(o, type) else f"{type(o).__name__}: {o}"
        return str(o)


_encoder = _Encoder(ensure_ascii=False)

_SAMPLE = vars(logging.LogRecord("", 0, "", 0, "", (), None))
#: Attributes every LogRecord has: what is left of its __dict__ came from `extra=` or a filter.
_RECORD_ATTRIBUTES = frozenset([*_SAMPLE, "message", "asctime", "taskName"])
#: How many of them LogRecord.__init__ sets, before any other.
_INIT_ATTRIBUTES = len(_SAMPLE)


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
