"""CronEnqueuer: enqueues one job for every time slot of the app's cron schedules, and of the
schedules stored in the database for HTTP endpoints (`conveyor cron add --endpoint`).

Every worker runs it. Exactly one job per slot is the database's doing, not this loop's: the
slot's row in conveyor.cron_slot and its job are written by one statement, and any other
worker writing the same slot inserts neither. Timing decides only how soon a slot is enqueued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor._store.cron import CronProgress, CronRegistration, StoredSchedule
from conveyor._store.protocol import Store
from conveyor.clock import Clock, SystemClock
from conveyor.cron import Schedule
from conveyor.errors import ConfigError
from conveyor.maintenance.service import PeriodicService
from conveyor.spec import JobSpec

log = logging.getLogger("conveyor.cron")


@dataclass(frozen=True)
class CronPass:
    """What one pass did: the (schedule, slot) pairs this worker enqueued, and those it
    dropped as missed (catch_up="skip")."""

    enqueued: tuple[tuple[str, datetime], ...] = ()
    skipped: tuple[tuple[str, datetime], ...] = ()


class CronEnqueuer(PeriodicService):
    """Each pass takes now from the app's clock (the database's by default), and for every
    schedule whose next slot has come, enqueues the latest due slot: at once when it is less
    than `grace` old, and when it is older (no worker ran at that time) only under
    catch_up="once". Slots before the latest are never enqueued, so an outage cannot turn
    into a storm of jobs.

    With `stored=True` (every worker's) each pass also runs the schedules stored in the
    database for endpoints; the app's own schedules are registered by this worker, the stored
    ones by `conveyor cron add`.
    """

    leader_only = False

    def __init__(
        self,
        store: Store,
        schedules: Sequence[Schedule],
        *,
        interval: float = 1.0,
        clock: Clock | None = None,
        stored: bool = False,
    ) -> None:
        super().__init__(interval)
        self._store = store
        self._schedules = {s.name: s for s in schedules}
        self._clock = clock or SystemClock()
        self._registered = False
        self._stored = stored
        self._invalid: set[StoredSchedule] = set()

    async def run_once(self) -> CronPass:
        """Enqueue every due slot; return what this worker enqueued and skipped."""
        stored = await self._stored_schedules() if self._stored else {}
        if not self._schedules and not stored:
            return CronPass()  # nothing to run: one query per pass, for the stored ones
        now, progress = await self._read_progress(stored)
        enqueued: list[tuple[str, datetime]] = []
        skipped: list[tuple[str, datetime]] = []
        for schedule in [*self._schedules.values(), *stored.values()]:
            state = progress.get(schedule.name)
            due = None if state is None else self._due_slot(schedule, state, now)
            if due is None:
                continue
            if now - due < schedule.grace or schedule.catch_up == "once":
                if await self._enqueue(schedule, due, now):
                    enqueued.append((schedule.name, due))
            elif await self._skip(schedule, due, now):
                skipped.append((schedule.name, due))
        return CronPass(tuple(enqueued), tuple(skipped))

    async def _stored_schedules(self) -> dict[str, Schedule]:
        """The endpoint schedules in the database, except names the app declares itself."""
        found: dict[str, Schedule] = {}
        for row in await self._store.cron_schedule_stored():
            if row.name in self._schedules:
                continue
            try:
                found[row.name] = stored_schedule(row)
            except ConfigError as exc:
                if row not in self._invalid:  # once, not every pass
                    self._invalid.add(row)
                    log.error("cron %s: not run: %s", row.name, exc)
        return found

    async def _read_progress(
        self, stored: dict[str, Schedule]
    ) -> tuple[datetime, dict[str, CronProgress]]:
        names = [*self._schedules, *stored]
        now, progress = await self._store.cron_schedule_state(names, now=self._clock.now())
        # Register every schedule on the first pass (a deploy may have changed one), later
        # only those whose row is gone.
        missing = [
            s for s in self._schedules.values() if not self._registered or s.name not in progress
        ]
        if missing:
            await self._store.cron_schedule_register(
                [_registration(s, now) for s in sorted(missing, key=lambda s: s.name)], now=now
            )
            self._registered = True
            now, progress = await self._store.cron_schedule_state(names, now=now)
        return now, progress

    @staticmethod
    def _due_slot(schedule: Schedule, progress: CronProgress, now: datetime) -> datetime | None:
        if progress.next_slot is None or progress.next_slot > now:
            return None
        due = schedule.latest_between(progress.next_slot, now)
        if due is None or (progress.last_slot is not None and due <= progress.last_slot):
            return None
        return due

    async def _enqueue(self, schedule: Schedule, slot: datetime, now: datetime) -> bool:
        job_id = await self._store.cron_slot_enqueue(
            schedule=schedule.name,
            slot=slot,
            next_slot=schedule.next_after(slot),
            spec=schedule.spec,
            unique_key=schedule.job_key(slot),
            now=now,
        )
        if job_id is None:
            return False  # another worker enqueued this slot first
        late = "" if now - slot < schedule.grace else " (catching up a missed time)"
        log.info("cron %s: enqueued job %d for %s%s", schedule.name, job_id, slot, late)
        return True

    async def _skip(self, schedule: Schedule, slot: datetime, now: datetime) -> bool:
        next_slot = schedule.next_after(slot)
        if next_slot is None:
            return False
        done = await self._store.cron_schedule_skip(
            schedule=schedule.name, next_slot=next_slot, now=now
        )
        if done:
            log.warning(
                "cron %s: skipped missed time(s) up to %s (no worker ran then;"
                " catch_up='skip'); next at %s",
                schedule.name,
                slot,
                next_slot,
            )
        return done


def stored_schedule(row: StoredSchedule) -> Schedule:
    """The Schedule of a stored row: a job of the endpoint, with no arguments, in its queue."""
    return Schedule(
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        catch_up=row.catch_up,
        grace=STORED_GRACE,
        spec=JobSpec(task=row.endpoint, args_json="{}"),
    )


#: When a stored schedule's time counts as missed (as `grace` does for an app's).
STORED_GRACE = timedelta(seconds=60)


def _registration(schedule: Schedule, now: datetime) -> CronRegistration:
    # A new schedule starts with the first slot less than `grace` old, like a running one.
    return CronRegistration(
        name=schedule.name,
        task=schedule.task,
        cron=schedule.cron,
        timezone=schedule.timezone,
        catch_up=schedule.catch_up,
        next_slot=schedule.next_after(now - schedule.grace),
    )
