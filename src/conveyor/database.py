"""Whether the database can be used, and if not why, in one line that names the cause and the fix.

The public face of the store's diagnosis (`conveyor._store.diagnose`) for whatever reports to a
person: the CLI connects once with `diagnose` before a command, so a malformed URL, a missing
database or role, a wrong password or a server that is down is reported at once instead of as a
psycopg traceback or after the connection pool's 10 s wait; and `describe` turns a database
error a command raised later (a schema older than this Conveyor, a connection lost
mid-command) into the same kind of line. Front ends import this module, never `_store`.
"""

from __future__ import annotations

import psycopg

from conveyor._store.diagnose import Trouble, diagnose, trouble_of
from conveyor.errors import DatabaseUnavailableError

__all__ = ["Trouble", "describe", "diagnose", "trouble_of"]

# What a database migrated by an older Conveyor raises when a statement names what it lacks.
_SCHEMA_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
)


def describe(exc: BaseException) -> str | None:
    """One line for a database error: a schema older than this Conveyor (say to run
    `conveyor migrate`), or a database that cannot be reached or was lost (the cause and the
    fix); None for an error that is not about the database."""
    if isinstance(exc, _SCHEMA_MISSING):
        detail = str(exc).splitlines()[0]
        return (
            f"the database does not have this Conveyor's schema ({detail}); run `conveyor migrate`"
        )
    if isinstance(exc, DatabaseUnavailableError):
        # its own message speaks of enqueueing; the connection error under it names the cause
        return str(trouble_of(exc.__cause__ or exc))
    if isinstance(exc, psycopg.OperationalError):
        return str(trouble_of(exc))
    return None
