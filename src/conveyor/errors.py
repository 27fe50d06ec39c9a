"""Every exception Conveyor raises on purpose, in one tree. Each message names the problem and
the fix.

Catch `ConveyorError` for all of them, or a branch for one kind. Where a builtin already
names the kind (a bad value, a missing key, a lost connection), the error is that builtin too,
so code written against the builtin keeps working.

* ConveyorError
  + ConfigError (ValueError) - an argument or setting is missing, unknown or out of range
    - ConnectionTypeError (TypeError) - enqueue_tx was given something that is not a connection
  + PayloadError (ValueError) - job arguments or a result cannot be stored
  + UnknownTaskError (LookupError) - no task of this name is registered
  + JobNotFoundError (LookupError) - no job has this id
  + EndpointNotFoundError (LookupError) - no HTTP endpoint has this name
  + EndpointSecretError - an endpoint's secret names an environment variable that is not set
  + RefusedAddressError (ConnectionError) - a delivery's address is private and not allowed
  + SchemaError - the database schema is missing, older or newer than this Conveyor
  + DatabaseUnavailableError (ConnectionError) - the database cannot be reached
  + QueueFullError - a full queue with on_full='reject' refused the job
  + UniqueKeyRaceError (RuntimeError) - a unique enqueue kept racing the key's holder
  + BlockingCallError (TypeError) - a sync call made on the event loop; use its `a` twin
  + JobTimeout - raised inside a handler that ran past its timeout
  + WorkflowError - a workflow run cannot go on
    - StepFailed - a step's last attempt failed (raised into the workflow function)
    - NonDeterminismError - the code and the recorded steps of a run disagree
    - EventTimeout - wait_for_event(raise_on_timeout=True) timed out
  + WorkflowNotFoundError (LookupError) - no workflow run has this id
  + DeliveryError - an alert channel could not deliver (retried on the next pass)

Not in the tree, on purpose: `Retry`, `FailNow` and `SnoozeQueue` (conveyor.outcome) are
instructions a handler raises to Conveyor, not errors Conveyor raises.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigError(ConveyorError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class ConnectionTypeError(ConfigError, TypeError):
    """enqueue_tx / aenqueue_tx was given an object that is not a supported connection."""


class PayloadError(ConveyorError, ValueError):
    """Job arguments cannot be stored: not JSON, not keyword arguments, or too large."""


class UnknownTaskError(ConveyorError, LookupError):
    """No task with this name is registered on the app."""


class SchemaError(ConveyorError):
    """The database schema is missing, older or newer than this version of Conveyor."""


class JobNotFoundError(ConveyorError, LookupError):
    """No job has the given id (it may have been pruned by retention)."""


class EndpointNotFoundError(ConveyorError, LookupError):
    """No HTTP endpoint has the given name (`conveyor endpoint list` shows them)."""


class EndpointSecretError(ConveyorError):
    """An endpoint's secret is `env:NAME` and the delivering worker has no such variable."""


class RefusedAddressError(ConveyorError, ConnectionError):
    """A delivery's host resolved to a loopback, private, link-local, reserved or metadata
    address that the worker's network allow-list does not name (SSRF protection)."""


class DatabaseUnavailableError(ConveyorError, ConnectionError):
    """The database cannot be reached; nothing was written."""


class UniqueKeyRaceError(ConveyorError, RuntimeError):
    """A unique-key enqueue kept racing with the key's holder finishing; nothing was enqueued.

    Rare and safe to retry: the holder finished between the insert and the lookup each time.
    """


class BlockingCallError(ConveyorError, TypeError):
    """A sync method was called on the event loop (in an async handler), where it would block
    every other job; call its `a`-prefixed twin with await instead."""


class DeliveryError(ConveyorError):
    """A channel could not deliver an alert; the evaluator retries it on its next pass."""


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


class WorkflowError(ConveyorError):
    """A workflow run cannot go on (a limit reached, a bad step); the run fails unless the
    workflow function catches it."""


class StepFailed(WorkflowError):  # noqa: N818 - the name reads as what happened
    """A workflow step failed on its last attempt. Raised into the workflow function, which may
    catch it; uncaught, the run fails. `error` is the recorded failure (type, message,
    traceback, attempt)."""

    def __init__(self, step: str, position: int, error: dict[str, object]) -> None:
        self.step = step
        self.position = position
        self.error = error
        super().__init__(
            f"step {step!r} (position {position}) failed after {error.get('attempt')}"
            f" attempt(s): {error.get('type')}: {error.get('message')}"
        )


class NonDeterminismError(WorkflowError):
    """The workflow's code asked for a different step than the one recorded at a position (a
    step renamed, removed or reordered while runs were in flight). The run fails without
    running the step; guard such changes with ctx.patched() (docs/workflows.md)."""


class EventTimeout(WorkflowError):  # noqa: N818 - the name reads as what happened
    """wait_for_event(..., raise_on_timeout=True) saw no event before its timeout."""


class WorkflowNotFoundError(ConveyorError, LookupError):
    """No workflow run has the given id (it may have been pruned by retention)."""
