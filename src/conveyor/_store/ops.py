"""Operations: every statement Conveyor sends, as data (River's driver, procrastinate's manager).

An `Op` is one named statement of conveyor/sql/*.sql, its bound parameters and how its rows are
read. A multi-step operation is a `Plan`: a generator that yields steps (`Op`, `Copy`, `Call`,
`Claim`, `Savepoint`) and receives what each one read, written once and run by runner.py on a
sync or an async connection of any kind (caller.py).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Row = dict[str, Any]


class Rows(list[Row]):
    """The rows one statement returned, and how many rows it changed (DELETE, UPDATE)."""

    rowcount: int = -1


@dataclass(frozen=True)
class Op(Generic[T]):
    """One named statement (conveyor/sql/*.sql), its bound parameters and its row reader."""

    query: str
    params: Mapping[str, Any]
    read: Callable[[Rows], T]
    #: Load values Python cannot hold as stand-ins (the Client's reads, client_rows.py).
    lenient: bool = False


@dataclass(frozen=True)
class Copy:
    """Rows to send with the named COPY ... FROM STDIN statement (psycopg connections only).
    With `types` (Postgres type names, one per column) the COPY is binary: its statement says
    FORMAT BINARY, and json/jsonb columns take JSON text, sent as it is."""

    query: str
    rows: Sequence[tuple[Any, ...]]
    types: Sequence[str] | None = None


@dataclass(frozen=True)
class Call:
    """A step that is not SQL: the sync runner calls `fn`, the async runner awaits it. Lets a
    plan run the user's function between its statements (`once`)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A claim: the named statement's rows become Jobs, and the rows no reader can load come
    back apart (claimed.py) so that they fail alone. Async psycopg connections only."""

    query: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Savepoint:
    """A statement in a transaction of its own (a savepoint inside an open one): when it fails,
    the steps before it stand. psycopg connections only."""

    op: Op[Any]


Step = Op[Any] | Copy | Call | Claim | Savepoint
Plan = Generator[Step, Any, T]


def ignore(rows: Rows) -> None:
    """The reader of a statement whose rows nobody needs."""


def found(rows: Rows) -> bool:
    """The reader of a statement that returns a row when it did something."""
    return bool(rows)


def ids(rows: Rows) -> set[int]:
    """The reader of a statement returning the `id` of each row it changed."""
    return {row["id"] for row in rows}


def sorted_ids(rows: Rows) -> list[int]:
    """Like ids(), in ascending order."""
    return sorted(row["id"] for row in rows)


def rowcount(rows: Rows) -> int:
    """The reader of a statement without RETURNING: how many rows it changed."""
    return rows.rowcount


def count(rows: Rows) -> int:
    """The reader of a statement returning one row with a `count` column."""
    return int(rows[0]["count"])
