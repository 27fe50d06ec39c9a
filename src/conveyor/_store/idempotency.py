"""Idempotency keys: claimed when a job completes, or at once inside an atomic task's
transaction, where `once` is a plan that runs the user's function between two statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor import codec
from conveyor._store.ops import Call, Op, Plan, Rows, found, ignore


def get(key: str) -> Op[tuple[bool, Any]]:
    """Whether `key` was claimed, and its stored result."""
    return Op(
        "idempotency_get",
        {"key": key},
        lambda rows: (True, rows[0]["result"]) if rows else (False, None),
    )


def claim_many(
    claims: Sequence[tuple[int, tuple[tuple[str, str | None], ...]]], now: datetime | None
) -> Op[None]:
    """Record the keys each completed job claimed, with their results: (job id, keys)."""
    keys: list[str] = []
    results: list[str | None] = []
    job_ids: list[int] = []
    for job_id, claimed in claims:
        for key, result in claimed:
            keys.append(key)
            results.append(result)
            job_ids.append(job_id)
    params = {"keys": keys, "results": results, "job_ids": job_ids, "now": now}
    return Op("idempotency_claim_many", params, ignore)


def once_in_transaction(key: str, job_id: int, call: Call) -> Plan[tuple[bool, Any, str | None]]:
    """Claim `key` in the open transaction (a concurrent claimer waits for it to commit). When
    it was free, run `call` and store its result: (True, value, encoded result). When it was
    taken: (False, the stored result, None)."""
    claim = {"key": key, "job_id": job_id, "result": None, "now": None}
    if not (yield Op("idempotency_claim", claim, found)):
        stored = yield Op("idempotency_get", {"key": key}, Rows)
        return False, stored[0]["result"], None
    value = yield call
    encoded = codec.encode_result(value)
    yield Op("idempotency_set_result", {"key": key, "result": encoded}, ignore)
    return True, value, encoded
