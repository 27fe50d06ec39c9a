"""Flow: the ids of an enqueued flow, and what a child's failure does to its parent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: What a child that fails for good does to its parent: fail it at once, or let it run.
OnChildFailure = Literal["fail", "continue"]


@dataclass(frozen=True)
class Flow:
    """The ids of an enqueued flow: the parent and its children, in the order given."""

    parent_id: int
    child_ids: list[int]
