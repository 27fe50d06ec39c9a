"""The short chaos run: 5,000 jobs, three worker processes, kills, stops past the lease and
(where the machine's cluster can be restarted) Postgres restarts; no job lost, the side effect
exactly once, no stale completion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.chaos import can_restart_postgres, run

pytestmark = pytest.mark.slow


# The run gives up on its own after 300 s and still checks what happened; pytest's default
# 120 s cut it short on a machine with several suites at once.
@pytest.mark.timeout(420)
def test_no_job_is_lost_and_every_side_effect_happens_once(db: str, tmp_path: Path) -> None:
    restart = can_restart_postgres(db) and os.environ.get("CONVEYOR_CHAOS_PG_RESTART") == "1"
    report = run(db, jobs=5_000, workers=3, log_dir=tmp_path, restart_pg=restart, seed=7)
    print(report.lines())
    assert report.kills + report.stops > 0
    assert report.violations() == 0, report.lines() + "\n" + "\n".join(report.notes)
