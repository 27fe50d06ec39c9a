"""The public API is sorted and complete, and the layering holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import conveyor

SRC = Path(conveyor.__file__).parent


def test_all_is_sorted_and_every_name_exists() -> None:
    assert conveyor.__all__ == sorted(conveyor.__all__)
    assert len(set(conveyor.__all__)) == len(conveyor.__all__)
    missing = [name for name in conveyor.__all__ if not hasattr(conveyor, name)]
    assert missing == []


def test_every_public_name_has_a_docstring() -> None:
    undocumented = [
        name for name in conveyor.__all__ if not (getattr(conveyor, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, anywhere in the file.

    `from conveyor import worker` counts as importing conveyor.worker, and relative imports are
    resolved, so neither spelling slips past the layering checks.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _imports(path: Path) -> set[str]:
    return imported_modules(
        path.read_text(), _module_of(path), is_package=path.name == "__init__.py"
    )


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_import_parser_sees_every_spelling_of_an_import() -> None:
    source = "\n".join(
        [
            "import conveyor.cli",
            "from conveyor import worker",
            "from conveyor.maintenance.rescuer import JobRescuer",
            "from ..worker import executor",
            "def later():",
            "    from . import postgres",
        ]
    )
    found = imported_modules(source, "conveyor._store.caller")
    assert {
        "conveyor.cli",
        "conveyor.worker",
        "conveyor.maintenance.rescuer",
        "conveyor.worker.executor",
        "conveyor._store.postgres",
    } <= found


def test_store_imports_nothing_from_worker_maintenance_or_cli() -> None:
    forbidden = ("conveyor.worker", "conveyor.maintenance", "conveyor.cli", "conveyor.demo")
    paths = sorted((SRC / "_store").rglob("*.py"))
    assert paths, "no store modules found"
    offenders = {
        path.name: sorted(m for m in _imports(path) if _inside(m, forbidden)) for path in paths
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_worker_and_maintenance_see_the_store_protocol_not_postgres() -> None:
    allowed = {"worker.py"}  # the composition root builds the PostgresStore
    offenders = [
        f"{folder}/{path.name}"
        for folder in ("worker", "maintenance")
        for path in sorted((SRC / folder).glob("*.py"))
        if path.name not in allowed
        and any(_inside(m, ("conveyor._store.postgres",)) for m in _imports(path))
    ]
    assert offenders == []


def test_dashboard_and_cli_act_only_through_the_public_client() -> None:
    forbidden = ("conveyor._store", "conveyor.worker", "conveyor.maintenance", "psycopg")
    paths = [*sorted((SRC / "dashboard").rglob("*.py")), SRC / "cli_dashboard.py"]
    offenders = {
        path.name: sorted(m for m in _imports(path) if _inside(m, forbidden)) for path in paths
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_no_module_imports_pickle() -> None:
    offenders = [
        path.name
        for path in SRC.rglob("*.py")
        if _imports(path) & {"pickle", "cPickle", "dill", "cloudpickle"}
    ]
    assert offenders == []


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}


def test_cli_database_url_applies_only_to_an_app_without_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVEYOR_DATABASE_URL", raising=False)
    bare = conveyor.Conveyor(auto_migrate=False)
    bare.set_default_database_url("postgresql://from-cli/db")
    assert bare.database_url == "postgresql://from-cli/db"
    own = conveyor.Conveyor("postgresql://own/db", auto_migrate=False)
    own.set_default_database_url("postgresql://from-cli/db")
    assert own.database_url == "postgresql://own/db"
