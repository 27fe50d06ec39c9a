"""How the Client loads rows: so that no stored value can break a list or a page.

Postgres holds values Python cannot: a timestamptz of `infinity`, `-infinity` or past year 9999
(datetime stops there), and JSON nested deeper than `json.loads` can recurse. psycopg raises
while loading such a value (DataError, RecursionError), which takes down the whole list the row
is in. The Client's cursors load with lenient loaders instead: a time out of range becomes an
OutOfRange stand-in (a datetime at the edge of the range that remembers what Postgres holds),
JSON too deep becomes a TooDeep stand-in (an empty object), and a job built from such a row
lists each stand-in in `Job.unreadable`, with why.

Loaders rather than guards in SQL: one place covers every query the Client runs (job lists, a
job, status, charts, cron, alerts) and any column added later, where SQL would need a CASE per
column per query; and SQL cannot tell JSON too deep for Python without a function of its own.
Only the Client loads this way: the worker keeps psycopg's strict loaders, so a job never runs
on a stand-in value.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import set_json_loads

from conveyor.job import Job

Row = dict[str, Any]

# A day inside datetime's range, so converting a stand-in to any time zone still works.
_LATEST = (9999, 12, 31)
_EARLIEST = (1, 1, 2)


class OutOfRange(datetime):
    """Stands in for a time Python cannot hold: the latest (or earliest) datetime, which sorts
    where the real value would; `held` is what Postgres holds ('infinity', '12000-01-01 ...').
    It prints as the held value, so a page or a line never shows the stand-in as a real time."""

    held: str = "out of range"

    @classmethod
    def standing_in_for(cls, held: str) -> OutOfRange:
        early = held.startswith("-") or held.endswith(" BC")
        value = cls(*(_EARLIEST if early else _LATEST), tzinfo=UTC)
        value.held = held
        return value

    def __str__(self) -> str:
        return f"{self.held} (out of range)"


class TooDeep(dict[str, Any]):
    """Stands in for JSON nested deeper than Python can decode: an empty object."""


def job_from_row(row: Row) -> Job:
    """A Job from a row loaded leniently; stand-in values are listed in `unreadable`."""
    job = Job.from_row(row)
    unreadable = {name: why for name, value in row.items() if (why := _why(name, value))}
    return replace(job, unreadable=unreadable) if unreadable else job


def _why(name: str, value: object) -> str | None:
    if isinstance(value, OutOfRange):
        return f"{name} out of range ({value.held})"
    if isinstance(value, TooDeep):
        return f"{name} too deeply nested to display"
    return None


def load_leniently(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> None:
    """Load this cursor's times and JSON leniently (the stand-ins above)."""
    # Registered on the cursor only: the connection comes from the app's pool, whose other
    # users must keep the strict loaders.
    cur.adapters.register_loader("timestamptz", _LenientTimestamptzLoader)
    set_json_loads(_loads, cur)


class _LenientTimestamptzLoader(TimestamptzLoader):
    def load(self, data: Buffer) -> datetime:
        try:
            return super().load(data)
        except psycopg.DataError:
            return OutOfRange.standing_in_for(bytes(data).decode())


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        return TooDeep()
