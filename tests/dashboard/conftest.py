"""Fixtures for the dashboard: the ASGI app on the clean test database, and rows to look at."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app

TOKEN = "s3cret-token-for-tests"
ORIGIN = {"origin": "http://testserver"}
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/jobs.py", line 12, in send_receipt\n'
    "    smtp.send(order)\n"
    "ConnectionRefusedError: [Errno 111] Connection refused\n"
)


@pytest.fixture
def dash(app: conveyor.Conveyor) -> Iterator[TestClient]:
    """A client of the dashboard without credentials."""
    with TestClient(create_app(app)) as client:
        yield client


@pytest.fixture
def guarded(app: conveyor.Conveyor) -> Iterator[TestClient]:
    """A client of a dashboard that needs the token or basic auth (sends neither itself)."""
    web = create_app(app, token=TOKEN, username="ops", password="pa55word")
    with TestClient(web) as client:
        yield client


def csrf_token(html: str) -> str:
    """The CSRF token of the first action form on a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no action form on the page"
    return found.group(1)


def insert_finished(
    conn: psycopg.Connection[Any],
    *,
    task: str = "shop.send_receipt",
    queue: str = "default",
    state: str = "failed",
    args: dict[str, Any] | None = None,
    attempts: int = 2,
) -> int:
    """A finished job as a worker leaves it: failed ones with every attempt's error."""
    errors = [
        {
            "attempt": n,
            "at": f"2026-11-28T10:0{n}:00+00:00",
            "type": "ConnectionRefusedError",
            "message": "[Errno 111] Connection refused",
            "traceback": TRACEBACK,
        }
        for n in range(1, attempts + 1)
        if state == "failed"
    ]
    row = conn.execute(
        "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts,"
        " args, errors, created_at, run_at, attempted_at, finished_at, result)"
        " VALUES (nextval(pg_get_serial_sequence('conveyor.job', 'id')), %s, %s, %s, 0, %s, %s,"
        " %s, %s, now() - interval '5 min', now() - interval '5 min', now() - interval '1 min',"
        " now(), %s) RETURNING id",
        (
            task,
            queue,
            state,
            attempts,
            attempts,
            json.dumps(args or {"order_id": 1}),
            json.dumps(errors),
            json.dumps("sent") if state == "completed" else None,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def state_of(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    row = conn.execute("SELECT state FROM conveyor.jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None
