"""A dashboard on a database without the right schema says how to fix it, then recovers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from starlette.testclient import TestClient

import conveyor
from conveyor.cli import cli
from conveyor.dashboard import create_app, schema
from tests.conftest import _with_dbname


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    name = f"conveyor_dash_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_pages_answer_503_with_the_fix_until_the_schema_is_migrated(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "RECHECK_SECONDS", 0.0)
    app = conveyor.Conveyor(empty_db)
    with TestClient(create_app(app)) as web:
        first = web.get("/")
        assert first.status_code == 503
        assert "no Conveyor schema; run `conveyor migrate`" in first.text
        assert web.get("/jobs").status_code == 503
        app.migrate()
        assert web.get("/").status_code == 200
        assert web.get("/jobs").status_code == 200


def test_cli_refuses_to_serve_an_unmigrated_database(empty_db: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", empty_db, "dashboard", "--port", "0"])
    assert result.exit_code == 1
    assert "no Conveyor schema; run `conveyor migrate`" in result.stderr
