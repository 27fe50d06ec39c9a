"""Insert a flow: a parent job that waits for its children, all in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor._store.enqueue import insert_plan
from conveyor._store.ops import Op, Plan, ignore
from conveyor.errors import ConfigError
from conveyor.flow import Flow, OnChildFailure
from conveyor.spec import JobSpec


def flow_plan(
    conn: Any,
    parent: JobSpec,
    children: Sequence[JobSpec],
    policy: OnChildFailure,
    now: datetime | None,
) -> Plan[Flow]:
    """Insert the parent, then its children, then the links between them, to be run on `conn`
    inside its open transaction."""
    _check(parent, children, policy)
    (parent_id,) = (yield from insert_plan(conn, [parent], now)).ids
    child_ids = (yield from insert_plan(conn, children, now)).ids if children else []
    if child_ids:
        params = {"parent_id": parent_id, "child_ids": child_ids, "policy": policy}
        yield Op("flow_attach", params, ignore)
    return Flow(parent_id, child_ids)


def _check(parent: JobSpec, children: Sequence[JobSpec], policy: str) -> None:
    if policy not in ("fail", "continue"):
        raise ConfigError(f"on_child_failure must be 'fail' or 'continue', got {policy!r}")
    if parent.unique_key or any(c.unique_key for c in children):
        raise ConfigError(
            "jobs of a flow cannot have unique keys (an existing job would stand in for a new"
            " one and the flow would wait on the wrong job); drop unique_key for flows"
        )
