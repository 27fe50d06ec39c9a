"""The two runners: the one way any Conveyor code sends a statement.

`run` drives an operation or a plan (ops.py) on a sync connection and `arun` on an async one;
caller.py executes each step on whatever connection kind it is given (psycopg, SQLAlchemy,
Django). A failing step is thrown back into its plan, which may handle it or let it rise.
Transactions are the caller's to open: run inside one, a plan's steps commit or roll back
together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from conveyor._store import caller
from conveyor._store.ops import Op, Plan, Step

T = TypeVar("T")


def run(conn: Any, work: Op[T] | Plan[T]) -> T:
    """Run an operation or a plan on a sync connection; return what it read."""
    if isinstance(work, Op):
        return caller.execute(conn, work)  # type: ignore[no-any-return]
    plan = _Driver(work)
    while (step := plan.next()) is not None:
        plan.answer(caller.execute, conn, step)
    return plan.result


async def arun(conn: Any, work: Op[T] | Plan[T]) -> T:
    """Run an operation or a plan on an async connection; return what it read."""
    if isinstance(work, Op):
        return await caller.aexecute(conn, work)  # type: ignore[no-any-return]
    plan = _Driver(work)
    while (step := plan.next()) is not None:
        await plan.aanswer(caller.aexecute, conn, step)
    return plan.result


class _Driver(Generic[T]):
    """Steps through a plan: all that the runners share, so only the I/O differs between them."""

    def __init__(self, work: Plan[T]) -> None:
        self._plan = work
        self._reply: Any = None
        self._error: BaseException | None = None
        self.result: T

    def next(self) -> Step | None:
        try:
            if self._error is not None:
                error, self._error = self._error, None
                return self._plan.throw(error)
            return self._plan.send(self._reply)
        except StopIteration as done:
            self.result = done.value
            return None

    def answer(self, execute: Callable[[Any, Step], Any], conn: Any, step: Step) -> None:
        try:
            self._reply = execute(conn, step)
        except BaseException as exc:  # noqa: BLE001 - to the plan, which re-raises or copes
            # a cancellation too: the plan's `with` blocks (its enqueue span) see what happened
            self._error = exc

    async def aanswer(
        self, execute: Callable[[Any, Step], Awaitable[Any]], conn: Any, step: Step
    ) -> None:
        try:
            self._reply = await execute(conn, step)
        except BaseException as exc:  # noqa: BLE001 - to the plan, which re-raises or copes
            # a cancellation too: the plan's `with` blocks (its enqueue span) see what happened
            self._error = exc
