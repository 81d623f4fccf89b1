"""The fleet as the planner reads it (pure): `Inventory` is capacity accounting (`capacity.py`,
with its reservations, `reservations.py`) plus a fit policy (`fit.py`) and an admission queue
policy (`queue.py`); `InventoryView` is that fleet seen by one workload planning again, which
`planner.place()` and `operator.reconcile.decide()` query.

`Inventory` holds no lock and counts nothing: the CLI, the benchmarks and the tests use it as it
is; the operator uses `rackfit.operator.ledger.Ledger`, the same interface behind a lock, with the
counter of changes that can let a waiting workload in.

The values of the ledger are re-exported here (`Domain`, `NodeInfo`, `PodUse`, `Reservation`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from rackfit.planner.capacity import Capacity
from rackfit.planner.fit import BestFit, FitPolicy
from rackfit.planner.nodes import Domain, NodeInfo, Owner, PodUse, domain_of
from rackfit.planner.queue import FifoPerType, QueuePolicy
from rackfit.planner.reservations import Reservation

__all__ = ["Inventory", "InventoryView", "Fleet", "Domain", "NodeInfo", "Owner", "PodUse", "Reservation",
           "domain_of"]


class Inventory(Capacity):
    """Capacity by NVLink domain, a fit policy choosing among domains (best fit unless told) and an
    admission queue (strict FIFO per instance type unless told)."""

    def __init__(self, fit: FitPolicy | None = None, queue: QueuePolicy | None = None) -> None:
        super().__init__()
        self.fit = fit or BestFit()
        self.queue = queue or FifoPerType()

    @classmethod
    def from_nodes(cls, nodes: Iterable[tuple[str, dict[str, str], int, int]]) -> Inventory:
        """From (name, labels, allocatable GPUs, GPUs requested by bound pods) tuples (tests, CLI)."""
        inv = cls()
        for name, labels, allocatable, requested in nodes:
            info = NodeInfo.from_labels(name, labels, allocatable)
            if info:
                inv.set_node(name, info)
                if requested:
                    inv.set_pod(f"{name}/requested", PodUse(name, requested))
        return inv

    def wait(self, owner: Owner, since: str | None, instance_types: Iterable[str] = ()) -> bool:
        """Queue `owner` (created at `since`, an RFC 3339 time) for the instance types it could use;
        `since` None takes it out of the queue (placed, deleted or invalid). True when the queue got
        shorter."""
        if since is None:
            return self.queue.leave(owner)
        self.queue.wait(owner, since, instance_types)
        return False

    def forget(self, owner: Owner) -> None:
        """The workload is gone: release its reservation and its place in the queue."""
        self.reserve(owner, None)
        self.wait(owner, None)

    def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
        """Instance types an older waiting workload waits for: `owner` may not take them."""
        return self.queue.blocked_types(owner, since)

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None,
                    exclude: Owner | None = None, keep_pods: bool = False) -> Domain | None:
        """A domain of this type with `nodes` nodes of `gpus_per_node` free GPUs each, as the fit
        policy chooses (`prefer`: the value of a domain already holding the workload, kept while it fits)."""
        return self.fit.find_domain(self.domains(instance_type, exclude, keep_pods), nodes, gpus_per_node, prefer)

    def view(self, owner: Owner | None = None, blocked: frozenset[str] = frozenset()) -> InventoryView:
        """The fleet as `owner` sees it when it plans again: its own reservation and pods not counted,
        and `blocked` instance types without room."""
        return InventoryView(self, owner, blocked)


class Fleet(Protocol):
    """What a view queries: `Inventory`, or the operator's `Ledger` (the same, behind its lock)."""

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None,
                    exclude: Owner | None = None, keep_pods: bool = False) -> Domain | None: ...

    def free_nodes(self, instance_type: str, gpus_per_node: int, exclude: Owner | None = None,
                   keep_pods: bool = False) -> int: ...

    def domains(self, instance_type: str, exclude: Owner | None = None, keep_pods: bool = False
                ) -> dict[Domain, list[int]]: ...

    def owner_pods(self, owner: Owner) -> list[PodUse]: ...

    def node(self, name: str) -> NodeInfo | None: ...


class InventoryView:
    """A fleet seen by one workload planning again (its own holdings excluded, blocked types
    empty): what the planner queries."""

    def __init__(self, inventory: Fleet, owner: Owner | None, blocked: frozenset[str], keep_pods: bool = False):
        self.inventory, self.owner, self.blocked, self.keep_pods = inventory, owner, blocked, keep_pods

    def with_own_pods(self) -> InventoryView:
        """The same view with the owner's bound pods counted as used: where its new pods fit beside
        its old ones, as a rolling update needs (it removes old pods only once new ones run)."""
        return InventoryView(self.inventory, self.owner, self.blocked, keep_pods=True)

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None
                    ) -> Domain | None:
        if instance_type in self.blocked:
            return None
        return self.inventory.find_domain(instance_type, nodes, gpus_per_node, prefer, self.owner, self.keep_pods)

    def free_nodes(self, instance_type: str, gpus_per_node: int) -> int:
        if instance_type in self.blocked:
            return 0
        return self.inventory.free_nodes(instance_type, gpus_per_node, self.owner, self.keep_pods)

    def holds(self, r: Reservation) -> bool:
        """Would `r` still fit, its own holdings discounted (a placement is kept while this holds)?"""
        if r.domain is None:
            return self.inventory.free_nodes(r.instance_type, r.gpus_per_pod, self.owner) >= r.pods
        frees = self.inventory.domains(r.instance_type, self.owner).get(r.domain)
        return frees is not None and sum(1 for f in frees if f >= r.gpus_per_pod) >= r.pods
