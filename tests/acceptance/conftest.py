"""Fixtures for tests that run real `conveyor worker` processes against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import conveyor
from tests.acceptance import shop_app
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.acceptance.shop_app:app"
# Short leases and grace keep crash and shutdown tests quick; a test's own options win.
FAST = ("--lease", "2", "--shutdown-grace", "2")


class WorkerProcess:
    """A `conveyor worker` command running in its own process, logging to a file."""

    def __init__(
        self,
        db: str,
        args: tuple[str, ...],
        log_path: Path,
        *,
        app: str = APP,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "conveyor", "worker", app, *FAST, *args],
                cwd=ROOT,
                env={**os.environ, **(env or {}), "CONVEYOR_DATABASE_URL": db},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_all(self) -> None:
        """SIGKILL the process and every process it started (the children of --processes)."""
        for pid in [*_descendants(self.pid), self.pid]:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def shop(db: str) -> Iterator[conveyor.Conveyor]:
    """The shop app on the clean test database, with empty side-effect tables."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(shop_app.SCHEMA)
        conn.execute(
            "TRUNCATE acceptance.executions, acceptance.gates, acceptance.spans, acceptance.effects"
        )
    yield shop_app.app
    shop_app.app.close()


@pytest.fixture
def start_worker(shop: conveyor.Conveyor, db: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start `conveyor worker` processes on the shop app; all are killed after the test, and
    their logs are printed when it fails."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(db, args, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill_all()
        print(f"--- worker {worker.pid} {' '.join(worker.args)}:\n{worker.log()}")


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def scalar(db: str, query: str, *params: Any) -> Any:
    """The first column of the first row of `query` (None when there is no row).

    A server whose connections are all taken (SQLSTATE 53300: the machine's Postgres shared
    with other test runs, its max_connections reached for a moment) is asked again for up to
    30 s: the test's own check must not fail for what the workers under test survive."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                row = conn.execute(query, params).fetchone()
            return row[0] if row else None
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def job_state(db: str, job_id: int) -> str | None:
    state: str | None = scalar(db, "SELECT state FROM conveyor.jobs WHERE id = %s", job_id)
    return state


def wait_for_state(db: str, job_id: int, state: str, *, timeout: float = 20) -> None:
    """Poll until the job reaches `state`."""
    try:
        wait_until(lambda: job_state(db, job_id) == state, timeout=timeout)
    except AssertionError:
        raise AssertionError(
            f"job {job_id} is {job_state(db, job_id)!r}, not {state!r}, after {timeout}s"
        ) from None


def wait_for_workers(db: str, count: int, *, timeout: float = 20) -> None:
    """Poll until `count` workers have registered (they claim from then on)."""
    wait_until(lambda: scalar(db, "SELECT count(*) FROM conveyor.worker") == count, timeout=timeout)


def wait_for_lease_to_expire(db: str, job_id: int, *, timeout: float = 20) -> None:
    """Poll until the running job's lease is past (by the database clock)."""
    wait_until(
        lambda: scalar(
            db, "SELECT lease_expires_at < now() FROM conveyor.jobs WHERE id = %s", job_id
        ),
        timeout=timeout,
    )


def executions(db: str, job_id: int) -> list[tuple[int, int]]:
    """(attempt, pid) of every execution of a job, in order."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT attempt, pid FROM acceptance.executions WHERE job_id = %s ORDER BY at",
            (job_id,),
        ).fetchall()
    return [(attempt, pid) for attempt, pid in rows]


def open_gate(db: str, gate: str) -> None:
    """Let jobs held on `gate` finish."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO acceptance.gates (name) VALUES (%s)", (gate,))
