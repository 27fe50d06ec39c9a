"""A network cut: a worker in its own network namespace reaches Postgres through a veth pair;
its link is cut mid-job. Another worker rescues the job after the lease; when the link comes
back the cut worker carries on, without completing the job it no longer owns.

Needs root and `ip netns` (skipped without them, except under CI=true, where it fails). The
worker in the namespace reaches the host's Postgres through a small TCP relay on the host side
of the veth pair (the bridge of tests/netns.py, which test_many_hosts.py uses too), so the
database itself keeps listening where it did: 127.0.0.1, or the unix socket of the embedded
server."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import conveyor
from tests.acceptance import shop_app
from tests.acceptance.conftest import (
    WorkerProcess,
    executions,
    open_gate,
    scalar,
    wait_for_state,
    wait_for_workers,
)
from tests.conftest import _with_dbname
from tests.helpers import component_missing, wait_until
from tests.netns import Host, Network
from tests.pgcluster import ToolMissingError

pytestmark = pytest.mark.slow


@pytest.fixture
def site() -> Iterator[tuple[Network, Host]]:
    """A bridge on the host side and one host (a network namespace) linked to it."""
    try:
        network = Network()
    except ToolMissingError as exc:
        component_missing(str(exc))
    try:
        yield network, network.add_host()
    finally:
        network.close()


class Relay:
    """Forwards `listen`:port to the database's own address (host and port, or a unix socket's
    path), in a background thread."""

    def __init__(self, target: tuple[str, int] | str, listen: str) -> None:
        self._target = target
        self._listen = listen
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, self._listen, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(self._target, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def _database_address(url: str) -> tuple[str, int] | str:
    """Where the test database listens: (host, port), or the path of its unix socket."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "127.0.0.1")
    port = int(info.get("port") or 5432)
    return os.path.join(host, f".s.PGSQL.{port}") if host.startswith("/") else (host, port)


def test_cut_worker_is_rescued_and_recovers_without_completing_a_lost_job(
    shop: conveyor.Conveyor, db: str, site: tuple[Network, Host], tmp_path: Path
) -> None:
    network, host = site
    relay = Relay(_database_address(db), network.server_ip)
    cut_url = _with_dbname(
        psycopg.conninfo.make_conninfo(db, host=network.server_ip, port=str(relay.port)),
        str(psycopg.conninfo.conninfo_to_dict(db)["dbname"]),
    )
    workers: list[WorkerProcess] = []
    try:
        cut = WorkerProcess(
            cut_url,
            ("--concurrency", "2"),
            tmp_path / "cut.log",
            prefix=host.prefix(),
        )
        workers.append(cut)
        wait_for_workers(db, 1)
        gate = "net-cut"
        job = shop_app.sleepy.enqueue(seconds=60, gate=gate)
        wait_until(lambda: executions(db, job) == [(1, cut.pid)], timeout=20)

        network.cut(host)  # the cut: packets vanish, no reset
        other = WorkerProcess(db, ("--concurrency", "2"), tmp_path / "other.log")
        workers.append(other)
        wait_until(lambda: len(executions(db, job)) == 2, timeout=30)
        assert executions(db, job)[1] == (2, other.pid)
        open_gate(db, gate)
        wait_for_state(db, job, "completed", timeout=30)

        network.restore(host)  # the link is back
        # The cut worker's own attempt ends (its gate is open too), but its outcome is
        # refused: the job stays completed by the other worker.
        wait_until(
            lambda: "outcome refused" in cut.log() or "lease was lost" in cut.log(), timeout=60
        )
        completed_by = scalar(db, "SELECT worker_id FROM conveyor.jobs WHERE id = %s", job)
        assert f":{other.pid}:" in completed_by
        assert cut.alive(), "the cut worker recovered instead of dying"

        # ...and works again: with the other worker gone, it runs the next job.
        other.kill_all()
        later = shop_app.record.enqueue(n=1)
        wait_for_state(db, later, "completed", timeout=60)
        assert executions(db, later) == [(1, cut.pid)]
    finally:
        for worker in workers:
            worker.kill_all()
            print(f"--- {worker.log_path.name}:\n{worker.log()}")
        relay.stop()
