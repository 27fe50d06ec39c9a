"""Named SQL queries, loaded from every .sql file in conveyor/sql (`-- name: job_get`).

One file per entity (job, queue, worker, idempotency, cron, flow, alert, dashboard). Every file
found is read, so a new file needs no registration here; a name defined twice is refused at
load, naming both files.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.abc import Traversable

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def _all() -> dict[str, str]:
    return load(resources.files("conveyor") / "sql")


def load(root: Traversable) -> dict[str, str]:
    """Every named query of the .sql files directly in `root` (not migrations/), by name."""
    queries: dict[str, str] = {}
    defined_in: dict[str, str] = {}
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    for file in files:
        parts = _NAME.split(file.read_text(encoding="utf-8"))
        # parts: [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise RuntimeError(
                    f"query {name!r} is defined twice: in {defined_in[name]} and in {file.name}"
                )
            queries[name] = _statement(body)
            defined_in[name] = file.name
    return queries


def _statement(body: str) -> str:
    # comment lines after a statement head the next section of the file, not this statement
    lines = body.strip().splitlines()
    while lines and lines[-1].lstrip().startswith("--"):
        lines.pop()
    return "\n".join(lines).strip().rstrip(";")


def sql(name: str) -> str:
    """Return the text of the named query."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in conveyor/sql/*.sql") from None


def names() -> list[str]:
    """Every query name, sorted."""
    return sorted(_all())
