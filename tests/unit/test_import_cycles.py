"""No import cycle in src/conveyor: every module can be read (and loaded) on its own terms.

Only imports that run when a module is loaded count: one inside a function runs later, and one
under `if TYPE_CHECKING:` never runs, so neither can tie two modules into a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent


def _module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is loaded: at top level, or in a top-level if/try/with
    (not under `if TYPE_CHECKING:`), never inside a function or a class body's methods."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                found += _load_time_imports(node.body)
            found += _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _load_time_imports(block)
            for handler in node.handlers:
                found += _load_time_imports(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            found += _load_time_imports(node.body)
    return found


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    target = node.module or ""
    if node.level:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    # `from conveyor import worker` imports the module conveyor.worker; `from conveyor.job
    # import Job` the module conveyor.job
    names = {f"{target}.{alias.name}" for alias in node.names}
    submodules = names & modules
    return submodules if submodules == names else {target} | submodules


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Each conveyor module and the conveyor modules it imports when loaded."""
    paths = {_module_of(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _load_time_imports(ast.parse(path.read_text()).body):
            edges |= {t for t in _targets(node, module, is_package, set(paths)) if t in paths}
        # a module's packages are loaded before it whatever it imports: not an edge of its own
        edges -= {module, *_ancestors(module)}
        graph[module] = edges
    return graph


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_module_of_conveyor_is_in_an_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found_and_printed() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_in_functions_and_under_type_checking_do_not_count(tmp_path: Path) -> None:
    package = tmp_path / "conveyor"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from conveyor import b\n"
        "if TYPE_CHECKING:\n"
        "    from conveyor import c\n"
    )
    (package / "b.py").write_text("def later():\n    from conveyor import a\n")
    (package / "c.py").write_text("from . import a\n")
    graph = import_graph(package)
    assert graph["conveyor.a"] == {"conveyor.b"}
    assert graph["conveyor.b"] == set()
    assert graph["conveyor.c"] == {"conveyor.a"}
    assert find_cycle(graph) is None
