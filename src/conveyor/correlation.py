"""Correlation ids: what ties a job, and every log line about it, to whatever caused it.

The id is taken at enqueue from the task's options or, when none is given, from the current
context: a web framework middleware sets it to the request id, and inside a running job it is
that job's correlation id, so jobs a handler enqueues carry it on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from conveyor.errors import ConfigError

#: Longest correlation id the job table accepts.
MAX_LENGTH = 255

_current: ContextVar[str | None] = ContextVar("conveyor_correlation_id", default=None)


def current_correlation_id() -> str | None:
    """The correlation id of the current context: the caller's, or the running job's."""
    return _current.get()


@contextmanager
def correlation_id(value: str | None) -> Iterator[None]:
    """Give jobs enqueued inside this block (and the log lines about them) this id.

    ```python
    with conveyor.correlation_id(request.headers["x-request-id"]):
        send_receipt.enqueue(order_id=42)
    ```
    """
    token = _current.set(validate(value))
    try:
        yield
    finally:
        _current.reset(token)


def validate(value: str | None) -> str | None:
    """Return `value` if it can be stored as a correlation id; raise ConfigError if not."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"a correlation id must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_LENGTH or "\x00" in value:
        raise ConfigError(
            f"a correlation id must be 1 to {MAX_LENGTH} characters without NUL bytes"
            f" (got {len(value)} characters); shorten it or pass a hash of it"
        )
    return value


def _set(value: str | None) -> None:
    """Set the id for the rest of the current context (the worker, for a running job: each
    job runs in its own asyncio task, so this never leaks to another job)."""
    _current.set(value)
