"""ComputeDomains on the local control plane: the driver's CRD installed, the driver's ResourceSlices and
ResourceClaimTemplates published by the harness's stand-in (devcluster/computedomains.py), the real
LeaderWorkerSet, JobSet, StatefulSet and Job controllers making the pods, kube-scheduler allocating
each pod's channel claim (DRA) and binding it.

Every placement across nodes of one NVL72 rack gets a ComputeDomain sized to its nodes and owned by
its LLMWorkload; every pod template (or, for a Job's and a JobSet's, every pod through the webhook)
claims its channel; a single-node workload gets none; deleting the workload takes the claims back and
the garbage collector deletes the ComputeDomain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from rackfit_process import Operator, running_operator
from test_multinode import (
    PAUSE,
    SERVE_70B,
    SERVE_405B,
    TRAIN_70B,
    _apply,
    _cliques,
    _deployment,
    _jobset,
    _lws,
    _placed,
    _running,
    _workload,
)

CD = ("resource.nvidia.com", "v1beta1")
CLAIM = "rackfit-imex-channel"
SERVE_70B_RACK = {**SERVE_70B, "parallelism": {"tensor": 4, "data": 2}, "placement": {"instanceTypes": ["gb200-4x"]}}


@pytest.fixture(scope="module")
def operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    if not cluster.local:
        pytest.skip("needs the local control plane's ComputeDomain CRD and DRA driver stand-in")
    log = tmp_path_factory.mktemp("computedomains") / "operator.log"
    with running_operator(cluster, kubectl, wait_for, log, webhooks=True) as op:
        yield op


def _domains(custom_objects, ns) -> list[dict]:
    return custom_objects.list_namespaced_custom_object(*CD, ns, "computedomains")["items"]


def _one_domain(wait_for, custom_objects, ns) -> dict:
    return wait_for(lambda: (lambda ds: ds[0] if len(ds) == 1 else None)(_domains(custom_objects, ns)), 30,
                    "one ComputeDomain")


def _check_domain(cd: dict, obj: dict) -> str:
    """The ComputeDomain's spec and owner for the workload `obj`; returns its channel's template name."""
    p = obj["status"]["placement"]
    assert cd["spec"]["numNodes"] == p["nodes"] and cd["spec"]["channel"]["allocationMode"] == "Single"
    assert cd["metadata"]["labels"]["rackfit.io/workload"] == obj["metadata"]["name"]
    (owner,) = cd["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("LLMWorkload", obj["metadata"]["name"],
                                                            obj["metadata"]["uid"])
    return cd["spec"]["channel"]["resourceClaimTemplate"]["name"]


def _claims(pod_spec, template: str) -> None:
    """The pod (or template) claims the channel in every container."""
    rc = pod_spec["resourceClaims"] if isinstance(pod_spec, dict) else [
        {"name": c.name, "resourceClaimTemplateName": c.resource_claim_template_name} for c in pod_spec.resource_claims]
    assert {"name": CLAIM, "resourceClaimTemplateName": template} in rc
    containers = pod_spec["containers"] if isinstance(pod_spec, dict) else [
        {"resources": {"claims": [{"name": x.name} for x in c.resources.claims or []]}} for c in pod_spec.containers]
    assert all({"name": CLAIM} in c["resources"]["claims"] for c in containers)


def _allocated_on_own_node(custom_objects, ns, pods) -> None:
    """Each pod's channel claim was allocated by kube-scheduler on the pod's node (the stand-in's slice)."""
    claims = custom_objects.list_namespaced_custom_object("resource.k8s.io", "v1", ns, "resourceclaims")["items"]
    by_name = {c["metadata"]["name"]: c for c in claims}
    for pod in pods:
        (status,) = [s for s in pod.status.resource_claim_statuses or [] if s.name == CLAIM]
        result = by_name[status.resource_claim_name]["status"]["allocation"]["devices"]["results"][0]
        assert (result["driver"], result["device"], result["pool"]) == (
            "compute-domain.nvidia.com", "channel-0", pod.spec.node_name)


def _gone(wait_for, custom_objects, ns) -> None:
    wait_for(lambda: not _domains(custom_objects, ns), 60, "the ComputeDomain deleted with its workload")


def test_a_leader_worker_set_across_two_rack_nodes_gets_a_compute_domain(operator, kubectl, custom_objects, core_v1,
                                                                        namespace, wait_for):
    _apply(kubectl, namespace, [_lws("llama-405b"), _workload("llama-405b", SERVE_405B, "LeaderWorkerSet",
                                                              "llama-405b")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "llama-405b")
    template = _check_domain(_one_domain(wait_for, custom_objects, namespace), obj)
    lws = custom_objects.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets",
                                                      "llama-405b")
    for which in ("leaderTemplate", "workerTemplate"):
        _claims(lws["spec"]["leaderWorkerTemplate"][which]["spec"], template)
    # the driver's ResourceClaimTemplate (the stand-in's), and the pods bound with their channel
    wait_for(lambda: custom_objects.get_namespaced_custom_object(
        "resource.k8s.io", "v1", namespace, "resourceclaimtemplates", template), 30, "the template")
    pods = wait_for(lambda: _running(core_v1, namespace, "leaderworkerset.sigs.k8s.io/name=llama-405b", 2), 120,
                    "the leader and its worker bound and Running")
    assert _cliques(core_v1, pods) == {obj["status"]["placement"]["nvlinkDomain"].split("=", 1)[1]}
    for pod in pods:
        _claims(pod.spec, template)
    _allocated_on_own_node(custom_objects, namespace, pods)

    assert kubectl("delete", "llmw", "llama-405b", "-n", namespace).returncode == 0
    _gone(wait_for, custom_objects, namespace)

    def released():
        lws = custom_objects.get_namespaced_custom_object(
            "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", "llama-405b")
        lwt = lws["spec"]["leaderWorkerTemplate"]
        return all("resourceClaims" not in lwt[w]["spec"] and "claims" not in (
            lwt[w]["spec"]["containers"][0].get("resources") or {}) for w in ("leaderTemplate", "workerTemplate"))
    wait_for(released, 30, "the claims taken back from both templates")


def test_a_jobset_s_pods_get_the_claim_from_the_webhook(operator, kubectl, custom_objects, core_v1, namespace,
                                                       wait_for):
    _apply(kubectl, namespace, [_jobset("train", 2, 4), _workload("train", TRAIN_70B, "JobSet", "train")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "train")
    template = _check_domain(_one_domain(wait_for, custom_objects, namespace), obj)
    pods = wait_for(lambda: _running(core_v1, namespace, "jobset.sigs.k8s.io/jobset-name=train", 2), 120,
                    "the JobSet's pods bound and Running")
    for pod in pods:
        _claims(pod.spec, template)
    _allocated_on_own_node(custom_objects, namespace, pods)
    assert kubectl("delete", "llmw", "train", "-n", namespace).returncode == 0
    _gone(wait_for, custom_objects, namespace)


def _statefulset(name, replicas) -> dict:
    d = _deployment(name, replicas)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {**d["spec"], "serviceName": name}}


def _job(name, pods) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"suspend": True, "parallelism": pods, "completions": pods, "completionMode": "Indexed",
                     "template": {"metadata": {"labels": {"rackfit.io/workload": name}}, "spec": {
                         "restartPolicy": "Never", "containers": [{
                             "name": "torchrun", "image": PAUSE, "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}}}


def test_a_statefulset_and_a_job_across_rack_nodes_claim_the_channel(operator, kubectl, custom_objects, core_v1,
                                                                     namespace, wait_for):
    _apply(kubectl, namespace, [_statefulset("serve", 2), _workload("serve", SERVE_70B_RACK, "StatefulSet", "serve"),
                                _job("train", 2), _workload("train", TRAIN_70B, "Job", "train")])
    serve = _placed(wait_for, custom_objects, operator, namespace, "serve")
    train = _placed(wait_for, custom_objects, operator, namespace, "train")
    domains = wait_for(lambda: (lambda ds: ds if len(ds) == 2 else None)(_domains(custom_objects, namespace)), 30,
                       "two ComputeDomains")
    by_owner = {d["metadata"]["labels"]["rackfit.io/workload"]: d for d in domains}
    serve_template = _check_domain(by_owner["serve"], serve)
    train_template = _check_domain(by_owner["train"], train)
    sts = client.AppsV1Api(core_v1.api_client).read_namespaced_stateful_set("serve", namespace)
    _claims(sts.spec.template.spec, serve_template)
    job = client.BatchV1Api(core_v1.api_client).read_namespaced_job("train", namespace)
    assert not job.spec.template.spec.resource_claims  # a Job's template takes only scheduling fields
    for selector, template in (("app=serve", serve_template), ("job-name=train", train_template)):
        pods = wait_for(lambda s=selector: _running(core_v1, namespace, s, 2), 120, f"{selector} bound and Running")
        for pod in pods:
            _claims(pod.spec, template)
        _allocated_on_own_node(custom_objects, namespace, pods)


def test_a_single_node_workload_gets_none(operator, kubectl, custom_objects, core_v1, namespace, wait_for):
    _apply(kubectl, namespace, [_deployment("llama", 1), _workload("llama", SERVE_70B, "Deployment", "llama"),
                                _lws("one"), _workload("one", {**SERVE_70B, "placement": {
                                    "instanceTypes": ["gb200-4x"]}}, "LeaderWorkerSet", "one")])
    _placed(wait_for, custom_objects, operator, namespace, "llama")
    one = _placed(wait_for, custom_objects, operator, namespace, "one")
    assert one["status"]["placement"]["nodes"] == 1  # one GB200 node: NVLink inside it needs no IMEX channel
    pods = wait_for(lambda: _running(core_v1, namespace, "app=llama", 1), 60, "the pod bound")
    assert not pods[0].spec.resource_claims
    lws = custom_objects.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets",
                                                      "one")
    assert "resourceClaims" not in lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert _domains(custom_objects, namespace) == []
