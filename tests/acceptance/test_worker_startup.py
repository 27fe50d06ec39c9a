"""A worker that cannot reach its database at start-up: it waits for a server that may come
back, stops at once on SIGTERM while waiting, and gives up at once, in one line, when the
database can never be reached as configured."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import WorkerProcess
from tests.conftest import _with_dbname
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def test_sigterm_while_waiting_for_the_database_exits_promptly(tmp_path: Path) -> None:
    worker = WorkerProcess(
        "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=30", (), tmp_path / "w.log"
    )
    try:
        wait_until(lambda: "cannot reach the database" in worker.log(), timeout=30)
        sent = time.monotonic()
        worker.send(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
        assert time.monotonic() - sent < 5, worker.log()
        assert "Traceback" not in worker.log()
    finally:
        worker.kill_all()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("database", 'database "conveyor_no_such_db" does not exist; create it'),
        ("role", 'role "conveyor_no_such_role" does not exist; create it'),
    ],
)
def test_a_database_that_can_never_be_reached_fails_at_once_in_one_line(
    db: str, tmp_path: Path, fault: str, expected: str
) -> None:
    url = _with_dbname(db, "conveyor_no_such_db")
    if fault == "role":
        info = psycopg.conninfo.conninfo_to_dict(db)
        info["user"] = "conveyor_no_such_role"
        url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    worker = WorkerProcess(url, (), tmp_path / "w.log")
    try:
        code = worker.wait(timeout=20)
    finally:
        worker.kill_all()
    log = worker.log()
    assert code == 1, log
    assert expected in log
    assert "Traceback" not in log
    assert "retrying" not in log
