"""Pooler mode: connecting through PgBouncer in transaction mode (or any pooler like it).

Such a pooler hands each transaction to whichever server connection is free, so nothing that
lives in a session survives between two transactions. Of what Conveyor uses, that breaks
server-side prepared statements (psycopg prepares a statement it has run five times on a
connection, then binds to it by name: on another server connection that name is missing or
another statement's) and LISTEN. The leader lease is a row (leader.py) and settings go with
each connection, so those work either way.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from conveyor.envflags import env_flag

#: Set to 1 when the database URL goes through PgBouncer in transaction mode.
PGBOUNCER_ENV = "CONVEYOR_PGBOUNCER"
#: A direct URL (not through the pooler) the worker LISTENs on; polling without it.
LISTEN_URL_ENV = "CONVEYOR_LISTEN_URL"

log = logging.getLogger("conveyor.worker")

#: What a transaction-mode pooler does to psycopg's prepared statements (named _pg3_N).
_POOLER_SYMPTOM = re.compile(
    r'prepared statement "_pg3_\d+" (does not exist|already exists|requires)'
    r"|bind message supplies \d+ parameters, but prepared statement \"_pg3_"
)
_hinted = False


def pgbouncer_from_env() -> bool:
    """CONVEYOR_PGBOUNCER as a flag; a value that is neither yes nor no is refused."""
    return env_flag(
        PGBOUNCER_ENV,
        yes="set it to 1 when the database URL goes through PgBouncer in transaction mode",
        no="0 (or unset) when not",
    )


def listen_url_from_env() -> str | None:
    """CONVEYOR_LISTEN_URL, None when unset or empty."""
    return os.environ.get(LISTEN_URL_ENV, "").strip() or None


def connect_options(pgbouncer: bool) -> dict[str, Any]:
    """Keyword arguments for every psycopg connection Conveyor opens: behind a pooler, no
    server-side prepared statements (each statement is parsed where it runs)."""
    return {"prepare_threshold": None} if pgbouncer else {}


def hint_if_pooler(exc: BaseException, pgbouncer: bool) -> None:
    """Log once, naming the fix, when `exc` is what a transaction-mode pooler does to prepared
    statements on connections not told about it."""
    global _hinted
    if pgbouncer or _hinted or not _POOLER_SYMPTOM.search(str(exc)):
        return
    _hinted = True
    log.error(
        "the database refused a prepared statement (%s): the URL looks like it goes through"
        " PgBouncer in transaction mode; set %s=1 (or conveyor worker --pgbouncer) on every"
        " process that uses it. docs/deployment.md",
        exc,
        PGBOUNCER_ENV,
    )
