"""Fixtures for tests that run real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.shop_app import SIDE_EFFECTS

ROOT = Path(__file__).resolve().parents[2]

StartWorker = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def side_effects(db: str) -> str:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(SIDE_EFFECTS)
        conn.execute("TRUNCATE acceptance.executions")
    return db


@pytest.fixture
def start_worker(side_effects: str) -> Iterator[StartWorker]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, log: Path | None = None) -> subprocess.Popen[str]:
        env = {**os.environ, "CONVEYOR_DATABASE_URL": side_effects, "PYTHONPATH": str(ROOT)}
        out: Any = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tests.acceptance.shop_app:app", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=10)


def scalar(db: str, query: str, *params: Any) -> Any:
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None
