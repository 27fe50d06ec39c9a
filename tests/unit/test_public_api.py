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
    # `conveyor worker` runs a worker: the one command that loads the runtime (when it runs).
    allowed = {
        "cli/worker.py": {"conveyor.worker", "conveyor.worker.WorkerConfig", SUPERVISOR},
    }
    paths = [*sorted((SRC / "dashboard").rglob("*.py")), *sorted((SRC / "cli").rglob("*.py"))]
    assert len(paths) > 10, "no CLI or dashboard modules found"
    offenders = {
        _where(path): sorted(
            m for m in _imports(path) - allowed.get(_where(path), set()) if _inside(m, forbidden)
        )
        for path in paths
    }
    assert {where: bad for where, bad in offenders.items() if bad} == {}


def _where(path: Path) -> str:
    return str(path.relative_to(SRC))


SUPERVISOR = "conveyor.worker.supervisor"
#: The Store protocol is the seam's face for the worker and the maintenance services.
STORE_PROTOCOL = "conveyor._store.protocol"

#: Private names a layer still imports from another, each with why; shrink it, never grow it.
#: Keyed by layer, not file, so that moving code within a layer does not touch the list.
PRIVATE_IMPORT_EXCEPTIONS = {
    ("worker", "conveyor._store.postgres"): "the worker's composition root builds the Store",
    ("worker", "conveyor._store.leader"): "the worker builds the leader lease on its Store",
    ("worker", "conveyor._store.listener"): "the worker opens its LISTEN connection",
    ("worker", "conveyor._store.diagnose"): "start-up check (conveyor.database is its public face)",
    ("maintenance", "conveyor._store.alerts"): "the alert statements are not on the Store yet",
    ("maintenance", "conveyor._store.cron"): "row types of the Store's cron methods",
    ("maintenance", "conveyor._store.flows"): "row type of Store.flow_advance",
}


def private_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The names `source` (the text of `module`) imports from another layer (another package
    or top-level module of conveyor) that are private there: some part starts with `_`."""
    layer = module.split(".")[1]
    private = {
        name
        for name in imported_modules(source, module, is_package=is_package)
        if name.startswith("conveyor.")
        and name.split(".")[1] != layer
        and any(part.startswith("_") and not part.endswith("__") for part in name.split("."))
    }
    # `from m import X` reads as m and m.X: name m alone when m itself is private
    return {name for name in private if name.rpartition(".")[0] not in private}


def test_private_names_of_another_layer_are_found_in_every_spelling() -> None:
    source = "\n".join(
        [
            "from conveyor._store.protocol import Store, Completion",
            "from conveyor.app import Conveyor, _Guard",
            "from conveyor import _secret, __version__",
            "from conveyor.cli._own import helper",
            "from ._own import other",
            "from conveyor.client import Client",
            "def later():",
            "    import conveyor._store.queries",
        ]
    )
    assert private_names(source, "conveyor.cli.jobs") == {
        "conveyor._store.protocol",
        "conveyor._store.queries",
        "conveyor.app._Guard",
        "conveyor._secret",
    }


def test_layers_import_no_private_name_of_another_layer() -> None:
    found = {
        (folder, name, _where(path))
        for folder in ("cli", "dashboard", "worker", "maintenance")
        for path in sorted((SRC / folder).rglob("*.py"))
        for name in private_names(
            path.read_text(), _module_of(path), is_package=path.name == "__init__.py"
        )
    }
    offenders = [
        (where, name)
        for folder, name, where in sorted(found)
        if (folder, name) not in PRIVATE_IMPORT_EXCEPTIONS
        and not (folder in ("worker", "maintenance") and _inside(name, (STORE_PROTOCOL,)))
    ]
    assert offenders == []
    stale = sorted(PRIVATE_IMPORT_EXCEPTIONS.keys() - {(folder, name) for folder, name, _ in found})
    assert stale == [], "no longer imported: remove them from PRIVATE_IMPORT_EXCEPTIONS"


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
