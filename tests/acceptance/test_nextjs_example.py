"""The Next.js example app (examples/nextjs) end to end, with no Python code of its own: a real
`next build` and `next start`, endpoints and a cron schedule added with the CLI as its README
says, and a real `conveyor deliver` process POSTing signed jobs to its routes.

An order's receipt arrives and a rolled-back order leaves nothing; forged, replayed and
wrongly-signed requests get 401 (a real delivery so refused stays retryable); the cron route
runs once per minute slot. Runs on the session's database, machine or embedded Postgres (over
a unix socket: node-postgres reads `?host=/dir` in the URL)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from standardwebhooks import Webhook

from conveyor.cli import cli
from conveyor.endpoints import generate_secret
from tests.acceptance.conftest import ROOT, WorkerProcess, _descendants
from tests.helpers import npm_install, require_tool, wait_until

# npm ci and next build run in the first test's setup: minutes on a busy 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

EXAMPLE = Path("examples") / "nextjs"
CLIENT = Path("clients") / "typescript"
CRON = "cleanup.minutely"
CRON_APP = "tests.acceptance.nextjs_cron_app:app"
APPROVAL_APP = "tests.acceptance.nextjs_approval_app:app"
MINUTES = 3
SPEED = 10  # a pause of 6 s (60 simulated) on a busy machine would skip a minute


def walkthrough(port: int) -> list[list[str]]:
    """The `conveyor` commands of examples/nextjs/README.md, for a server on `port`."""
    base = f"http://127.0.0.1:{port}"
    return [
        ["endpoint", "add", "send-receipt", "--url", f"{base}/api/send-receipt",
         "--secret", "env:CONVEYOR_SECRET"],
        ["endpoint", "add", "cleanup", "--url", f"{base}/api/cron/cleanup",
         "--secret", "env:CONVEYOR_SECRET"],
        ["cron", "add", CRON, "* * * * *", "--endpoint", "cleanup"],
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/nextjs and the client it links, copied as they sit in a clean checkout, then
    `npm ci` (whose postinstall builds the client) and `next build` (which type-checks)."""
    for tool in ("node", "npm"):
        require_tool(tool, "Debian: apt-get install nodejs npm")
    root = tmp_path_factory.mktemp("nextjs-example")
    ignore = shutil.ignore_patterns("node_modules", ".next", "dist", "*.tgz", "next-env.d.ts")
    shutil.copytree(ROOT / EXAMPLE, root / EXAMPLE, ignore=ignore)
    shutil.copytree(ROOT / CLIENT, root / CLIENT, ignore=ignore)
    folder = root / EXAMPLE
    npm_install(folder, ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"], timeout=240)
    built = subprocess.run(
        ["npm", "run", "build"],  # next build
        cwd=folder,
        env=_node_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"next build failed:\n{built.stdout}\n{built.stderr}")
    return folder


def _node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "NODE_OPTIONS"}}
    return {**env, "NEXT_TELEMETRY_DISABLED": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# straight to the local server, whatever proxy the environment names
_local = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Answer:
    status: int
    body: Any


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with _local.open(request, timeout=30) as response:
            return Answer(response.status, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read() or b"null"))


@dataclass
class Shop:
    """The running example: its URL, the database, the endpoints' secret."""

    base: str
    db: str
    secret: str
    logs: dict[str, Path]
    approval_secret: str

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def checkout(self, route: str = "/api/checkout", **order: Any) -> Answer:
        return post(self.base + route, json.dumps(order).encode())


class Processes:
    """Processes this test started, each in its own process group, ended in `close()`."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started.append(process)

    def close(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in [*_descendants(process.pid), process.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what it started and left behind


@pytest.fixture
def shop(db: str, built_app: Path, tmp_path: Path) -> Iterator[Shop]:
    """The README's walkthrough on the clean test database: the shop's tables, the endpoints
    and the cron schedule (through the CLI), `next start` and `conveyor deliver`."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute((ROOT / EXAMPLE / "schema.sql").read_text())
        conn.execute("TRUNCATE shop.receipts, shop.cron_runs, shop.orders")
    secret = generate_secret()
    port = _free_port()
    runner = CliRunner()
    for command in walkthrough(port):
        result = runner.invoke(cli, command, env={"CONVEYOR_DATABASE_URL": db})
        assert result.exit_code == 0, result.output
    logs = {"next": tmp_path / "next.log", "deliver": tmp_path / "deliver.log"}
    processes = Processes()
    approval_secret = generate_secret()
    shop = Shop(f"http://127.0.0.1:{port}", db, secret, logs, approval_secret)
    try:
        processes.start(
            ["npm", "start", "--", "-H", "127.0.0.1", "-p", str(port)],  # next start
            cwd=built_app,
            env=_node_env(DATABASE_URL=db, CONVEYOR_SECRET=secret, APPROVAL_SECRET=approval_secret),
            log=logs["next"],
        )  # fmt: skip
        processes.start(
            [sys.executable, "-m", "conveyor", "deliver", "--allow-network", "127.0.0.0/8"],
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_DATABASE_URL": db, "CONVEYOR_SECRET": secret},
            log=logs["deliver"],
        )
        wait_until(lambda: _answers(f"{shop.base}/"), timeout=60)
        yield shop
    finally:
        processes.close()
        for name, path in logs.items():
            print(f"--- {name}:\n{path.read_text(errors='replace')}")


def _answers(url: str) -> bool:
    try:
        with _local.open(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _signed(secret: str, body: bytes, *, msg_id: str, at: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@pytest.mark.parametrize("route", ["/api/checkout", "/api/checkout/drizzle"])
def test_an_order_gets_its_receipt_and_a_rolled_back_order_leaves_no_job_and_no_receipt(
    shop: Shop, route: str
) -> None:
    invalid = shop.checkout(route, email="ada@example.com", amount=12.5)
    assert (invalid.status, invalid.body["error"]) == (
        400,
        "amount: give a positive whole number of cents",
    )
    declined = shop.checkout(route, email="declined@example.com", amount=900, fail=True)
    assert declined.status == 402, declined.body
    placed = shop.checkout(route, email="ada@example.com", amount=1200)
    assert placed.status == 201, placed.body
    order_id, job_id = int(placed.body["orderId"]), int(placed.body["jobId"])

    receipts = wait_until(
        lambda: shop.rows("SELECT webhook_id, order_id, job_id, attempt FROM shop.receipts")
    )
    assert receipts == [(f"job_{job_id}", order_id, job_id, 1)]
    # the receipt is written before the worker records the answer; and a cron job may have
    # completed meanwhile, if a minute turned
    completed = "SELECT 1 FROM conveyor.jobs WHERE id = %s AND state = 'completed'"
    wait_until(lambda: shop.rows(completed, job_id))
    [(task, state, result, correlation)] = shop.rows(
        "SELECT task, state, result, correlation_id FROM conveyor.jobs WHERE id = %s", job_id
    )
    assert (task, state, correlation) == ("send-receipt", "completed", f"order-{order_id}")
    assert result == {"orderId": order_id, "sentTo": "ada@example.com", "duplicate": False}

    # the declined order's job id was drawn inside the transaction, then rolled back with it
    rolled_back = int(declined.body["rolledBackJobId"])
    assert shop.rows("SELECT id FROM conveyor.jobs WHERE id = %s", rolled_back) == []
    assert shop.rows("SELECT email FROM shop.orders") == [("ada@example.com",)]
    assert shop.rows("SELECT count(*) FROM conveyor.jobs WHERE task = 'send-receipt'") == [(1,)]

    # the same delivery again (the worker died before recording the 200): no second receipt
    body = json.dumps(
        {"id": job_id, "task": "send-receipt", "args": {"orderId": order_id}, "attempt": 1,
         "max_attempts": 10, "queue": "default", "correlation_id": f"order-{order_id}",
         "created_at": datetime.now(UTC).isoformat()}
    ).encode()  # fmt: skip
    headers = _signed(shop.secret, body, msg_id=f"job_{job_id}", at=datetime.now(UTC))
    again = post(f"{shop.base}/api/send-receipt", body, headers)
    assert again.status == 200 and again.body["duplicate"] is True, again.body
    assert shop.rows("SELECT count(*) FROM shop.receipts") == [(1,)]


def test_forged_and_replayed_requests_get_401_and_write_nothing(shop: Shop) -> None:
    placed = shop.checkout(email="grace@example.com", amount=500)
    assert placed.status == 201, placed.body
    order_id = int(placed.body["orderId"])
    wait_until(lambda: shop.rows("SELECT 1 FROM shop.receipts"))
    body = json.dumps(
        {"id": 999, "task": "send-receipt", "args": {"orderId": order_id}, "attempt": 1,
         "max_attempts": 10, "queue": "default", "correlation_id": None,
         "created_at": datetime.now(UTC).isoformat()}
    ).encode()  # fmt: skip
    now = datetime.now(UTC)
    forged = _signed(generate_secret(), body, msg_id="job_999", at=now)
    replayed = _signed(shop.secret, body, msg_id="job_999", at=now - timedelta(minutes=10))
    for route in ("/api/send-receipt", "/api/cron/cleanup"):
        answer = post(shop.base + route, body, forged)
        assert (answer.status, answer.body["error"]) == (401, "bad_signature"), route
        answer = post(shop.base + route, body, replayed)
        assert (answer.status, answer.body["error"]) == (401, "timestamp_too_old"), route
        answer = post(shop.base + route, body)
        assert (answer.status, answer.body["error"]) == (401, "missing_header"), route
    assert shop.rows("SELECT count(*) FROM shop.receipts WHERE webhook_id = 'job_999'") == [(0,)]
    assert shop.rows("SELECT count(*) FROM shop.cron_runs WHERE webhook_id = 'job_999'") == [(0,)]


def test_a_delivery_signed_with_a_wrong_secret_gets_401_and_stays_retryable(shop: Shop) -> None:
    runner = CliRunner()
    env = {"CONVEYOR_DATABASE_URL": shop.db}
    added = runner.invoke(
        cli,
        ["endpoint", "add", "send-receipt-stale", "--url", f"{shop.base}/api/send-receipt",
         "--secret", generate_secret(), "--retry-4xx"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    enqueued = runner.invoke(
        cli, ["enqueue", "send-receipt-stale", "--args", '{"orderId": 1}'], env=env
    )
    assert enqueued.exit_code == 0, enqueued.output
    job_id = int(enqueued.output.split()[-1])

    def refused() -> tuple[str, list[dict[str, Any]]] | None:
        [(state, errors)] = shop.rows(
            "SELECT state, errors FROM conveyor.jobs WHERE id = %s", job_id
        )
        return (state, errors) if errors else None

    state, errors = wait_until(refused)
    assert state in {"retryable", "available", "running"}, (state, errors)
    assert errors[0]["status"] == 401, errors
    assert "bad_signature" in errors[0]["body"], errors
    assert shop.rows("SELECT count(*) FROM shop.receipts") == [(0,)]


def test_the_cron_route_runs_once_per_minute_slot(shop: Shop, tmp_path: Path) -> None:
    """Two worker processes on a simulated clock (SPEED times real time) race for every time
    of the stored schedule over MINUTES simulated minutes; the route runs once for each."""
    [(start,)] = shop.rows("SELECT next_slot FROM conveyor.cron_schedule WHERE name = %s", CRON)
    go = tmp_path / "go"
    env = {
        "CRON_SIM_START": start.isoformat(),
        "CRON_SIM_END": (start + timedelta(minutes=MINUTES, microseconds=-1)).isoformat(),
        "CRON_SIM_GO": str(go),
        "CRON_SIM_SPEED": str(SPEED),
        "CONVEYOR_SECRET": shop.secret,
    }
    # a lease longer than the run, so the rescuer on the fast clock leaves deliveries alone
    args = ("--processes", "2", "--lease", "900", "--cron-interval", "0.1",
            "--allow-network", "127.0.0.0/8")  # fmt: skip
    workers = WorkerProcess(shop.db, args, tmp_path / "cron-workers.log", app=CRON_APP, env=env)
    try:
        # the two simulated workers and the fixture's `conveyor deliver`
        wait_until(lambda: shop.rows("SELECT count(*) FROM conveyor.worker") == [(3,)])
        (tmp_path / "go.tmp").write_text(repr(time.time()))
        os.replace(tmp_path / "go.tmp", go)  # simulated time starts flowing
        slots = [start + timedelta(minutes=m) for m in range(MINUTES)]
        ran = "SELECT slot FROM shop.cron_runs WHERE slot >= %s ORDER BY slot"
        wait_until(
            lambda: [s for (s,) in shop.rows(ran, start)] == slots,
            timeout=MINUTES * 60 / SPEED + 30,
        )
        workers.send(signal.SIGTERM)
        assert workers.wait(timeout=30) == 0
    finally:
        if workers.alive():
            workers.kill_all()
        print(f"--- cron workers:\n{workers.log()}")
    # every slot seen, by the simulated workers or the real-time `conveyor deliver`, ran the
    # route exactly once, for exactly one job
    per_slot = shop.rows("SELECT slot, count(*) FROM shop.cron_runs GROUP BY slot")
    assert all(count == 1 for _, count in per_slot), per_slot
    keys = shop.rows("SELECT unique_key FROM conveyor.jobs WHERE task = 'cleanup'")
    for slot, _ in per_slot:
        key = f"cron:{CRON}@{slot.astimezone(UTC).isoformat()}"
        assert keys.count((key,)) == 1, (key, keys)
    results = shop.rows(
        "SELECT j.result FROM conveyor.jobs j JOIN shop.cron_runs r ON r.job_id = j.id"
        " WHERE r.slot >= %s ORDER BY r.slot",
        start,
    )
    assert [r for (r,) in results] == [
        {"schedule": CRON, "slot": slot.astimezone(UTC).isoformat(), "deleted": 0} for slot in slots
    ]


def test_a_large_order_waits_for_a_managers_signed_link(shop: Shop, tmp_path: Path) -> None:
    """The checkout route starts a Python workflow in its transaction (`startWorkflow`); the
    run records a signed link and waits; a tampered link gets 403 and sends nothing; the real
    one's POST sends the event (`sendEvent`) and the run completes with the decision."""
    processes = Processes()
    log = tmp_path / "approval-worker.log"
    try:
        processes.start(
            [sys.executable, "-m", "conveyor", "worker", APPROVAL_APP],
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_DATABASE_URL": shop.db,
                 "APPROVAL_SECRET": shop.approval_secret, "CONVEYOR_SECRET": shop.secret},
            log=log,
        )  # fmt: skip
        small = shop.checkout(email="ada@example.com", amount=1200)
        assert small.status == 201 and small.body.get("approvalRunId") is None, small.body
        placed = shop.checkout(email="big@example.com", amount=250_000)
        assert placed.status == 201, placed.body
        order_id, run_id = int(placed.body["orderId"]), placed.body["approvalRunId"]
        assert run_id == f"approval-{order_id}"
        waiting = "SELECT 1 FROM conveyor.workflow_runs WHERE id = %s AND state = 'waiting'"
        wait_until(lambda: shop.rows(waiting, run_id))
        [(link,)] = shop.rows(
            "SELECT result #>> '{}' FROM conveyor.workflow_steps"
            " WHERE run_id = %s AND name = 'ask'",
            run_id,
        )
        shown = _local.open(shop.base + link, timeout=30)
        assert shown.status == 200 and b"<form" in shown.read()

        tampered = link.replace("decision=approve", "decision=reject")
        assert _status(shop.base + tampered, method="POST") == 403
        assert _status(shop.base + link.replace("sig=", "sig=0"), method="POST") == 403
        events = "SELECT count(*) FROM conveyor.workflow_events WHERE key = %s"
        assert shop.rows(events, str(order_id)) == [(0,)]

        clicked = post(shop.base + link, b"")
        assert clicked.status == 200, clicked.body
        assert clicked.body["decision"] == "approve"
        done = "SELECT result FROM conveyor.workflow_runs WHERE id = %s AND state = 'completed'"
        [(result,)] = wait_until(lambda: shop.rows(done, run_id))
        assert result == {"orderId": order_id, "link": link, "decision": "approve"}
    finally:
        processes.close()
        print(f"--- approval worker:\n{log.read_text(errors='replace')}")


def _status(url: str, *, method: str) -> int:
    request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    try:
        with _local.open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_readme_shows_the_walkthrough_commands_the_test_runs() -> None:
    readme = (ROOT / EXAMPLE / "README.md").read_text()
    flat = " ".join(readme.replace("\\\n", " ").split())
    for command in walkthrough(3000):
        words = " ".join(f'"{w}"' if " " in w else w for w in command)
        assert f"conveyor {words}" in flat, words
    assert "conveyor deliver --allow-network 127.0.0.0/8" in flat
    assert "psql" in flat and "schema.sql" in flat


def test_docs_show_the_example_files_as_they_are() -> None:
    doc = (ROOT / "docs" / "nextjs.md").read_text()
    shown = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```\n", doc, flags=re.DOTALL)
    assert {path for path, _ in shown} >= {
        "examples/nextjs/app/api/checkout/route.ts",
        "examples/nextjs/app/api/checkout/drizzle/route.ts",
        "examples/nextjs/app/api/send-receipt/route.ts",
        "examples/nextjs/app/api/cron/cleanup/route.ts",
        "examples/nextjs/app/api/approvals/route.ts",
    }
    for path, text in shown:
        assert text == (ROOT / path).read_text(), f"docs/nextjs.md shows {path} out of date"
