"""Logs: one JSON object per line for machines, a readable line on a terminal.

Every record logged while a job runs (by Conveyor or by the handler's own loggers) carries the
job's id, task, queue, attempt and correlation id, so a log search for one correlation id finds
the request and every job it caused. The worker writes one line per job outcome with its
duration and error type (worker/report.py), written a batch at a time (write_lines).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, date, datetime, time
from itertools import islice
from time import time as _now
from typing import Any, Literal, TextIO

import orjson

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


def enter_job(job: Job) -> Token[dict[str, Any] | None]:
    """Tag every record logged from here on (in this context) with `job`'s fields, until
    leave_job() with what this returned (the worker does, once a job)."""
    return _job.set(job_fields(job))


def leave_job(scope: Token[dict[str, Any] | None]) -> None:
    _job.reset(scope)


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
        return self._time(record.created)

    def _time(self, created: float) -> str:
        # ISO 8601 in UTC to the millisecond; the part up to the second is reused while the
        # second lasts (a busy worker logs thousands of lines in one)
        second = int(created)
        if second != self._second:
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second, self._second_text = second, stamp
        millis = min(int((created - second) * 1000), 999)
        return f"{self._second_text}.{millis:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
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
        return _dumps(line)

    def fields_line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any]
    ) -> str:
        """The line format() gives a record of these values with `fields` as its extras."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        for name, value in fields.items():
            if name not in line:
                line[name] = value
        return _dumps(line)


def _default(o: Any) -> Any:
    """What JSON cannot hold: times as ISO 8601, an exception as `Type: message`, a class as
    its repr, anything else as its str()."""
    if isinstance(o, datetime | date | time):
        return o.isoformat()
    if isinstance(o, Exception | type):
        return repr(o) if isinstance(o, type) else f"{type(o).__name__}: {o}"
    return str(o)


_fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)


def _dumps(line: dict[str, Any]) -> str:
    """One log line: orjson (a fifth of the standard library's time for the worker's line
    per job), and the standard library for what orjson refuses (an int beyond 64 bits, a
    non-str key), with the same compact output."""
    try:
        return orjson.dumps(line, default=_default).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _fallback.encode(line)


_SAMPLE = vars(logging.LogRecord("", 0, "", 0, "", (), None))
#: Attributes every LogRecord has: what is left of its __dict__ came from `extra=` or a filter.
_RECORD_ATTRIBUTES = frozenset([*_SAMPLE, "message", "asctime", "taskName"])
#: How many of them LogRecord.__init__ sets, before any other.
_INIT_ATTRIBUTES = len(_SAMPLE)


#: One line to log: level, message, its %-arguments, and its extra fields.
Line = tuple[int, str, tuple[Any, ...], dict[str, Any]]


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure() installs: write_lines() may write past the records."""


def write_lines(logger: logging.Logger, lines: list[Line]) -> None:
    """Log `lines` to `logger`, as many log.log(level, message, *args, extra=fields) calls
    would. When the records would only reach the JSON handler configure() installed, the
    lines are formatted straight from their fields and written at once, without a LogRecord
    each (a worker logs one line per job: docs/benchmarks.md, issue 15); the output is the
    same, key for key. Any other set-up (handlers of the application's, filters, another
    format) gets the records, one by one."""
    handler = _json_only(logger)
    if handler is not None:
        formatter = handler.formatter
        assert isinstance(formatter, JsonLineFormatter)
        created = _now()
        try:
            text = "".join(
                formatter.fields_line(
                    created,
                    logging.getLevelName(level),
                    logger.name,
                    message % args if args else message,
                    fields,
                )
                + "\n"
                for level, message, args, fields in lines
                if logger.isEnabledFor(level) and level >= handler.level
            )
            if text:
                with handler.lock or contextlib.nullcontext():
                    handler.stream.write(text)
                    handler.flush()
            return
        except Exception:  # noqa: BLE001, S110 - logging's own error handling, record by record
            pass
    for level, message, args, fields in lines:
        if logger.isEnabledFor(level):
            # built here, not by log.log(): that walks the stack for a file and line no line shows
            logger.handle(
                logger.makeRecord(logger.name, level, "", 0, message, args, None, extra=fields)
            )


def _json_only(logger: logging.Logger) -> _StreamHandler | None:
    """The one handler records of `logger` reach when that is configure()'s JSON handler with
    only its JobFieldsFilter, else None."""
    node: logging.Logger | None = logger
    root = logging.getLogger()
    while node is not None and node is not root:
        if node.handlers or node.filters or node.disabled or not node.propagate:
            return None
        node = node.parent
    if root.filters or len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if (
        type(handler) is not _StreamHandler
        or type(handler.formatter) is not JsonLineFormatter
        or any(type(f) is not JobFieldsFilter for f in handler.filters)
    ):
        return None
    return handler


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
    handler = _StreamHandler(stream)
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
