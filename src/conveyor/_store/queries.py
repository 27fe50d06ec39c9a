"""Named SQL queries, loaded from the .sql files in conveyor/sql (`-- name: job_get`)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_FILES = (
    "job_hot.sql",
    "maintenance.sql",
    "worker.sql",
    "admin.sql",
    "queue.sql",
    "cron.sql",
    "flow.sql",
    "alerts.sql",
    "dashboard.sql",
)


@cache
def _all() -> dict[str, str]:
    queries: dict[str, str] = {}
    root = resources.files("conveyor") / "sql"
    for filename in _FILES:
        text = (root / filename).read_text(encoding="utf-8")
        parts = _NAME.split(text)
        # parts: [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise RuntimeError(f"query {name!r} is defined twice (second in {filename})")
            queries[name] = body.strip().rstrip(";")
    return queries


def sql(name: str) -> str:
    """Return the text of the named query."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in conveyor/sql/*.sql") from None


def names() -> list[str]:
    """Every query name, sorted."""
    return sorted(_all())
