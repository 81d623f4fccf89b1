"""Capacity accounting (pure): what each NVLink domain has free. It takes plain names, labels and
counts, never Kubernetes objects, does no I/O and holds no lock (the operator's
`operator/ledger.py` serialises access to it).

What a domain has free is its schedulable nodes' allocatable GPUs, less
- the GPUs of every bound, unfinished pod (whoever owns it: pods placed by hand count too), and
- each reservation's pods that are not bound yet: a placement holds its GPUs from the moment it is
  decided until it is released, so two workloads decided in the same second never see the same
  empty rack. A reservation's own bound pods are counted once, as pods (only its pods with at least
  the reservation's GPUs each: a smaller one is an older pod its rollout replaces).
Unbound reserved pods are laid on the domain's nodes best-fit (the node with the least room that
holds the pod), as kube-scheduler's MostAllocated scoring would pack them; a domain where they do
not fit goes negative, which `usage()` reports as overcommitted. Type-wide reservations (a job
larger than one domain) are laid over every domain of their instance type.

Updated in O(1) from watch events (`set_node`, `set_pod`, `reserve`); per-domain results are cached
until something in that domain changes, so one query costs O(domains of the instance type), not
O(nodes x pods). Which domain a job gets is a fit policy's choice (`fit.py`), not this module's.
"""

from __future__ import annotations

from collections import defaultdict

from rackfit.planner.nodes import Domain, NodeInfo, Owner, PodUse
from rackfit.planner.reservations import Reservation, Reservations


def node_frees(old: NodeInfo | None, new: NodeInfo | None) -> bool:
    """Does replacing `old` by `new` add schedulable capacity (a node added, uncordoned, grown or
    moved), which can let a waiting workload in?"""
    return bool(new and new.schedulable and (not old or not old.schedulable or new.allocatable > old.allocatable
                                             or new.domain != old.domain))


def pod_frees(old: PodUse | None, new: PodUse | None) -> bool:
    """Does replacing the recorded pod `old` by `new` give GPUs back (gone, smaller or moved)?"""
    return bool(old and (not new or new.gpus < old.gpus or new.node != old.node))


class Capacity:
    """Schedulable GPU capacity by NVLink domain, the pods using it and the reservations holding it."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._members: dict[str, dict[Domain, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._pods: dict[str, PodUse] = {}
        self._node_used: dict[str, int] = defaultdict(int)
        self._owner_pods: dict[Owner, set[str]] = defaultdict(set)
        self._reservations = Reservations()
        self._cache: dict[Domain, list[int]] = {}

    # --- updates (from watch events; each O(1)) ---

    def set_node(self, name: str, info: NodeInfo | None) -> bool:
        """Add, change or (None) remove a node; True when the schedulable fleet changed."""
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
        return True

    def set_pod(self, key: str, use: PodUse | None) -> None:
        """Record a bound pod's GPUs, or (None) forget a pod that finished, was deleted or unbound."""
        old = self._pods.pop(key, None)
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
        """Hold `reservation` for `owner` (replacing what it held), or (None) release it."""
        old = self._reservations.put(owner, reservation)
        if old == reservation:
            return
        for r in (old, reservation):
            if r and r.domain is not None:
                self._cache.pop(r.domain, None)

    # --- queries ---

    def reservation(self, owner: Owner) -> Reservation | None:
        return self._reservations.get(owner)

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def pod(self, key: str) -> PodUse | None:
        return self._pods.get(key)

    @property
    def nodes(self) -> dict[str, NodeInfo]:
        return dict(self._nodes)

    def owner_pods(self, owner: Owner) -> list[PodUse]:
        """The bound, unfinished pods that carry `owner`'s label."""
        return [self._pods[k] for k in self._owner_pods.get(owner, ())]

    def instance_types(self) -> list[str]:
        return [t for t, doms in self._members.items() if doms]

    def domains(self, instance_type: str, exclude: Owner | None = None, keep_pods: bool = False
                ) -> dict[Domain, list[int]]:
        """Domain -> free GPUs of each schedulable node, after pods and reservations (other than
        `exclude`'s reservation, and its pods unless `keep_pods`); values go negative where
        reservations overcommit the domain."""
        out = {d: self._frees(instance_type, d, exclude, keep_pods) for d in self._members.get(instance_type, {})}
        wide = [(o, r) for o, r in self._reservations.typewide(instance_type) if o != exclude]
        if wide:
            self._lay_typewide(instance_type, out, wide)
        return out

    def free_nodes(self, instance_type: str, gpus_per_node: int, exclude: Owner | None = None,
                   keep_pods: bool = False) -> int:
        """Schedulable nodes of the type with `gpus_per_node` GPUs free, in any domain."""
        return sum(1 for frees in self.domains(instance_type, exclude, keep_pods).values()
                   for f in frees if f >= gpus_per_node)

    def usage(self) -> dict[tuple[str, Domain], tuple[int, int]]:
        """(instance type, domain) -> (allocatable GPUs, GPUs taken by pods and reservations)."""
        out = {}
        for itype in self.instance_types():
            for domain, frees in self.domains(itype).items():
                alloc = sum(self._nodes[n].allocatable for n in self._schedulable(domain, itype))
                out[(itype, domain)] = (alloc, alloc - sum(frees))
        return out

    # --- internals ---

    def _schedulable(self, domain: Domain, instance_type: str) -> list[str]:
        return sorted(n for n in self._members.get(instance_type, {}).get(domain, ()) if self._nodes[n].schedulable)

    def _touch_node(self, node: str) -> None:
        info = self._nodes.get(node)
        if info:
            self._cache.pop(info.domain, None)

    def _bound(self, owner: Owner, nodes: set[str] | None, gpus: int) -> int:
        """How many of `owner`'s pods of at least `gpus` GPUs (the reservation's pods; a smaller one
        is an older pod its rollout replaces) are bound on `nodes` (None: on any node)."""
        return sum(1 for k in self._owner_pods.get(owner, ())
                   if (nodes is None or self._pods[k].node in nodes) and self._pods[k].gpus >= gpus)

    def _frees(self, itype: str, domain: Domain, exclude: Owner | None, keep_pods: bool = False) -> list[int]:
        held = exclude is not None and self._reservations.held_in(exclude, domain)
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
        for owner, r in self._reservations.in_domain(domain):
            if owner == exclude:
                continue
            _lay(free, r.pods - self._bound(owner, members, r.gpus_per_pod), r.gpus_per_pod)
        out = sorted(free.values())
        if not mine:
            self._cache[domain] = out
        return out

    def _lay_typewide(self, instance_type: str, out: dict[Domain, list[int]],
                      held: list[tuple[Owner, Reservation]]) -> None:
        """Lay type-wide reservations' unbound pods over every domain of the type (uncached: rare)."""
        flat = {(d, i): f for d, frees in out.items() for i, f in enumerate(frees)}
        in_type = {n for members in self._members.get(instance_type, {}).values() for n in members}
        for owner, r in held:
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
