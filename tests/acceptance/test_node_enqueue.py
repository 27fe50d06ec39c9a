"""Another language enqueues through the SQL function: node-postgres commits one job and rolls
back another (examples/node), and a Python worker runs the committed one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

import conveyor
from tests.acceptance.conftest import ROOT, StartWorker, executions, wait_for_state
from tests.helpers import npm_install, require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/node with its dependencies installed."""
    for tool in ("node", "npm"):
        require_tool(tool, "Debian: apt-get install nodejs npm")
    folder = tmp_path_factory.mktemp("node-example")
    shutil.copytree(
        ROOT / "examples" / "node",
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("node_modules"),
    )
    # within the test's own 120 s, so an unreachable registry is reported as such
    npm_install(
        folder, ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"], timeout=90
    )
    return folder


def test_job_enqueued_from_node_commits_with_its_transaction_and_a_python_worker_runs_it(
    shop: conveyor.Conveyor, db: str, start_worker: StartWorker, node_example: Path
) -> None:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    done = subprocess.run(
        ["node", "enqueue.mjs", "record", '{"n": 42}', "from-node"],
        cwd=node_example,
        env={**env, "CONVEYOR_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)
    with psycopg.connect(db, autocommit=True) as conn:
        jobs = conn.execute("SELECT id, task, args, state, queue FROM conveyor.jobs").fetchall()
    assert jobs == [(ids["committed"], "record", {"n": 42}, "available", "from-node")]
    assert ids["rolled_back"] > ids["committed"]  # its id was drawn, then rolled back

    worker = start_worker("--queues", "from-node")
    wait_for_state(db, ids["committed"], "completed")
    assert executions(db, ids["committed"]) == [(1, worker.pid)]
    assert shop.client().get_job(ids["committed"]).result == 42
