"""The JSON log line: one object per record, fixed keys first, then every extra field; values
JSON cannot hold are written as text, never dropped and never an error."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime

from conveyor.logs import JsonLineFormatter


def _line(record: logging.LogRecord) -> dict[str, object]:
    text = JsonLineFormatter().format(record)
    assert "\n" not in text
    parsed: dict[str, object] = json.loads(text)
    return parsed


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("conveyor.test")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, args, None, extra=extra)


def test_fixed_keys_come_first_then_the_extras_in_order() -> None:
    record = _record("job %d (%s) completed", 7, "émail", job_id=7, task="émail", outcome="ok")
    line = _line(record)
    assert list(line) == ["time", "level", "logger", "message", "job_id", "task", "outcome"]
    assert line["message"] == "job 7 (émail) completed"
    assert line["level"] == "INFO" and line["logger"] == "conveyor.test"


def test_time_is_utc_iso_8601_to_the_millisecond() -> None:
    record = _record("x")
    record.created = datetime(2026, 12, 6, 8, 30, 1, 999_900, tzinfo=UTC).timestamp()
    assert _line(record)["time"] == "2026-12-06T08:30:01.999+00:00"
    record.created = datetime(2026, 12, 6, 8, 30, 2, 5_000, tzinfo=UTC).timestamp()
    assert _line(record)["time"] == "2026-12-06T08:30:02.005+00:00"


def test_values_json_cannot_hold_become_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    line = _line(_record("x", when=when, day=date(2026, 1, 2), thing=Thing(), err=ValueError("no")))
    assert line["when"] == "2026-01-02T03:04:05+00:00"
    assert line["day"] == "2026-01-02"
    assert line["thing"] == "a thing"
    assert line["err"] == "ValueError: no"


def test_an_exception_is_one_field_with_its_traceback() -> None:
    logger = logging.getLogger("conveyor.test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = _line(record)
    assert list(line)[:5] == ["time", "level", "logger", "message", "exc_info"]
    assert isinstance(line["exc_info"], str)
    assert "RuntimeError: boom" in line["exc_info"] and "Traceback" in line["exc_info"]


def test_an_extra_named_like_a_fixed_key_does_not_replace_it() -> None:
    record = _record("the message")
    record.level = "spoofed"  # a filter's attribute, not LogRecord's own
    line = _line(record)
    assert line["level"] == "INFO"
