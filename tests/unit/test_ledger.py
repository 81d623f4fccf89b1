"""The pure ledger (planner.inventory.Inventory): reservations, pods counted once, best fit, FIFO.
Its lock and change counter are the operator's (test_operator_ledger.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rackfit.planner.inventory import Domain, Inventory, NodeInfo, PodUse, Reservation

GB200 = "gb200-4x"


def rack_fleet(racks: int = 2, nodes: int = 18, gpus: int = 4) -> Inventory:
    inv = Inventory()
    for r in range(racks):
        for i in range(nodes):
            inv.set_node(f"r{r}n{i}", NodeInfo(GB200, Domain("nvidia.com/gpu.clique", f"u.{r}"), gpus))
    return inv


def test_a_reservation_holds_its_gpus_before_any_pod_exists():
    inv = rack_fleet()
    first = inv.find_domain(GB200, 10, 4)
    inv.reserve(("ns", "a"), Reservation(GB200, first, 10, 4))
    second = inv.find_domain(GB200, 10, 4)
    assert second is not None and second != first  # the same empty rack is never handed out twice
    inv.reserve(("ns", "b"), Reservation(GB200, second, 10, 4))
    assert inv.find_domain(GB200, 10, 4) is None  # the third waits


def test_bound_pods_of_a_reservation_are_counted_once():
    inv = rack_fleet(racks=1)
    d = Domain("nvidia.com/gpu.clique", "u.0")
    inv.reserve(("ns", "a"), Reservation(GB200, d, 10, 4))
    for i in range(10):
        inv.set_pod(f"a-{i}", PodUse(f"r0n{i}", 4, ("ns", "a")))
    assert inv.usage()[(GB200, d)] == (72, 40)
    inv.set_pod("stranger", PodUse("r0n17", 4))  # pods of no workload count too
    assert inv.usage()[(GB200, d)] == (72, 44)


def test_best_fit_takes_the_fullest_domain_that_still_holds_the_job():
    inv = rack_fleet(racks=3)
    for i in range(12):  # rack 1 is two thirds full
        inv.set_pod(f"p{i}", PodUse(f"r1n{i}", 4))
    assert inv.find_domain(GB200, 4, 4) == Domain("nvidia.com/gpu.clique", "u.1")
    assert inv.find_domain(GB200, 10, 4) == Domain("nvidia.com/gpu.clique", "u.0")  # whole racks for large jobs


def test_a_view_discounts_the_owners_own_holdings():
    inv = rack_fleet(racks=1)
    d = Domain("nvidia.com/gpu.clique", "u.0")
    r = Reservation(GB200, d, 18, 4)
    inv.reserve(("ns", "a"), r)
    assert inv.find_domain(GB200, 1, 4) is None
    assert inv.view(("ns", "a")).holds(r)
    assert not inv.view(("ns", "b")).holds(r)


def test_older_waiting_workloads_block_their_instance_types():
    inv = rack_fleet()
    inv.wait(("ns", "big"), "2026-01-01T00:00:00Z", {GB200})
    assert inv.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == {GB200}
    assert inv.blocked_types(("ns", "big"), "2026-01-01T00:00:00Z") == frozenset()
    assert inv.view(("ns", "small"), frozenset({GB200})).find_domain(GB200, 1, 1) is None
    inv.wait(("ns", "big"), None)
    assert inv.blocked_types(("ns", "small"), "2026-01-01T00:00:05Z") == frozenset()


def test_a_cordoned_node_holds_nothing():
    inv = rack_fleet(racks=1, nodes=2)
    inv.set_node("r0n0", NodeInfo(GB200, Domain("nvidia.com/gpu.clique", "u.0"), 4, schedulable=False))
    assert inv.free_nodes(GB200, 4) == 1


ops = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.integers(0, 9), st.sampled_from([1, 2, 4]), st.integers(1, 6)),
    st.tuples(st.just("depart"), st.integers(0, 9), st.just(0), st.just(0)),
    st.tuples(st.just("cordon"), st.integers(0, 11), st.just(0), st.just(0)),
    st.tuples(st.just("bind"), st.integers(0, 9), st.just(0), st.just(0)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_reserved_never_exceeds_allocatable_and_nothing_leaks(steps):
    """Random arrivals (placed only where `find_domain` says they fit), departures, cordons and pod
    bindings: no domain is ever taken beyond its allocatable GPUs by placements the ledger made,
    and once everyone has left, every GPU is free again."""
    inv = rack_fleet(racks=3, nodes=4)
    held: dict[tuple[str, str], Reservation] = {}
    for op, who, gpus, nodes in steps:
        owner = ("ns", f"w{who}")
        if op == "arrive" and owner not in held:
            d = inv.find_domain(GB200, nodes, gpus)
            if d is not None:
                held[owner] = Reservation(GB200, d, nodes, gpus)
                inv.reserve(owner, held[owner])
        elif op == "depart" and owner in held:
            del held[owner]
            inv.forget(owner)
            for i in range(6):
                inv.set_pod(f"{owner[1]}-{i}", None)
        elif op == "cordon":
            r, n = divmod(who, 4)
            inv.set_node(f"r{r}n{n}", NodeInfo(GB200, Domain("nvidia.com/gpu.clique", f"u.{r}"), 4, schedulable=False))
        elif op == "bind" and owner in held:
            r = held[owner]
            # the scheduler binds its pods to nodes of its domain with room, as the selector forces
            for i in range(r.pods):
                frees = {n: 4 - sum(p.gpus for p in inv._pods.values() if p.node == n)
                         for n, info in inv.nodes.items() if info.domain == r.domain and info.schedulable}
                node = next((n for n, f in sorted(frees.items()) if f >= r.gpus_per_pod), None)
                if node and f"{owner[1]}-{i}" not in inv._pods:
                    inv.set_pod(f"{owner[1]}-{i}", PodUse(node, r.gpus_per_pod, owner))
        cordoned = {n for n, info in inv.nodes.items() if not info.schedulable}
        if not cordoned:  # a cordon may strand a placement; before any, nothing is overcommitted
            for (_, _), (alloc, used) in inv.usage().items():
                assert used <= alloc
    for owner in list(held):
        inv.forget(owner)
        for i in range(6):
            inv.set_pod(f"{owner[1]}-{i}", None)
    assert all(used == 0 for _, used in inv.usage().values())
    assert not inv._reservations and not inv._pods


def test_a_job_larger_than_one_domain_holds_whole_hosts_of_its_type():
    inv = Inventory()
    for i in range(3):
        inv.set_node(f"h{i}", NodeInfo("gd-8xh100ib-i128", Domain("kubernetes.io/hostname", f"h{i}"), 8))
    big = Reservation("gd-8xh100ib-i128", None, 2, 8)
    inv.reserve(("ns", "big"), big)
    assert inv.free_nodes("gd-8xh100ib-i128", 8) == 1
    inv.set_pod("big-0", PodUse("h2", 8, ("ns", "big")))  # one of its pods bound: still two hosts held
    assert inv.free_nodes("gd-8xh100ib-i128", 8) == 1
    assert inv.view(("ns", "big")).holds(big)
    assert not inv.view(("ns", "other")).holds(big)
