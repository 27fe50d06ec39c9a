"""The embedded default: a private Postgres (package `pgserver`) under ./.conveyor/."""

from __future__ import annotations

import sys
import threading
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
            try:
                import pgserver
            except ImportError:
                raise ConfigError(
                    "no database configured: set CONVEYOR_DATABASE_URL, pass"
                    " Conveyor(database_url=...), or install the embedded default with"
                    " `pip install 'conveyor[embedded]'`"
                ) from None
            root.mkdir(parents=True, exist_ok=True)
            print(
                f"conveyor: no CONVEYOR_DATABASE_URL set; using the embedded Postgres in"
                f" {root / 'pgdata'} (set CONVEYOR_DATABASE_URL to use your own)",
                file=sys.stderr,
            )
            _servers[root] = pgserver.get_server(  # type: ignore[attr-defined]
                root / "pgdata", cleanup_mode="stop"
            )
        return str(_servers[root].get_uri())
