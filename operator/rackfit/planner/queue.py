"""Admission queue policies (pure): which instance types a workload may not take because others
wait for them. One interface, `QueuePolicy`; the operator uses `FifoPerType`.

A workload that finds no room joins the queue (`wait`) for the instance types it could use, and
leaves it (`leave`) once placed, deleted or invalid. Before planning, the operator asks
`blocked_types` and plans as if those types had no room.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from rackfit.planner.nodes import Owner


class QueuePolicy(ABC):
    """Who waits for what, and whom that blocks."""

    @abstractmethod
    def wait(self, owner: Owner, since: str, instance_types: Iterable[str]) -> None:
        """Queue `owner` (created at `since`, an RFC 3339 time) for the instance types it could use;
        again with other types replaces them."""

    @abstractmethod
    def leave(self, owner: Owner) -> bool:
        """Take `owner` out of the queue; True when it was in it (the queue got shorter)."""

    @abstractmethod
    def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
        """Instance types `owner` (created at `since`) may not take now."""


class FifoPerType(QueuePolicy):
    """Strict FIFO per instance type: a workload may not take a type an older waiting workload
    waits for, so a stream of small jobs never starves a large one. Age is (creation time, owner)."""

    def __init__(self) -> None:
        self._waiting: dict[Owner, tuple[str, frozenset[str]]] = {}

    def wait(self, owner: Owner, since: str, instance_types: Iterable[str]) -> None:
        self._waiting[owner] = (since, frozenset(instance_types))

    def leave(self, owner: Owner) -> bool:
        return self._waiting.pop(owner, None) is not None

    def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
        mine = (since, owner)
        out: set[str] = set()
        for other, (their_since, types) in self._waiting.items():
            if other != owner and (their_since, other) < mine:
                out |= types
        return frozenset(out)
