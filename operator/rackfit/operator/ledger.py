"""The operator's GPU ledger: the planner's pure `Inventory` (capacity, reservations, a fit policy,
the admission queue) behind one re-entrant lock, with the counter of changes that can let a
waiting workload in. One per operator process, fed by `fleet.py`'s watches and reserved into by
`workloads.py`; the planner holds no threads, this shell does.

A caller that must decide and reserve atomically (plan, then `reserve`) holds `lock` around both;
every method takes it too, so single calls are safe from any handler thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rackfit.planner.capacity import node_frees, pod_frees
from rackfit.planner.fit import FitPolicy
from rackfit.planner.inventory import Domain, Inventory, InventoryView, NodeInfo, Owner, PodUse, Reservation
from rackfit.planner.queue import QueuePolicy


class Ledger:
    """Schedulable GPU capacity by NVLink domain, the pods using it, the reservations holding it and
    the workloads waiting for it; thread-safe. `freed` counts the changes that can let a waiting
    workload in (capacity added or freed, a reservation released or moved, the queue shortened):
    a waiting workload whose last plan saw the same count skips planning again."""

    def __init__(self, fit: FitPolicy | None = None, queue: QueuePolicy | None = None) -> None:
        self.lock = threading.RLock()
        self.freed = 0
        self._inventory = Inventory(fit, queue)

    # --- updates (from watch events and decisions; each O(1)) ---

    def set_node(self, name: str, info: NodeInfo | None) -> bool:
        """Add, change or (None) remove a node; True when the schedulable fleet changed."""
        with self.lock:
            old = self._inventory.node(name)
            changed = self._inventory.set_node(name, info)
            if changed and node_frees(old, info):
                self.freed += 1
            return changed

    def set_pod(self, key: str, use: PodUse | None) -> None:
        """Record a bound pod's GPUs, or (None) forget a pod that finished, was deleted or unbound."""
        with self.lock:
            if pod_frees(self._inventory.pod(key), use):
                self.freed += 1
            self._inventory.set_pod(key, use)

    def reserve(self, owner: Owner, reservation: Reservation | None) -> None:
        """Hold `reservation` for `owner` (replacing what it held), or (None) release it. A workload
        keeps its place in the order of reservations across re-reservations."""
        with self.lock:
            old = self._inventory.reservation(owner)
            self._inventory.reserve(owner, reservation)
            if old is not None and old != reservation:
                self.freed += 1

    def wait(self, owner: Owner, since: str | None, instance_types: Iterable[str] = ()) -> None:
        """Queue `owner` (created at `since`, an RFC 3339 time) for the instance types it could use;
        `since` None takes it out of the queue (placed, deleted or invalid)."""
        with self.lock:
            if self._inventory.wait(owner, since, instance_types):
                self.freed += 1  # a younger workload it blocked may go now

    def forget(self, owner: Owner) -> None:
        """The workload is gone: release its reservation and its place in the queue."""
        with self.lock:
            self.reserve(owner, None)
            self.wait(owner, None)

    # --- queries ---

    def reservation(self, owner: Owner) -> Reservation | None:
        return self._inventory.reservation(owner)

    def node(self, name: str) -> NodeInfo | None:
        return self._inventory.node(name)

    @property
    def nodes(self) -> dict[str, NodeInfo]:
        return self._inventory.nodes

    def owner_pods(self, owner: Owner) -> list[PodUse]:
        """The bound, unfinished pods that carry `owner`'s label."""
        with self.lock:
            return self._inventory.owner_pods(owner)

    def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
        """Instance types an older waiting workload waits for: `owner` may not take them."""
        with self.lock:
            return self._inventory.blocked_types(owner, since)

    def view(self, owner: Owner | None = None, blocked: frozenset[str] = frozenset()) -> InventoryView:
        """The fleet as `owner` sees it when it plans again: its own reservation and pods not counted,
        and `blocked` instance types without room. Its queries take the lock."""
        return InventoryView(self, owner, blocked)

    def instance_types(self) -> list[str]:
        with self.lock:
            return self._inventory.instance_types()

    def domains(self, instance_type: str, exclude: Owner | None = None, keep_pods: bool = False
                ) -> dict[Domain, list[int]]:
        """Domain -> free GPUs of each schedulable node (`Capacity.domains`)."""
        with self.lock:
            return self._inventory.domains(instance_type, exclude, keep_pods)

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None,
                    exclude: Owner | None = None, keep_pods: bool = False) -> Domain | None:
        """A domain with room for the job, as the fit policy chooses (`Inventory.find_domain`)."""
        with self.lock:
            return self._inventory.find_domain(instance_type, nodes, gpus_per_node, prefer, exclude, keep_pods)

    def free_nodes(self, instance_type: str, gpus_per_node: int, exclude: Owner | None = None,
                   keep_pods: bool = False) -> int:
        with self.lock:
            return self._inventory.free_nodes(instance_type, gpus_per_node, exclude, keep_pods)

    def usage(self) -> dict[tuple[str, Domain], tuple[int, int]]:
        """(instance type, domain) -> (allocatable GPUs, GPUs taken by pods and reservations)."""
        with self.lock:
            return self._inventory.usage()
