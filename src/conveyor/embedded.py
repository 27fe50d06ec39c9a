"""The embedded default: a private Postgres (package `pgserver`) under ./.conveyor/."""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError

_servers: dict[Path, Any] = {}
_lock = threading.Lock()


def embedded_url(directory: str | Path) -> str:
    """Start (or join) the embedded Postgres under `directory` and return its URL.

    Every process that asks for the same directory shares one server; it stops when the last
    of them exits.
    """
    root = Path(directory).resolve()
    with _lock:
        if root not in _servers:
            pgserver = _import_pgserver()
            root.mkdir(parents=True, exist_ok=True)
            print(
                f"conveyor: no CONVEYOR_DATABASE_URL set; using the embedded Postgres in"
                f" {root / 'pgdata'} (set CONVEYOR_DATABASE_URL to use your own)",
                file=sys.stderr,
            )
            _quiet_pgserver()
            with _no_runtime_dir_warning():
                _servers[root] = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
            # registered after pgserver's own exit hook, so it runs first (atexit is LIFO)
            atexit.register(_hush_pgserver_at_exit)
        return str(_servers[root].get_uri())


def _import_pgserver() -> Any:
    try:
        with _no_runtime_dir_warning():
            import pgserver
    except ImportError:
        raise ConfigError(
            "no database configured: set CONVEYOR_DATABASE_URL, pass"
            " Conveyor(database_url=...), or install the embedded default (from a checkout:"
            " `pip install -e '.[embedded]'`)"
        ) from None
    return pgserver


@contextmanager
def _no_runtime_dir_warning() -> Iterator[None]:
    """Without XDG_RUNTIME_DIR (cron, containers, sudo) platformdirs warns, on importing
    pgserver and on starting it, that it falls back to /tmp/runtime-UID for pgserver's lock
    file, which works as well; the warning only worries people."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def _hush_pgserver_at_exit() -> None:
    """At exit pgserver stops the server with `pg_ctl stop` and, when that fails (seen on a
    loaded machine), kills it instead, logging an ERROR and a WARNING for a stop that still
    happened. Nothing can be done about it at exit and the next start recovers, so a CLI
    command that worked does not end with two alarming lines."""
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)


def _quiet_pgserver() -> None:
    """pgserver logs every initdb, pg_ctl and clean-up step at INFO (a dozen lines or more per
    command, and more at exit); the line above says what matters. Its warnings and errors still
    show, and a level set for the `pgserver` logger beforehand (conveyor --log-level DEBUG
    sets one) is kept."""
    pgserver_log = logging.getLogger("pgserver")
    if pgserver_log.level == logging.NOTSET:
        pgserver_log.setLevel(logging.WARNING)
