"""`conveyor worker` processes serve metrics behind a token (one port per process) and write
JSON log lines that carry each job's correlation id."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import conveyor
from tests.acceptance.conftest import StartWorker
from tests.acceptance.shop_app import fail, record
from tests.helpers import wait_until


def free_port_pair() -> int:
    """A port P with P+1 free too (for a worker with --processes 2)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two adjacent free ports")


def scrape(port: int, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""  # not listening yet


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_worker_processes_serve_metrics_and_json_logs(
    shop: conveyor.Conveyor, start_worker: StartWorker
) -> None:
    port = free_port_pair()
    worker = start_worker(
        "--processes", "2", "--metrics-port", str(port), "--metrics-token", "scrape-me"
    )
    with conveyor.correlation_id("req-ops-1"):
        ids = [record.enqueue(n=n) for n in range(20)]
        failed_id = fail.enqueue(message="card declined")
    client = shop.client()
    wait_until(lambda: all(client.get_job(i).state.finished for i in [*ids, failed_id]), timeout=30)

    def both_serving() -> list[str] | None:
        results = [scrape(p, "scrape-me") for p in (port, port + 1)]
        return [text for code, text in results] if all(c == 200 for c, _ in results) else None

    texts = wait_until(both_serving, timeout=15)
    completed = sum(
        float(line.rsplit(" ", 1)[1])
        for text in texts
        for line in text.splitlines()
        if line.startswith('conveyor_jobs_completed_total{queue="default",task="record"}')
    )
    assert completed == 20
    assert [scrape(p, None)[0] for p in (port, port + 1)] == [401, 401]
    assert [scrape(p, "wrong")[0] for p in (port, port + 1)] == [401, 401]

    def outcome_lines() -> list[dict[str, Any]] | None:
        found = [r for r in json_lines(worker.log()) if r.get("outcome")]
        return found if len(found) >= 21 else None

    outcomes = wait_until(outcome_lines, timeout=10)
    assert {r["correlation_id"] for r in outcomes} == {"req-ops-1"}
    assert sorted(r["job_id"] for r in outcomes if r["outcome"] == "completed") == sorted(ids)
    (failure,) = [r for r in outcomes if r["outcome"] == "failed"]
    assert failure["job_id"] == failed_id
    assert failure["error_type"] == "ValueError"
    assert failure["task"] == "fail" and failure["attempt"] == 1
    assert "scrape-me" not in worker.log()
