"""Public exceptions. Each message names the problem and the fix."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class PayloadError(ConveyorError, ValueError):
    """Job arguments cannot be stored: not JSON, not keyword arguments, or too large."""


class UnknownTaskError(ConveyorError, LookupError):
    """No task with this name is registered on the app."""


class SchemaError(ConveyorError):
    """The database schema is missing, older or newer than this version of Conveyor."""


class JobNotFoundError(ConveyorError, LookupError):
    """No job has the given id (it may have been pruned by retention)."""


class DatabaseUnavailableError(ConveyorError, ConnectionError):
    """The database cannot be reached; nothing was written."""


class JobTimeout(ConveyorError):  # noqa: N818 - the name reads as what happened
    """The job ran past its timeout and was stopped."""


# Job errors record the exception's import path; JobTimeout's stays the one it had when it
# lived in the worker, so stored histories, logs and alert filters keep matching it.
JobTimeout.__module__ = "conveyor.worker.executor"


class QueueFullError(ConveyorError):
    """A queue with a maximum depth and the `reject` policy is full; the job was not enqueued.

    Catch it to shed load (answer 503, try later); or raise the queue's max_depth, or choose
    on_full='drop_oldest' / 'drop_newest' to make room instead.
    """

    def __init__(self, queues: list[str]) -> None:
        self.queues = queues
        names = ", ".join(repr(q) for q in queues)
        super().__init__(
            f"queue {names} is full (its max_depth is reached and on_full is 'reject'); the"
            " job was not enqueued: try again later, raise max_depth, or let the queue drop"
            " jobs with on_full='drop_oldest' or 'drop_newest'"
        )
