"""logs.configure(): one log line per delivery attempt, not two."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from conveyor import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    http = logging.getLogger("httpx2")
    before = (list(root.handlers), root.level, http.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in before[0]:
        root.addHandler(handler)
    root.setLevel(before[1])
    http.setLevel(before[2])


@pytest.mark.usefixtures("restore_logging")
def test_the_http_clients_request_line_is_left_out_at_info() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    logging.getLogger("httpx2").info('HTTP Request: POST http://127.0.0.1/jobs "200 OK"')
    logging.getLogger("httpx2").warning("a warning still shows")
    logging.getLogger("conveyor.worker").info("job 1 (send) completed on attempt 1")
    out = stream.getvalue()
    assert "HTTP Request" not in out
    assert "a warning still shows" in out
    assert "completed on attempt 1" in out


@pytest.mark.usefixtures("restore_logging")
def test_the_http_clients_request_line_shows_at_debug() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    logs.configure("DEBUG", "json", stream)
    logging.getLogger("httpx2").info("HTTP Request: POST http://127.0.0.1/jobs")
    assert "HTTP Request" in stream.getvalue()
