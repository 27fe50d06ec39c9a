"""Job rows that Postgres holds but Python cannot load as they are: timestamps past year 9999
or infinite (datetime cannot hold them) and args nested deeper than json can decode.

They are written with plain INSERTs, not conveyor.enqueue(), which may refuse such input: rows
like these can still exist (written before that check, or by hand), and every list and page
must survive them.
"""

from __future__ import annotations

from typing import Any

import psycopg

#: args nested this deep make json.loads raise RecursionError (its limit is about 1000).
DEEP = 5000

_HOT = (
    "INSERT INTO conveyor.job (task, queue, state, run_at, args)"
    " VALUES (%(task)s, 'default', %(state)s, %(run_at)s::timestamptz, %(args)s::jsonb)"
    " RETURNING id"
)
_DONE = (
    "INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts,"
    " args, errors, created_at, run_at, attempted_at, finished_at)"
    " VALUES (nextval(pg_get_serial_sequence('conveyor.job', 'id')), %(task)s, 'default',"
    " 'completed', 0, 1, 1, '{}', '[]', now(), now(), now(), %(finished_at)s::timestamptz)"
    " RETURNING id"
)


def deep_args() -> str:
    """A JSON object whose one argument is an array nested DEEP levels."""
    return '{"a": ' + "[" * DEEP + "]" * DEEP + "}"


def _one(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def insert_unreadable_jobs(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """One job of each kind Python cannot load, plus an ordinary one; their ids by kind."""
    hot = {"args": "{}", "run_at": "now"}
    return {
        "ordinary": _one(conn, _HOT, {**hot, "task": "t.ordinary", "state": "available"}),
        "infinite_run_at": _one(
            conn, _HOT, {**hot, "task": "t.never", "state": "scheduled", "run_at": "infinity"}
        ),
        # available since forever: its age cannot be computed either
        "minus_infinite_run_at": _one(
            conn, _HOT, {**hot, "task": "t.always", "state": "available", "run_at": "-infinity"}
        ),
        "deep_args": _one(
            conn, _HOT, {**hot, "task": "t.deep", "state": "available", "args": deep_args()}
        ),
        # finished after year 9999: also counted in the last hour's throughput
        "far_finished": _one(
            conn, _DONE, {"task": "t.far", "finished_at": "12000-01-01 00:00:00+00"}
        ),
    }
