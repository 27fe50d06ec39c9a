"""Reading claimed rows: a row no reader can load fails alone, never its batch or the worker.

A claim commits before its rows are read. If one row cannot be turned into a Job (a run time
of 'infinity', args nested thousands of levels deep, an integer of 5,000 digits: input that
reached the table around the enqueue checks), the others must still run, and that one must
end `failed` with an error saying which column could not be read. The fast path reads the
batch at once; only a batch that fails to load is read again row by row and column by column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncCursor
from psycopg.pq import Format
from psycopg.rows import DictRow

from conveyor.job import Job

#: The error type recorded for a job whose row cannot be read.
UNREADABLE = "UnreadableJob"


@dataclass(frozen=True)
class Unreadable:
    """A claimed row that cannot be loaded: its id, attempt and why."""

    job_id: int
    attempt: int
    reason: str

    def error(self) -> dict[str, Any]:
        return {
            "type": UNREADABLE,
            "message": (
                f"this job's row cannot be read ({self.reason}), so it cannot run; enqueue it"
                " again with valid values (the enqueue paths refuse such input)"
            ),
            "traceback": None,
            "attempt": self.attempt,
        }


async def read_claimed(cur: AsyncCursor[DictRow]) -> tuple[list[Job], list[Unreadable]]:
    """Jobs from the claim just executed on `cur`, and the rows that cannot be read."""
    try:
        rows = await cur.fetchall()
        jobs = [Job.from_row(row) for row in rows]
        if all(_sane(job) is None for job in jobs):
            return jobs, []
    except Exception:  # noqa: BLE001, S110 - one bad row: read them one at a time below
        pass
    return await _row_by_row(cur)


async def _row_by_row(cur: AsyncCursor[DictRow]) -> tuple[list[Job], list[Unreadable]]:
    jobs: list[Job] = []
    bad: list[Unreadable] = []
    result = cur.pgresult
    assert result is not None and cur.description is not None
    names = [column.name for column in cur.description]
    for index in range(result.ntuples):
        job_id = int(_raw(cur, index, names.index("id")) or 0)
        attempt = int(_raw(cur, index, names.index("attempt")) or 0)
        try:
            await cur.scroll(index, "absolute")
            row = await cur.fetchone()
            assert row is not None
            job = Job.from_row(row)
            problem = _sane(job)
        except Exception as exc:  # noqa: BLE001 - find the column and say what is wrong
            problem = _column_problem(cur, index, names) or _describe(exc)
        if problem is None:
            jobs.append(job)
        else:
            bad.append(Unreadable(job_id, attempt, problem))
    return jobs, bad


def _raw(cur: AsyncCursor[DictRow], row: int, column: int) -> str | None:
    assert cur.pgresult is not None
    value = cur.pgresult.get_value(row, column)
    return None if value is None else bytes(value).decode("utf-8", "replace")


def _column_problem(cur: AsyncCursor[DictRow], row: int, names: list[str]) -> str | None:
    assert cur.pgresult is not None and cur.description is not None
    for column, name in enumerate(names):
        raw = cur.pgresult.get_value(row, column)
        if raw is None:
            continue
        oid = cur.description[column].type_code
        loader = cur.adapters.get_loader(oid, Format(cur.pgresult.fformat(column)))
        if loader is None:
            continue
        try:
            loader(oid, cur).load(raw)
        except Exception as exc:  # noqa: BLE001
            return f"{name}: {_describe(exc)}"
    return None


def _sane(job: Job) -> str | None:
    """What makes a loaded job impossible to run, if anything."""
    timeout = job.timeout_seconds
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        return f"timeout_seconds: {timeout!r} is not a finite number of seconds"
    if not isinstance(job.args, dict):
        return f"args: a JSON {type(job.args).__name__}, not an object"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to decode"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg})"
    return f"{type(exc).__name__}: {exc}"[:500]


def failures(bad: list[Unreadable], token: UUID) -> dict[str, Any]:
    """Parameters of job_fail_many that fail these rows for good."""
    return {
        "ids": [b.job_id for b in bad],
        "tokens": [token] * len(bad),
        "errors": [json.dumps(b.error()) for b in bad],
        "retry_in": [None] * len(bad),
        "cancel": [False] * len(bad),
        "now": None,
    }
