"""The cron half of PostgresStore: schedules' progress, and one job per time slot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from conveyor._store.ops import Op, Plan, Rows, count, found, ignore
from conveyor.errors import ConfigError, EndpointNotFoundError
from conveyor.spec import JobSpec

T = TypeVar("T")


@dataclass(frozen=True)
class CronRegistration:
    """A schedule as workers record it; `next_slot` is where a new schedule starts."""

    name: str
    task: str
    cron: str
    timezone: str
    catch_up: str
    next_slot: datetime | None


@dataclass(frozen=True)
class CronProgress:
    """How far a schedule got: the earliest time not yet handled, the latest enqueued."""

    next_slot: datetime | None
    last_slot: datetime | None


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule stored in the database (`conveyor cron add --endpoint`)."""

    name: str
    cron: str
    timezone: str
    catch_up: str
    endpoint: str


class CronStatements:
    """Mixed into PostgresStore; runs every operation through its `_run`."""

    async def _run(self, work: Op[T] | Plan[T]) -> T:
        raise NotImplementedError

    async def cron_schedule_register(
        self, schedules: Sequence[CronRegistration], now: datetime | None = None
    ) -> None:
        document = [
            {
                "name": s.name,
                "task": s.task,
                "cron": s.cron,
                "timezone": s.timezone,
                "catch_up": s.catch_up,
                "next_slot": s.next_slot.isoformat() if s.next_slot else None,
            }
            for s in schedules
        ]
        params = {"schedules": json.dumps(document), "now": now}
        await self._run(Op("cron_schedule_register", params, ignore))

    async def cron_schedule_state(
        self, names: Sequence[str], now: datetime | None = None
    ) -> tuple[datetime, dict[str, CronProgress]]:
        params = {"names": list(names), "now": now}
        rows = await self._run(Op("cron_schedule_state", params, Rows))
        progress = {
            row["name"]: CronProgress(row["next_slot"], row["last_slot"])
            for row in rows
            if row["name"] is not None
        }
        return rows[0]["now"], progress

    async def cron_slot_enqueue(
        self,
        *,
        schedule: str,
        slot: datetime,
        next_slot: datetime | None,
        spec: JobSpec,
        unique_key: str,
        now: datetime | None = None,
    ) -> int | None:
        rows = await self._run(
            Op(
                "cron_slot_enqueue",
                {
                    "schedule": schedule,
                    "slot": slot,
                    "next_slot": next_slot,
                    "task": spec.task,
                    "queue": spec.queue,  # NULL: the endpoint's queue, else default
                    "args": spec.args_json,
                    "priority": spec.priority or 0,
                    "max_attempts": spec.max_attempts,
                    "unique_key": unique_key,
                    "timeout_seconds": spec.timeout_seconds,
                    "now": now,
                },
                Rows,
            )
        )
        return int(rows[0]["id"]) if rows else None

    async def cron_schedule_skip(
        self, *, schedule: str, next_slot: datetime, now: datetime | None = None
    ) -> bool:
        params = {"schedule": schedule, "next_slot": next_slot, "now": now}
        return await self._run(Op("cron_schedule_skip", params, found))

    async def cron_schedule_stored(self) -> list[StoredSchedule]:
        rows = await self._run(Op("cron_schedule_stored", {}, Rows))
        return [StoredSchedule(**row) for row in rows]

    async def cron_slot_prune(self, seconds: float, now: datetime | None = None) -> int:
        params = {"seconds": seconds, "now": now}
        return await self._run(Op("cron_slot_prune", params, count))


def add(
    *,
    name: str,
    cron: str,
    timezone: str,
    catch_up: str,
    endpoint: str,
    next_slot: datetime | None,
) -> Op[None]:
    """Store a schedule for an endpoint; ConfigError when the name is taken,
    EndpointNotFoundError when the endpoint does not exist."""
    params = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "catch_up": catch_up,
        "endpoint": endpoint,
        "next_slot": next_slot,
        "now": None,
    }

    def read(rows: Rows) -> None:
        if not rows[0]["endpoint_found"]:
            raise EndpointNotFoundError(
                f"no endpoint named {endpoint!r}; add it first with"
                f" `conveyor endpoint add {endpoint} --url URL --secret SECRET`"
            )
        if rows[0]["inserted"] is None:
            raise ConfigError(
                f"a cron schedule named {name!r} exists already; remove it with"
                f" `conveyor cron remove {name}` or pick another name"
            )

    return Op("cron_schedule_add", params, read)


def remove(name: str) -> Op[None]:
    def read(rows: Rows) -> None:
        if not rows:
            raise ConfigError(
                f"no cron schedule named {name!r}; `conveyor cron list` shows the schedules"
            )

    return Op("cron_schedule_remove", {"name": name}, read)
