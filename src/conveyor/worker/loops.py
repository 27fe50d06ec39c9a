"""Stopping a worker's background loops: bounded, and saying where a loop that would not stop
was waiting, so a shutdown always ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("conveyor.worker")

#: Seconds a stopping background loop, the deregistration or the leader's unlock may take
#: before shutdown goes on without it.
CLOSE_TIMEOUT = 5.0


async def stop_loops(loops: list[asyncio.Task[None]], timeout: float = CLOSE_TIMEOUT) -> None:
    """Cancel `loops` and wait for them to end, at most `timeout` seconds. A loop still running
    then (one that lost its cancellation, or waits on something that ignores it) is logged with
    the place it is stuck at, cancelled once more and left behind: never waited on forever."""
    ended = {loop for loop in loops if loop.done()}  # a broken loop, logged already
    for loop in loops:
        loop.cancel()
    if not loops:
        return
    done, stuck = await asyncio.wait(loops, timeout=timeout)
    for loop in done - ended:
        if not loop.cancelled() and loop.exception() is not None:
            log.warning(
                "worker loop %s failed as it stopped", loop.get_name(), exc_info=loop.exception()
            )
    for loop in stuck:
        log.error(
            "worker loop %s did not stop within %gs of its cancellation; leaving it behind"
            " (awaiting %s)",
            loop.get_name(),
            timeout,
            _awaiting(loop),
        )
        loop.cancel()


def _awaiting(task: asyncio.Task[Any]) -> str:
    """The chain of coroutines `task` is suspended in, outermost first (a task's own stack
    shows only its outermost coroutine)."""
    where: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        frame = awaited.cr_frame
        where.append(f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})")
        awaited = awaited.cr_await
    if awaited is not None:
        where.append(repr(awaited))
    return " -> ".join(where)
