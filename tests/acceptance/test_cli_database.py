"""Every command, pointed at a database it cannot use, stops at once with one line that names
the cause and the fix: no traceback, no wait for the connection pool's timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psycopg
import pytest
from click.testing import CliRunner

from conveyor.cli import cli
from conveyor.database import trouble_of
from tests.acceptance.conftest import ROOT
from tests.conftest import _with_dbname

COMMANDS = [
    ["migrate"],
    ["status"],
    ["jobs", "list"],
    ["jobs", "show", "1"],
    ["retry", "1"],
    ["cancel", "1"],
    ["enqueue", "shop.send_receipt"],
    ["queue", "list"],
    ["queue", "pause", "emails"],
    ["cron", "list"],
    ["alerts", "list"],
    ["dashboard", "--port", "0"],
]
#: A permanent error is reported well within this; the pool alone would wait 10 s.
FAST = 3.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["server down", "no database", "no role", "no scheme"])
def bad_url(request: pytest.FixtureRequest, database_url: str) -> tuple[str, str]:
    """A database URL that cannot work, and the cause the one line must name."""
    cause: str = request.param
    if cause == "server down":
        url = f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"
        return url, "no Postgres server answers"
    if cause == "no database":
        url = _with_dbname(database_url, "conveyor_no_such_db")
        return url, 'database "conveyor_no_such_db" does not exist; create it'
    if cause == "no role":
        url = psycopg.conninfo.make_conninfo(database_url, user="conveyor_no_such_role")
        return url, 'role "conveyor_no_such_role" does not exist; create it'
    return "127.0.0.1:5432/postgres", "the database URL is malformed"


def test_every_command_names_the_cause_in_one_line_at_once(bad_url: tuple[str, str]) -> None:
    url, cause = bad_url
    for command in COMMANDS:
        started = time.monotonic()
        result = CliRunner().invoke(cli, command, env={"CONVEYOR_DATABASE_URL": url})
        took = time.monotonic() - started
        assert result.exit_code == 1, (command, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (command, result.exception)
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: cannot use the database: "), (command, line)
        assert cause in line, (command, line)
        assert "CONVEYOR_DATABASE_URL" in line, (command, line)
        assert took < FAST, (command, took)


def _worker(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "tests.acceptance.shop_app:app", *args],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_a_worker_stops_at_once_on_a_database_that_does_not_exist(database_url: str) -> None:
    url = _with_dbname(database_url, "conveyor_no_such_db")
    for extra in ((), ("--processes", "2")):  # the supervisor refuses before starting any
        done = _worker(url, *extra)
        assert done.returncode == 1, (extra, done.stderr)
        errors = {line for line in done.stderr.splitlines() if line.startswith("Error:")}
        assert errors == {
            'Error: cannot use the database: database "conveyor_no_such_db" does not exist;'
            " create it (createdb conveyor_no_such_db) or fix the database name in the"
            " database URL (--database-url or CONVEYOR_DATABASE_URL)"
        }, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL: '
            ' password authentication failed for user "app"',
            'password authentication failed for user "app"; fix the password in the database URL',
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed:'
            " fe_sendauth: no password supplied",
            "the server asks for a password and none was given",
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL: '
            " sorry, too many clients already",
            "the server refuses more connections",
        ),
    ],
)
def test_libpq_messages_without_a_server_to_cause_them(message: str, expected: str) -> None:
    # This server trusts every local connection, so a wrong password cannot be provoked here.
    text = str(trouble_of(psycopg.OperationalError(message)))
    assert text.startswith("cannot use the database: ")
    assert expected in text
