"""The JSON log line: one object per record, fixed keys first, then every extra field; values
JSON cannot hold are written as text, never dropped and never an error."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime

from conveyor import logs
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


def test_what_the_fast_encoder_refuses_is_written_all_the_same() -> None:
    # orjson stops at 64-bit ints and non-str keys; the standard library writes them
    huge = 2**70
    line = _line(_record("x", big=huge, keyed={1: "one"}, fine=3))
    assert line["big"] == huge
    assert line["keyed"] == {"1": "one"}
    assert line["fine"] == 3
    text = JsonLineFormatter().format(_record("x", big=huge))
    assert text == text.replace(", ", ",")  # the same compact form either way


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


def _configured(stream: io.StringIO) -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure("INFO", "json", stream)
    try:
        yield logging.getLogger("conveyor.worker")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def _without_time(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert line.pop("time")
    return lines


def test_lines_written_at_once_equal_the_records_they_stand_for() -> None:
    fields = {"job_id": 7, "task": "émail", "outcome": "completed", "duration_ms": 1.5}
    lines: list[logs.Line] = [
        (logging.INFO, "job %d (%s) completed", (7, "émail"), fields),
        (logging.DEBUG, "not shown at INFO", (), {}),
        (logging.WARNING, "100% done", (), {"error_type": None}),
    ]
    fast, slow = io.StringIO(), io.StringIO()
    for logger in _configured(fast):
        assert logs._json_only(logger) is not None  # the path without records is taken
        logs.write_lines(logger, lines)
    for logger in _configured(slow):
        for level, message, args, extra in lines:
            logger.log(level, message, *args, extra=extra)
    assert _without_time(fast.getvalue()) == _without_time(slow.getvalue())
    assert len(fast.getvalue().splitlines()) == 2


def test_lines_go_through_the_records_when_the_application_adds_a_handler() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    stream = io.StringIO()
    for logger in _configured(stream):
        keep = Keep()
        logging.getLogger("conveyor").addHandler(keep)
        try:
            logs.write_lines(logger, [(logging.INFO, "job %d done", (3,), {"job_id": 3})])
        finally:
            logging.getLogger("conveyor").removeHandler(keep)
    assert [(r.getMessage(), getattr(r, "job_id", None)) for r in seen] == [("job 3 done", 3)]
    assert _without_time(stream.getvalue()) == [
        {"level": "INFO", "logger": "conveyor.worker", "message": "job 3 done", "job_id": 3}
    ]
