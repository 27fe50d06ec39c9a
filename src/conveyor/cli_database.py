"""The CLI's first step: connect once, and stop in one line when the database cannot be used.

Commands call `check_database` before anything else, so a malformed URL, a missing database or
role, a wrong password or a server that is down is reported at once (by _store/diagnose.py),
instead of as a psycopg traceback or after the connection pool's 10 s wait and its warnings.
"""

from __future__ import annotations

import click

from conveyor._store.diagnose import Trouble, diagnose, trouble_of

__all__ = ["Trouble", "check_database", "diagnose", "trouble_of"]


def check_database(url: str) -> None:
    """Connect once to `url`; raise a one-line ClickException naming the cause and fix."""
    trouble = diagnose(url)
    if trouble is not None:
        raise click.ClickException(str(trouble))
