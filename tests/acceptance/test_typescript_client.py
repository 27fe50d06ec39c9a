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
from tests.helpers import component_missing, require_tool

pytestmark = pytest.mark.slow

PACKAGE = Path("clients") / "typescript"
# npm's error codes when it cannot reach the registry at all (DNS, refused, timed out)
_UNREACHABLE = re.compile(
    r"\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH"
    r"|ERR_SOCKET_TIMEOUT)\b"
)


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
    try:
        installed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            # within the test's own timeout, so an unreachable registry is reported as such
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        component_missing("npm ci timed out: the npm registry is unreachable from here")
    if installed.returncode != 0:
        unreachable = _UNREACHABLE.search(installed.stderr)
        if unreachable:
            component_missing(f"the npm registry is unreachable from here ({unreachable.group()})")
        pytest.fail(f"npm ci failed:\n{installed.stdout}\n{installed.stderr}")
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
