"""`conveyor cron add/list/remove` for HTTP endpoints, their one-line errors, and a real
`conveyor deliver` process (no application module) firing a stored schedule."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result
from standardwebhooks import Webhook

from conveyor.cli import cli
from tests.acceptance.conftest import ROOT, _descendants
from tests.acceptance.test_deliver_cli import SECRET, server  # noqa: F401 - the fixture
from tests.delivery_server import DeliveryServer
from tests.helpers import wait_until


def _run(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db})


def _one_line_error(result: Result, code: int, words: str) -> None:
    assert result.exit_code == code, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_cron_add_list_remove_and_their_errors(db: str) -> None:
    missing = _run(db, "cron", "add", "ping", "*/5 * * * *", "--endpoint", "nowhere")
    _one_line_error(missing, 1, "conveyor endpoint add nowhere")
    hook = _run(db, "endpoint", "add", "hook", "--url", "https://example.com/", "--secret", "s")
    assert hook.exit_code == 0, hook.output
    added = _run(db, "cron", "add", "ping", "*/5 * * * *", "--endpoint", "hook")
    assert added.exit_code == 0 and "added cron schedule ping" in added.output, added.output
    _one_line_error(
        _run(db, "cron", "add", "ping", "@daily", "--endpoint", "hook"), 1, "exists already"
    )
    _one_line_error(
        _run(db, "cron", "add", "bad", "61 * * * *", "--endpoint", "hook"),
        1,
        "invalid cron expression '61 * * * *' (bad minute)",
    )
    _one_line_error(
        _run(db, "cron", "add", "tz", "@daily", "--endpoint", "hook", "--timezone", "Europe/Berln"),
        1,
        "did you mean 'Europe/Berlin'",
    )
    assert _run(db, "cron", "add", "nohook", "@daily").exit_code == 2  # --endpoint is required
    listed = _run(db, "cron", "list").output
    assert "ping" in listed and "hook" in listed and "*/5 * * * * UTC" in listed
    assert _run(db, "cron", "remove", "ping").exit_code == 0
    _one_line_error(_run(db, "cron", "remove", "ping"), 1, "no cron schedule named 'ping'")
    assert "ping" not in _run(db, "cron", "list").output


def test_conveyor_deliver_fires_a_stored_schedule(
    db: str,
    server: DeliveryServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    added = _run(db, "endpoint", "add", "tick", "--url", server.url("/ok"), "--secret", SECRET)
    assert added.exit_code == 0, added.output
    assert (
        _run(db, "cron", "add", "tick.minutely", "* * * * *", "--endpoint", "tick").exit_code == 0
    )
    with psycopg.connect(db, autocommit=True) as conn:
        # make the current minute due now, rather than wait for the next one
        conn.execute("UPDATE conveyor.cron_schedule SET next_slot = date_trunc('minute', now())")
    log_path = tmp_path / "deliver.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "deliver", "--allow-network", "127.0.0.0/8"],
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_DATABASE_URL": db},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: len(server.bodies("/ok")) >= 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        for pid in [*_descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(log_path.read_text(errors="replace"))
    request = server.bodies("/ok")[0]
    Webhook(SECRET).verify(request.body, request.headers)
    assert "cron tick.minutely: enqueued job" in log_path.read_text()
    with psycopg.connect(db) as conn:
        keys = [r[0] for r in conn.execute("SELECT unique_key FROM conveyor.jobs").fetchall()]
    assert keys and all(k.startswith("cron:tick.minutely@") for k in keys)
    assert len(keys) == len(set(keys))
