"""Telling a database that will come back from one that never will.

A server that is down, starting or out of connections is worth waiting for; a database or
role that does not exist, a wrong password or a malformed URL is not, and the person who
started the process needs one line naming the cause and the fix instead of a retry loop.
libpq reports all of these as connection errors without an SQLSTATE, so the server's own
wording is matched.
"""

from __future__ import annotations

import re

import psycopg

_FATAL = [
    (
        re.compile(r'database "([^"]*)" does not exist'),
        'database "{0}" does not exist: create it (createdb {0}) or fix the database name in'
        " the URL",
    ),
    (
        re.compile(r'role "([^"]*)" does not exist'),
        'role "{0}" does not exist: create it (createuser {0}) or fix the user name in the URL',
    ),
    (
        re.compile(r'password authentication failed for user "([^"]*)"'),
        'password authentication failed for user "{0}": fix the password in the URL (or'
        " PGPASSWORD)",
    ),
    (
        re.compile(r"no pg_hba\.conf entry for (.*?)(?:,|$)"),
        "the server does not accept this connection (no pg_hba.conf entry for {0}): allow it"
        " in pg_hba.conf or connect as another user or from another host",
    ),
]


def permanent_problem(exc: BaseException) -> str | None:
    """One line saying why connecting can never succeed as configured, or None when waiting
    may help (the server is down, starting, restarting or full)."""
    if isinstance(exc, psycopg.ProgrammingError) and not isinstance(
        exc, psycopg.errors.UndefinedTable | psycopg.errors.InsufficientPrivilege
    ):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"the database URL is malformed ({first}); write it as"
            " postgresql://user:password@host:5432/dbname"
        )
    if not isinstance(exc, psycopg.OperationalError):
        return None
    text = str(exc)
    for pattern, message in _FATAL:
        match = pattern.search(text)
        if match:
            return message.format(*match.groups())
    return None
