"""Another language enqueues through the SQL function: node-postgres inside BEGIN/COMMIT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    folder = tmp_path_factory.mktemp("node")
    for name in ("package.json", "enqueue.mjs"):
        shutil.copy(ROOT / "examples" / "node" / name, folder / name)
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if installed.returncode != 0:
        pytest.skip(f"npm install failed (registry unreachable?): {installed.stderr[-300:]}")
    return folder


def test_committed_job_exists_and_rolled_back_one_does_not(
    db: str, node_example: Path
) -> None:
    result = subprocess.run(
        ["node", "enqueue.mjs"],
        cwd=node_example,
        env={**os.environ, "DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ids = json.loads(result.stdout)
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT id, task, args FROM conveyor.jobs").fetchall()
    assert rows == [(ids["committed"], "shop.send_receipt", {"order_id": 42})]
    assert ids["rolled_back"] != ids["committed"]
