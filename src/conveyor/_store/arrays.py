"""Array parameters as Postgres array literals, for the worker's per-batch statements.

psycopg dumps a list parameter element by element in Python; a claim or a flush of a few
hundred outcomes spent more on that than on the rest of its call (docs/benchmarks.md, issue
15). Ids and lease tokens have no characters an array literal must quote, so joining their
text is enough; task names are quoted. The statements cast each parameter (`::bigint[]`),
so the server parses the literal as the array it stands for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID


def ints(values: Iterable[int]) -> str:
    """'{1,2,3}' for bigint[] / int[] parameters."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def uuids(values: Iterable[UUID]) -> str:
    """'{…,…}' for uuid[] parameters. A claim gives one lease token to all its jobs, so a
    flush holds few distinct tokens: each is turned into text once."""
    text: dict[UUID, str] = {}
    return "{" + ",".join([text.get(v) or text.setdefault(v, str(v)) for v in values]) + "}"


def texts(values: Sequence[str]) -> str:
    """'{"a","b \\"c\\""}' for text[] parameters: every element quoted, backslashes and
    double quotes escaped, so any name (commas, braces, spaces, NULL) stays one element."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def nullable_texts(values: Sequence[str | None]) -> list[str | None] | None:
    """None (an empty array, which unnest() pads with NULLs) when every value is None, as
    the results of no-op jobs are; else the list, for psycopg to dump."""
    return None if all(v is None for v in values) else list(values)
