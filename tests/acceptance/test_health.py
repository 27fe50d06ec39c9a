"""A worker's /healthz and /readyz on the metrics port, asked of real `conveyor worker`
processes: ready once started, unhealthy while a handler blocks the event loop or while the
database cannot be reached past the limit, and healthy again when that passes."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import WorkerProcess
from tests.helpers import wait_until
from tests.pgbouncer import Bouncer, pgbouncer

pytestmark = pytest.mark.slow

APP = "tests.acceptance.bouncer_app:app"


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill_all()
        print(f"--- worker {worker.pid} {' '.join(worker.args)}:\n{worker.log()}")


def _start(workers: list[WorkerProcess], url: str, path: Path, *args: str) -> WorkerProcess:
    worker = WorkerProcess(url, ("--metrics-port", "0", *args), path, app=APP)
    workers.append(worker)
    return worker


def _port(worker: WorkerProcess) -> int:
    found = wait_until(lambda: re.search(r"metrics at http://127\.0\.0\.1:(\d+)/", worker.log()))
    return int(found[1])


def probe(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _answers(port: int, path: str, status: int, text: str) -> bool:
    got, body = probe(port, path)
    return got == status and text in body


def test_ready_once_started_and_unhealthy_while_a_handler_blocks_the_loop(
    db: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = _start(workers, db, tmp_path / "w.log", "--health-stall", "2")
    port = _port(worker)
    wait_until(lambda: _answers(port, "/readyz", 200, "ok"))
    assert probe(port, "/healthz") == (200, "ok\n")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT conveyor.enqueue('block_loop', '{\"seconds\": 6}')")
    wait_until(lambda: _answers(port, "/healthz", 503, "event loop stalled for"))
    assert probe(port, "/readyz")[0] == 503
    # the handler returns, the loop turns again
    wait_until(lambda: _answers(port, "/healthz", 200, "ok"))
    wait_until(lambda: _answers(port, "/readyz", 200, "ok"))
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_unhealthy_while_the_database_is_unreachable_past_the_limit_then_healthy(
    db: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    with pgbouncer(db) as bouncer:
        worker = _start(
            workers, bouncer.url, tmp_path / "w.log", "--pgbouncer", "--health-database", "3"
        )
        port = _port(worker)
        wait_until(lambda: _answers(port, "/readyz", 200, "ok"))
        _cut_and_restore(bouncer, port)


def _cut_and_restore(bouncer: Bouncer, port: int) -> None:
    bouncer.stop()  # every connection of the worker is gone, and no new one can be made
    wait_until(lambda: _answers(port, "/healthz", 503, "database unreachable for"))
    assert probe(port, "/readyz")[0] == 503
    bouncer.start()
    wait_until(lambda: _answers(port, "/healthz", 200, "ok"))
    wait_until(lambda: _answers(port, "/readyz", 200, "ok"))


def test_a_worker_waiting_for_its_database_is_alive_but_not_ready(
    workers: list[WorkerProcess], tmp_path: Path
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    worker = _start(workers, url, tmp_path / "w.log", "--health-database", "3")
    port = _port(worker)
    status, body = probe(port, "/readyz")
    assert (status, body) == (503, "starting: checking the schema and registering\n")
    wait_until(lambda: _answers(port, "/healthz", 503, "database unreachable for"))
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
