"""`conveyor demo` runs to the end: on the configured database, and with nothing configured on
the embedded Postgres it starts (and stops) in the current directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def _demo(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--orders", "20"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _processes_mentioning(path: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found


def test_demo_runs_to_the_end_on_the_configured_database(db: str) -> None:
    done = _demo(ROOT, {**os.environ, "CONVEYOR_DATABASE_URL": db})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done in" in done.stdout and "NOT DONE" not in done.stdout, done.stdout
    assert "18 orders placed, 2 rolled back" in " ".join(done.stdout.split())


def test_demo_without_a_database_url_runs_on_an_embedded_postgres(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DATABASE_URL"}
    # an empty directory: conveyor comes from the installed package, Postgres from pgserver
    done = _demo(tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done in" in done.stdout, done.stdout
    assert "using the embedded Postgres" in done.stderr
    assert (tmp_path / ".conveyor" / "pgdata").is_dir()
    wait_until(lambda: not _processes_mentioning(tmp_path / ".conveyor"), timeout=20)
