"""Kueue's topology-aware scheduling from rackfit's side (pure): the TAS annotations its reconcile writes
on a Kueue target's templates and takes back, a Workload built before them, where TAS put the pods,
the ComputeDomain channel the check names, the check holding a Workload that does not ask for the plan's
topology, and what `Placed` says of Kueue's Workload."""

from __future__ import annotations

import copy
import json

from rackfit.catalog import load_catalog
from rackfit.operator import kueuecheck as k
from rackfit.operator.reconcile import Inputs, decide
from rackfit.operator.targets import adapter, applied, kueue_patch, unplace_patch
from rackfit.operator.targets.computedomain import channel_claim, compute_domain, group_claim
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



TOLERATION = {"key": "rackfit.io/topology", "operator": "Exists", "effect": "NoSchedule"}
WORKERS = "replicatedJobs[workers]"


def test_a_plan_inside_one_rack_requires_the_clique_on_the_gpu_templates_only():
    p = best(TRAIN_8B_40).placement
    assert p.nodes == 10
    want = k.topology_for(adapter("JobSet"), jobset(), "train", p, 18)
    assert want == {WORKERS: {REQUIRED: CLIQUE}}  # the CPU driver is left free


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
    assert want == {WORKERS: {"kueue.x-k8s.io/podset-slice-required-topology": CLIQUE,
                              "kueue.x-k8s.io/podset-slice-size": "10"}}  # 4 x 10 nodes, <= 18


def test_the_annotations_and_toleration_are_recorded_never_overwrite_the_user_and_are_taken_back_exactly():
    target = jobset()
    want = {WORKERS: {REQUIRED: CLIQUE}}
    patch = kueue_patch(target, "train", want)
    tmpl = patch["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {REQUIRED: CLIQUE}
    # the toleration is what makes Kueue build its Workload again (it compares tolerations, not annotations)
    assert tmpl["spec"]["tolerations"] == [TOLERATION]
    assert "nodeSelector" not in tmpl["spec"] and "metadata" not in patch["spec"]["replicatedJobs"][0]["template"][
        "spec"]["template"]  # no pinning, nothing on the driver
    assert json.loads(patch["metadata"]["annotations"]["rackfit.io/applied"]) == {
        "templateAnnotations": want, "tolerations": [TOLERATION]}
    assert patch["metadata"]["resourceVersion"] == "7"
    placed = _merge(target, patch)
    assert kueue_patch(placed, "train", want) is None  # applied once
    # the user's later annotation beside ours stays when rackfit takes its own back
    placed["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["metadata"]["annotations"]["mine"] = "1"
    undone = _merge(placed, unplace_patch(placed))
    assert undone["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["metadata"]["annotations"] == {
        "mine": "1"}
    assert "tolerations" not in undone["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["spec"]
    assert "rackfit.io/applied" not in undone["metadata"]["annotations"]
    # a value the user set is not overwritten (nor recorded, so never taken back), and nothing else is added
    theirs = jobset(annotations={REQUIRED: "topology.kubernetes.io/zone"})
    assert kueue_patch(theirs, "train", want) is None


HOSTS = {f"gb200-{i}": Domain(CLIQUE, "rack-a" if i < 18 else "rack-b") for i in range(36)}


def admitted_workload(hosts: list[str], check: dict | None = None, admitted: bool = True,
                      topology: dict | None = None) -> dict:
    assignment = {"levels": ["kubernetes.io/hostname"], "slices": [{
        "domainCount": len(hosts), "valuesPerLevel": [{"individual": {"prefix": "gb200-",
                                                                      "roots": [h.split("-")[1] for h in hosts]}}],
        "podCounts": {"universal": 1}}]}
    template = {"spec": {"containers": [_container()]}}
    podset = {"name": "workers", "count": len(hosts), "template": template,
              "topologyRequest": {"required": CLIQUE} if topology is None else topology}
    return {"metadata": {"name": "jobset-t-1", "namespace": "ns", "uid": "w1", "ownerReferences": [
                {"kind": "JobSet", "name": "t", "uid": "u1", "controller": True}]},
            "spec": {"podSets": [podset]},
            "status": {"admission": {"clusterQueue": "checked", "podSetAssignments": [{
                "name": "workers", "flavors": {"nvidia.com/gpu": "gb200"}, "count": len(hosts),
                "topologyAssignment": assignment}]},
                "admissionChecks": [check or {"name": "rackfit", "state": "Pending", "message": ""}],
                "conditions": [{"type": "QuotaReserved", "status": "True", "message": "Quota reserved in ClusterQueue "
                                                                                        "checked"},
                               {"type": "Admitted", "status": "True" if admitted else "False",
                                "message": "The workload is admitted" if admitted else "waiting for checks"}]}}


GB200 = {"node.kubernetes.io/instance-type": "gb200-4x"}
TRAIN_8B_8 = {**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 2}}


def test_where_tas_put_the_pods_read_by_host_or_by_level():
    wl = admitted_workload([f"gb200-{i}" for i in range(10)])
    assert k.admitted_domain(wl, HOSTS.get) == Domain(CLIQUE, "rack-a")
    split = admitted_workload(["gb200-1", "gb200-20"])
    assert k.admitted_domain(split, HOSTS.get) is None  # two racks: no one ComputeDomain
    by_level = {"levels": [CLIQUE], "slices": [{"domainCount": 2, "valuesPerLevel": [{"individual": {
        "prefix": "rack-", "roots": ["a", "b"]}}], "podCounts": {"individual": [6, 4]}}]}
    assert k.topology_domains(by_level, HOSTS.get) == {f"{CLIQUE}=rack-a": 6, f"{CLIQUE}=rack-b": 4}


def test_the_check_holds_a_workload_that_does_not_ask_for_the_plan_s_topology():
    spec = parse_spec(TRAIN_8B_8)
    annotated = _merge(jobset(2), kueue_patch(jobset(2), "train", {WORKERS: {REQUIRED: CLIQUE}}))
    one_rack = admitted_workload(["gb200-3", "gb200-4"], admitted=False)
    # the reconcile has not annotated the JobSet yet: no answer (Kueue replaces the Workload once it has)
    v = k.verdict("train", spec, CATALOG, one_rack, GB200, target=jobset(2), node_domain=HOSTS.get)
    assert v["state"] == "Pending" and "has not written its topology annotations" in v["message"]
    # annotated, but Kueue's Workload was built before: no answer until Kueue builds it again
    built_before = admitted_workload(["gb200-3", "gb200-4"], admitted=False, topology={})
    v = k.verdict("train", spec, CATALOG, built_before, GB200, target=annotated, node_domain=HOSTS.get)
    assert v["state"] == "Pending" and "built this Workload before" in v["message"]
    # TAS across two racks for a plan inside one (the user's annotations were looser): Retry, saying where
    split = admitted_workload(["gb200-3", "gb200-30"], admitted=False)
    v = k.verdict("train", spec, CATALOG, split, GB200, target=annotated, node_domain=HOSTS.get)
    assert v["state"] == "Retry" and f"1 pod in {CLIQUE}=rack-b" in v["message"]
    v = k.verdict("train", spec, CATALOG, one_rack, GB200, target=annotated, node_domain=HOSTS.get)
    assert v["state"] == "Ready"
    # a LeaderWorkerSet's Workloads are made once: without the annotations it is refused, saying what to write
    v = k.verdict("llama", parse_spec(SERVE_405B), CATALOG, admitted_workload(["gb200-3", "gb200-4"], admitted=False),
                  GB200, target=lws(), node_domain=HOSTS.get)
    assert v["state"] == "Rejected" and f"{REQUIRED}: {CLIQUE}" in v["message"] and "create it again" in v["message"]


def test_ready_names_the_channel_of_the_clique_tas_reserved_and_its_compute_domain_is_the_kueue_workload_s():
    spec = parse_spec(TRAIN_8B_8)
    wl = admitted_workload(["gb200-3", "gb200-4"], admitted=False)
    v = k.verdict("train", spec, CATALOG, wl, GB200, node_domain=HOSTS.get, claim=True)
    assert v["state"] == "Ready" and v["placement"].nvlink_domain == f"{CLIQUE}=rack-a"
    claim = json.loads(v["podSetUpdates"][0]["annotations"]["rackfit.io/kueue-channel"])
    assert claim == channel_claim("jobset-t-1", v["placement"]) and claim["name"] == "rackfit-imex-channel"
    assert "ComputeDomain channel" in v["message"]
    cd = compute_domain("ns", "jobset-t-1", "w1", v["placement"],
                        ("kueue.x-k8s.io/v1beta2", "Workload", "rackfit.io/kueue-workload"))
    assert cd["spec"]["numNodes"] == 2 and cd["metadata"]["labels"] == {"rackfit.io/kueue-workload": "jobset-t-1"}
    assert cd["metadata"]["ownerReferences"][0]["kind"] == "Workload"
    assert cd["spec"]["channel"]["resourceClaimTemplate"]["name"] == claim["resourceClaimTemplateName"]
    no_claim = k.verdict("train", spec, CATALOG, wl, GB200, node_domain=HOSTS.get)
    assert "rackfit.io/kueue-channel" not in no_claim["podSetUpdates"][0]["annotations"]
    # one node: no ComputeDomain
    one = k.verdict("train", parse_spec({**TRAIN_8B_40, "parallelism": {"tensor": 4, "data": 1}}), CATALOG,
                    admitted_workload(["gb200-3"], admitted=False), GB200, node_domain=HOSTS.get, claim=True)
    assert one["state"] == "Ready" and one["placement"] is None
    assert "rackfit.io/kueue-channel" not in one["podSetUpdates"][0]["annotations"]


def test_the_compute_domain_of_a_kueue_placement_is_owned_by_the_workload_and_moves_with_it(monkeypatch):
    from rackfit.operator import computedomains
    made, gone, asked = [], [], []

    def names(api, ns, selector):
        asked.append(selector)
        return ["jobset-t-1-old"]
    monkeypatch.setattr(computedomains.kube, "list_names", names)
    monkeypatch.setattr(computedomains.kube, "create_object", lambda api, ns, body: made.append(body))
    monkeypatch.setattr(computedomains.kube, "delete_object", lambda api, ns, name: gone.append(name))
    p = best(TRAIN_8B_8).placement.model_copy(update={"nvlink_domain": f"{CLIQUE}=rack-a"})
    created, deleted = computedomains.for_kueue(admitted_workload(["gb200-3", "gb200-4"]), p)
    assert asked == ["rackfit.io/kueue-workload=jobset-t-1"]  # never the LLMWorkload's own
    assert made[0]["metadata"]["ownerReferences"][0]["uid"] == "w1" and deleted == ["jobset-t-1-old"]
    assert created == made[0]["metadata"]["name"]


def _kueue_decide(target: dict, kueue_workload: dict | None, spec: dict = TRAIN_8B_40):
    inv = Inventory.from_nodes([(h, {"node.kubernetes.io/instance-type": "gb200-4x", CLIQUE: d.value,
                                     "kubernetes.io/hostname": h}, 4, 0) for h, d in HOSTS.items()])
    return decide(Inputs(name="train", spec=parse_spec(spec), generation=1, old={}, catalog=CATALOG,
                         fleet=inv.view(), target=target, kueue=True, kueue_workload=kueue_workload))


def _placed(d) -> dict:
    return next(c for c in d.status["conditions"] if c["type"] == "Placed")


def test_placed_says_kueue_s_message_flavor_and_topology():
    wl = admitted_workload([f"gb200-{i}" for i in range(10)], check={"name": "rackfit", "state": "Ready",
                                                                     "message": "fits"})
    target = _merge(jobset(), kueue_patch(jobset(), "train", {WORKERS: {REQUIRED: CLIQUE}}))
    target["spec"]["suspend"] = False
    d = _kueue_decide(target, wl)
    p = _placed(d)
    assert (p["status"], p["reason"]) == ("True", "AdmittedByKueue")
    assert "flavor gb200 (nvidia.com/gpu)" in p["message"] and f"10 pods in {CLIQUE}=rack-a" in p["message"]
    assert "Kueue: The workload is admitted" in p["message"] and "ClusterQueue checked" in p["message"]
    assert d.target_patch is None and d.reservation is None and d.status["placement"] is None
    waiting = {"metadata": {"name": "jobset-t-1"}, "status": {"conditions": [{
        "type": "QuotaReserved", "status": "False", "message": "couldn't assign flavors to pod set workers: "
                                                               "insufficient unused quota"}]}}
    p = _placed(_kueue_decide(jobset(), waiting))
    assert (p["status"], p["reason"]) == ("False", "PendingInKueue")
    assert "Kueue: couldn't assign flavors to pod set workers: insufficient unused quota" in p["message"]


def test_the_reconcile_writes_the_tas_annotations_on_a_suspended_kueue_target_only():
    d = _kueue_decide(jobset(), None)
    tmpl = d.target_patch["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {REQUIRED: CLIQUE} and tmpl["spec"]["tolerations"] == [TOLERATION]
    assert _kueue_decide(jobset(suspend=False), None).target_patch is None  # started: its templates are fixed
    assert _kueue_decide(_merge(jobset(), d.target_patch), None).target_patch is None  # once
    # a LeaderWorkerSet's templates are never patched under Kueue (Kueue makes its Workloads once)
    assert _kueue_decide(lws(), None, SERVE_405B).target_patch is None


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

    warning = info


def test_a_template_carrying_another_type_s_plan_is_rejected():
    wl = admitted_workload(["gb200-1", "gb200-2"], admitted=False)
    wl["spec"]["podSets"][0]["template"]["spec"]["containers"][0]["env"] = [{"name": "RACKFIT_NNODES", "value": "1"}]
    v = k.verdict("train", parse_spec(TRAIN_8B_8), CATALOG, wl, GB200, node_domain=HOSTS.get)
    assert v["state"] == "Rejected" and "RACKFIT_NNODES=1" in v["message"] and "RACKFIT_NNODES=2" in v["message"]


def test_a_leaderworkerset_gets_its_plan_s_topology_and_variables_as_it_is_created(monkeypatch):
    from types import SimpleNamespace

    import kopf

    from rackfit.operator import kueue
    llmw = {"metadata": {"name": "llama"}, "spec": SERVE_405B}
    monkeypatch.setattr(kueue.kube, "list_namespaced_workloads", lambda ns: [llmw])
    monkeypatch.setattr(kueue.kube, "list_cluster_objects", lambda api: [
        {"metadata": {"name": "nvl72"}, "spec": {"levels": [{"nodeLabel": CLIQUE}]}}])
    body = lws(env=[{"name": "RACKFIT_NNODES", "value": "9"}])
    patch = kopf.Patch()
    memo = SimpleNamespace(ctx=SimpleNamespace(catalog=CATALOG, compute_domains=True))
    kueue.mutate_target(body, patch, "ns", memo, _Log())
    lwt = patch["spec"]["leaderWorkerTemplate"]
    claim = group_claim("lws", 2)  # one group across two nodes of a rack: the channel its ComputeDomain will have
    for t in ("leaderTemplate", "workerTemplate"):
        assert lwt[t]["spec"]["resourceClaims"] == [claim]
        assert lwt[t]["spec"]["containers"][0]["resources"]["claims"] == [{"name": "rackfit-imex-channel"}]
    assert lwt["size"] == 2 and "nodeSelector" not in lwt["workerTemplate"]["spec"]  # no group size, no pin
    for t in ("leaderTemplate", "workerTemplate"):
        assert lwt[t]["metadata"]["annotations"] == {REQUIRED: CLIQUE, GROUP: "llama"}
        env = {e["name"]: e["value"] for e in lwt[t]["spec"]["containers"][0]["env"]}
        assert env["RACKFIT_NNODES"] == "2" and env["RACKFIT_INSTANCE_TYPE"] == "gb200-4x"
        assert "tolerations" not in lwt[t]["spec"]  # Kueue builds a LeaderWorkerSet's Workloads once: no rebuild
    placed = _merge(body, {"spec": patch["spec"], "metadata": patch["metadata"]})
    assert applied(placed)["envPrevious"]["workerTemplate/c"]["RACKFIT_NNODES"] == {"name": "RACKFIT_NNODES",
                                                                                    "value": "9"}
    assert applied(placed)["resourceClaim"] == claim
    assert _merge(placed, unplace_patch(placed))["spec"] == body["spec"]  # the user's value given back
    # several groups would share one channel across racks: no claim then
    two = kopf.Patch()
    kueue.mutate_target({**body, "spec": {**body["spec"], "replicas": 2}}, two, "ns", memo, _Log())
    assert "resourceClaims" not in two["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    # the check's ComputeDomain for the rack Kueue admits the group into has that channel
    cd = compute_domain("ns", "lws-group-0", "w2", best(SERVE_405B).placement.model_copy(
        update={"nvlink_domain": f"{CLIQUE}=rack-a"}), ("kueue.x-k8s.io/v1beta2", "Workload", "l"), claim)
    assert cd["spec"]["channel"]["resourceClaimTemplate"]["name"] == claim["resourceClaimTemplateName"]
    assert cd["metadata"]["name"] + "-channel" == claim["resourceClaimTemplateName"]
    # no LLMWorkload names it (yet), or anything fails: left as it is, never refused
    monkeypatch.setattr(kueue.kube, "list_namespaced_workloads", lambda ns: [])
    untouched = kopf.Patch()
    kueue.mutate_target(lws(), untouched, "ns", memo, _Log())
    assert not untouched
    monkeypatch.setattr(kueue.kube, "list_namespaced_workloads", lambda ns: 1 / 0)
    kueue.mutate_target(lws(), untouched, "ns", memo, _Log())
    assert not untouched


class _Log:
    def info(self, *_):
        pass

    warning = info


def test_without_a_clique_topology_in_kueue_nothing_asks_for_one_and_the_check_says_so():
    # a Topology without the clique level: a pod set asking for it would never be admitted
    assert not k.has_clique_level({"spec": {"levels": [{"nodeLabel": "kubernetes.io/hostname"}]}})
    assert k.has_clique_level({"spec": {"levels": [{"nodeLabel": "cloud.provider.com/block"},
                                                   {"nodeLabel": CLIQUE}]}})
    inv = Inventory.from_nodes([(h, {"node.kubernetes.io/instance-type": "gb200-4x", CLIQUE: d.value,
                                     "kubernetes.io/hostname": h}, 4, 0) for h, d in HOSTS.items()])
    d = decide(Inputs(name="train", spec=parse_spec(TRAIN_8B_40), generation=1, old={}, catalog=CATALOG,
                      fleet=inv.view(), target=jobset(), kueue=True, kueue_tas=False))
    assert d.target_patch is None
    no_topology = admitted_workload(["gb200-3", "gb200-30"], admitted=False, topology={})
    no_topology["status"]["admission"]["podSetAssignments"][0].pop("topologyAssignment")
    v = k.verdict("train", parse_spec(TRAIN_8B_8), CATALOG, no_topology, GB200, target=jobset(2),
                  node_domain=HOSTS.get, tas=False)
    assert v["state"] == "Ready" and "nothing keeps the pods in one rack" in v["message"]
