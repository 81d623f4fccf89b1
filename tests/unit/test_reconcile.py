"""One reconcile decision (pure): conditions, placement stability, target patch, oversubscription."""

from __future__ import annotations

from rackfit.api.conditions import condition
from rackfit.api.v1alpha1 import parse_spec
from rackfit.catalog import load_catalog
from rackfit.operator.reconcile import decide, invalid
from rackfit.planner import Inventory

CATALOG = load_catalog()
SPEC = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                   "inference": {"contextLength": 16384, "concurrency": 16},
                   "placement": {"instanceTypes": ["gb200-4x"]},
                   "target": {"kind": "Deployment", "name": "llm"}})
TARGET = {"kind": "Deployment", "metadata": {"name": "llm"},
          "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "vllm"}]}}}}


def racks(free_per_rack):
    nodes = []
    for r, free in enumerate(free_per_rack):
        for i in range(18):
            labels = {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": f"u.{r}"}
            nodes.append((f"r{r}n{i}", labels, 4, 4 - free))
    return Inventory.from_nodes(nodes), Inventory.from_nodes([(n, l, a, 0) for n, l, a, _ in nodes])


def run(free, old=None, target=TARGET, generation=1, usage=None):
    inv, alloc = racks(free)
    return decide("w", SPEC, generation, old or {}, CATALOG, inv, alloc, target, usage or {}, [])


def cond(d, t):
    return condition(d.status["conditions"], t)


def test_places_in_a_domain_with_room_and_patches_the_target():
    d = run([0, 4])
    p = d.status["placement"]
    assert p["nvlinkDomain"] == "nvidia.com/gpu.clique=u.1"
    assert d.target_patch["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.clique"] == "u.1"
    for t, s in (("Estimated", "True"), ("Fits", "True"), ("Placed", "True"), ("Oversubscribed", "False")):
        assert cond(d, t)["status"] == s and cond(d, t)["observedGeneration"] == 1
    assert d.event[1] == "Placed"


def test_keeps_its_placement_while_it_fits_even_when_its_pods_fill_the_domain():
    first = run([0, 4])
    again = run([4, 0], old=first.status)  # its own pods now use rack 1; rack 0 looks emptier
    assert again.status["placement"] == first.status["placement"]
    assert again.event is None  # no new decision to record
    assert cond(again, "Placed")["lastTransitionTime"] == cond(first, "Placed")["lastTransitionTime"]


def test_a_spec_change_plans_again():
    first = run([0, 4])
    assert run([4, 4], old=first.status, generation=2).status["observedGeneration"] == 2


def test_waits_for_capacity():
    d = run([0, 0])
    assert cond(d, "Fits")["status"] == "True"
    assert cond(d, "Placed")["status"] == "False" and cond(d, "Placed")["reason"] == "WaitingForCapacity"
    assert d.target_patch is None


def test_missing_target():
    d = run([4, 4], target=None)
    assert cond(d, "Placed")["reason"] == "TargetNotFound"


def test_undersized_target_is_oversubscribed():
    one = {**TARGET, "spec": {**TARGET["spec"], "replicas": 1}}
    d = run([4, 4], target=one)
    assert d.status["placement"]["nodes"] >= 2
    assert cond(d, "Oversubscribed")["status"] == "True" and cond(d, "Oversubscribed")["reason"] == "TargetUndersized"


def test_overcommitted_domain_is_oversubscribed():
    first = run([0, 4])
    d = run([0, 4], old=first.status, usage={("gb200-4x", "u.1"): (72, 80)})
    assert cond(d, "Oversubscribed")["reason"] == "DomainOvercommitted"


def test_nothing_fits():
    spec = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                       "placement": {"instanceTypes": ["gd-8xl40s-i128"], "maxNodes": 1}})
    inv, alloc = racks([4])
    d = decide("w", spec, 1, {}, CATALOG, inv, alloc, None, {}, [])
    assert cond(d, "Fits")["status"] == "False" and "gd-8xl40s-i128" in cond(d, "Fits")["message"]


def test_invalid_spec_is_a_status_not_a_crash():
    d = invalid("spec.precision: got 'fp9'", 3, {})
    assert cond(d, "Estimated")["status"] == "False" and cond(d, "Estimated")["reason"] == "InvalidSpec"
    assert d.status["observedGeneration"] == 3
