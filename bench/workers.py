"""Real worker processes (`python -m conveyor worker bench.app:app ...`) and py-spy on them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.app import QUEUE
from bench.common import ROOT, log

LOG_DIR = Path(tempfile.gettempdir()) / "conveyor-bench"


class WorkerGroup:
    """`conveyor worker` with --processes N, started first and stopped with SIGTERM."""

    def __init__(
        self,
        url: str,
        *,
        processes: int = 1,
        concurrency: int = 100,
        env: dict[str, str] | None = None,
        label: str = "worker",
    ) -> None:
        self.url = url
        self.processes = processes
        self.concurrency = concurrency
        self.env = env or {}
        self.label = label
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.log_path = LOG_DIR / f"{label}-{int(time.time() * 1000)}.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "conveyor", "worker", "bench.app:app", "--queues", QUEUE]
        cmd += ["--concurrency", str(self.concurrency)]
        if self.processes > 1:
            cmd += ["--processes", str(self.processes)]
        return cmd

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CONVEYOR_DATABASE_URL": self.url, **self.env}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(
        self, conn: psycopg.Connection[Any], timeout: float = 60.0, *, listening: bool = True
    ) -> list[int]:
        """Until every process registered (conveyor.worker) and, unless `listening` is False (a
        worker that polls, behind PgBouncer), LISTENs; return worker pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            pids = [int(r[0]) for r in conn.execute("SELECT pid FROM conveyor.worker").fetchall()]
            listeners = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'conveyor-listener' AND query ILIKE 'LISTEN%'"
            ).fetchone()
            listen_ok = not listening or bool(listeners and listeners[0] >= self.processes)
            if len(pids) >= self.processes and listen_ok:
                self.pids = pids
                time.sleep(0.3)  # LISTEN is up; let the producer's first (empty) claim finish
                return pids
            time.sleep(0.05)
        raise RuntimeError(f"workers not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM, wait; SIGKILL whatever of ours is left after `timeout`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.label}: no exit {timeout:.0f}s after SIGTERM; killing it")
            for pid in {self.proc.pid, *self.pids}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            code = self.proc.wait(10)
        # children of a --processes supervisor: make sure none outlives it
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc = None
        return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours that was not reaped yet counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


class Profiler:
    """py-spy record -f raw on one process, stopped with SIGINT (py-spy then writes its file)."""

    def __init__(self, pid: int, out: Path, *, rate: int = 250, max_seconds: int = 600) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.max_seconds = max_seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(py_spy), "record", "-f", "raw", "-o", str(self.out), "--pid", str(self.pid)]
        cmd += ["--rate", str(self.rate), "--duration", str(self.max_seconds)]
        cmd += ["--nonblocking", "--full-filenames"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach before the clock starts

    def stop(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        self.proc = None
        return err.decode(errors="replace")
