"""Kueue's topology-aware scheduling from rackfit's side (pure): the TAS annotations its reconcile writes
on a Kueue target's templates and takes back, a Workload built before them, where TAS put the pods,
the ComputeDomain channel the check names, and what `Placed` says of Kueue's Workload."""

from __future__ import annotations

import copy
import json

from rackfit.catalog import load_catalog
from rackfit.operator import kueuecheck as k
from rackfit.operator.reconcile import Inputs, decide
from rackfit.operator.targets import adapter, applied, kueue_patch, unplace_patch
from rackfit.operator.targets.computedomain import channel_claim
from rackfit.planner import plan
from rackfit.planner.inventory import Inventory
from rackfit.planner.nodes import Domain
from rackfit.spec import parse_spec

CATALOG = load_catalog()
CLIQUE = "nvidia.com/gpu.clique"
REQUIRED = "kueue.x-k8s.io/podset-required-topology"
GROUP = "kueue.x-k8s.io/podset-group-name"
TRAIN_8B_40 = {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {"method": "full"},
               "parallelism": {"tensor": 4, "data": 10}, "placement": {"instanceTypes": ["gb200-4x"]},
               "target": {"kind": "JobSet", "name": "t"}}
SERVE_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
              "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]},
              "target": {"kind": "LeaderWorkerSet", "name": "lws"}}


def _container(gpus: int = 4) -> dict:
    return {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}


def jobset(pods: int = 10, annotations: dict | None = None, suspend: bool = True) -> dict:
    template = {"spec": {"containers": [_container()]}}
    if annotations:
        template["metadata"] = {"annotations": dict(annotations)}
    return {"kind": "JobSet", "metadata": {"name": "t", "uid": "u1", "labels": {"kueue.x-k8s.io/queue-name": "q"},
                                           "resourceVersion": "7"},
            "spec": {"suspend": suspend, "replicatedJobs": [
                {"name": "driver", "replicas": 1, "template": {"spec": {"template": {"spec": {"containers": [
                    {"name": "d", "image": "x"}]}}}}},
                {"name": "workers", "replicas": 1, "template": {"spec": {"parallelism": pods, "completions": pods,
                                                                          "template": template}}}]}}


def lws(env: list | None = None) -> dict:
    worker = {"spec": {"containers": [{**_container(), **({"env": env} if env else {})}]}}
    return {"kind": "LeaderWorkerSet", "metadata": {"name": "lws", "uid": "u2",
                                                    "labels": {"kueue.x-k8s.io/queue-name": "q"}},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "leaderTemplate": copy.deepcopy(worker),
                                                             "workerTemplate": worker}}}


def best(spec: dict):
    return plan(parse_spec(spec), CATALOG).chosen


def test_a_plan_inside_one_rack_requires_the_clique_on_the_gpu_templates_only():
    p = best(TRAIN_8B_40).placement
    assert p.nodes == 10
    want = k.topology_for(adapter("JobSet"), jobset(), "train", p, 18)
    assert want == {"replicatedJobs[workers]": {REQUIRED: CLIQUE}}  # the CPU driver is left free


def test_a_leaderworkerset_s_leader_and_workers_share_one_group():
    p = best(SERVE_405B).placement
    assert p.nodes == 2
    want = k.topology_for(adapter("LeaderWorkerSet"), lws(), "llama", p, 18)
    assert want == {"leaderTemplate": {REQUIRED: CLIQUE, GROUP: "llama"},
                    "workerTemplate": {REQUIRED: CLIQUE, GROUP: "llama"}}


def test_nothing_for_one_node_a_host_sized_domain_or_the_user_s_own_topology():
    p = best(TRAIN_8B_40).placement
    assert k.topology_for(adapter("JobSet"), jobset(), "t", p.model_copy(update={"nodes": 1}), 18) == {}
    assert k.topology_for(adapter("JobSet"), jobset(), "t", p, 1) == {}  # HGX: the domain is the host
    theirs = jobset(annotations={"kueue.x-k8s.io/podset-preferred-topology": "topology.kubernetes.io/zone"})
    assert k.topology_for(adapter("JobSet"), theirs, "t", p, 18) == {}


def test_a_job_of_several_racks_is_sliced_into_whole_model_replicas_per_rack():
    p = best(TRAIN_8B_40).placement.model_copy(update={"nodes": 40, "data": 40})
    want = k.topology_for(adapter("JobSet"), jobset(40), "t", p, 18)
    assert want == {"replicatedJobs[workers]": {"kueue.x-k8s.io/podset-slice-required-topology": CLIQUE,
                                                "kueue.x-k8s.io/podset-slice-size": "10"}}  # 4 x 10 nodes, <= 18


def test_the_annotations_are_recorded_never_overwrite_the_user_and_are_taken_back_exactly():
    target = jobset()
    want = {"replicatedJobs[workers]": {REQUIRED: CLIQUE}}
    patch = kueue_patch(target, "train", want)
    tmpl = patch["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {REQUIRED: CLIQUE}
    assert "nodeSelector" not in tmpl["spec"] and "metadata" not in patch["spec"]["replicatedJobs"][0]["template"][
        "spec"]["template"]  # no pinning, nothing on the driver
    assert json.loads(patch["metadata"]["annotations"]["rackfit.io/applied"]) == {"templateAnnotations": want}
    assert patch["metadata"]["resourceVersion"] == "7"
    placed = _merge(target, patch)
    assert kueue_patch(placed, "train", want) is None  # applied once
    # the user's later annotation beside ours stays when rackfit takes its own back
    placed["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["metadata"]["annotations"]["mine"] = "1"
    undone = _merge(placed, unplace_patch(placed))
    assert undone["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["metadata"]["annotations"] == {
        "mine": "1"}
    assert "rackfit.io/applied" not in undone["metadata"]["annotations"]
    # a value the user set is not overwritten (nor recorded, so never taken back)
    theirs = jobset(annotations={REQUIRED: "topology.kubernetes.io/zone"})
    assert kueue_patch(theirs, "train", want) is None


def test_a_leaderworkerset_under_kueue_gets_the_plan_s_variables_and_gives_the_user_s_back():
    target = lws(env=[{"name": "RACKFIT_NNODES", "value": "9"}])
    want = {"leaderTemplate": {REQUIRED: CLIQUE, GROUP: "l"}, "workerTemplate": {REQUIRED: CLIQUE, GROUP: "l"}}
    patch = kueue_patch(target, "l", want, env={"RACKFIT_NNODES": "2", "RACKFIT_TENSOR_PARALLEL_SIZE": "8"})
    placed = _merge(target, patch)
    lwt = placed["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and "nodeSelector" not in lwt["workerTemplate"]["spec"]  # no group size, no pin
    assert lwt["workerTemplate"]["spec"]["containers"][0]["env"] == [
        {"name": "RACKFIT_NNODES", "value": "2"}, {"name": "RACKFIT_TENSOR_PARALLEL_SIZE", "value": "8"}]
    assert lwt["leaderTemplate"]["metadata"]["annotations"] == {REQUIRED: CLIQUE, GROUP: "l"}
    assert applied(placed)["env"] == {"RACKFIT_NNODES": "2", "RACKFIT_TENSOR_PARALLEL_SIZE": "8"}
    undone = _merge(placed, unplace_patch(placed))
    assert undone["spec"] == target["spec"]


def test_a_workload_built_before_the_annotations_is_stale():
    target = _merge(jobset(), kueue_patch(jobset(), "t", {"replicatedJobs[workers]": {REQUIRED: CLIQUE}}))
    podsets = [{"name": "driver", "count": 1, "template": {"spec": {"containers": [{"name": "d"}]}}},
               {"name": "workers", "count": 10, "template": {"spec": {"containers": [_container()]}}}]
    built_before = {"spec": {"podSets": podsets}}
    assert k.topology_stale(built_before, target)
    again = copy.deepcopy(built_before)
    again["spec"]["podSets"][1]["topologyRequest"] = {"required": CLIQUE, "podIndexLabel": "x"}
    assert not k.topology_stale(again, target)
    assert k.topology_missing(jobset(), {"replicatedJobs[workers]": {REQUIRED: CLIQUE}})
    assert not k.topology_missing(target, {"replicatedJobs[workers]": {REQUIRED: CLIQUE}})


HOSTS = {f"gb200-{i}": Domain(CLIQUE, "rack-a" if i < 18 else "rack-b") for i in range(36)}


def admitted_workload(hosts: list[str], check: dict | None = None, admitted: bool = True) -> dict:
    assignment = {"levels": ["kubernetes.io/hostname"], "slices": [{
        "domainCount": len(hosts), "valuesPerLevel": [{"individual": {"prefix": "gb200-",
                                                                      "roots": [h.split("-")[1] for h in hosts]}}],
        "podCounts": {"universal": 1}}]}
    template = {"spec": {"containers": [_container()]}}
    return {"metadata": {"name": "jobset-t-1", "ownerReferences": [{"kind": "JobSet", "name": "t", "uid": "u1",
                                                                    "controller": True}]},
            "spec": {"podSets": [{"name": "workers", "count": len(hosts), "template": template,
                                  "topologyRequest": {"required": CLIQUE}}]},
            "status": {"admission": {"clusterQueue": "checked", "podSetAssignments": [{
                "name": "workers", "flavors": {"nvidia.com/gpu": "gb200"}, "count": len(hosts),
                "topologyAssignment": assignment}]},
                "admissionChecks": [check or {"name": "rackfit", "state": "Pending", "message": ""}],
                "conditions": [{"type": "QuotaReserved", "status": "True", "message": "Quota reserved in ClusterQueue "
                                                                                        "checked"},
                               {"type": "Admitted", "status": "True" if admitted else "False",
                                "message": "The workload is admitted" if admitted else "waiting for checks"}]}}


def test_where_tas_put_the_pods_read_by_host_or_by_level():
    wl = admitted_workload([f"gb200-{i}" for i in range(10)])
    assert k.admitted_domain(wl, HOSTS.get) == Domain(CLIQUE, "rack-a")
    split = admitted_workload(["gb200-1", "gb200-20"])
    assert k.admitted_domain(split, HOSTS.get) is None  # two racks: no one ComputeDomain
    by_level = {"levels": [CLIQUE], "slices": [{"domainCount": 2, "valuesPerLevel": [{"individual": {
        "prefix": "rack-", "roots": ["a", "b"]}}], "podCounts": {"individual": [6, 4]}}]}
    assert k.topology_domains(by_level, HOSTS.get) == {f"{CLIQUE}=rack-a": 6, f"{CLIQUE}=rack-b": 4}


def test_ready_names_the_channel_of_the_clique_tas_reserved_and_the_reconcile_finds_the_same():
    spec = parse_spec({**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 2}})
    wl = admitted_workload([f"gb200-{i}" for i in (3, 4)], admitted=False)
    v = k.verdict("train", spec, CATALOG, wl, {"node.kubernetes.io/instance-type": "gb200-4x"}, None,
                  node_domain=HOSTS.get, claim=True)
    assert v["state"] == "Ready" and v["placement"].nvlink_domain == f"{CLIQUE}=rack-a"
    claim = json.loads(v["podSetUpdates"][0]["annotations"]["rackfit.io/kueue-channel"])
    assert claim == channel_claim("train", v["placement"]) and claim["name"] == "rackfit-imex-channel"
    assert "ComputeDomain channel" in v["message"]
    no_claim = k.verdict("train", spec, CATALOG, wl, {"node.kubernetes.io/instance-type": "gb200-4x"}, None,
                         node_domain=HOSTS.get)
    assert "rackfit.io/kueue-channel" not in no_claim["podSetUpdates"][0]["annotations"]
    # the LLMWorkload's reconcile reads the same placement back from the Workload's check
    answered = {"name": "rackfit", "state": "Ready", "message": v["message"], "podSetUpdates": v["podSetUpdates"]}
    wl["status"]["admissionChecks"] = [answered]
    back = k.channel_placement(wl, "train", plan(spec, CATALOG).options, HOSTS.get)
    assert back is not None and channel_claim("train", back) == claim and back.nodes == 2


def test_a_template_carrying_another_type_s_plan_is_rejected():
    spec = parse_spec({**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 2}})
    wl = admitted_workload(["gb200-1", "gb200-2"])
    wl["spec"]["podSets"][0]["template"]["spec"]["containers"][0]["env"] = [{"name": "RACKFIT_NNODES", "value": "1"}]
    v = k.verdict("train", spec, CATALOG, wl, {"node.kubernetes.io/instance-type": "gb200-4x"})
    assert v["state"] == "Rejected" and "RACKFIT_NNODES=1" in v["message"] and "RACKFIT_NNODES=2" in v["message"]


def _kueue_decide(target: dict, kueue_workload: dict | None, spec: dict = TRAIN_8B_40, domains: bool = False):
    inv = Inventory.from_nodes([(h, {"node.kubernetes.io/instance-type": "gb200-4x", CLIQUE: d.value,
                                     "kubernetes.io/hostname": h}, 4, 0) for h, d in HOSTS.items()])
    return decide(Inputs(name="train", spec=parse_spec(spec), generation=1, old={}, catalog=CATALOG,
                         fleet=inv.view(), target=target, kueue=True, kueue_workload=kueue_workload,
                         compute_domains=domains))


def _placed(d) -> dict:
    return next(c for c in d.status["conditions"] if c["type"] == "Placed")


def test_placed_says_kueue_s_message_flavor_and_topology():
    wl = admitted_workload([f"gb200-{i}" for i in range(10)], check={"name": "rackfit", "state": "Ready",
                                                                     "message": "fits"})
    target = _merge(jobset(), kueue_patch(jobset(), "train", {"replicatedJobs[workers]": {REQUIRED: CLIQUE}}))
    d = _kueue_decide(target, wl)
    p = _placed(d)
    assert (p["status"], p["reason"]) == ("True", "AdmittedByKueue")
    assert "flavor gb200 (nvidia.com/gpu)" in p["message"] and f"10 pods in {CLIQUE}=rack-a" in p["message"]
    assert "Kueue: The workload is admitted" in p["message"] and "ClusterQueue checked" in p["message"]
    assert d.target_patch is None and d.reservation is None and d.status["placement"] is None
    waiting = {"metadata": {"name": "jobset-t-1"}, "status": {"conditions": [{
        "type": "QuotaReserved", "status": "False", "message": "couldn't assign flavors to pod set workers: "
                                                               "insufficient unused quota"}]}}
    p = _placed(_kueue_decide(target, waiting))
    assert (p["status"], p["reason"]) == ("False", "PendingInKueue")
    assert "Kueue: couldn't assign flavors to pod set workers: insufficient unused quota" in p["message"]


def test_the_reconcile_writes_the_tas_annotations_on_a_kueue_target():
    d = _kueue_decide(jobset(), None)
    tmpl = d.target_patch["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {REQUIRED: CLIQUE}
    assert "podset-required-topology" in _placed(d)["message"]


def test_a_kueue_admitted_placement_across_nodes_of_one_rack_keeps_its_compute_domain():
    spec = {**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 2}}
    wl = admitted_workload(["gb200-3", "gb200-4"], admitted=False)
    v = k.verdict("train", parse_spec(spec), CATALOG, wl, {"node.kubernetes.io/instance-type": "gb200-4x"}, None,
                  node_domain=HOSTS.get, claim=True)
    wl["status"]["admissionChecks"] = [{"name": "rackfit", "state": "Ready", "podSetUpdates": v["podSetUpdates"]}]
    target = jobset(2)
    d = _kueue_decide(target, wl, spec, domains=True)
    assert _placed(d)["reason"] == "PendingInKueue" and d.placement == v["placement"]
    assert _kueue_decide(target, wl, spec, domains=False).placement is None


def _merge(obj: dict, patch: dict | None) -> dict:
    """RFC 7386 applied (what the API server does with a merge patch)."""
    if patch is None:
        return copy.deepcopy(obj)
    out = copy.deepcopy(obj)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def test_the_compute_domain_of_a_kueue_placement_is_kept_while_kueue_admits_it(monkeypatch):
    from rackfit.operator import computedomains
    made, gone = [], []
    monkeypatch.setattr(computedomains.kube, "list_names", lambda *a: ["train-old"])
    monkeypatch.setattr(computedomains.kube, "create_object", lambda api, ns, body: made.append(body))
    monkeypatch.setattr(computedomains.kube, "delete_object", lambda api, ns, name: gone.append(name))
    p = best({**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 2}}).placement.model_copy(
        update={"nvlink_domain": f"{CLIQUE}=rack-a"})
    pending = {"conditions": [{"type": "Placed", "status": "False", "reason": "PendingInKueue"}]}
    computedomains.reconcile("ns", "train", "uid", pending, p, _Log())
    assert made[0]["spec"]["numNodes"] == 2 and gone == ["train-old"]
    made.clear(), gone.clear()
    computedomains.reconcile("ns", "train", "uid", pending, None, _Log())  # evicted: no rack any more
    assert made == [] and gone == ["train-old"]


def test_the_pod_webhook_gives_a_kueue_pod_the_variables_and_the_channel_claim():
    from types import SimpleNamespace

    import kopf

    from rackfit.operator import gating
    claim = {"name": "rackfit-imex-channel", "resourceClaimTemplateName": "train-1234abcd-channel"}
    annotations = {"rackfit.io/kueue-plan": json.dumps({"RACKFIT_NNODES": "2"}),
                   "rackfit.io/kueue-channel": json.dumps(claim)}
    for domains in (True, False):
        patch = kopf.Patch()
        memo = SimpleNamespace(ctx=SimpleNamespace(compute_domains=domains))
        gating._mutate({"containers": [_container()]}, {}, {"rackfit.io/workload": "train"}, "ns", patch, {}, {}, memo,
                       annotations)
        spec = patch["spec"]
        assert spec["containers"][0]["env"] == [{"name": "RACKFIT_NNODES", "value": "2"}]
        assert "schedulingGates" not in spec  # Kueue's pod: never rackfit's gate
        if domains:
            assert spec["resourceClaims"] == [claim]
            assert spec["containers"][0]["resources"]["claims"] == [{"name": "rackfit-imex-channel"}]
        else:
            assert "resourceClaims" not in spec


class _Log:
    def info(self, *_):
        pass
