"""What the engine records about a step besides its result: a failure's description, and the
check of an event key."""

from __future__ import annotations

import traceback
from typing import Any

from conveyor import codec
from conveyor.errors import PayloadError


def check_event_key(key: str) -> str:
    """An event key: any text of at most 1,000 bytes, the empty string included (no key)."""
    if not isinstance(key, str):
        raise PayloadError(f"an event key must be a string, got {type(key).__name__}")
    return codec.check_key(key, "the event key") if key else key


#: Longest error message and traceback kept per failed step attempt.
MAX_MESSAGE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 16_000


def describe(exc: BaseException, attempt: int) -> dict[str, Any]:
    """The record of a failed step attempt or run: type, message, traceback, attempt."""
    kind = type(exc)
    module = getattr(kind, "__module__", None)
    name = kind.__qualname__ if module in (None, "builtins") else f"{module}.{kind.__qualname__}"
    try:
        message = str(exc) or kind.__name__
    except Exception:  # noqa: BLE001 - the user's exception, not ours
        message = f"<unprintable {kind.__name__}>"
    try:
        trace = "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001
        trace = "(traceback unavailable)"
    return {
        "type": codec.storable_text(name)[:200],
        "message": codec.storable_text(message)[-MAX_MESSAGE_CHARS:],
        "traceback": codec.storable_text(trace)[-MAX_TRACEBACK_CHARS:],
        "attempt": attempt,
    }
