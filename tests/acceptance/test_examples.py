"""Every script in examples/ runs to completion against the test database, so docs cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each example and one line its output must contain.
EXAMPLES = {
    "alerts.py": "alerts: backlog fired and resolved; 3 failed reports alerted, resolved",
    "bad_jobs.py": "bad jobs: 5 ordinary jobs completed, 6 bad jobs failed",
    "quickstart.py": "quickstart.add: completed, result 5",
    "cron.py": "cron.every_minute: 5 jobs: tick for",
    "transactional_enqueue.py": "do not exist",
    "sqlalchemy_enqueue.py": "does not exist",
    "retries.py": "retries.flaky: completed after 3 attempt(s)",
    "queue_controls.py": "backpressure: emails refused 200 more jobs",
    "flows.py": "flow report: 245 sold in 3 of 3 regions",
    "idempotency.py": "payment: 3 jobs, 1 payment row written",
    "dashboard_mount.py": "dashboard mounted at /admin/jobs: 1 job(s) listed in queue emails",
    "cron_endpoint.py": "cron endpoint: tick.every5 called the route 3 times, signed",
    "delivery.py": "delivery: send-receipt completed on attempt 1, result {'receipt': 'sent'",
    "workflows_checkout.py": "checkout 42: completed, shipped by DHL",
    "workflows_approval.py": "expense E-17: approved by manager@example.com, paid 420 EUR",
    "workflows_onboarding.py": "onboarding: completed, 3 messages, each sent once: True",
    "observability.py": 'conveyor_jobs_completed_total{queue="default",task="obs.resize"} 2.0',
}

# Known bugs that make an example fail today; strict, so the fix turns the marker red.
KNOWN_BROKEN: dict[str, str] = {}


def _cases() -> list[object]:
    cases: list[object] = []
    for name in sorted(EXAMPLES):
        marks = [pytest.mark.slow]
        if name in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[name], strict=True))
        cases.append(pytest.param(name, EXAMPLES[name], marks=marks, id=name))
    return cases


def test_every_example_is_tested() -> None:
    on_disk = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert on_disk == set(EXAMPLES)


@pytest.mark.parametrize(("name", "expected"), _cases())
def test_example_runs_to_completion(db: str, name: str, expected: str) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": db}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert expected in done.stdout, f"{name} printed:\n{done.stdout}"
