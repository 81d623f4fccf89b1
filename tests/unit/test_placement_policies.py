"""The planner's placement pieces on their own: fit policies (first fit, best fit), the admission
queue policy (FIFO per instance type), reservations in their order, and an Inventory built from
other policies."""

from __future__ import annotations

from collections.abc import Iterable

from rackfit.planner.fit import BestFit, FirstFit, FitPolicy
from rackfit.planner.inventory import Domain, Inventory, NodeInfo, Owner, Reservation
from rackfit.planner.queue import FifoPerType, QueuePolicy
from rackfit.planner.reservations import Reservations

A, B, C = (Domain("nvidia.com/gpu.clique", v) for v in ("a", "b", "c"))


def test_best_fit_takes_the_fullest_domain_that_holds_the_job():
    domains = {A: [4, 4, 4, 4], B: [0, 0, 4, 4], C: [0, 0, 0, 4]}
    assert BestFit().find_domain(domains, 2, 4) == B  # C is too full, A is emptier
    assert BestFit().find_domain(domains, 1, 4) == C
    assert BestFit().find_domain(domains, 4, 4) == A
    assert BestFit().find_domain(domains, 5, 4) is None


def test_first_fit_takes_the_first_fitting_domain_by_name():
    domains = {C: [4, 4], B: [0, 4], A: [0, 0]}
    assert FirstFit().find_domain(domains, 1, 4) == B
    assert FirstFit().find_domain(domains, 2, 4) == C
    assert FirstFit().find_domain(domains, 1, 8) is None


def test_every_policy_keeps_the_preferred_domain_while_it_fits():
    domains = {A: [4, 4], B: [0, 4]}
    for policy in (BestFit(), FirstFit()):
        assert policy.find_domain(domains, 1, 4, prefer="a") == A
        assert policy.find_domain(domains, 1, 4, prefer="b") == B
        assert policy.find_domain(domains, 2, 4, prefer="b") == A  # no longer fits: the policy's choice


def test_best_fit_ignores_overcommitted_nodes_and_breaks_ties_by_name():
    domains = {B: [-4, 4, 4], A: [4, 4, 0]}
    assert BestFit().rank(domains[B]) == 8
    assert BestFit().find_domain(domains, 2, 4) == A  # same free GPUs: the name decides


def test_a_new_fit_policy_is_one_class():
    class WorstFit(FitPolicy):
        name = "worst"

        def rank(self, frees: list[int]) -> int:
            return -sum(f for f in frees if f > 0)

    inv = Inventory(fit=WorstFit())
    for n, d in (("n1", A), ("n2", A), ("n3", B)):
        inv.set_node(n, NodeInfo("t", d, 4))
    assert inv.find_domain("t", 1, 4) == A
    assert Inventory().find_domain("t", 1, 4) is None  # an empty fleet


def test_fifo_blocks_the_types_older_waiting_workloads_wait_for():
    q = FifoPerType()
    q.wait(("ns", "big"), "2026-01-01T00:00:00Z", ["gb200-4x"])
    q.wait(("ns", "mid"), "2026-01-01T00:00:01Z", ["h100", "h200"])
    assert q.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == {"gb200-4x", "h100", "h200"}
    assert q.blocked_types(("ns", "mid"), "2026-01-01T00:00:01Z") == {"gb200-4x"}
    assert q.blocked_types(("ns", "big"), "2026-01-01T00:00:00Z") == frozenset()
    # the same second: the owner's name decides, so the order is total
    assert q.blocked_types(("ns", "a"), "2026-01-01T00:00:00Z") == frozenset()
    q.wait(("ns", "mid"), "2026-01-01T00:00:01Z", ["h200"])  # waits again for other types
    assert q.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == {"gb200-4x", "h200"}
    assert q.leave(("ns", "big")) is True and q.leave(("ns", "big")) is False
    assert q.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == {"h200"}


def test_an_inventory_takes_another_queue_policy():
    class NoQueue(QueuePolicy):
        """Whoever fits goes first (no queue)."""

        def wait(self, owner: Owner, since: str, instance_types: Iterable[str]) -> None:
            pass

        def leave(self, owner: Owner) -> bool:
            return False

        def blocked_types(self, owner: Owner, since: str) -> frozenset[str]:
            return frozenset()

    inv = Inventory(queue=NoQueue())
    assert inv.wait(("ns", "big"), "2026-01-01T00:00:00Z", {"t"}) is False
    assert inv.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == frozenset()
    fifo = Inventory()
    fifo.wait(("ns", "big"), "2026-01-01T00:00:00Z", {"t"})
    assert fifo.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == {"t"}
    assert fifo.wait(("ns", "big"), None) is True


def test_reservations_keep_their_order_across_re_reservations():
    rs = Reservations()
    a, b = ("ns", "a"), ("ns", "b")
    ra, rb = Reservation("t", A, 1, 4), Reservation("t", A, 2, 4)
    assert rs.put(a, ra) is None and rs.put(b, rb) is None
    assert rs.put(a, Reservation("t", A, 3, 4)) == ra  # replaced: returns what it held
    assert [o for o, _ in rs.in_domain(A)] == [a, b]  # a keeps its place
    assert rs.put(a, None) is not None and rs.put(a, ra) is None
    assert [o for o, _ in rs.in_domain(A)] == [b, a]  # released, then again: to the back
    assert rs.held_in(b, A) and not rs.held_in(b, B) and len(rs) == 2
    wide = Reservation("t", None, 2, 8)
    rs.put(b, wide)
    assert rs.typewide("t") == [(b, wide)] and not rs.held_in(b, A) and rs.in_domain(A) == [(a, ra)]
    assert rs.put(b, wide) == wide  # the same again: nothing changes
