"""Insert a flow: a parent job that waits for its children, all in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from conveyor._store.caller import run_async, run_sync
from conveyor._store.enqueue import JobSpec, ainsert_jobs, insert_jobs
from conveyor._store.queries import sql
from conveyor.errors import ConfigError

OnChildFailure = Literal["fail", "continue"]


@dataclass(frozen=True)
class Flow:
    """The ids of an enqueued flow: the parent and its children, in the order given."""

    parent_id: int
    child_ids: list[int]


def _check(parent: JobSpec, children: Sequence[JobSpec], policy: str) -> None:
    if policy not in ("fail", "continue"):
        raise ConfigError(f"on_child_failure must be 'fail' or 'continue', got {policy!r}")
    if parent.unique_key or any(c.unique_key for c in children):
        raise ConfigError(
            "jobs of a flow cannot have unique keys (an existing job would stand in for a new"
            " one and the flow would wait on the wrong job); drop unique_key for flows"
        )


def _attach(parent_id: int, child_ids: list[int], policy: str) -> dict[str, Any]:
    return {"parent_id": parent_id, "child_ids": child_ids, "policy": policy}


def insert_flow(
    conn: Any,
    parent: JobSpec,
    children: Sequence[JobSpec],
    policy: OnChildFailure,
    now: datetime | None = None,
) -> Flow:
    """Insert parent and children on a sync connection inside its open transaction."""
    _check(parent, children, policy)
    (parent_id,) = insert_jobs(conn, [parent], now).ids
    child_ids = insert_jobs(conn, children, now).ids if children else []
    if child_ids:
        run_sync(conn, sql("flow_attach"), _attach(parent_id, child_ids, policy))
    return Flow(parent_id, child_ids)


async def ainsert_flow(
    conn: Any,
    parent: JobSpec,
    children: Sequence[JobSpec],
    policy: OnChildFailure,
    now: datetime | None = None,
) -> Flow:
    """Async twin of insert_flow()."""
    _check(parent, children, policy)
    (parent_id,) = (await ainsert_jobs(conn, [parent], now)).ids
    child_ids = (await ainsert_jobs(conn, children, now)).ids if children else []
    if child_ids:
        await run_async(conn, sql("flow_attach"), _attach(parent_id, child_ids, policy))
    return Flow(parent_id, child_ids)
