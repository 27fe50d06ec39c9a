"""Only _store/ names SQL: no other module loads a named query or sends statement text.

The exceptions are the migrator (it applies sql/migrations and keeps its version table) and the
demo (its own example tables), which never touch a Conveyor table through the seam's back door.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent
ALLOWED = {"migrate.py", "demo.py"}
# statement text, as written in upper case; docstrings ("Insert many jobs") do not match
_STATEMENT = re.compile(r"^\s*(SELECT |INSERT INTO |UPDATE \w|DELETE FROM |WITH \w+ AS |COPY \w)")


def _outside_the_store() -> list[Path]:
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if "_store" not in path.relative_to(SRC).parts and path.name not in ALLOWED
    ]


def test_no_module_outside_the_store_loads_a_named_query() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in _outside_the_store()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "conveyor._store.queries"
    ]
    assert offenders == []


def test_no_module_outside_the_store_holds_statement_text() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in _outside_the_store()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _STATEMENT.match(node.value)
    ]
    assert offenders == []
