"""Completer: records attempt outcomes in batches, one statement per kind per flush."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import psycopg
import psycopg_pool

from conveyor import codec
from conveyor._store.protocol import Completion, Failure, Store
from conveyor.backoff import Backoff
from conveyor.job import Job
from conveyor.worker.outcome import Failed, Outcome, Parked, Snoozed, Succeeded

log = logging.getLogger("conveyor.worker")

#: Told what became of a flush's outcomes: (job, outcome, recorded) each.
Recorded = Callable[[list[tuple[Job, Outcome, bool]]], None]

# Worth retrying: the connection or the server is down, or a conflict that passes.
_TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg_pool.PoolTimeout,
)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same statement may succeed. Postgres files "program limit
    exceeded" (SQLSTATE class 54: an index row or a value too large) under OperationalError,
    but the same outcome is refused again on every retry: that is permanent."""
    if not isinstance(exc, _TRANSIENT):
        return False
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return not sqlstate.startswith("54")


#: The error type of an attempt whose result (or other outcome) the database refused for good.
_REFUSED_RESULT = "ResultNotRecorded"
_REFUSED = "OutcomeNotRecorded"
_FIXES: dict[type, str] = {
    Succeeded: (
        "Return a JSON value Postgres can store (no \\u0000, under 255 MB), keep"
        " idempotency keys short, or store large results elsewhere and return their id."
    ),
    Failed: "The failure's retry time or error could not be stored.",
    Snoozed: "The queue snooze could not be stored.",
}


@dataclass(frozen=True)
class _Item:
    job: Job
    token: UUID
    outcome: Outcome


class Completer:
    """Collects outcomes while a flush is in flight, so batches form under load and a lone
    job is recorded at once. A flush that fails for a passing reason is retried with backoff;
    one the database refuses for good is split to isolate the bad outcome."""

    def __init__(self, store: Store, on_recorded: Recorded, *, max_batch: int = 1000) -> None:
        self._store = store
        self._on_recorded = on_recorded
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, job: Job, token: UUID, outcome: Outcome) -> None:
        """Queue an outcome to be recorded."""
        self._pending.append(_Item(job, token, outcome))
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every submitted outcome has been recorded."""
        await self._idle.wait()

    async def run(self) -> None:
        """Flush until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush_with_retry(batch)
            self._idle.set()

    async def _flush_with_retry(self, batch: list[_Item]) -> None:
        backoff = Backoff(first=0.1)
        while True:
            try:
                await self._flush(batch)
                return
            except Exception as exc:  # noqa: BLE001 - one bad outcome must not stall the rest
                if not is_transient(exc):
                    await self._isolate(batch, exc)
                    return
                delay = backoff.next()
                log.warning(
                    "cannot record %d job outcomes (%s); retrying in %.1fs", len(batch), exc, delay
                )
                await backoff.sleep(delay)

    async def _isolate(self, batch: list[_Item], exc: Exception) -> None:
        """A batch that the database refuses for good (a result Postgres JSON cannot hold,
        an idempotency key too long for its index) is recorded one outcome at a time, so
        only the bad one is affected. An outcome refused on its own is replaced by a plain
        failure that says why, which the database can always take."""
        if len(batch) > 1:
            for item in batch:
                await self._flush_with_retry([item])
            return
        item = batch[0]
        reason = codec.storable_text(f"{type(exc).__name__}: {exc}")[:2000]
        refused = (_REFUSED, _REFUSED_RESULT)
        if isinstance(item.outcome, Failed) and item.outcome.error.get("type") in refused:
            # even the plain failure was refused: leave the job to its lease and the rescuer
            log.error("job %d: cannot record that its outcome was refused (%s)", item.job.id, exc)
            self._on_recorded([(item.job, item.outcome, False)])
            return
        log.error("job %d: the database refused its outcome (%s); failing it", item.job.id, exc)
        error = {
            "type": _REFUSED_RESULT if isinstance(item.outcome, Succeeded) else _REFUSED,
            "message": (
                f"the database refused to record this attempt's outcome ({reason}). "
                + _FIXES.get(type(item.outcome), "")
            ),
            "traceback": None,
            "attempt": item.job.attempt,
        }
        await self._flush_with_retry([_Item(item.job, item.token, Failed(error, None))])

    async def _flush(self, batch: list[_Item]) -> None:
        completions = [
            Completion(i.job.id, i.token, i.outcome.result_json, i.outcome.idempotency)
            for i in batch
            if isinstance(i.outcome, Succeeded) and not i.outcome.recorded
        ]
        failures = [
            Failure(i.job.id, i.token, i.outcome.error, i.outcome.retry_in, i.outcome.cancel)
            for i in batch
            if isinstance(i.outcome, Failed)
        ]
        done: set[int] = set()
        for item in batch:
            snooze = item.outcome
            if isinstance(snooze, Snoozed) and await self._store.job_snooze_queue(
                item.job.id, item.token, snooze.duration, snooze.reason
            ):
                done.add(item.job.id)
        if completions:
            done |= await self._store.job_complete_many(completions)
        if failures:
            done |= await self._store.job_fail_many(failures)
        self._on_recorded(
            [
                (
                    item.job,
                    item.outcome,
                    item.job.id in done
                    or (isinstance(item.outcome, Succeeded) and item.outcome.recorded)
                    or isinstance(item.outcome, Parked),  # the workflow engine recorded it
                )
                for item in batch
            ]
        )
