"""`conveyor endpoint …` and `conveyor deliver`: endpoints managed from the command line, and a
delivery worker with no application module, in two processes, draining a queue to a local
HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from click.testing import CliRunner, Result
from standardwebhooks import Webhook

from conveyor.cli import cli
from tests.acceptance.conftest import ROOT, _descendants, scalar
from tests.delivery_server import DeliveryServer, delivery_server
from tests.helpers import wait_until
from tests.tls_server import TlsServer, tls_server

T = TypeVar("T")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _in_thread(server: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Run the async context manager `server()` on its own event loop in a thread; yield what
    it gives until the test ends."""
    ready = threading.Event()
    stop = threading.Event()
    holder: list[T] = []

    async def serve() -> None:
        async with server() as running:
            holder.append(running)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder[0]
    stop.set()
    thread.join(10)


@pytest.fixture
def server() -> Iterator[DeliveryServer]:
    """The local HTTP server, on its own event loop in a thread."""
    yield from _in_thread(delivery_server)


def _run(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db})


def test_endpoint_commands_add_show_rotate_and_remove_without_printing_secrets(db: str) -> None:
    result = _run(
        db,
        "endpoint",
        "add",
        "receipt",
        "--url",
        "http://127.0.0.1:1/r",
        "--secret",
        SECRET,
        "--timeout",
        "5",
        "--queue",
        "hooks",
    )
    assert result.exit_code == 0, result.output
    assert "added endpoint receipt" in result.stdout
    assert "loopback" in result.stderr and "--allow-network" in result.stderr
    assert _run(db, "endpoint", "set", "receipt", "--add-secret", "env:NEXT").exit_code == 0
    shown = _run(db, "endpoint", "show", "receipt").stdout
    listed = _run(db, "endpoint", "list", "--json").stdout
    for text in (shown, listed):
        assert SECRET not in text and SECRET[:10] in text and "env:NEXT" in text
    assert "hooks" in shown and "5.0" in shown
    again = _run(db, "endpoint", "add", "receipt", "--url", "https://example.com/", "--secret", "x")
    assert again.exit_code == 1 and "endpoint set receipt" in again.output
    assert _run(db, "endpoint", "remove", "receipt").exit_code == 0
    gone = _run(db, "endpoint", "show", "receipt")
    assert gone.exit_code == 1 and "no endpoint named 'receipt'" in gone.output


def test_conveyor_deliver_in_two_processes_delivers_each_job_once(
    db: str, server: DeliveryServer, tmp_path: Path
) -> None:
    result = _run(
        db,
        "endpoint",
        "add",
        "receipt",
        "--url",
        server.url("/ok"),
        "--secret",
        SECRET,
        "--queue",
        "hooks",
    )
    assert result.exit_code == 0, result.output
    with psycopg.connect(db, autocommit=True) as conn:
        for n in range(40):
            conn.execute("SELECT conveyor.enqueue('receipt', %s::jsonb)", (f'{{"n": {n}}}',))
    _deliver_until_completed(
        db,
        ["--queues", "hooks", "--processes", "2", "--concurrency", "4",
         "--allow-network", "127.0.0.0/8"],
        completed=40,
        log_path=tmp_path / "deliver.log",
    )  # fmt: skip
    ids = [r.headers["webhook-id"] for r in server.bodies("/ok")]
    assert len(ids) == len(set(ids)) == 40
    for request in server.bodies("/ok"):
        Webhook(SECRET).verify(request.body, request.headers)


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsServer]:
    """The Node TLS server (h2 and http/1.1 by ALPN), on its own event loop in a thread."""
    yield from _in_thread(lambda: tls_server(tmp_path))


@pytest.mark.parametrize(("flags", "version"), [((), "2.0"), (("--no-http2",), "1.1")])
def test_deliver_speaks_http2_to_https_unless_told_not_to(
    db: str, tls: TlsServer, tmp_path: Path, flags: tuple[str, ...], version: str
) -> None:
    result = _run(db, "endpoint", "add", "v", "--url", tls.url("/version"), "--secret", SECRET)
    assert result.exit_code == 0, result.output
    with psycopg.connect(db, autocommit=True) as conn:
        for n in range(5):
            conn.execute("SELECT conveyor.enqueue('v', %s::jsonb)", (f'{{"n": {n}}}',))
    _deliver_until_completed(
        db,
        ["--allow-network", "127.0.0.1/32", "--ca-file", tls.ca_file, *flags],
        completed=5,
        log_path=tmp_path / "deliver.log",
    )
    wait_until(lambda: len(tls.bodies("/version")) == 5)
    assert {r.version for r in tls.bodies("/version")} == {version}
    for request in tls.bodies("/version"):
        Webhook(SECRET).verify(request.body, request.headers)


def _deliver_until_completed(db: str, args: list[str], *, completed: int, log_path: Path) -> None:
    """Run `conveyor deliver ARGS` until `completed` jobs are completed, then stop it with
    SIGTERM: it must exit 0. Whatever it started is killed in the end, and its log printed."""
    command = [sys.executable, "-m", "conveyor", "deliver", "--shutdown-grace", "2", *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_DATABASE_URL": db},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        done = "SELECT count(*) FROM conveyor.jobs WHERE state = 'completed'"
        wait_until(lambda: scalar(db, done) == completed)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        for pid in [*_descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(log_path.read_text(errors="replace"))
