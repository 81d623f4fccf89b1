"""One reconcile decision (pure): conditions, placement stability, target patch, oversubscription."""

from __future__ import annotations

import json

from rackfit.api.conditions import condition
from rackfit.api.status import placement_of
from rackfit.catalog import load_catalog
from rackfit.operator.reconcile import Inputs, decide, invalid, reservation_of
from rackfit.planner import Inventory
from rackfit.planner.inventory import NodeInfo, PodUse
from rackfit.spec import parse_spec

CATALOG = load_catalog()
SPEC = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                   "inference": {"contextLength": 16384, "concurrency": 16},
                   "placement": {"instanceTypes": ["gb200-4x"]},
                   "target": {"kind": "LeaderWorkerSet", "name": "llm"}})
TARGET = {"kind": "LeaderWorkerSet", "metadata": {"name": "llm"},
          "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 1, "workerTemplate": {
              "spec": {"containers": [{"name": "vllm"}]}}}}}


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
    held = reservation_of(placement_of(old or {}))
    inv.reserve(OWNER, held)
    return decide(Inputs(name="w", spec=SPEC, generation=generation, old=old or {}, catalog=CATALOG,
                         fleet=inv.view(OWNER), held=held, target=target))


def cond(d, t):
    return condition(d.status["conditions"], t)


def test_places_in_a_domain_with_room_and_patches_the_target():
    d = run([0, 4])
    p = d.status["placement"]
    assert p["nvlinkDomain"] == "nvidia.com/gpu.clique=u.1"
    workers = d.target_patch["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert workers["nodeSelector"]["nvidia.com/gpu.clique"] == "u.1"
    assert d.target_patch["spec"]["leaderWorkerTemplate"]["size"] == p["nodes"] == 2
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
    band = d.status["estimate"]["errorBand"]
    assert band and cond(d, "Fits")["message"].endswith(f"this regime's measured error: {band}")
    assert cond(d, "Placed")["status"] == "False" and cond(d, "Placed")["reason"] == "WaitingForCapacity"
    assert d.target_patch is None


def test_missing_target():
    d = run([4, 4], target=None)
    assert cond(d, "Placed")["reason"] == "TargetNotFound"


def deployment(replicas):
    return {"kind": "Deployment", "metadata": {"name": "llm"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "vllm"}]}}}}


# two data-parallel replicas of 70B, each whole on one 4-GPU node: a Deployment of 2 serves it
DATA_PARALLEL = parse_spec({"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                            "parallelism": {"tensor": 4, "data": 2}, "placement": {"instanceTypes": ["gb200-4x"]},
                            "target": {"kind": "Deployment", "name": "llm"}})


def test_undersized_target_is_oversubscribed():
    inv = racks([4, 4])
    d = decide(Inputs(name="w", spec=DATA_PARALLEL, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                      target=deployment(1)))
    assert d.status["placement"]["nodes"] == 2 and cond(d, "Placed")["status"] == "True"
    assert cond(d, "Oversubscribed")["status"] == "True" and cond(d, "Oversubscribed")["reason"] == "TargetUndersized"
    d = decide(Inputs(name="w", spec=DATA_PARALLEL, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                      target=deployment(2)))
    assert cond(d, "Oversubscribed")["status"] == "False"


def test_a_deployment_of_a_model_that_spans_nodes_is_refused_naming_the_kinds_that_can_run_it():
    spec = parse_spec({**SPEC.model_dump(by_alias=True, exclude_none=True),
                       "target": {"kind": "Deployment", "name": "llm"}})
    d = decide(Inputs(name="w", spec=spec, generation=1, old={}, catalog=CATALOG, fleet=racks([4, 4]).view(OWNER),
                      target=deployment(2)))
    placed = cond(d, "Placed")
    assert placed["status"] == "False" and placed["reason"] == "TargetNotMultiNode"
    assert placed["message"].startswith("spec.target.kind: one replica of the model spans 2 nodes")
    assert "LeaderWorkerSet" in placed["message"] and "JobSet" in placed["message"]
    assert "each replica holds the whole model" in placed["message"]
    assert d.target_patch is None and not d.unsuspend


TRAIN = parse_spec({"model": {"preset": "llama-3.1-70b"}, "workload": "training",
                    "training": {"method": "full", "zeroStage": 3}, "placement": {"instanceTypes": ["gb200-4x"]},
                    "target": {"kind": "JobSet", "name": "train"}})


def jobset(parallelism, suspend=True):
    return {"kind": "JobSet", "metadata": {"name": "train"}, "spec": {"suspend": suspend, "replicatedJobs": [
        {"name": "workers", "replicas": 1, "template": {"spec": {
            "parallelism": parallelism, "completions": parallelism, "template": {"spec": {"containers": [
                {"name": "torchrun", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}}}}]}}


def test_a_suspended_jobset_is_pinned_then_started():
    d = decide(Inputs(name="w", spec=TRAIN, generation=1, old={}, catalog=CATALOG, fleet=racks([4, 4]).view(OWNER),
                      target=jobset(2)))
    assert cond(d, "Placed")["status"] == "True" and d.unsuspend
    assert cond(d, "Oversubscribed")["status"] == "False"
    placed = merge_patch(jobset(2), d.target_patch)
    template = placed["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert template["spec"]["nodeSelector"]["nvidia.com/gpu.clique"] == \
        d.status["placement"]["nvlinkDomain"].split("=")[1]
    assert template["metadata"]["labels"] == {"rackfit.io/workload": "w"}
    # scheduling fields only (all a suspended JobSet allows): no limits, no variables
    del template["spec"]["nodeSelector"], template["metadata"]
    assert placed["spec"] == jobset(2)["spec"]


def test_a_jobset_with_fewer_pods_than_nodes_is_refused_naming_the_field():
    d = decide(Inputs(name="w", spec=TRAIN, generation=1, old={}, catalog=CATALOG, fleet=racks([4, 4]).view(OWNER),
                      target=jobset(1)))
    placed = cond(d, "Placed")
    assert placed["reason"] == "TargetShapeMismatch" and d.target_patch is None and not d.unsuspend
    assert placed["message"].startswith("spec.replicatedJobs[workers]: 1 pods")
    assert "parallelism and completions 2" in placed["message"]


def test_a_running_jobset_is_not_placed():
    d = decide(Inputs(name="w", spec=TRAIN, generation=1, old={}, catalog=CATALOG, fleet=racks([4, 4]).view(OWNER),
                      target=jobset(2, suspend=False)))
    assert cond(d, "Placed")["reason"] == "TargetNotSuspended" and "create JobSets with suspend: true" in \
        cond(d, "Placed")["message"]


def test_the_plan_reaches_the_containers_as_variables():
    d = run([4, 4])
    env = {e["name"]: e["value"] for e in d.target_patch["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"][
        "containers"][0]["env"]}
    p = d.status["placement"]
    assert env["RACKFIT_TENSOR_PARALLEL_SIZE"] == str(p["tensor"]) and env["RACKFIT_NNODES"] == "2"
    assert env["RACKFIT_GPUS_PER_NODE"] == "4" and env["RACKFIT_INSTANCE_TYPE"] == "gb200-4x"
    assert env["RACKFIT_MAX_MODEL_LEN"] == "16384"


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


def test_a_status_that_lags_while_its_pods_run_keeps_the_domain_they_run_in():
    """Planned again before its status shows the placement (kopf writes it after the handler), with
    its pods already running there and no room beside them: they are the placement's own pods, not
    older ones a rollout needs room beside, so it stays (moving it re-rolled a running target)."""
    first = run([0, 4])
    held = reservation_of(first.placement)
    inv = racks([4, 4])
    rack1 = [f"r1n{i}" for i in range(18)]
    for n in rack1[:held.pods]:  # its pods, one per planned node
        inv.set_pod(f"{n}-mine", PodUse(n, held.gpus_per_pod, OWNER))
    for n in rack1[held.pods:]:  # the rest of its rack full; rack 0 empty
        inv.set_pod(f"{n}-other", PodUse(n, 4, ("ns", "other")))
    inv.reserve(OWNER, held)
    lagging = decide(Inputs(name="w", spec=SPEC, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                            held=held, target=TARGET))
    assert reservation_of(lagging.placement) == held


def test_a_status_that_lags_the_ledger_plans_again_into_the_domain_it_holds():
    first = run([4, 4])
    inv = racks([4, 4])
    held = reservation_of(first.placement)
    inv.reserve(OWNER, held)
    lagging = decide(Inputs(name="w", spec=SPEC, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                            held=held, target=TARGET))
    assert reservation_of(lagging.placement) == held


def test_pods_pending_after_placement_say_why_with_the_scheduler_s_message():
    first = run([4, 4])
    assert cond(first, "PodsScheduled")["status"] == "True"
    inv = racks([4, 4])
    held = reservation_of(first.placement)
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
    """RFC 7386, as the API server applies the operator's patches: maps merge, None deletes, lists whole."""
    out = json.loads(json.dumps(obj))

    def go(dst, src):
        for k, v in src.items():
            if v is None:
                dst.pop(k, None)
            elif isinstance(v, dict) and isinstance(dst.get(k), dict):
                go(dst[k], v)
            else:
                dst[k] = json.loads(json.dumps(v))
    go(out, patch)
    return out


def test_a_target_asking_for_more_than_is_booked_is_placed_with_a_warning():
    """A Deployment of more single-node replicas than the plan books: placed (each pod holds the model),
    and the Placed message says how many GPUs are booked and what to change."""
    spec = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                       "inference": {"contextLength": 8192, "concurrency": 8},
                       "placement": {"instanceTypes": ["gb200-4x"]}, "target": {"kind": "Deployment", "name": "d"}})
    deployment = {"kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "vllm"}]}}}}
    inv = racks([4, 4])
    d = decide(Inputs(name="w", spec=spec, generation=1, old={}, catalog=CATALOG, fleet=inv.view(OWNER),
                      held=None, target=deployment))
    placed, p = cond(d, "Placed"), d.status["placement"]
    assert placed["status"] == "True" and placed["reason"] == "TargetPatched"
    booked = p["totalGPUs"]
    assert f"it asks for {3 * p['gpusPerNode']} GPUs and {booked} are booked" in placed["message"]
    assert "spec.parallelism.data" in placed["message"]
    assert "booked" not in cond(run([0, 4]), "Placed")["message"]  # a target of the planned size: no warning


SERVE_70B = parse_spec({"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                        "inference": {"contextLength": 8192, "concurrency": 8},
                        "placement": {"instanceTypes": ["gd-8xh100ib-i128"]},
                        "target": {"kind": "Deployment", "name": "llm"}})


def hgx(hosts: int, own_pod_gpus: int) -> Inventory:
    """HGX H100 hosts h0..; the workload's own older pod of `own_pod_gpus` GPUs runs on h0."""
    inv = Inventory()
    for i in range(hosts):
        labels = {"node.kubernetes.io/instance-type": "gd-8xh100ib-i128", "kubernetes.io/hostname": f"h{i}"}
        inv.set_node(f"h{i}", NodeInfo.from_labels(f"h{i}", labels, 8))
    inv.set_pod("old", PodUse("h0", own_pod_gpus, OWNER))
    return inv


def test_new_pods_go_where_they_fit_beside_the_target_s_older_pods():
    """A Deployment's 8-GPU pod runs on h0 (made before its placement): the plan books 4 GPUs on a host
    where the rollout's new pod fits beside it, not on h0, where it would wait for the old pod forever."""
    d = decide(Inputs(name="w", spec=SERVE_70B, generation=1, old={}, catalog=CATALOG, fleet=hgx(2, 8).view(OWNER),
                      target=deployment(1)))
    p = d.status["placement"]
    assert p["gpusPerNode"] < 8 and p["nvlinkDomain"] == "kubernetes.io/hostname=h1"
    assert cond(d, "PodsScheduled")["status"] == "True"


def test_a_rollout_its_older_pods_block_says_so():
    """Only h0 exists: the plan books it (the old pod goes with the rollout only if the strategy allows),
    and once the new pod is Pending the status names the older pods instead of a bare Unschedulable."""
    msg = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    d = decide(Inputs(name="w", spec=SERVE_70B, generation=1, old={}, catalog=CATALOG, fleet=hgx(1, 8).view(OWNER),
                      target=deployment(1), unschedulable=[msg]))
    assert d.status["placement"]["nvlinkDomain"] == "kubernetes.io/hostname=h0"
    c = cond(d, "PodsScheduled")
    assert c["status"] == "False" and c["reason"] == "RolloutBlocked"
    assert "1 older pod of the target hold 8 GPUs on h0" in c["message"] and msg in c["message"]
