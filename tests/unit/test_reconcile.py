"""One reconcile decision (pure): conditions, placement stability, target patch, oversubscription."""

from __future__ import annotations

import json

from rackfit.api.conditions import condition
from rackfit.catalog import load_catalog
from rackfit.operator.reconcile import Inputs, decide, invalid, reservation_of
from rackfit.planner import Inventory
from rackfit.planner.inventory import NodeInfo, PodUse
from rackfit.spec import parse_spec

CATALOG = load_catalog()
SPEC = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                   "inference": {"contextLength": 16384, "concurrency": 16},
                   "placement": {"instanceTypes": ["gb200-4x"]},
                   "target": {"kind": "Deployment", "name": "llm"}})
TARGET = {"kind": "Deployment", "metadata": {"name": "llm"},
          "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "vllm"}]}}}}


OWNER = ("ns", "w")


def racks(free_per_rack, owned_by_w=()):
    """Two or more NVL72 racks; `free` GPUs left per node of each rack; pods on the racks listed in
    `owned_by_w` belong to the workload under test."""
    inv = Inventory()
    for r, free in enumerate(free_per_rack):
        for i in range(18):
            labels = {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": f"u.{r}"}
            inv.set_node(f"r{r}n{i}", NodeInfo.from_labels(f"r{r}n{i}", labels, 4))
            if free < 4:
                inv.set_pod(f"r{r}n{i}-pod", PodUse(f"r{r}n{i}", 4 - free, OWNER if r in owned_by_w else None))
    return inv


def run(free, old=None, target=TARGET, generation=1, owned_by_w=(), inv=None):
    inv = inv or racks(free, owned_by_w)
    held = reservation_of((old or {}).get("placement"))
    inv.reserve(OWNER, held)
    return decide(Inputs(name="w", spec=SPEC, generation=generation, old=old or {}, catalog=CATALOG,
                         fleet=inv.view(OWNER), held=held, target=target))


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
    # an earlier transition time than any this run could write: both runs fall in the same second,
    # so comparing with first's own time would hold even if the time were reset
    placed_at = "2026-01-01T00:00:00Z"
    old = {**first.status, "conditions": [{**x, "lastTransitionTime": placed_at} for x in first.status["conditions"]]}
    again = run([4, 0], old=old, owned_by_w={1})  # its own pods now fill rack 1
    assert again.status["placement"] == first.status["placement"]
    assert again.event is None  # no new decision to record
    assert cond(again, "Placed")["lastTransitionTime"] == placed_at


def test_a_spec_change_plans_again():
    first = run([0, 4])
    assert run([4, 4], old=first.status).event is None  # same generation: the placement is kept
    again = run([4, 4], old=first.status, generation=2)
    assert again.event is not None and again.event[1] == "Placed"  # planned again: a new decision recorded


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
    inv = racks([0, 4])
    for n in range(first.status["placement"]["nodes"]):  # its pods run in rack 1
        inv.set_pod(f"w-{n}", PodUse(f"r1n{n}", 4, OWNER))
    inv.set_pod("by-hand", PodUse("r1n0", 4))  # a pod bound by hand (nodeName) onto one of its nodes
    d = run([0, 4], old=first.status, inv=inv)
    assert cond(d, "Oversubscribed")["reason"] == "DomainOvercommitted"
    assert cond(d, "Placed")["status"] == "True"  # its own placement is kept while the rack still holds it


def test_nothing_fits():
    spec = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                       "placement": {"instanceTypes": ["gd-8xl40s-i128"], "maxNodes": 1}})
    d = decide(Inputs(name="w", spec=spec, generation=1, old={}, catalog=CATALOG, fleet=racks([4]).view(OWNER)))
    assert cond(d, "Fits")["status"] == "False" and "gd-8xl40s-i128" in cond(d, "Fits")["message"]


def test_invalid_spec_is_a_status_not_a_crash():
    d = invalid("spec.precision: got 'fp9'", 3, {})
    assert cond(d, "Estimated")["status"] == "False" and cond(d, "Estimated")["reason"] == "InvalidSpec"
    assert d.status["observedGeneration"] == 3


def test_a_status_that_lags_the_ledger_plans_again_into_the_domain_it_holds():
    first = run([4, 4])
    inv = racks([4, 4])
    held = reservation_of(first.status["placement"])
    inv.reserve(OWNER, held)
    lagging = decide(Inputs(name="w", spec=SPEC, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                            held=held, target=TARGET))
    assert reservation_of(lagging.status["placement"]) == held


def test_pods_pending_after_placement_say_why_with_the_scheduler_s_message():
    first = run([4, 4])
    assert cond(first, "PodsScheduled")["status"] == "True"
    inv = racks([4, 4])
    held = reservation_of(first.status["placement"])
    inv.reserve(OWNER, held)
    msg = "0/36 nodes are available: 36 Insufficient nvidia.com/gpu."
    d = decide(Inputs(name="w", spec=SPEC, generation=1, old=first.status, catalog=CATALOG, fleet=inv.view(OWNER),
                      held=held, target=TARGET, unschedulable=[msg, msg]))
    c = cond(d, "PodsScheduled")
    assert c["status"] == "False" and c["reason"] == "Unschedulable" and c["message"] == f"2 pods Pending: {msg}"
    assert cond(run([0, 0]), "PodsScheduled")["status"] == "Unknown"


def test_a_restart_between_target_patch_and_status_keeps_the_domain_the_target_is_pinned_to():
    """The operator patched the target for rack 0, then died before writing status: planning again
    from the target's record lands in rack 0 again, with no second patch."""
    first = run([4, 4])
    target = merge_patch(TARGET, first.target_patch)
    pinned = first.status["placement"]["nvlinkDomain"].split("=", 1)[1]
    inv = racks([4, 4])
    for n in range(10):  # rack 1 is now the best fit
        inv.set_pod(f"other-{n}", PodUse(f"r1n{n}", 4))
    assert inv.find_domain("gb200-4x", 2, 4).value == "u.1" and pinned == "u.0"
    again = decide(Inputs(name="w", spec=SPEC, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                          target=target))
    assert again.status["placement"]["nvlinkDomain"].endswith(pinned)
    assert again.target_patch is None


def merge_patch(obj, patch):
    out = json.loads(json.dumps(obj))

    def go(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                go(dst[k], v)
            elif k == "containers":
                for c in v:
                    go(next(x for x in dst[k] if x["name"] == c["name"]), c)
            else:
                dst[k] = v
    go(out, patch)
    return out
