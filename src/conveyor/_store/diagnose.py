"""Why a connection to the database failed, in one line that names the cause and the fix.

A server that is down, starting or out of connections is worth waiting for; a malformed URL,
a missing database or role, or a wrong password is not (`Trouble.lasting`), and the person who
started the process needs one line naming the cause and the fix instead of a retry loop or a
traceback. libpq reports these only as text (a failed connection has no SQLSTATE), so the cause
is read from its message. The CLI (through conveyor.database) and the worker use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

#: Where the URL comes from, for the fixes.
WHERE = "the database URL (--database-url or CONVEYOR_DATABASE_URL)"
#: Seconds to wait for a server that does not answer (a dropped packet, a firewall).
CONNECT_TIMEOUT = 5


@dataclass(frozen=True)
class Trouble:
    """Why a connection failed, and what to do about it."""

    cause: str
    fix: str
    #: True when trying again cannot help: a worker stops instead of waiting for the server.
    lasting: bool

    def __str__(self) -> str:
        return f"cannot use the database: {self.cause}; {self.fix}"


def diagnose(url: str) -> Trouble | None:
    """Connect once to `url`; None when that works, else why it did not."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True).close()
    except psycopg.Error as exc:
        return trouble_of(exc)
    return None


def trouble_of(exc: BaseException) -> Trouble:
    """The Trouble behind an error raised while connecting (or a connection lost later)."""
    if isinstance(exc, psycopg.ProgrammingError):  # libpq could not parse the conninfo
        return _malformed("it is neither a postgresql:// URL nor key=value settings")
    message = str(exc)
    for pattern, make in _CAUSES:
        found = pattern.search(message)
        if found:
            return make(found, _detail(message))
    return Trouble(
        _detail(message),
        f"check that Postgres is up and that {WHERE} is right",
        lasting=False,
    )


def _detail(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else "unknown error"
    return first.removeprefix("connection failed: ").removeprefix("connection is bad: ")


def _malformed(why: str) -> Trouble:
    return Trouble(
        f"the database URL is malformed ({why})",
        "write it as postgresql://USER:PASSWORD@HOST:PORT/DBNAME in --database-url or"
        " CONVEYOR_DATABASE_URL",
        lasting=True,
    )


def _missing_database(found: re.Match[str], _: str) -> Trouble:
    name = found["name"]
    return Trouble(
        f'database "{name}" does not exist',
        f"create it (createdb {name}) or fix the database name in {WHERE}",
        lasting=True,
    )


def _missing_role(found: re.Match[str], _: str) -> Trouble:
    name = found["name"]
    return Trouble(
        f'role "{name}" does not exist',
        f"create it (createuser {name}) or fix the user name in {WHERE}",
        lasting=True,
    )


def _wrong_password(found: re.Match[str], _: str) -> Trouble:
    return Trouble(
        f'password authentication failed for user "{found["name"]}"',
        f"fix the password in {WHERE} (or in PGPASSWORD or ~/.pgpass)",
        lasting=True,
    )


def _no_password(_: re.Match[str], __: str) -> Trouble:
    return Trouble(
        "the server asks for a password and none was given",
        f"put it in {WHERE} (postgresql://USER:PASSWORD@HOST/DBNAME) or in PGPASSWORD",
        lasting=True,
    )


def _server_busy(_: re.Match[str], detail: str) -> Trouble:
    return Trouble(
        f"the server refuses more connections ({detail})",
        "try again later, or raise max_connections or the role's CONNECTION LIMIT",
        lasting=False,
    )


def _server_unavailable(_: re.Match[str], detail: str) -> Trouble:
    return Trouble(
        f"the server is starting, stopping or recovering ({detail})",
        "try again in a moment",
        lasting=False,
    )


def _server_down(_: re.Match[str], detail: str) -> Trouble:
    return Trouble(
        f"no Postgres server answers ({detail})",
        f"start Postgres, or fix the host and port in {WHERE}",
        lasting=False,
    )


def _unknown_host(_: re.Match[str], detail: str) -> Trouble:
    return Trouble(
        f"the database host cannot be found ({detail})",
        f"fix the host name in {WHERE}",
        lasting=False,  # DNS can lag behind a server that is coming up
    )


def _bad_setting(_: re.Match[str], detail: str) -> Trouble:
    return _malformed(detail)


_CAUSES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], Trouble]]] = [
    (re.compile(r'database "(?P<name>[^"]*)" does not exist'), _missing_database),
    (re.compile(r'role "(?P<name>[^"]*)" does not exist'), _missing_role),
    (re.compile(r'password authentication failed for user "(?P<name>[^"]*)"'), _wrong_password),
    (re.compile(r"no password supplied|fe_sendauth"), _no_password),
    (re.compile(r"too many (connections|clients)|remaining connection slots"), _server_busy),
    (re.compile(r"the database system is (starting|shutting|in recovery)"), _server_unavailable),
    (
        re.compile(
            r"failed to resolve host|could not translate host name|Name or service not known"
        ),
        _unknown_host,
    ),
    (
        re.compile(
            r"Connection refused|No such file or directory|timeout expired|timed out"
            r"|Network is unreachable|No route to host|server closed the connection"
        ),
        _server_down,
    ),
    (re.compile(r"invalid .*(value|option|URI)|unterminated quoted|missing \"=\""), _bad_setting),
]
