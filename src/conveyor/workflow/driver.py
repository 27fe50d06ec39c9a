"""The engine's two drivers: the one place where a sync and an async workflow differ.

Everything the engine does for a run (replay, a step, a sleep, a wait, the run's end) is
written once as a script: a generator that yields actions, `InTransaction` (a plan of
_store/workflows.py in a transaction of its own) and `Invoke` (the user's function), and
receives what each gave. `drive` runs a script in the worker's thread (sync workflows, on the
sync pool); `adrive` on the event loop (async workflows). An action's exception is thrown back
into the script, which handles it or lets it rise.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from conveyor._store.ops import Op, Plan
from conveyor._store.runner import arun, run
from conveyor._store.workflows import Refused, StepRaised
from conveyor.errors import ConfigError

T = TypeVar("T")


class Signal(BaseException):
    """Stops a workflow function where it stands. A BaseException, so that the workflow's own
    `except Exception` cannot swallow it (its `finally` blocks do run)."""


class Parked(Signal):
    """The run is parked (sleep, event wait, a step's backoff): its job waits in the database;
    the function runs again from the top when it wakes."""


class Lost(Signal):
    """The worker no longer holds the run's job (rescued, cancelled): nothing more is written."""


class Unavailable(Signal):
    """A statement of the engine failed (the database went away, say). Carried past the
    workflow's own `except` blocks to the engine, which raises `cause`: the job's retry policy
    decides, the run is not failed for it."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(frozen=True)
class InTransaction:
    """Run the operation or plan `make(conn)` returns in a transaction of its own."""

    make: Callable[[Any], Op[Any] | Plan[Any]]


@dataclass(frozen=True)
class Invoke:
    """Call the user's function (a step's or the workflow's own)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Action = InTransaction | Invoke
Script = Generator[Action, Any, T]


class Database(Protocol):
    """Where transactions come from: the worker's store."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    def sync_transaction(self) -> AbstractContextManager[Any]: ...


def drive(script: Script[T], db: Database) -> T:
    """Run a script synchronously (a sync workflow, in the worker's thread)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = script.send(reply) if error is None else script.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            if isinstance(action, InTransaction):
                reply = _in_transaction(db, action)
            else:
                if inspect.iscoroutinefunction(action.fn):
                    raise ConfigError(
                        f"{_name(action.fn)} is an async function in a sync workflow: make the"
                        " workflow `async def`, or the step a plain function"
                    )
                reply = action.fn(*action.args, **action.kwargs)
        except (Exception, Signal) as exc:  # noqa: BLE001 - back into the script
            error = exc


async def adrive(script: Script[T], db: Database) -> T:
    """Run a script on the event loop (an async workflow). A plain function of a step runs in a
    thread, so that it cannot block the loop."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = script.send(reply) if error is None else script.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            if isinstance(action, InTransaction):
                reply = await _ain_transaction(db, action)
            elif inspect.iscoroutinefunction(action.fn):
                reply = await action.fn(*action.args, **action.kwargs)
            else:
                reply = await asyncio.to_thread(action.fn, *action.args, **action.kwargs)
                if inspect.isawaitable(reply):
                    reply = await reply
        except (Exception, Signal) as exc:  # noqa: BLE001 - back into the script
            error = exc


def _in_transaction(db: Database, action: InTransaction) -> Any:
    try:
        with db.sync_transaction() as conn:
            return run(conn, action.make(conn))
    except Exception as exc:
        raise _statement_error(exc) from exc


async def _ain_transaction(db: Database, action: InTransaction) -> Any:
    try:
        async with db.transaction() as conn:
            return await arun(conn, action.make(conn))
    except Exception as exc:
        raise _statement_error(exc) from exc


def _statement_error(exc: Exception) -> BaseException:
    """What a failed transaction becomes in the script: a refused write a lost job, a step's
    own failure itself, anything else the database's trouble."""
    if isinstance(exc, Refused):
        return Lost("a write of this run was refused: the worker lost its job")
    if isinstance(exc, StepRaised):
        return exc
    return Unavailable(exc)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
