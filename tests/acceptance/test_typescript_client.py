"""The TypeScript client's own suite (clients/typescript: `npm test`, Node's test runner) passes
against this session's migrated database: enqueue in a node-postgres or Drizzle transaction,
signatures cross-checked with the Standard Webhooks reference library, the route handler's
status mapping, and the docs' examples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT
from tests.helpers import npm_install, require_tool

pytestmark = pytest.mark.slow

PACKAGE = Path("clients") / "typescript"


@pytest.fixture(scope="session")
def typescript_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of clients/typescript (and the doc its tests compare with the examples) with its
    locked dependencies installed by `npm ci`."""
    for tool in ("node", "npm"):
        require_tool(tool, "Debian: apt-get install nodejs npm")
    root = tmp_path_factory.mktemp("typescript-client")
    folder = root / PACKAGE
    shutil.copytree(
        ROOT / PACKAGE, folder, ignore=shutil.ignore_patterns("node_modules", "dist", "*.tgz")
    )
    (root / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "typescript.md", root / "docs" / "typescript.md")
    # within the test's own timeout, so an unreachable registry is reported as such
    npm_install(folder, ["npm", "ci", "--no-audit", "--no-fund"], timeout=120)
    return folder


@pytest.mark.timeout(300)
def test_typescript_client_suite_passes_against_the_test_database(
    db: str, typescript_client: Path
) -> None:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    done = subprocess.run(
        ["npm", "test"],
        cwd=typescript_client,
        env={**env, "CONVEYOR_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    assert "# fail 0" in output, output
    # the Postgres tests ran rather than skipped
    assert "CONVEYOR_DATABASE_URL is not set" not in output, output
    assert re.search(r"ok \d+ - rollback leaves no job", output), output
    assert re.search(r"ok \d+ - rollback leaves no run and no event", output), output
