"""The plan handed to the workload (`RACKFIT_*` variables) and multi-node targets, on the local control
plane with the upstream LeaderWorkerSet and JobSet controllers: their real pods created, gated by
rackfit's webhook, pinned to one NVLink domain, bound by kube-scheduler and started by the pod
simulator; a Deployment of a model that spans nodes refused."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from rackfit_process import Operator, running_operator

from rackfit.catalog import load_catalog
from rackfit.planner import plan
from rackfit.spec import parse_spec

GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
PAUSE = "registry.k8s.io/pause:3.10"  # stands in for vLLM and torchrun: nothing runs on the simulated nodes
SERVE_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
              "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]}}
SERVE_70B = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "precision": "fp8",
             "inference": {"contextLength": 8192, "concurrency": 32, "kvCachePrecision": "fp8"},
             "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
TRAIN_70B = {"model": {"preset": "llama-3.1-70b"}, "workload": "training", "training": {"method": "full"},
             "placement": {"instanceTypes": ["gb200-4x"]}}


@pytest.fixture(scope="module")
def operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    if not cluster.local:
        pytest.skip("needs the local control plane's LeaderWorkerSet and JobSet controllers")
    log = tmp_path_factory.mktemp("multinode") / "operator.log"
    with running_operator(cluster, kubectl, wait_for, log, webhooks=True) as op:
        yield op


def _apply(kubectl, ns, docs) -> None:
    out = kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    assert out.returncode == 0, out.stderr


def _workload(name, spec, kind, target) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name},
            "spec": {**spec, "target": {"kind": kind, "name": target}}}


def _placed(wait_for, custom_objects, operator, ns, name, status="True", timeout=90) -> dict:
    def check():
        obj = custom_objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        placed = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Placed"), {})
        return obj if placed.get("status") == status else None
    try:
        return wait_for(check, timeout, f"{name} Placed={status}")
    except Exception:
        print(operator.tail(), file=sys.stderr)
        raise


def _env(container) -> dict[str, str]:
    return {e.name: e.value for e in container.env or [] if e.name.startswith("RACKFIT_")}


def _running(core_v1, ns, selector, count):
    """`count` live pods matching `selector`, bound and Running, else None."""
    pods = [p for p in core_v1.list_namespaced_pod(ns, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]
    ok = [p for p in pods if p.spec.node_name and p.status.phase == "Running"]
    return ok if len(ok) == count == len(pods) else None


def _cliques(core_v1, pods) -> set[str]:
    return {core_v1.read_node(p.spec.node_name).metadata.labels.get("nvidia.com/gpu.clique") for p in pods}


def _deployment(name, replicas) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "rackfit.io/workload": name}},
                                  "spec": {"containers": [{"name": "server", "image": PAUSE}]}}}}


def test_the_plan_reaches_the_pods_follows_a_replan_and_goes_on_delete(operator, kubectl, custom_objects, core_v1,
                                                                        namespace, wait_for):
    _apply(kubectl, namespace, [_deployment("llama", 1), _workload("llama", SERVE_70B, "Deployment", "llama")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "llama")
    p = obj["status"]["placement"]

    def pods_with(tensor):
        pods = _running(core_v1, namespace, "app=llama", 1)
        return pods if pods and _env(pods[0].spec.containers[0]).get("RACKFIT_TENSOR_PARALLEL_SIZE") == tensor \
            else None
    pod = wait_for(lambda: pods_with(str(p["tensor"])), 60, "a pod with the plan's variables")[0]
    env = _env(pod.spec.containers[0])
    assert env == {"RACKFIT_TENSOR_PARALLEL_SIZE": str(p["tensor"]), "RACKFIT_PIPELINE_PARALLEL_SIZE": "1",
                   "RACKFIT_DATA_PARALLEL_SIZE": "1", "RACKFIT_EXPERT_PARALLEL_SIZE": "1", "RACKFIT_NNODES": "1",
                   "RACKFIT_GPUS_PER_NODE": str(p["gpusPerNode"]), "RACKFIT_INSTANCE_TYPE": "gd-8xh100ib-i128",
                   "RACKFIT_MAX_MODEL_LEN": "8192", "RACKFIT_GPU_MEMORY_UTILIZATION": env[
                       "RACKFIT_GPU_MEMORY_UTILIZATION"], "RACKFIT_MAX_NUM_SEQS": env["RACKFIT_MAX_NUM_SEQS"]}
    assert 0 < float(env["RACKFIT_GPU_MEMORY_UTILIZATION"]) <= 1 and int(env["RACKFIT_MAX_NUM_SEQS"]) >= 1
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == str(p["gpusPerNode"])

    # a re-plan (the spec asks for tensor 4): the template's variables change and the rollout follows
    wider = {**SERVE_70B, "parallelism": {"tensor": 4}}
    _apply(kubectl, namespace, [_workload("llama", wider, "Deployment", "llama")])
    pod = wait_for(lambda: pods_with("4"), 90, "the rollout to tensor 4")[0]
    assert _env(pod.spec.containers[0])["RACKFIT_GPUS_PER_NODE"] == "4"
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"

    # deleting the workload takes the variables back with the rest
    assert kubectl("delete", "llmw", "llama", "-n", namespace).returncode == 0
    apps = client.AppsV1Api(core_v1.api_client)

    def released():
        d = apps.read_namespaced_deployment("llama", namespace)
        c = d.spec.template.spec.containers[0]
        return d if not _env(c) and not d.spec.template.spec.node_selector and \
            "rackfit.io/applied" not in (d.metadata.annotations or {}) else None
    wait_for(released, 30, "variables, selector and annotation removed")


def _lws(name) -> dict:
    template = {"metadata": {"labels": {"app": name, "rackfit.io/workload": name}},
                "spec": {"containers": [{"name": "vllm", "image": PAUSE,
                                         "args": ["--tensor-parallel-size", "$(RACKFIT_TENSOR_PARALLEL_SIZE)"]}]}}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 1, "leaderTemplate": template,
                                                             "workerTemplate": template}}}


def test_a_leader_worker_set_of_405b_is_placed_and_bound_in_one_rack(operator, kubectl, custom_objects, core_v1,
                                                                     namespace, wait_for):
    _apply(kubectl, namespace, [_lws("llama-405b"), _workload("llama-405b", SERVE_405B, "LeaderWorkerSet",
                                                              "llama-405b")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "llama-405b")
    p = obj["status"]["placement"]
    assert p["nodes"] == 2 and p["tensor"] * p["pipeline"] > p["gpusPerNode"]  # one model across two nodes
    clique = p["nvlinkDomain"].split("=", 1)[1]
    lws = custom_objects.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets",
                                              "llama-405b")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2

    # LeaderWorkerSet's own controller makes the leader and its worker (its webhook labels them)
    pods = wait_for(lambda: _running(core_v1, namespace, "leaderworkerset.sigs.k8s.io/name=llama-405b", 2), 120,
                    "the leader and its worker bound and Running")
    roles = sorted(p_.metadata.labels.get("leaderworkerset.sigs.k8s.io/worker-index") for p_ in pods)
    assert roles == ["0", "1"]
    assert _cliques(core_v1, pods) == {clique}  # the group in one NVL72 rack
    for pod in pods:
        c = pod.spec.containers[0]
        assert c.resources.limits["nvidia.com/gpu"] == "4"
        assert _env(c)["RACKFIT_TENSOR_PARALLEL_SIZE"] == str(p["tensor"]) and _env(c)["RACKFIT_NNODES"] == "2"
        assert not pod.spec.scheduling_gates  # gated at creation, ungated once pinned

    assert kubectl("delete", "llmw", "llama-405b", "-n", namespace).returncode == 0

    def released():
        lws = custom_objects.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace,
                                                          "leaderworkersets", "llama-405b")
        lwt = lws["spec"]["leaderWorkerTemplate"]
        worker = lwt["workerTemplate"]["spec"]
        return lws if lwt["size"] == 1 and not worker.get("nodeSelector") and \
            not any(e["name"].startswith("RACKFIT_") for e in worker["containers"][0].get("env") or []) else None
    wait_for(released, 30, "the group size, selector and variables given back")


def test_a_leader_worker_set_of_two_groups_is_refused(operator, kubectl, custom_objects, core_v1, namespace,
                                                      wait_for):
    """rackfit books one group per LLMWorkload: the second would run on GPUs nobody booked."""
    two = _lws("two")
    two["spec"]["replicas"] = 2
    _apply(kubectl, namespace, [two, _workload("two", SERVE_405B, "LeaderWorkerSet", "two")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "two", status="False")
    placed = next(c for c in obj["status"]["conditions"] if c["type"] == "Placed")
    assert placed["reason"] == "TargetShapeMismatch" and placed["message"].startswith("spec.replicas: 2 groups")
    lws = custom_objects.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets",
                                                      "two")
    assert "nodeSelector" not in lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]  # not pinned
    # LeaderWorkerSet's controller makes both leaders; the webhook gates them until placed, so none is bound
    pods = wait_for(lambda: (ps := core_v1.list_namespaced_pod(
        namespace, label_selector="leaderworkerset.sigs.k8s.io/name=two").items) and len(ps) >= 2 and ps, 60,
                    "both groups' leaders created")
    assert all(p_.spec.scheduling_gates and not p_.spec.node_name for p_ in pods)


def _jobset(name, pods, gpus) -> dict:
    template = {"metadata": {"labels": {"rackfit.io/workload": name}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "torchrun", "image": PAUSE, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    "args": ["--nnodes", "$(RACKFIT_NNODES)", "--nproc-per-node", "$(RACKFIT_GPUS_PER_NODE)"]}]}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": name},
            "spec": {"suspend": True, "replicatedJobs": [{"name": "workers", "replicas": 1, "template": {"spec": {
                "parallelism": pods, "completions": pods, "backoffLimit": 0, "template": template}}}]}}


def test_a_jobset_training_job_is_pinned_and_started(operator, kubectl, custom_objects, core_v1, namespace, wait_for):
    planned = plan(parse_spec(TRAIN_70B), load_catalog()).chosen.placement
    assert planned.nodes > 1
    _apply(kubectl, namespace, [_jobset("train", planned.nodes, planned.gpus_per_node),
                                _workload("train", TRAIN_70B, "JobSet", "train")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "train")
    p = obj["status"]["placement"]
    assert p["nodes"] == planned.nodes
    js = custom_objects.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", namespace, "jobsets", "train")
    assert js["spec"]["suspend"] is False  # started once pinned

    pods = wait_for(lambda: _running(core_v1, namespace, "jobset.sigs.k8s.io/jobset-name=train", p["nodes"]), 120,
                    "the JobSet's pods bound and Running")
    assert _cliques(core_v1, pods) == {p["nvlinkDomain"].split("=", 1)[1]}
    for pod in pods:  # the variables come from rackfit's webhook (a JobSet's template is immutable)
        env = _env(pod.spec.containers[0])
        assert env["RACKFIT_NNODES"] == str(p["nodes"]) and env["RACKFIT_GPUS_PER_NODE"] == str(p["gpusPerNode"])
        assert "RACKFIT_MAX_MODEL_LEN" not in env  # serving engines only


def test_a_jobset_with_the_wrong_number_of_pods_is_refused(operator, kubectl, custom_objects, namespace, wait_for):
    planned = plan(parse_spec(TRAIN_70B), load_catalog()).chosen.placement
    _apply(kubectl, namespace, [_jobset("short", planned.nodes - 1, planned.gpus_per_node),
                                _workload("short", TRAIN_70B, "JobSet", "short")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "short", status="False")
    placed = next(c for c in obj["status"]["conditions"] if c["type"] == "Placed")
    assert placed["reason"] == "TargetShapeMismatch" and "spec.replicatedJobs[workers]" in placed["message"]
    js = custom_objects.get_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2", namespace, "jobsets", "short")
    assert js["spec"]["suspend"] is True


def test_a_multi_node_deployment_is_refused(operator, kubectl, custom_objects, core_v1, namespace, wait_for):
    _apply(kubectl, namespace, [_deployment("big", 2), _workload("big", SERVE_405B, "Deployment", "big")])
    obj = _placed(wait_for, custom_objects, operator, namespace, "big", status="False")
    placed = next(c for c in obj["status"]["conditions"] if c["type"] == "Placed")
    assert placed["reason"] == "TargetNotMultiNode"
    assert placed["message"].startswith("spec.target.kind:") and "LeaderWorkerSet" in placed["message"]
    dep = client.AppsV1Api(core_v1.api_client).read_namespaced_deployment("big", namespace)
    assert not dep.spec.template.spec.node_selector and "rackfit.io/applied" not in (dep.metadata.annotations or {})
    # its pods never run: they stay gated
    pods = wait_for(lambda: (lambda ps: ps if len(ps) == 2 else None)(
        core_v1.list_namespaced_pod(namespace, label_selector="app=big").items), 30, "two pods")
    assert all(any(g.name == "rackfit.io/placement" for g in p.spec.scheduling_gates or []) for p in pods)
