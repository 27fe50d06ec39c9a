"""The flow half of PostgresStore: waiting parents, their children, and job progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from conveyor._store.ops import Op, Plan, Rows, found
from conveyor.job import Job

T = TypeVar("T")


@dataclass(frozen=True)
class Advanced:
    """What one FlowAdvancer pass did: parents made available, parents failed."""

    ready: int
    failed: int


class FlowStatements:
    """Mixed into PostgresStore; runs every operation through its `_run`."""

    async def _run(self, work: Op[T] | Plan[T]) -> T:
        raise NotImplementedError

    async def flow_advance(self, limit: int = 1000, now: datetime | None = None) -> Advanced:
        return await self._run(Op("flow_advance", {"limit": limit, "now": now}, _advanced))

    async def flow_children(self, parent_id: int) -> list[Job]:
        return await self._run(Op("flow_children", {"parent_id": parent_id}, _jobs))

    async def flow_prune(self) -> int:
        return await self._run(Op("flow_prune", {}, len))

    async def job_set_progress(
        self,
        job_id: int,
        token: UUID,
        value: float,
        message: str | None,
        now: datetime | None = None,
    ) -> bool:
        params = {"id": job_id, "token": token, "value": value, "message": message, "now": now}
        return await self._run(Op("job_set_progress", params, found))


def _advanced(rows: Rows) -> Advanced:
    return Advanced(int(rows[0]["ready"]), int(rows[0]["failed"]))


def _jobs(rows: Rows) -> list[Job]:
    return [Job.from_row(row) for row in rows]
