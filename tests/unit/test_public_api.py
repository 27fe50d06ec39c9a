"""The public API is sorted and complete, and the layering holds."""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent


def test_all_is_sorted_and_every_name_exists() -> None:
    assert conveyor.__all__ == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_store_imports_nothing_from_worker_maintenance_or_cli() -> None:
    forbidden = ("conveyor.worker", "conveyor.maintenance", "conveyor.cli", "conveyor.demo")
    for path in (SRC / "_store").glob("*.py"):
        bad = [m for m in _imports(path) if m.startswith(forbidden)]
        assert bad == [], f"{path.name} imports {bad}"


def test_worker_and_maintenance_see_the_store_protocol_not_postgres() -> None:
    allowed = {"worker.py"}  # the composition root builds the PostgresStore
    for folder in ("worker", "maintenance"):
        for path in (SRC / folder).glob("*.py"):
            if path.name in allowed:
                continue
            assert "conveyor._store.postgres" not in _imports(path), path.name


def test_no_pickle_anywhere() -> None:
    for path in SRC.rglob("*.py"):
        assert not {"pickle", "cPickle", "dill"} & _imports(path), path.name


def test_no_module_is_over_500_lines() -> None:
    for path in SRC.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name
