"""The TypeScript client's own suite (clients/typescript: `npm test`, Node's test runner) passes
against this session's migrated database: enqueue in a node-postgres or Drizzle transaction,
signatures cross-checked with the Standard Webhooks reference library, the route handler's
status mapping, and the docs' examples."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import conveyor
from conveyor.endpoints import Endpoint
from conveyor.job import Job, JobState
from conveyor.worker.delivery import Deliverer
from conveyor.worker.delivery.network import AllowList
from conveyor.worker.outcome import Failed, Succeeded
from tests.acceptance.conftest import ROOT
from tests.api.server import conveyor_api
from tests.helpers import eventually, fast_config, npm_install, require_tool, running_worker

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
    client = conveyor.Conveyor(db).client()
    tokens = {s: client.create_token(f"ts-{s}", [s])[1] for s in ("enqueue", "read", "admin")}
    with conveyor_api(db, "--rate-limit", "0") as base:  # ConveyorHttp's tests use a real API
        done = subprocess.run(
            ["npm", "test"],
            cwd=typescript_client,
            env={
                **env,
                "CONVEYOR_DATABASE_URL": db,
                "CONVEYOR_API_URL": base,
                **{f"CONVEYOR_API_{s.upper()}_TOKEN": t for s, t in tokens.items()},
            },
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
    assert "CONVEYOR_API_URL is not set" not in output, output
    assert re.search(r"ok \d+ - http enqueue then getJob", output), output


@pytest.mark.timeout(120)
def test_generated_api_types_match_the_live_document(db: str, typescript_client: Path) -> None:
    """clients/typescript/openapi.json is the live app's document, and src/openapi.ts is what
    `npm run gen:api` makes of it: regenerate both (`npm run gen:openapi && npm run gen:api`)
    when this fails."""
    from starlette.testclient import TestClient

    from conveyor.api import create_app

    with TestClient(create_app(conveyor.Conveyor(db))) as api:
        live = api.get("/openapi.json").json()
    live["servers"] = [{"url": "/"}]
    checked_in = json.loads((ROOT / PACKAGE / "openapi.json").read_text())
    assert checked_in == live, (
        "openapi.json drifted: run `npm run gen:openapi` in clients/typescript"
    )
    (typescript_client / "openapi.json").write_text(json.dumps(live, indent=2))
    done = subprocess.run(
        ["npm", "run", "gen:api"], cwd=typescript_client, capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    generated = (typescript_client / "src" / "openapi.ts").read_text()
    assert generated == (ROOT / PACKAGE / "src" / "openapi.ts").read_text(), (
        "src/openapi.ts drifted from openapi.json: run `npm run gen:api` in clients/typescript"
    )


@pytest.mark.timeout(120)
async def test_deliveries_signed_by_the_python_worker_verify_in_the_typescript_client(
    typescript_client: Path,
) -> None:
    """The worker's real delivery path (body, headers, signatures under a `whsec_` secret and
    a rotation's second, plain secret) against `verifyDelivery` in Node: what the route sees is
    the job as enqueued; a receiver with another secret answers 401 and the job is retried."""
    built = subprocess.run(
        ["npm", "run", "build"], cwd=typescript_client, capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    index = typescript_client / "dist" / "src" / "index.js"
    old, new = "whsec_" + base64.b64encode(b"k" * 32).decode(), "rotated-plain-secret"
    now = datetime.now(UTC)
    job = Job(
        id=9007199254740993, task="send-receipt", queue="mail", state=JobState("running"),
        priority=0, attempt=2, max_attempts=5,
        args={"order": 42, "name": "Zoë ✓", "lines": [{"sku": "a", "qty": 1.5}], "none": None},
        errors=[], unique_key=None, timeout_seconds=None, created_at=now, run_at=now,
        attempted_at=now, finished_at=None, result=None, worker_id=None,
        correlation_id="req-7",
    )  # fmt: skip
    for receiver_secrets, endpoint_secrets, verified in [
        ([old], [old, new], True),  # the route still knows only the old secret
        ([new], [old, new], True),  # the route has moved to the new one
        (["another-secret"], [old], False),
    ]:
        with _verify_server(index, receiver_secrets) as port:
            deliverer = Deliverer(allow=AllowList.parse(["127.0.0.0/8"], environ={}))
            deliverer.update(
                [Endpoint("send-receipt", f"http://127.0.0.1:{port}/", tuple(endpoint_secrets))]
            )
            try:
                outcome = await deliverer.deliver(job)
            finally:
                await deliverer.aclose()
        if not verified:
            assert isinstance(outcome, Failed), outcome
            assert outcome.retry_in is None or outcome.retry_in >= 0
            assert "401" in outcome.error["message"], outcome.error
            continue
        assert isinstance(outcome, Succeeded), outcome
        assert outcome.result_json is not None
        seen = json.loads(outcome.result_json)
        assert seen["id"] == str(job.id)  # a bigint beyond 2**53 arrives exactly
        assert seen["args"] == job.args
        assert (seen["task"], seen["queue"], seen["attempt"]) == ("send-receipt", "mail", 2)
        assert (seen["maxAttempts"], seen["correlationId"]) == (5, "req-7")
        assert seen["webhookId"] == f"job_{job.id}"
        assert datetime.fromisoformat(seen["createdAt"]) == now.replace(
            microsecond=now.microsecond // 1000 * 1000
        )


@contextlib.contextmanager
def _verify_server(index: Path, secrets: list[str]) -> Iterator[int]:
    server = subprocess.Popen(
        ["node", str(Path(__file__).with_name("verify_server.mjs")), str(index), *secrets],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        server.terminate()
        server.wait(timeout=10)


# Run from inside the package copy, so `pg` and `@conveyor/client` resolve as in an app.
WORKFLOW_CALL = """
import pg from "pg";
import { sendEvent, startWorkflow } from "@conveyor/client";
const [action, name, a, b] = process.argv.slice(2);
const client = new pg.Client({ connectionString: process.env.CONVEYOR_DATABASE_URL });
await client.connect();
await client.query("BEGIN");
const id = action === "start"
  ? await startWorkflow(client, name, JSON.parse(a), { runId: b })
  : await sendEvent(client, name, a, JSON.parse(b));
await client.query("COMMIT");
await client.end();
console.log(id);
"""


def _node(folder: Path, db: str, *args: str) -> str:
    script = folder / "workflow-call.mjs"
    script.write_text(WORKFLOW_CALL)
    env = {**os.environ, "CONVEYOR_DATABASE_URL": db}
    done = subprocess.run(
        ["node", str(script), *args], cwd=folder, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


@pytest.mark.timeout(180)
async def test_runs_started_and_woken_from_node_finish_on_a_python_worker(
    db: str, typescript_client: Path
) -> None:
    """startWorkflow and sendEvent from Node drive real runs: one event sent before its run
    waits (kept, then consumed), one sent while its run waits (wakes it)."""
    built = subprocess.run(
        ["npm", "run", "build"], cwd=typescript_client, capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    app = conveyor.Conveyor(db)

    @app.workflow(name="ts.checkout")
    async def checkout(ctx: conveyor.WorkflowContext, order_id: int) -> object:
        return await ctx.wait_for_event("order.shipped", key=str(order_id), timeout=120)

    client = app.async_client()
    try:
        early = _node(typescript_client, db, "send", "order.shipped", "1", '{"carrier": "UPS"}')
        assert re.fullmatch(r"\d+", early)
        for order in (1, 2):
            run_id = _node(
                typescript_client,
                db,
                "start",
                "ts.checkout",
                f'{{"order_id": {order}}}',
                f"ts-{order}",
            )
            assert run_id == f"ts-{order}"
        async with running_worker(app, fast_config()):

            async def state(run_id: str, wanted: str) -> bool:
                return (await client.get_workflow(run_id)).state == wanted

            await eventually(lambda: state("ts-1", "completed"))
            await eventually(lambda: state("ts-2", "waiting"))
            _node(typescript_client, db, "send", "order.shipped", "2", '{"carrier": "DHL"}')
            await eventually(lambda: state("ts-2", "completed"))
        assert (await client.get_workflow("ts-1")).result == {"carrier": "UPS"}
        assert (await client.get_workflow("ts-2")).result == {"carrier": "DHL"}
    finally:
        await app.aclose()
