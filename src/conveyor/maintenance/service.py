"""PeriodicService: run_once() on an interval, gated on leadership when it must run once."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import psycopg_pool

log = logging.getLogger("conveyor.maintenance")


class PeriodicService(ABC):
    """Subclasses say what one pass does; the loop, the leader gate and error handling live
    here. Tests call run_once() directly with a frozen clock."""

    #: Run only on the elected leader (work that must happen once, not once per worker).
    leader_only: bool = True

    def __init__(self, interval: float) -> None:
        self.interval = interval

    @abstractmethod
    async def run_once(self) -> Any:
        """Do one pass and report what it did."""

    def not_leading(self) -> None:
        """A pass was skipped because this worker does not lead (or no longer does: it was
        cut off, its election lost). Nothing to do by default."""
        return None

    async def run(self, is_leader: Callable[[], Awaitable[bool]]) -> None:
        """Loop until cancelled; errors are logged and the next pass tries again."""
        name = type(self).__name__
        while True:
            try:
                if not self.leader_only or await is_leader():
                    await self.run_once()
                else:
                    self.not_leading()
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                log.warning("%s: database unavailable (%s); will retry", name, exc)
            except Exception:
                log.exception("%s failed; will retry", name)
            await asyncio.sleep(self.interval)
