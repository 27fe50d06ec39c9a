"""Queue settings as the Client and `app.queue()` take them: checked by name and value."""

from __future__ import annotations

import difflib
from typing import Any

from conveyor.errors import ConfigError
from conveyor.queues import FIELDS, QueueLimits, configure_params, limits

_GROUPS = {"key_concurrency": "key", "on_full": "max_depth"}


def validate_queue_settings(changes: dict[str, Any]) -> QueueLimits:
    """Check queue settings by name and value; raise ConfigError naming the fix."""
    unknown = sorted(set(changes) - set(FIELDS) - set(_GROUPS))
    if unknown:
        known = [*FIELDS, *_GROUPS]
        hints = [difflib.get_close_matches(u, known, 1) for u in unknown]
        hint = (
            "; did you mean " + ", ".join(repr(h[0]) for h in hints if h) + "?"
            if any(hints)
            else ""
        )
        raise ConfigError(
            f"unknown queue setting(s) {', '.join(map(repr, unknown))}{hint} (settings:"
            f" {', '.join(known)})"
        )
    return limits(**changes)


def configure_queue_params(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Parameters of queue_configure for the named settings only."""
    values = validate_queue_settings(changes)
    fields = tuple(sorted({_GROUPS.get(k, k) for k in changes}))
    return configure_params(name, values, fields, None)
