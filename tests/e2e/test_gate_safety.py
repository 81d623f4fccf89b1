"""No labelled pod escapes its gate, on a real kube-apiserver with the operator's webhooks in url mode
(failurePolicy Fail): not while the operator is stopped or killed mid-burst, not the first pod of a
Deployment applied with its LLMWorkload, and one that escaped anyway (labelled after it was bound) is
deleted with an Event. A target's own older pods never leave its rollout waiting."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from rackfit_process import Operator, running_operator, webhooks_in_effect

GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
LABEL = "rackfit.io/workload"
# one whole 8-GPU HGX H100 node each (the e2e fleet has 16)
SERVE_70B_H100 = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                  "inference": {"contextLength": 32768, "concurrency": 32},
                  "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}


@pytest.fixture(scope="module")
def operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("gate-safety") / "operator.log"
    with running_operator(cluster, kubectl, wait_for, log, webhooks=True) as op:
        yield op


def _deployment(name: str, replicas: int, gpus: int | None = None, workload: str | None = None) -> dict:
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, LABEL: workload or name}},
                                  "spec": {"containers": [container]}}}}


def _workload(name: str, spec: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name},
            "spec": {**spec, "target": {"kind": "Deployment", "name": name}}}


def _placements(custom, ns) -> dict[str, dict]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    return {w["metadata"]["name"]: (w.get("status") or {}).get("placement") for w in items}


def _outside(core_v1, ns, placements, nodes) -> list[str]:
    """Labelled pods bound outside a placement: their workload unplaced (or absent), or on a node
    outside its domain."""
    out = []
    for p in core_v1.list_namespaced_pod(ns, label_selector=LABEL).items:
        if not p.spec.node_name or p.status.phase in ("Succeeded", "Failed"):
            continue
        placement = placements.get(p.metadata.labels[LABEL])
        if not placement:
            out.append(f"{p.metadata.name} on {p.spec.node_name}: its workload is not placed")
            continue
        label, value = placement["nvlinkDomain"].split("=", 1)
        if nodes[p.spec.node_name].get(label) != value:
            out.append(f"{p.metadata.name} on {p.spec.node_name}: outside {value}")
    return out


def _nodes(core_v1):
    return {n.metadata.name: n.metadata.labels or {} for n in core_v1.list_node().items}


def test_a_stopped_or_killed_operator_lets_no_labelled_pod_run_ungated(operator, kubectl, core_v1, cluster, namespace,
                                                                        wait_for):
    """Twenty workloads and their Deployments arrive, plus a labelled Deployment with no LLMWorkload;
    the operator is stopped (SIGSTOP: its webhook times out) and then killed while their pods are
    being made. No labelled pod is bound meanwhile; once it is back, every bound one is inside its
    workload's placement and the orphan's stay gated."""
    custom = client.CustomObjectsApi(cluster.api)
    names = [f"b{i}" for i in range(20)]
    docs = [d for n in names for d in (_workload(n, SERVE_70B_H100), _deployment(n, 1))]
    assert kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs)).returncode == 0
    wait_for(lambda: sum(1 for p in _placements(custom, namespace).values() if p) >= 3, 120, "three placed")
    os.kill(operator.proc.pid, signal.SIGSTOP)
    try:
        orphan = _deployment("orphan", 3, gpus=1)
        assert kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(orphan)).returncode == 0
        # the webhook's timeout (10 s) passes for the ReplicaSet controller's first tries
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert not [p.metadata.name for p in core_v1.list_namespaced_pod(namespace, label_selector="app=orphan")
                        .items if p.spec.node_name], "an orphan pod was bound while the operator was stopped"
            time.sleep(1)
    finally:
        os.kill(operator.proc.pid, signal.SIGCONT)
    operator.kill()  # and dead while the burst goes on: its webhook configurations stay registered
    time.sleep(5)
    placements = _placements(custom, namespace)
    assert not _outside(core_v1, namespace, placements, _nodes(core_v1))
    operator.start()
    wait_for(lambda: webhooks_in_effect(kubectl), 60, "the webhooks in effect again")

    def settled():
        p = _placements(custom, namespace)
        return p if sum(1 for x in p.values() if x) == 16 else None
    placements = wait_for(settled, 180, "16 placed after the restart")
    nodes = _nodes(core_v1)

    def all_bound():
        bound = [p for p in core_v1.list_namespaced_pod(namespace, label_selector=LABEL).items
                 if p.spec.node_name and not p.metadata.deletion_timestamp]
        return bound if len(bound) >= 16 else None
    wait_for(all_bound, 120, "the placed workloads' pods bound")
    assert not _outside(core_v1, namespace, placements, nodes)
    orphans = wait_for(lambda: (ps := core_v1.list_namespaced_pod(namespace, label_selector="app=orphan").items)
                       and len(ps) == 3 and ps, 150, "the orphan's pods made, gated")
    for p in orphans:
        assert not p.spec.node_name and [g.name for g in p.spec.scheduling_gates] == ["rackfit.io/placement"]


def test_a_deployment_applied_with_its_workload_rolls_out_onto_the_plan(operator, kubectl, core_v1, cluster,
                                                                          namespace, wait_for):
    """The most common first step: Llama 3.1 70B (8,192 x 8) with a labelled Deployment asking for 8
    GPUs. No pod runs before the placement, the plan's pod (fewer GPUs) runs inside it, and the
    rollout finishes: one pod, PodsScheduled True."""
    spec = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
            "inference": {"contextLength": 8192, "concurrency": 8},
            "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
    docs = [_workload("first", spec), _deployment("first", 1, gpus=8)]
    assert kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs)).returncode == 0
    custom = client.CustomObjectsApi(cluster.api)
    placement = wait_for(lambda: _placements(custom, namespace).get("first"), 60, "placed")
    assert placement["gpusPerNode"] < 8
    label, value = placement["nvlinkDomain"].split("=", 1)

    def rolled_out():
        pods = [p for p in core_v1.list_namespaced_pod(namespace, label_selector="app=first").items
                if not p.metadata.deletion_timestamp]
        if len(pods) != 1 or not pods[0].spec.node_name:
            return None
        return pods[0]
    pod = wait_for(rolled_out, 120, "one pod of the plan bound, the rollout finished")
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == str(placement["gpusPerNode"])
    assert core_v1.read_node(pod.spec.node_name).metadata.labels.get(label) == value

    def scheduled():
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "first")
        c = next((c for c in obj["status"]["conditions"] if c["type"] == "PodsScheduled"), {})
        return c if c.get("status") == "True" else None
    wait_for(scheduled, 60, "PodsScheduled True")


def test_a_pod_that_escaped_its_gate_is_deleted_with_an_event(operator, kubectl, core_v1, namespace, wait_for):
    """A GPU pod bound without the label, then labelled for a workload that does not exist: it runs
    outside any placement, so the operator deletes it and says why on the pod."""
    gpus = client.V1ResourceRequirements(limits={"nvidia.com/gpu": "2"})
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="escaped"), spec=client.V1PodSpec(
        node_selector={"node.kubernetes.io/instance-type": "gd-8xa100-i128"},
        containers=[client.V1Container(name="c", image="registry.k8s.io/pause:3.10", resources=gpus)]))
    core_v1.create_namespaced_pod(namespace, pod)
    uid = wait_for(lambda: (p := core_v1.read_namespaced_pod("escaped", namespace)).spec.node_name and p.metadata.uid,
                   60, "the unlabelled pod bound")
    core_v1.patch_namespaced_pod("escaped", namespace, {"metadata": {"labels": {LABEL: "ghost"}}})

    def gone():
        try:
            return core_v1.read_namespaced_pod("escaped", namespace).metadata.uid != uid
        except ApiException as e:
            return e.status == 404
    wait_for(gone, 60, "the escaped pod deleted")
    events = wait_for(lambda: [e for e in core_v1.list_namespaced_event(namespace).items
                               if e.involved_object.name == "escaped" and e.reason == "OutsidePlacement"],
                      30, "an OutsidePlacement Event on the pod")
    assert "ghost is not placed" in events[0].message and events[0].type == "Warning"
