"""Yes-or-no settings read from the environment (CONVEYOR_PGBOUNCER, ...)."""

from __future__ import annotations

import os

from conveyor.errors import ConfigError

_YES = {"1", "true", "yes", "on"}
_NO = {"", "0", "false", "no", "off"}


def env_flag(name: str, *, yes: str, no: str) -> bool:
    """The variable `name` as a flag (unset: False); a value that is neither yes nor no is
    refused with what each means (`yes`, `no`: "set it to 1 when ...")."""
    value = os.environ.get(name, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ConfigError(f"{name}={os.environ[name]!r} is not a yes or no; {yes}, or {no}")
