"""Kueue (sigs.k8s.io/kueue, the real controller, its CRDs and webhooks) in a local control plane of its
own (`ControlPlane(kueue=True)`, as `make dev-up KUEUE=1`), with the simulated fleet's Topology (zone,
NVL72 clique, host) for topology-aware scheduling: a JobSet that names a LocalQueue and asks for one
rack is admitted by Kueue and its pods bound inside one clique; one too big for the quota waits."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from devcluster import addons, binaries
from devcluster.controlplane import ControlPlane, api_client
from devcluster.fleet import apply_fleet, build_nodes
from devcluster.waiting import wait_for
from tooling import unavailable

KUEUE = ("kueue.x-k8s.io", "v1beta2")
FLEET = {"gb200-4x": 36, "gd-8xh100ib-i128": 4}  # two NVL72 racks of 18 nodes
PAUSE = "registry.k8s.io/pause:3.10"
RACK = "nvidia.com/gpu.clique"


@dataclass
class KueuePlane:
    api: client.ApiClient
    kubeconfig: Path
    kubectl: Callable[..., subprocess.CompletedProcess]


def queues(gpus: int = 144) -> list[dict]:
    """A GB200 flavor on the fleet's topology, a ClusterQueue with `gpus` of it, a LocalQueue `gpu`."""
    return [{"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "gb200"},
             "spec": {"nodeLabels": {"node.kubernetes.io/instance-type": "gb200-4x"}, "topologyName": "nvl72"}},
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "gpus"},
             "spec": {"namespaceSelector": {}, "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
                 {"name": "gb200", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": gpus}]}]}]}}]


def local_queue(ns: str) -> dict:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "gpu", "namespace": ns},
            "spec": {"clusterQueue": "gpus"}}


@pytest.fixture(scope="module")
def kueue_plane() -> Iterator[KueuePlane]:
    try:
        binaries.require()
        addons.require((addons.KUEUE,))
    except binaries.BinariesMissing as e:
        unavailable(str(e))
    with ControlPlane(kueue=True) as plane, api_client(plane.kubeconfig) as api:
        apply_fleet(client.CoreV1Api(api), build_nodes(FLEET))
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}

        def kubectl(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([str(binaries.bin_dir() / "kubectl"), *args], input=input, capture_output=True,
                                  text=True, env=env, timeout=60)
        out = kubectl("apply", "--server-side", "-f", "-",
                      input=yaml.safe_dump_all([addons.kueue_topology(), *queues()]))
        assert out.returncode == 0, out.stderr
        yield KueuePlane(api, plane.kubeconfig, kubectl)


@pytest.fixture
def kns(kueue_plane) -> Iterator[str]:
    import secrets
    core = client.CoreV1Api(kueue_plane.api)
    name = f"kueue-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    out = kueue_plane.kubectl("apply", "-f", "-", input=json.dumps(local_queue(name)))
    assert out.returncode == 0, out.stderr
    yield name
    # the JobSets and LeaderWorkerSets first, so no controller makes its pods again: the next test finds
    # the racks free
    kueue_plane.kubectl("delete", "jobsets,leaderworkersets,llmworkloads", "--all", "-n", name, "--wait=true")
    core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    wait_for(lambda: not core.list_namespaced_pod(name).items, 60, f"the pods of {name} gone")
    core.delete_namespace(name)


def queued_jobset(name: str, pods: int, gpus: int = 4, annotations: dict | None = None) -> dict:
    template = {"metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "torchrun", "image": PAUSE, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": "gpu"}},
            "spec": {"replicatedJobs": [{"name": "workers", "replicas": 1, "template": {"spec": {
                "parallelism": pods, "completions": pods, "backoffLimit": 0, "template": template}}}]}}


def bound(core: client.CoreV1Api, ns: str, selector: str, count: int):
    pods = [p for p in core.list_namespaced_pod(ns, label_selector=selector).items if p.metadata.deletion_timestamp
            is None]
    ok = [p for p in pods if p.spec.node_name and p.status.phase == "Running"]
    return ok if len(ok) == count == len(pods) else None


def workload_of(custom: client.CustomObjectsApi, ns: str, owner: str) -> dict | None:
    for w in custom.list_namespaced_custom_object(*KUEUE, ns, "workloads")["items"]:
        if any(o["name"] == owner for o in w["metadata"].get("ownerReferences") or []):
            return w
    return None


def condition(obj: dict | None, type_: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def test_kueue_admits_a_jobset_into_one_rack_by_topology(kueue_plane, kns):
    """Kueue alone (no rackfit): TAS picks one clique for the 40 GPUs, its ungater pins each pod there."""
    core, custom = client.CoreV1Api(kueue_plane.api), client.CustomObjectsApi(kueue_plane.api)
    js = queued_jobset("train", 10, annotations={"kueue.x-k8s.io/podset-required-topology": RACK})
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-", input=json.dumps(js))
    assert out.returncode == 0, out.stderr
    w = wait_for(lambda: (lambda w: w if condition(w, "Admitted").get("status") == "True" else None)(
        workload_of(custom, kns, "train")), 60, "Kueue to admit the JobSet's Workload")
    assignment = w["status"]["admission"]["podSetAssignments"][0]
    assert assignment["flavors"] == {"nvidia.com/gpu": "gb200"} and assignment["topologyAssignment"]
    pods = wait_for(lambda: bound(core, kns, "jobset.sigs.k8s.io/jobset-name=train", 10), 90, "10 pods bound")
    racks = {core.read_node(p.spec.node_name).metadata.labels[RACK] for p in pods}
    assert len(racks) == 1  # TAS kept the 40 GPUs inside one NVL72 rack


def test_a_jobset_beyond_the_quota_waits_in_kueue(kueue_plane, kns):
    custom = client.CustomObjectsApi(kueue_plane.api)
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-", input=json.dumps(queued_jobset("huge", 40)))
    assert out.returncode == 0, out.stderr  # 160 GPUs, the queue has 144
    w = wait_for(lambda: (lambda w: w if condition(w, "QuotaReserved").get("status") == "False" else None)(
        workload_of(custom, kns, "huge")), 60, "Kueue to keep it pending")
    assert "insufficient" in condition(w, "QuotaReserved")["message"].lower()
    js = custom.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", kns, "jobsets", "huge")
    assert js["spec"]["suspend"] is True  # Kueue suspended it at creation


# --- rackfit as the controller of Kueue's admission check rackfit.io/fit ------------------------------
TRAIN_8B_40 = {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {"method": "full"},
               "parallelism": {"tensor": 4, "data": 10}, "placement": {"instanceTypes": ["gb200-4x"]}}
TRAIN_70B = {"model": {"preset": "llama-3.1-70b"}, "workload": "training", "training": {"method": "full"},
             "placement": {"instanceTypes": ["gb200-4x"]}}


def checked_queue() -> list[dict]:
    """An AdmissionCheck `rackfit` answered by rackfit, and a ClusterQueue `checked` that requires it."""
    return [{"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "AdmissionCheck", "metadata": {"name": "rackfit"},
             "spec": {"controllerName": "rackfit.io/fit"}},
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "checked"},
             "spec": {"namespaceSelector": {}, "admissionChecksStrategy": {"admissionChecks": [{"name": "rackfit"}]},
                      "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
                          {"name": "gb200", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 144}]}]}]}}]


@pytest.fixture(scope="module")
def rackfit_on_kueue(kueue_plane, tmp_path_factory):
    from rackfit_process import running_operator
    out = kueue_plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(checked_queue()))
    assert out.returncode == 0, out.stderr
    log = tmp_path_factory.mktemp("kueue") / "operator.log"
    with running_operator(kueue_plane, kueue_plane.kubectl, wait_for, log, webhooks=True) as op:
        custom = client.CustomObjectsApi(kueue_plane.api)
        wait_for(lambda: condition(custom.get_cluster_custom_object(*KUEUE, "clusterqueues", "checked"),
                                   "Active").get("status") == "True", 60, "the check Active, the ClusterQueue active")
        yield op


def fit_queue(kueue_plane, ns: str) -> None:
    lq = {**local_queue(ns), "metadata": {"name": "fit", "namespace": ns}, "spec": {"clusterQueue": "checked"}}
    out = kueue_plane.kubectl("apply", "-f", "-", input=json.dumps(lq))
    assert out.returncode == 0, out.stderr


def llmworkload(name: str, spec: dict, target: str) -> dict:
    return {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": name},
            "spec": {**spec, "target": {"kind": "JobSet", "name": target}}}


def check_state(w: dict | None) -> dict:
    return next((c for c in ((w or {}).get("status") or {}).get("admissionChecks") or [] if c["name"] == "rackfit"),
                {})


def placed(custom, ns: str, name: str) -> dict:
    obj = custom.get_namespaced_custom_object("rackfit.io", "v1alpha1", ns, "llmworkloads", name)
    return condition(obj, "Placed")


def test_the_check_rejects_a_jobset_smaller_than_its_plan_with_rackfit_s_message(kueue_plane, rackfit_on_kueue, kns):
    custom = client.CustomObjectsApi(kueue_plane.api)
    fit_queue(kueue_plane, kns)
    js = queued_jobset("small", 1)
    js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "fit"
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-",
                              input=yaml.safe_dump_all([llmworkload("small", TRAIN_70B, "small"), js]))
    assert out.returncode == 0, out.stderr
    # Rejected deactivates the Workload; Kueue then resets its checks to Pending (pkg/workload/admissionchecks.go
    # resetChecksOnEviction), so rackfit's word stays in the Workload's eviction and the LLMWorkload's Placed
    w = wait_for(lambda: (lambda w: w if w and w["spec"].get("active") is False else None)(
        workload_of(custom, kns, "small")), 60, "Kueue to deactivate the Workload rackfit rejected")
    assert "Previously: Rejected" in check_state(w).get("message", "") or check_state(w).get("state") == "Rejected"
    p = wait_for(lambda: (lambda c: c if c.get("reason") == "TargetShapeMismatch" and "deactivated" in c["message"]
                          else None)(placed(custom, kns, "small")), 30, "Placed=False TargetShapeMismatch, deactivated")
    assert p["status"] == "False" and "1 pods (replicas x template.spec.parallelism) for a placement of 2 nodes" in \
        p["message"]
    js = custom.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", kns, "jobsets", "small")
    assert js["spec"]["suspend"] is True and "rackfit.io/applied" not in js["metadata"].get("annotations", {})


def test_three_40_gpu_jobsets_on_two_racks_two_admitted_each_in_one_rack_the_third_pending(
        kueue_plane, rackfit_on_kueue, kns):
    core, custom = client.CoreV1Api(kueue_plane.api), client.CustomObjectsApi(kueue_plane.api)
    fit_queue(kueue_plane, kns)
    docs = []
    for name in ("a", "b", "c"):  # no TAS annotation of their own: rackfit writes what the plan needs
        js = queued_jobset(name, 10)
        js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "fit"
        docs += [llmworkload(name, TRAIN_8B_40, name), js]
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump_all(docs))
    assert out.returncode == 0, out.stderr

    def admitted():
        ws = {n: workload_of(custom, kns, n) for n in ("a", "b", "c")}
        done = [n for n, w in ws.items() if condition(w, "Admitted").get("status") == "True"]
        return done if len(done) == 2 else None
    done = wait_for(admitted, 90, "two of three admitted")
    (left,) = {"a", "b", "c"} - set(done)
    racks = set()
    for name in done:
        w = workload_of(custom, kns, name)
        assert check_state(w)["state"] == "Ready"
        assert w["spec"]["podSets"][0]["topologyRequest"]["required"] == RACK  # from rackfit's annotation
        js = custom.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", kns, "jobsets", name)
        assert json.loads(js["metadata"]["annotations"]["rackfit.io/applied"])["templateAnnotations"] == {
            "replicatedJobs[workers]": {"kueue.x-k8s.io/podset-required-topology": RACK}}
        # the ComputeDomain of the rack TAS reserved, owned by Kueue's Workload, sized to the plan's nodes
        (cd,) = custom.list_namespaced_custom_object(
            "resource.nvidia.com", "v1beta1", kns, "computedomains",
            label_selector=f"rackfit.io/kueue-workload={w['metadata']['name']}")["items"]
        assert cd["spec"]["numNodes"] == 10
        assert cd["metadata"]["ownerReferences"][0]["uid"] == w["metadata"]["uid"]
        channel = cd["spec"]["channel"]["resourceClaimTemplate"]["name"]
        pods = wait_for(lambda n=name: bound(core, kns, f"jobset.sigs.k8s.io/jobset-name={n}", 10), 90,
                        f"{name}'s 10 pods bound")
        mine = {core.read_node(p.spec.node_name).metadata.labels[RACK] for p in pods}
        assert len(mine) == 1  # each inside one NVL72 rack (Kueue's TAS)
        racks |= mine
        for pod in pods:  # the plan's layout, from the check's podSetUpdates through rackfit's pod webhook
            env = {e.name: e.value for e in pod.spec.containers[0].env or []}
            assert env["RACKFIT_NNODES"] == "10" and env["RACKFIT_TENSOR_PARALLEL_SIZE"] == "4"
            assert env["RACKFIT_DATA_PARALLEL_SIZE"] == "10" and env["RACKFIT_INSTANCE_TYPE"] == "gb200-4x"
            assert pod.metadata.labels["rackfit.io/workload"] == name
            assert not any(g.name == "rackfit.io/placement" for g in pod.spec.scheduling_gates or [])
            claims = pod.spec.resource_claims or []
            assert [(x.name, x.resource_claim_template_name) for x in claims] == [("rackfit-imex-channel", channel)]
            assert [x.name for x in pod.spec.containers[0].resources.claims] == ["rackfit-imex-channel"]
        p = wait_for(lambda n=name: (lambda c: c if c.get("reason") == "AdmittedByKueue" else None)(
            placed(custom, kns, n)), 30, f"{name} admitted")
        assert "flavor gb200 (nvidia.com/gpu)" in p["message"] and "10 pods in nvidia.com/gpu.clique=" in p["message"]
    assert len(racks) == 2  # 40 + 40 GPUs do not fit one 72-GPU rack

    def requested(rack: str) -> float:  # the domain gauge counts Kueue's bound pods like any others
        line = next((x for x in (rackfit_on_kueue.metrics() or "").splitlines()
                     if x.startswith("rackfit_domain_gpus_requested{") and f'"{rack}"' in x), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0
    for rack in racks:
        wait_for(lambda r=rack: requested(r) == 40, 30, f"rackfit_domain_gpus_requested 40 in {rack}")
    w = workload_of(custom, kns, left)
    assert condition(w, "Admitted").get("status") != "True"  # the third waits in Kueue: no rack has 40 free
    wait_for(lambda: placed(custom, kns, left).get("reason") == "PendingInKueue", 30, f"{left} PendingInKueue")
    assert not custom.list_namespaced_custom_object(
        "resource.nvidia.com", "v1beta1", kns, "computedomains",
        label_selector=f"rackfit.io/kueue-workload={w['metadata']['name']}")["items"]  # no rack: no ComputeDomain
    # deleting a JobSet deletes its Workload, and with it (the garbage collector) its ComputeDomain
    gone = workload_of(custom, kns, done[0])["metadata"]["name"]
    custom.delete_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", kns, "jobsets", done[0])
    wait_for(lambda: not custom.list_namespaced_custom_object(
        "resource.nvidia.com", "v1beta1", kns, "computedomains", label_selector=f"rackfit.io/kueue-workload={gone}"
    )["items"], 60, "the deleted JobSet's ComputeDomain gone")


def test_without_the_queue_label_rackfit_places_as_before(kueue_plane, rackfit_on_kueue, kns):
    """Beside Kueue, a JobSet that names no queue is rackfit's: booked, pinned to one rack, started."""
    core, custom = client.CoreV1Api(kueue_plane.api), client.CustomObjectsApi(kueue_plane.api)
    js = queued_jobset("plain", 2)
    del js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]
    js["spec"]["suspend"] = True
    js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["labels"] = {
        "rackfit.io/workload": "plain"}
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-",
                              input=yaml.safe_dump_all([llmworkload("plain", TRAIN_70B, "plain"), js]))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: placed(custom, kns, "plain").get("reason") == "TargetPatched", 60, "rackfit to place it")
    obj = custom.get_namespaced_custom_object("rackfit.io", "v1alpha1", kns, "llmworkloads", "plain")
    clique = obj["status"]["placement"]["nvlinkDomain"].split("=", 1)[1]
    pods = wait_for(lambda: bound(core, kns, "jobset.sigs.k8s.io/jobset-name=plain", 2), 90, "its pods bound")
    assert {core.read_node(p.spec.node_name).metadata.labels[RACK] for p in pods} == {clique}
    assert all(p.metadata.annotations.get("rackfit.io/placed-into") for p in pods)  # rackfit's gate lifted
    assert workload_of(custom, kns, "plain") is None  # Kueue left it alone


SERVE_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
              "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]}}


def queued_lws(name: str, size: int = 2) -> dict:
    """A LeaderWorkerSet of one group, naming the LocalQueue `fit`, with no TAS annotation of its own."""
    template = {"spec": {"containers": [{"name": "vllm", "image": PAUSE,
                                         "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": "fit"}},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": size, "leaderTemplate": template,
                                                             "workerTemplate": template}}}


def test_a_leaderworkerset_gets_its_topology_variables_and_channel_at_creation_and_kueue_keeps_it_in_one_rack(
        kueue_plane, rackfit_on_kueue, kns):
    core, custom = client.CoreV1Api(kueue_plane.api), client.CustomObjectsApi(kueue_plane.api)
    fit_queue(kueue_plane, kns)
    llmw = {**llmworkload("llama", SERVE_405B, "llama"), "spec": {**SERVE_405B, "target": {
        "kind": "LeaderWorkerSet", "name": "llama"}}}
    out = kueue_plane.kubectl("apply", "-n", kns, "-f", "-", input=yaml.safe_dump_all([llmw, queued_lws("llama")]))
    assert out.returncode == 0, out.stderr
    lws = custom.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", kns, "leaderworkersets", "llama")
    for t in ("leaderTemplate", "workerTemplate"):  # written by rackfit's webhook as it was created
        annotations = lws["spec"]["leaderWorkerTemplate"][t]["metadata"]["annotations"]  # Kueue's webhook adds its own
        assert annotations["kueue.x-k8s.io/podset-required-topology"] == RACK
        assert annotations["kueue.x-k8s.io/podset-group-name"] == "llama"
    pods = wait_for(lambda: bound(core, kns, "leaderworkerset.sigs.k8s.io/name=llama", 2), 90,
                    "the group's 2 pods bound")
    assert len({core.read_node(p.spec.node_name).metadata.labels[RACK] for p in pods}) == 1  # one NVL72 rack
    for pod in pods:
        env = {e.name: e.value for e in pod.spec.containers[0].env or []}
        assert env["RACKFIT_NNODES"] == "2" and env["RACKFIT_TENSOR_PARALLEL_SIZE"] == "8"  # NVLink across nodes
        assert env["RACKFIT_PIPELINE_PARALLEL_SIZE"] == "1" and env["RACKFIT_INSTANCE_TYPE"] == "gb200-4x"
    w = workload_of(custom, kns, "llama")
    assert check_state(w)["state"] == "Ready" and condition(w, "Admitted")["status"] == "True"
    # its pods were made claiming the group's channel; the check made its ComputeDomain for the admitted rack
    (cd,) = custom.list_namespaced_custom_object(
        "resource.nvidia.com", "v1beta1", kns, "computedomains",
        label_selector=f"rackfit.io/kueue-workload={w['metadata']['name']}")["items"]
    assert cd["spec"]["numNodes"] == 2 and cd["metadata"]["ownerReferences"][0]["uid"] == w["metadata"]["uid"]
    for pod in pods:
        assert [(x.name, x.resource_claim_template_name) for x in pod.spec.resource_claims or []] == [
            ("rackfit-imex-channel", cd["spec"]["channel"]["resourceClaimTemplate"]["name"])]
