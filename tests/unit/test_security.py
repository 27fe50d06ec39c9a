"""Security by construction, checked over the source: no pickle, and no SQL built from
strings in Python (every statement is a named query with bound parameters)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"
EXECUTE = {"execute", "executemany", "run_sync", "run_async", "copy"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SRC.rglob("*.py"))]


def test_nothing_imports_pickle_or_marshal() -> None:
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            found += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in ("pickle", "marshal", "dill", "shelve")
            ]
    assert found == []


def test_no_statement_text_is_built_with_formatting() -> None:
    """The text passed to execute() and friends is a literal, a named query (sql("...")) or a
    psycopg.sql composition; never an f-string, % or + concatenation, or .format() of a str."""
    offenders = []
    inspected = 0
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in EXECUTE:
                continue
            if name in ("run_sync", "run_async") and len(node.args) < 2:
                continue
            inspected += 1
            text = node.args[0] if name not in ("run_sync", "run_async") else node.args[1]
            built = isinstance(text, ast.JoinedStr | ast.BinOp) or (
                isinstance(text, ast.Call)
                and isinstance(text.func, ast.Attribute)
                and text.func.attr == "format"
                and isinstance(text.func.value, ast.Constant)
            )
            if built:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert inspected > 20, "the check must see the statements it guards"
    assert offenders == []
