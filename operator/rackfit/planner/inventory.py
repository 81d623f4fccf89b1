"""The GPU fleet by NVLink domain and the reservations held in it: the operator's ledger (pure: it
takes plain names, labels and counts, never Kubernetes objects, and does no I/O).

The NVLink domain of a node is `nvidia.com/gpu.clique` (GB200/GB300 MNNVL), else CoreWeave's
`ds.coreweave.com/nvlink.domain`, else the node itself (an 8-GPU HGX host). InfiniBand labels are
never a substitute: IB is not NVLink.

What a domain has free is its schedulable nodes' allocatable GPUs, less
- the GPUs of every bound, unfinished pod (whoever owns it: pods placed by hand count too), and
- each reservation's pods that are not bound yet: a placement holds its GPUs from the moment it is
  decided until it is released, so two workloads decided in the same second never see the same
  empty rack. A reservation's own bound pods are counted once, as pods.
Unbound reserved pods are laid on the domain's nodes best-fit (the node with the least room that
holds the pod), as kube-scheduler's MostAllocated scoring would pack them; a domain where they do
not fit goes negative, which `usage()` reports as overcommitted.

The operator keeps one `Inventory`, updated in O(1) from watch events (`set_node`, `set_pod`,
`reserve`); per-domain results are cached until something in that domain changes, so one query
costs O(domains of the instance type), not O(nodes x pods).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from rackfit.names import DOMAIN_LABELS, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL

Owner = tuple[str, str]  # (namespace, LLMWorkload name)


class Domain(NamedTuple):
    """An NVLink domain: the node label that names it and its value."""

    label: str
    value: str

    def __str__(self) -> str:
        return f"{self.label}={self.value}"

    @classmethod
    def parse(cls, text: str) -> Domain:
        label, _, value = text.partition("=")
        return cls(label, value)


def domain_of(name: str, labels: dict[str, str]) -> Domain:
    """The node's NVLink domain."""
    for key in DOMAIN_LABELS:
        if labels.get(key):
            return Domain(key, labels[key])
    return Domain(HOSTNAME_LABEL, labels.get(HOSTNAME_LABEL, name))


@dataclass(frozen=True)
class NodeInfo:
    """What the ledger keeps of a GPU node: a few fields, not the object."""

    instance_type: str
    domain: Domain
    allocatable: int
    schedulable: bool = True

    @classmethod
    def from_labels(cls, name: str, labels: dict[str, str], allocatable: int, schedulable: bool = True
                    ) -> NodeInfo | None:
        itype = labels.get(INSTANCE_TYPE_LABEL)
        if not itype or allocatable <= 0:
            return None
        return cls(itype, domain_of(name, labels), allocatable, schedulable)


@dataclass(frozen=True)
class PodUse:
    """A bound, unfinished pod's GPUs; `owner` when it carries the `rackfit.io/workload` label."""

    node: str
    gpus: int
    owner: Owner | None = None


@dataclass(frozen=True)
class Reservation:
    """`pods` pods of `gpus_per_pod` GPUs of one instance type, in one NVLink domain, or (for a job
    larger than one domain, such as multi-node HGX) anywhere in the instance type (`domain` None)."""

    instance_type: str
    domain: Domain | None
    pods: int
    gpus_per_pod: int

    @property
    def gpus(self) -> int:
        return self.pods * self.gpus_per_pod


class Inventory:
    """Schedulable GPU capacity by NVLink domain, the pods using it and the reservations holding it.

    Thread-safe: every method takes `lock`; a caller that must decide and reserve atomically (the
    operator: plan, then `reserve`) holds `lock` around both (it is re-entrant)."""

    def __init__(self, fit: str = "best") -> None:
        if fit not in ("best", "first"):
            raise ValueError(f"fit={fit!r}; allowed: best, first")
        self.fit = fit  # "first" only to compare against (bench/placement_policy.py)
        self.lock = threading.RLock()
        self._nodes: dict[str, NodeInfo] = {}
        self._members: dict[str, dict[Domain, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._pods: dict[str, PodUse] = {}
        self._node_used: dict[str, int] = defaultdict(int)
        self._owner_pods: dict[Owner, set[str]] = defaultdict(set)
        self._reservations: dict[Owner, Reservation] = {}
        self._order: dict[Owner, int] = {}
        self._reserved_in: dict[Domain, set[Owner]] = defaultdict(set)
        self._typewide: dict[str, set[Owner]] = defaultdict(set)
        self._waiting: dict[Owner, tuple[str, frozenset[str]]] = {}
        self._cache: dict[Domain, list[int]] = {}
        self._seq = 0
        # counts the changes that can let a waiting workload in: capacity added or freed, a
        # reservation released or moved, the queue shortened (waiting ones skip re-planning otherwise)
        self.freed = 0

    # --- building (tests and the CLI) ---

    @classmethod
    def from_nodes(cls, nodes: Iterable[tuple[str, dict[str, str], int, int]]) -> Inventory:
        """From (name, labels, allocatable GPUs, GPUs requested by bound pods) tuples."""
        inv = cls()
        for name, labels, allocatable, requested in nodes:
            info = NodeInfo.from_labels(name, labels, allocatable)
            if info:
                inv.set_node(name, info)
                if requested:
                    inv.set_pod(f"{name}/requested", PodUse(name, requested))
        return inv

    # --- updates (from watch events; each O(1)) ---

    def set_node(self, name: str, info: NodeInfo | None) -> bool:
        """Add, change or (None) remove a node; True when the schedulable fleet changed."""
        with self.lock:
            old = self._nodes.get(name)
            if old == info:
                return False
            if old:
                self._members[old.instance_type][old.domain].discard(name)
                if not self._members[old.instance_type][old.domain]:
                    del self._members[old.instance_type][old.domain]
                self._cache.pop(old.domain, None)
            if info:
                self._nodes[name] = info
                self._members[info.instance_type][info.domain].add(name)
                self._cache.pop(info.domain, None)
            else:
                self._nodes.pop(name, None)
            if info and info.schedulable and (not old or not old.schedulable or info.allocatable > old.allocatable
                                              or info.domain != old.domain):
                self.freed += 1
            return True

    def set_pod(self, key: str, use: PodUse | None) -> None:
        """Record a bound pod's GPUs, or (None) forget a pod that finished, was deleted or unbound."""
        with self.lock:
            old = self._pods.pop(key, None)
            if old and (not use or use.gpus < old.gpus or use.node != old.node):
                self.freed += 1
            if old:
                self._node_used[old.node] -= old.gpus
                if old.owner:
                    self._owner_pods[old.owner].discard(key)
                self._touch_node(old.node)
            if use and use.gpus > 0:
                self._pods[key] = use
                self._node_used[use.node] += use.gpus
                if use.owner:
                    self._owner_pods[use.owner].add(key)
                self._touch_node(use.node)

    def reserve(self, owner: Owner, reservation: Reservation | None) -> None:
        """Hold `reservation` for `owner` (replacing what it held), or (None) release it. A workload
        keeps its place in the queue across re-reservations."""
        with self.lock:
            old = self._reservations.pop(owner, None)
            if old == reservation:
                if reservation:
                    self._reservations[owner] = reservation
                return
            if old:
                self._unindex(owner, old)
                self.freed += 1
            if reservation:
                self._reservations[owner] = reservation
                if reservation.domain is None:
                    self._typewide[reservation.instance_type].add(owner)
                else:
                    self._reserved_in[reservation.domain].add(owner)
                    self._cache.pop(reservation.domain, None)
                if owner not in self._order:
                    self._seq += 1
                    self._order[owner] = self._seq
            else:
                self._order.pop(owner, None)

    def wait(self, owner: Owner, since: str | None, instance_types: Iterable[str] = ()) -> None:
        """Queue `owner` (created at `since`, an RFC 3339 time) for the instance types it could use;
        `since` None takes it out of the queue (placed, deleted or invalid)."""
        with self.lock:
            if since is None:
                if self._waiting.pop(owner, None):
                    self.freed += 1  # a younger workload it blocked may go now
            else:
                self._waiting[owner] = (since, frozenset(instance_types))

    def forget(self, owner: Owner) -> None:
        """The workload is gone: release its reservation and its place in the queue."""
        self.reserve(owner, None)
        self.wait(owner, None)

    # --- queries ---

    def reservation(self, owner: Owner) -> Reservation | None:
        return self._reservations.get(owner)

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def owner_pods(self, owner: Owner) -> list[PodUse]:
        """The bound, unfinished pods that carry `owner`'s label."""
        with self.lock:
            return [self._pods[k] for k in self._owner_pods.get(owner, ())]

    def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
        """Instance types an older waiting workload waits for: `owner` may not take them (strict FIFO
        per instance type, so a stream of small jobs never starves a large one)."""
        with self.lock:
            mine = (since, owner)
            out: set[str] = set()
            for other, (their_since, types) in self._waiting.items():
                if other != owner and (their_since, other) < mine:
                    out |= types
            return frozenset(out)

    def view(self, owner: Owner | None = None, blocked: frozenset[str] = frozenset()) -> InventoryView:
        """The fleet as `owner` sees it when it plans again: its own reservation and pods not counted,
        and `blocked` instance types without room."""
        return InventoryView(self, owner, blocked)

    def instance_types(self) -> list[str]:
        return [t for t, doms in self._members.items() if doms]

    def domains(self, instance_type: str, exclude: Owner | None = None, keep_pods: bool = False
                ) -> dict[Domain, list[int]]:
        """Domain -> free GPUs of each schedulable node, after pods and reservations (other than
        `exclude`'s reservation, and its pods unless `keep_pods`); values go negative where
        reservations overcommit the domain."""
        with self.lock:
            out = {d: self._frees(instance_type, d, exclude, keep_pods) for d in self._members.get(instance_type, {})}
            wide = [o for o in self._typewide.get(instance_type, ()) if o != exclude]
            if wide:
                self._lay_typewide(instance_type, out, wide)
            return out

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None,
                    exclude: Owner | None = None, keep_pods: bool = False) -> Domain | None:
        """A domain of this type with `nodes` nodes of `gpus_per_node` free GPUs each. `prefer` (the
        value of a domain already holding the workload) wins while it fits; otherwise best fit: the
        domain with the fewest free GPUs that still holds the job, keeping whole domains free for
        large jobs (Kueue's BestFit)."""
        best: tuple[int, str, Domain] | None = None
        for domain, frees in self.domains(instance_type, exclude, keep_pods).items():
            if sum(1 for f in frees if f >= gpus_per_node) < nodes:
                continue
            if prefer is not None and domain.value == prefer:
                return domain
            key = (sum(f for f in frees if f > 0) if self.fit == "best" else 0, domain.value, domain)
            if best is None or key < best:
                best = key
        return best[2] if best else None

    def free_nodes(self, instance_type: str, gpus_per_node: int, exclude: Owner | None = None,
                   keep_pods: bool = False) -> int:
        return sum(1 for frees in self.domains(instance_type, exclude, keep_pods).values()
                   for f in frees if f >= gpus_per_node)

    def usage(self) -> dict[tuple[str, Domain], tuple[int, int]]:
        """(instance type, domain) -> (allocatable GPUs, GPUs taken by pods and reservations)."""
        out = {}
        with self.lock:
            for itype in self.instance_types():
                for domain, frees in self.domains(itype).items():
                    alloc = sum(self._nodes[n].allocatable for n in self._schedulable(domain, itype))
                    out[(itype, domain)] = (alloc, alloc - sum(frees))
        return out

    @property
    def nodes(self) -> dict[str, NodeInfo]:
        return dict(self._nodes)

    # --- internals ---

    def _schedulable(self, domain: Domain, instance_type: str) -> list[str]:
        return sorted(n for n in self._members.get(instance_type, {}).get(domain, ()) if self._nodes[n].schedulable)

    def _touch_node(self, node: str) -> None:
        info = self._nodes.get(node)
        if info:
            self._cache.pop(info.domain, None)

    def _unindex(self, owner: Owner, r: Reservation) -> None:
        if r.domain is None:
            self._typewide[r.instance_type].discard(owner)
        else:
            self._reserved_in[r.domain].discard(owner)
            self._cache.pop(r.domain, None)

    def _bound(self, owner: Owner, nodes: set[str] | None, gpus: int) -> int:
        """How many of `owner`'s pods of at least `gpus` GPUs (the reservation's pods; a smaller one
        is an older pod its rollout replaces) are bound on `nodes` (None: on any node)."""
        return sum(1 for k in self._owner_pods.get(owner, ())
                   if (nodes is None or self._pods[k].node in nodes) and self._pods[k].gpus >= gpus)

    def _frees(self, itype: str, domain: Domain, exclude: Owner | None, keep_pods: bool = False) -> list[int]:
        held = exclude is not None and exclude in self._reserved_in.get(domain, ())
        pods = exclude is not None and not keep_pods and any(
            self._nodes.get(self._pods[k].node, None) and self._nodes[self._pods[k].node].domain == domain
            for k in self._owner_pods.get(exclude, ()))
        mine = held or pods
        if not mine and domain in self._cache:
            return self._cache[domain]
        names = self._schedulable(domain, itype)
        free = {n: self._nodes[n].allocatable - self._node_used.get(n, 0) for n in names}
        if pods:
            for k in self._owner_pods.get(exclude, ()):
                if self._pods[k].node in free:
                    free[self._pods[k].node] += self._pods[k].gpus
        members = set(names)
        for owner in sorted(self._reserved_in.get(domain, ()), key=lambda o: self._order.get(o, 0)):
            if owner == exclude:
                continue
            r = self._reservations[owner]
            _lay(free, r.pods - self._bound(owner, members, r.gpus_per_pod), r.gpus_per_pod)
        out = sorted(free.values())
        if not mine:
            self._cache[domain] = out
        return out

    def _lay_typewide(self, instance_type: str, out: dict[Domain, list[int]], owners: list[Owner]) -> None:
        """Lay type-wide reservations' unbound pods over every domain of the type (uncached: rare)."""
        flat = {(d, i): f for d, frees in out.items() for i, f in enumerate(frees)}
        in_type = {n for members in self._members.get(instance_type, {}).values() for n in members}
        for owner in sorted(owners, key=lambda o: self._order.get(o, 0)):
            r = self._reservations[owner]
            _lay(flat, r.pods - self._bound(owner, in_type, r.gpus_per_pod), r.gpus_per_pod)
        regrouped: dict[Domain, list[int]] = {d: [] for d in out}
        for (d, _), f in flat.items():
            regrouped[d].append(f)
        out.update({d: sorted(frees) for d, frees in regrouped.items()})


def _lay(free: dict, pods: int, gpus: int) -> None:
    """Put `pods` pods of `gpus` GPUs on the slots of `free`, best-fit; a pod that fits nowhere lands
    on the slot with the most room, driving it negative (overcommitted)."""
    for _ in range(max(0, pods)):
        if not free:
            return
        fitting = [(f, k) for k, f in free.items() if f >= gpus]
        slot = min(fitting, key=lambda x: (x[0], str(x[1])))[1] if fitting else max(free, key=lambda k: free[k])
        free[slot] -= gpus


class InventoryView:
    """`Inventory` seen by one workload planning again (its own holdings excluded, blocked types
    empty): what the planner queries."""

    def __init__(self, inventory: Inventory, owner: Owner | None, blocked: frozenset[str], keep_pods: bool = False):
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
