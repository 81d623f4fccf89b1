"""The operator's ledger (operator.ledger.Ledger): the pure Inventory behind a lock, with the
counter of changes that can let a waiting workload in."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from rackfit.catalog import load_catalog
from rackfit.operator.ledger import Ledger
from rackfit.planner import Inventory, plan
from rackfit.planner.fit import FirstFit
from rackfit.planner.inventory import Domain, NodeInfo, PodUse, Reservation
from rackfit.spec import parse_spec

GB200 = "gb200-4x"
CLIQUE = "nvidia.com/gpu.clique"


def rack_fleet(fleet, racks: int = 2, nodes: int = 18, gpus: int = 4):
    for r in range(racks):
        for i in range(nodes):
            fleet.set_node(f"r{r}n{i}", NodeInfo(GB200, Domain(CLIQUE, f"u.{r}"), gpus))
    return fleet


def test_the_operator_uses_the_same_interface_it_used_on_inventory():
    ledger = Ledger()
    for name in ("set_node", "set_pod", "reserve", "wait", "forget", "reservation", "blocked_types", "view", "usage",
                 "node", "owner_pods", "nodes", "instance_types", "domains", "find_domain", "free_nodes", "lock",
                 "freed"):
        assert hasattr(ledger, name), name
    with ledger.lock, ledger.lock:  # re-entrant: a reconcile holds it around plan and reserve
        ledger.reserve(("ns", "a"), None)


def test_freed_counts_only_what_can_let_a_waiting_workload_in():
    inv = rack_fleet(Ledger(), racks=1, nodes=2)
    d = Domain(CLIQUE, "u.0")
    start = inv.freed
    inv.reserve(("ns", "a"), Reservation(GB200, d, 1, 4))
    inv.set_pod("p", PodUse("r0n0", 4, ("ns", "a")))
    inv.wait(("ns", "b"), "2026-01-01T00:00:00Z", {GB200})
    assert inv.freed == start  # taking capacity or queueing frees nothing
    inv.set_pod("p", None)
    assert inv.freed == start + 1  # a pod gone
    inv.forget(("ns", "a"))
    assert inv.freed == start + 2  # a reservation released
    inv.wait(("ns", "b"), None)
    assert inv.freed == start + 3  # the queue shortened
    inv.set_node("r0n2", NodeInfo(GB200, d, 4))
    assert inv.freed == start + 4  # a node added


def test_freed_counts_a_moved_reservation_a_smaller_pod_and_an_uncordon_but_not_repeats():
    inv = rack_fleet(Ledger(), racks=2, nodes=2)
    u0, u1 = Domain(CLIQUE, "u.0"), Domain(CLIQUE, "u.1")
    inv.reserve(("ns", "a"), Reservation(GB200, u0, 1, 4))
    start = inv.freed
    inv.reserve(("ns", "a"), Reservation(GB200, u0, 1, 4))  # the same again
    inv.wait(("ns", "a"), None)  # not waiting
    inv.forget(("ns", "nobody"))
    assert inv.freed == start
    inv.reserve(("ns", "a"), Reservation(GB200, u1, 1, 4))  # moved
    assert inv.freed == start + 1
    inv.set_pod("p", PodUse("r0n0", 4))
    inv.set_pod("p", PodUse("r0n0", 2))  # smaller
    assert inv.freed == start + 2
    assert inv.set_node("r0n0", NodeInfo(GB200, u0, 4, schedulable=False)) is True  # cordoned: frees nothing
    assert inv.set_node("r0n0", NodeInfo(GB200, u0, 4, schedulable=False)) is False  # no change
    assert inv.freed == start + 2
    inv.set_node("r0n0", NodeInfo(GB200, u0, 4))  # uncordoned
    assert inv.freed == start + 3


def test_a_view_of_the_ledger_plans_as_a_view_of_the_inventory():
    spec = parse_spec(dict(model={"preset": "llama-3.1-405b"}, workload="inference", precision="bf16",
                           inference=dict(contextLength=16384, concurrency=16), placement={"instanceTypes": [GB200]}))
    catalog = load_catalog()
    ledger, inv = rack_fleet(Ledger()), rack_fleet(Inventory())
    for fleet in (ledger, inv):
        fleet.reserve(("ns", "other"), Reservation(GB200, Domain(CLIQUE, "u.0"), 17, 4))  # one node left
    chosen = [plan(spec, catalog, f.view(("ns", "w"))).chosen.placement for f in (ledger, inv)]
    assert chosen[0] == chosen[1] and chosen[0].nvlink_domain == f"{CLIQUE}=u.1"
    held = Reservation(GB200, Domain(CLIQUE, "u.1"), chosen[0].nodes, chosen[0].gpus_per_node)
    ledger.reserve(("ns", "w"), held)
    view = ledger.view(("ns", "w"))
    assert view.holds(held) and view.inventory is ledger and view.with_own_pods().holds(held)
    assert not ledger.view(("ns", "x"), frozenset({GB200})).free_nodes(GB200, 4)


def test_the_fit_policy_is_the_ledger_s_choice():
    ledger = rack_fleet(Ledger(fit=FirstFit()), racks=3)
    for i in range(12):  # rack 1 is two thirds full: best fit would take it
        ledger.set_pod(f"p{i}", PodUse(f"r1n{i}", 4))
    assert ledger.find_domain(GB200, 4, 4) == Domain(CLIQUE, "u.0")
    assert rack_fleet(Ledger(), racks=3).find_domain(GB200, 4, 4) == Domain(CLIQUE, "u.0")


def test_concurrent_updates_from_handler_threads_lose_nothing():
    ledger = rack_fleet(Ledger(), racks=4)

    def churn(t: int) -> None:
        for i in range(200):
            owner = ("ns", f"t{t}-{i % 5}")
            with ledger.lock:  # decide and reserve atomically, as a reconcile does
                d = ledger.find_domain(GB200, 1, 4)
                ledger.reserve(owner, Reservation(GB200, d, 1, 4) if d else None)
            ledger.set_pod(f"t{t}-{i % 7}", PodUse(f"r{t}n{i % 18}", 1) if i % 2 else None)
            ledger.usage()

    threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in range(4):
        for i in range(5):
            ledger.forget(("ns", f"t{t}-{i}"))
        for i in range(7):
            ledger.set_pod(f"t{t}-{i}", None)
    assert all(used == 0 for _, used in ledger.usage().values())


ops = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.integers(0, 9), st.sampled_from([1, 2, 4]), st.integers(1, 6)),
    st.tuples(st.just("depart"), st.integers(0, 9), st.just(0), st.just(0)),
    st.tuples(st.just("cordon"), st.integers(0, 11), st.just(0), st.just(0)),
    st.tuples(st.just("bind"), st.integers(0, 9), st.sampled_from([1, 2, 4]), st.integers(0, 11)),
    st.tuples(st.just("wait"), st.integers(0, 9), st.just(0), st.integers(0, 1)),
), max_size=60)


@settings(max_examples=100, deadline=None)
@given(ops)
def test_the_ledger_answers_as_the_pure_inventory(steps):
    """The same events into a Ledger and an Inventory: every query answers the same."""
    ledger, inv = rack_fleet(Ledger(), racks=3, nodes=4), rack_fleet(Inventory(), racks=3, nodes=4)
    for n, (op, who, gpus, k) in enumerate(steps):
        owner = ("ns", f"w{who}")
        for fleet in (ledger, inv):
            if op == "arrive":
                d = fleet.find_domain(GB200, k, gpus, exclude=owner)
                fleet.reserve(owner, Reservation(GB200, d, k, gpus) if d else None)
            elif op == "depart":
                fleet.forget(owner)
            elif op == "cordon":
                r, i = divmod(k if k < 12 else who, 4)
                fleet.set_node(f"r{r}n{i}", NodeInfo(GB200, Domain(CLIQUE, f"u.{r}"), 4, schedulable=False))
            elif op == "bind":
                r, i = divmod(k, 4)
                fleet.set_pod(f"{owner[1]}-{n % 3}", PodUse(f"r{r}n{i}", gpus, owner))
            elif op == "wait":
                fleet.wait(owner, f"2026-01-01T00:00:0{who}Z" if k else None, {GB200})
        for exclude in (None, owner):
            assert ledger.domains(GB200, exclude) == inv.domains(GB200, exclude)
            assert ledger.domains(GB200, exclude, keep_pods=True) == inv.domains(GB200, exclude, keep_pods=True)
            assert ledger.find_domain(GB200, 2, 2, exclude=exclude) == inv.find_domain(GB200, 2, 2, exclude=exclude)
        assert ledger.usage() == inv.usage()
        assert ledger.reservation(owner) == inv.reservation(owner)
        assert ledger.owner_pods(owner) == inv.owner_pods(owner)
        assert ledger.blocked_types(owner, "2026-01-01T00:00:05Z") == inv.blocked_types(owner, "2026-01-01T00:00:05Z")
    assert ledger.nodes == inv.nodes and ledger.instance_types() == inv.instance_types()
