"""The named queries: every .sql file is read, each name once, section comments left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor._store.queries import load, names, sql

ENTITIES = [
    "alert",
    "api",
    "cron",
    "dashboard",
    "endpoint",
    "flow",
    "idempotency",
    "job",
    "queue",
    "worker",
    "workflow",
]


def test_the_queries_are_grouped_one_file_per_entity() -> None:
    root = Path(__file__).parents[2] / "src" / "conveyor" / "sql"
    assert sorted(p.stem for p in root.glob("*.sql")) == ENTITIES


def test_every_file_found_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: one\n-- The first.\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: two\nSELECT 2;\n\n-- ---\n-- A next section.\n")
    (tmp_path / "notes.txt").write_text("-- name: three\nSELECT 3;\n")
    assert load(tmp_path) == {"one": "-- The first.\nSELECT 1", "two": "SELECT 2"}


def test_a_name_defined_twice_is_refused_naming_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: one\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: one\nSELECT 2;\n")
    with pytest.raises(RuntimeError, match=r"'one' is defined twice: in a.sql and in b.sql"):
        load(tmp_path)


def test_every_query_of_the_package_loads_by_name() -> None:
    assert "job_fetch_available" in names()
    assert "COPY conveyor.job" in sql("job_copy")
    with pytest.raises(KeyError, match="no SQL query named 'job_next_run_at'"):
        sql("job_next_run_at")
