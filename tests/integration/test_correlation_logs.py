"""Correlation ids travel from the enqueuer to the job, its logs and the jobs it enqueues;
the worker writes one structured line per job outcome."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import conveyor
from conveyor import logs
from tests.helpers import eventually, job_states, running_worker


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Capture the logs as `conveyor worker` writes them when not on a terminal."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in before[0]:
        root.addHandler(handler)
    root.setLevel(before[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_correlation_id_from_context_and_options_is_stored(app: conveyor.Conveyor) -> None:
    @app.task(name="note")
    def note() -> None: ...

    with conveyor.correlation_id("req-7f3a"):
        from_context = note.enqueue()
        explicit = note.with_options(correlation_id="req-other").enqueue()
    outside = note.enqueue()
    client = app.client()
    assert client.get_job(from_context).correlation_id == "req-7f3a"
    assert client.get_job(explicit).correlation_id == "req-other"
    assert client.get_job(outside).correlation_id is None
    assert conveyor.current_correlation_id() is None


def test_sql_function_takes_a_correlation_id(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    row = conn.execute(
        "SELECT conveyor.enqueue('note', '{}'::jsonb, correlation_id => 'next-req-1')"
    ).fetchone()
    assert row is not None
    assert app.client().get_job(row[0]).correlation_id == "next-req-1"


def test_overlong_correlation_id_is_refused_with_the_fix(app: conveyor.Conveyor) -> None:
    @app.task(name="note")
    def note() -> None: ...

    with pytest.raises(conveyor.ConfigError, match="1 to 255 characters"):
        note.with_options(correlation_id="x" * 256)
    with (
        pytest.raises(conveyor.ConfigError, match="1 to 255 characters"),
        conveyor.correlation_id(""),
    ):
        pass


async def test_handler_logs_and_child_jobs_carry_the_correlation_id(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], json_log: io.StringIO
) -> None:
    user_log = logging.getLogger("shop.receipts")

    @app.task(name="child")
    def child() -> None:
        user_log.info("child ran")

    @app.task(name="parent")
    async def parent(ctx: conveyor.JobContext) -> str | None:
        user_log.info("sending receipt")  # a plain logger, not ctx.logger
        ctx.logger.info("via the context logger")
        await child.aenqueue()
        return ctx.correlation_id

    @app.task(name="sync_parent")
    def sync_parent() -> str | None:
        user_log.info("sync handler logging")
        return conveyor.current_correlation_id()

    with conveyor.correlation_id("req-42"):
        parent_id = parent.enqueue()
        sync_id = sync_parent.enqueue()
    async with running_worker(app):
        await eventually(lambda: job_states(conn).get("completed") == 3)
    client = app.client()
    assert client.get_job(parent_id).result == "req-42"
    assert client.get_job(sync_id).result == "req-42"
    child_job = client.list_jobs(task="child")[0]
    assert child_job.correlation_id == "req-42"

    records = lines(json_log)
    by_message = {r["message"]: r for r in records}
    for message in ("sending receipt", "via the context logger", "sync handler logging"):
        assert by_message[message]["correlation_id"] == "req-42", message
    assert by_message["sending receipt"]["job_id"] == parent_id
    assert by_message["sending receipt"]["task"] == "parent"
    assert by_message["sync handler logging"]["job_id"] == sync_id
    assert by_message["child ran"]["job_id"] == child_job.id
    assert by_message["child ran"]["correlation_id"] == "req-42"
    # no job's fields leak onto lines logged outside jobs
    started = next(
        r for r in records if r["message"].startswith("worker ") and "started" in r["message"]
    )
    assert "job_id" not in started


async def test_one_structured_line_per_job_outcome(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], json_log: io.StringIO
) -> None:
    @app.task(name="ok")
    def ok() -> None: ...

    @app.task(name="flaky", max_attempts=2, backoff=conveyor.RetryPolicy(base=0.01, jitter=0))
    def flaky() -> None:
        raise ConnectionError("smtp down")

    with conveyor.correlation_id("req-9"):
        ok_id = ok.enqueue()
        flaky_id = flaky.enqueue()
    async with running_worker(app):
        await eventually(
            lambda: job_states(conn).get("completed") == 1 and job_states(conn).get("failed") == 1
        )
    outcomes = [r for r in lines(json_log) if "outcome" in r]
    assert [(r["job_id"], r["outcome"]) for r in outcomes if r["job_id"] == ok_id] == [
        (ok_id, "completed")
    ]
    flaky_lines = [r for r in outcomes if r["job_id"] == flaky_id]
    assert [(r["attempt"], r["outcome"]) for r in flaky_lines] == [(1, "retrying"), (2, "failed")]
    for record in [*flaky_lines]:
        assert record["error_type"] == "ConnectionError"
        assert record["level"] == "WARNING"
    for record in outcomes:
        assert record["correlation_id"] == "req-9"
        assert record["queue"] == "default"
        assert record["task"] in ("ok", "flaky")
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
        assert record["time"].endswith("+00:00")


def test_console_format_puts_job_fields_after_the_message() -> None:
    record = logging.LogRecord("conveyor.worker", logging.INFO, __file__, 1, "job done", (), None)
    record.job_id = 12
    record.task = "shop.send_receipt"
    record.correlation_id = "req-1"
    line = logs.ConsoleFormatter().format(record)
    assert line.endswith(
        "conveyor.worker: job done [job_id=12 task=shop.send_receipt correlation_id=req-1]"
    )


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for stream, expected in (
            (Tty(), logs.ConsoleFormatter),
            (io.StringIO(), logs.JsonLineFormatter),
        ):
            logs.configure("INFO", "auto", stream)
            assert isinstance(root.handlers[0].formatter, expected)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
