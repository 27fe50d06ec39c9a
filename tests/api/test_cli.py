"""`conveyor token` and `conveyor api`: tokens shown once and stored hashed, the refusal of a
non-loopback address without any token, and `conveyor dashboard --api`."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import conveyor
from conveyor.cli import cli
from conveyor.cli.api import api_app
from conveyor.dashboard import create_app as dashboard_app
from tests.api.conftest import bearer


def _run(db: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--database-url", db, *args], obj={})
    return result.exit_code, result.stdout, result.stderr


def test_token_create_prints_the_secret_once_and_stores_its_hash(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    code, out, err = _run(db, "token", "create", "--name", "edge", "--scope", "enqueue")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("cvk_") and len(secret) > 40
    assert "shown only once" in err
    row = conn.execute("SELECT name, scopes, prefix, hash FROM conveyor.api_token").fetchone()
    assert row is not None
    assert (row[0], row[1], row[2]) == ("edge", ["enqueue"], secret[:10])
    assert secret.encode() not in bytes(row[3]) and len(row[3]) == 32


def test_token_list_and_revoke(db: str) -> None:
    _run(db, "token", "create", "--name", "edge", "--scope", "enqueue", "--scope", "read")
    code, out, _ = _run(db, "token", "list", "--json")
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert (listed["name"], listed["scopes"], listed["revoked_at"]) == (
        "edge",
        ["enqueue", "read"],
        None,
    )
    assert _run(db, "token", "revoke", "edge")[0] == 0
    code, out, _ = _run(db, "token", "list")
    assert "revoked" in out
    code, _, err = _run(db, "token", "revoke", "edge")
    assert code == 1 and "no live token named 'edge'" in err


def test_a_second_live_token_of_a_name_and_an_unknown_scope_are_refused(db: str) -> None:
    _run(db, "token", "create", "--name", "edge", "--scope", "read")
    code, _, err = _run(db, "token", "create", "--name", "edge", "--scope", "read")
    assert code == 1 and "a live token named 'edge' exists already" in err
    code, _, err = _run(db, "token", "create", "--name", "x", "--scope", "write")
    assert code == 2 and "'write' is not one of 'enqueue', 'read', 'admin'" in err


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_api_refuses_a_non_loopback_host_without_any_token(db: str, host: str) -> None:
    code, _, err = _run(db, "api", "--host", host)
    assert code == 2
    assert f"refusing to serve the API on {host} without any API token" in err
    assert "conveyor token create" in err and "--host 127.0.0.1" in err


def test_dashboard_with_api_serves_both(app: conveyor.Conveyor) -> None:
    secret = app.client().create_token("ops", ["admin"])[1]
    both = api_app(app, "127.0.0.1", dashboard_app(app))
    with TestClient(both) as web:
        made = web.post("/v1/jobs", json={"task": "t"}, headers=bearer(secret))
        assert made.status_code == 201
        assert web.get("/openapi.json").json()["openapi"] == "3.1.0"
        page = web.get("/jobs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_dashboard_with_api_refuses_a_non_loopback_host_without_any_token(db: str) -> None:
    code, _, err = _run(db, "dashboard", "--api", "--host", "0.0.0.0", "--token", "t0k3n-long")
    assert code == 2
    assert "without any API token" in err
