"""The flow half of PostgresStore: waiting parents, their children, and job progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from conveyor._store.caller import Row
from conveyor.job import Job


@dataclass(frozen=True)
class Advanced:
    """What one FlowAdvancer pass did: parents made available, parents failed."""

    ready: int
    failed: int


class FlowStatements:
    """Mixed into PostgresStore; runs every statement through its `_rows`."""

    async def _rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        raise NotImplementedError

    async def flow_advance(self, limit: int = 1000, now: datetime | None = None) -> Advanced:
        rows = await self._rows("flow_advance", {"limit": limit, "now": now})
        return Advanced(int(rows[0]["ready"]), int(rows[0]["failed"]))

    async def flow_children(self, parent_id: int) -> list[Job]:
        rows = await self._rows("flow_children", {"parent_id": parent_id})
        return [Job.from_row(row) for row in rows]

    async def flow_prune(self) -> int:
        return len(await self._rows("flow_prune", {}))

    async def job_set_progress(
        self,
        job_id: int,
        token: UUID,
        value: float,
        message: str | None,
        now: datetime | None = None,
    ) -> bool:
        params = {"id": job_id, "token": token, "value": value, "message": message, "now": now}
        return bool(await self._rows("job_set_progress", params))
