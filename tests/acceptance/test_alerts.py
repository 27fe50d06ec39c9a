"""Alerts with real `conveyor worker` processes: failed jobs reach a webhook once, grouped, and
after the leader is killed the next leader resolves the episode without firing it again."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import WorkerProcess, scalar, wait_for_workers
from tests.alert_hook import Hook
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

APP = "tests.acceptance.alerts_app:app"
JOBS = 20


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def _texts(hook: Hook) -> list[str]:
    return [str(body["text"]) for body in hook.bodies]


def test_failures_fire_once_and_a_new_leader_resolves_without_firing_again(
    db: str, tmp_path: Path, hook: Hook
) -> None:
    env = {"ALERTS_WEBHOOK_URL": hook.url}
    workers = [
        WorkerProcess(
            db, ("--queues", "alerts"), tmp_path / f"alerts-worker-{n}.log", app=APP, env=env
        )
        for n in range(2)
    ]
    try:
        wait_for_workers(db, 2, timeout=30)
        with psycopg.connect(db, autocommit=True) as conn:
            for n in range(JOBS):
                conn.execute(
                    "SELECT conveyor.enqueue('alerts.boom', jsonb_build_object('n', %s::int),"
                    " 'alerts')",
                    (n,),
                )
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM conveyor.jobs WHERE state = 'failed'") == JOBS,
            timeout=30,
        )
        wait_until(lambda: _fired_jobs(hook) == JOBS, timeout=30)
        assert all("[FIRING] failures (alerts/alerts.boom)" in t for t in _texts(hook))

        # the LogChannel logs in the process that delivered: the leader
        leader = next(w for w in workers if "alert firing failures" in w.log())
        leader.kill_all()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DELETE FROM conveyor.job_done WHERE state = 'failed'")
        wait_until(lambda: any("[RESOLVED]" in t for t in _texts(hook)), timeout=30)
        survivor = next(w for w in workers if w is not leader)
        survivor.send(signal.SIGTERM)
        assert survivor.wait(timeout=30) == 0
    finally:
        for worker in workers:
            if worker.alive():
                worker.kill_all()
            print(f"--- alerts worker {worker.pid}:\n{worker.log()}")
    resolved = [t for t in _texts(hook) if "[RESOLVED]" in t]
    assert len(resolved) == 1
    assert _fired_jobs(hook) == JOBS, "no failure was alerted twice"


def _fired_jobs(hook: Hook) -> int:
    """Failed jobs counted over every firing message ("N job(s) of ...")."""
    total = 0
    for text in _texts(hook):
        if "[FIRING]" in text:
            match = re.search(r"\): (\d+) job\(s\) of ", text)
            assert match, text
            total += int(match[1])
    return total
