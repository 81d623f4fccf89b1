"""Reservations (pure): the placements the operator decided, each held for its workload from the
moment it is decided until it is released, in the order they were first made.

`capacity.Capacity` owns one `Reservations` and changes it only through `Capacity.reserve` (which
drops the per-domain results it cached); it lays each domain's reservations in this order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rackfit.planner.nodes import Domain, Owner


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


class Reservations:
    """Owner -> reservation, indexed by domain (and by instance type for type-wide ones). A workload
    keeps its place in the order across re-reservations; releasing it gives the place up."""

    def __init__(self) -> None:
        self._held: dict[Owner, Reservation] = {}
        self._order: dict[Owner, int] = {}
        self._in_domain: dict[Domain, set[Owner]] = defaultdict(set)
        self._typewide: dict[str, set[Owner]] = defaultdict(set)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, owner: Owner) -> Reservation | None:
        return self._held.get(owner)

    def put(self, owner: Owner, reservation: Reservation | None) -> Reservation | None:
        """Hold `reservation` for `owner` (replacing what it held), or (None) release it; returns
        what it held before (equal to `reservation` when nothing changed)."""
        old = self._held.pop(owner, None)
        if old == reservation:
            if reservation:
                self._held[owner] = reservation
            return old
        if old:
            self._index(old).discard(owner)
        if reservation:
            self._held[owner] = reservation
            self._index(reservation).add(owner)
            if owner not in self._order:
                self._seq += 1
                self._order[owner] = self._seq
        else:
            self._order.pop(owner, None)
        return old

    def held_in(self, owner: Owner, domain: Domain) -> bool:
        """Does `owner` hold a reservation in `domain`?"""
        return owner in self._in_domain.get(domain, ())

    def in_domain(self, domain: Domain) -> list[tuple[Owner, Reservation]]:
        """The reservations held in `domain`, oldest first."""
        return [(o, self._held[o]) for o in self._ordered(self._in_domain.get(domain, ()))]

    def typewide(self, instance_type: str) -> list[tuple[Owner, Reservation]]:
        """The reservations held anywhere in `instance_type` (no domain), oldest first."""
        return [(o, self._held[o]) for o in self._ordered(self._typewide.get(instance_type, ()))]

    def _ordered(self, owners: Iterable[Owner]) -> list[Owner]:
        return sorted(owners, key=lambda o: self._order.get(o, 0))

    def _index(self, r: Reservation) -> set[Owner]:
        return self._typewide[r.instance_type] if r.domain is None else self._in_domain[r.domain]
