"""The operator on a real control plane: status and conditions, target patching, pods bound inside
one NVLink domain by kube-scheduler, fleet changes, restarts and bad objects."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from rackfit_process import Operator, running_operator

from devcluster.fleet import apply_fleet, build_nodes
from rackfit.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"


@pytest.fixture(scope="module")
def operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    with running_operator(cluster, kubectl, wait_for, tmp_path_factory.mktemp("operator") / "operator.log") as op:
        yield op


@pytest.fixture
def custom(cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def _get(custom, ns, name) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def _cond(obj, type_) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def _wait_condition(wait_for, custom, operator, ns, name, type_, status="True", timeout=60) -> dict:
    def check():
        obj = _get(custom, ns, name)
        return obj if _cond(obj, type_).get("status") == status else None
    try:
        return wait_for(check, timeout, f"{name} {type_}={status}")
    except Exception:
        print(operator.tail(), file=sys.stderr)
        raise


def _apply(kubectl, ns, docs) -> None:
    out = kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    assert out.returncode == 0, out.stderr


def _workload(name, spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name}, "spec": spec}


# Llama 3.1 405B in bf16: 2 GB200 nodes x 4 GPUs, inside one NVL72 rack
NVL72_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
              "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]}}

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_gets_the_cli_s_estimate(example, operator, kubectl, custom, namespace, wait_for, capsys):
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    doc = next(d for d in docs if d.get("kind") == "LLMWorkload")
    _apply(kubectl, namespace, docs)  # with its target (Deployment, Job, LeaderWorkerSet, JobSet), if any
    obj = _wait_condition(wait_for, custom, operator, namespace, doc["metadata"]["name"], "Placed")
    assert _cond(obj, "Estimated")["status"] == "True" and _cond(obj, "Fits")["status"] == "True"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert cli(["plan", "-f", str(example), "-o", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    # same code, same numbers: the fleet may move the placement, never the per-GPU estimate of a layout
    if obj["status"]["placement"]["instanceType"] == planned["placement"]["instanceType"]:
        # status leaves out what is absent (null in the CLI's JSON: engine fields of a training workload)
        assert obj["status"]["estimate"] == {k: v for k, v in planned["estimate"].items() if v is not None}


def _deployment(name, replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "server",
                                                           "image": "registry.k8s.io/pause:3.10"}]}}}}


# Llama 3.1 70B in bf16 as two data-parallel replicas of tensor 4, each whole on one 4-GPU GB200 node:
# a Deployment of 2 serves it (a model that spans nodes needs a LeaderWorkerSet: test_multinode.py)
NVL72_70B_X2 = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "parallelism": {"tensor": 4, "data": 2},
                "placement": {"instanceTypes": ["gb200-4x"]}}


def test_multi_node_workload_lands_in_one_nvl72_rack(operator, kubectl, custom, core_v1, namespace, wait_for):
    spec = {**NVL72_70B_X2, "target": {"kind": "Deployment", "name": "llm"}}
    dep = _deployment("llm", 2)
    _apply(kubectl, namespace, [dep, _workload("w405", spec)])
    obj = _wait_condition(wait_for, custom, operator, namespace, "w405", "Placed")
    placement = obj["status"]["placement"]
    assert placement["instanceType"] == "gb200-4x" and placement["nodes"] == 2 and placement["data"] == 2
    label, clique = placement["nvlinkDomain"].split("=")
    assert label == "nvidia.com/gpu.clique"
    assert kubectl("wait", "--for=condition=Placed", "llmw/w405", "-n", namespace, "--timeout=5s").returncode == 0

    def bound():
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=llm").items
        nodes = [p.spec.node_name for p in pods if p.spec.node_name and p.metadata.deletion_timestamp is None
                 and (p.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu")]
        return nodes if len(nodes) == 2 else None
    nodes = wait_for(bound, 60, "2 patched pods bound")
    for n in nodes:
        labels = core_v1.read_node(n).metadata.labels
        assert labels["node.kubernetes.io/instance-type"] == "gb200-4x"
        assert labels["nvidia.com/gpu.clique"] == clique
    cols = kubectl("get", "llmw", "w405", "-n", namespace).stdout.split("\n")[0].split()
    assert cols[:5] == ["NAME", "MODEL", "WORKLOAD", "INSTANCE", "NODES"]

    # deleting the workload takes back exactly what rackfit added
    assert kubectl("delete", "llmw", "w405", "-n", namespace).returncode == 0
    apps = client.AppsV1Api(core_v1.api_client)

    def released():
        pod = apps.read_namespaced_deployment("llm", namespace).spec.template.spec
        return pod if not pod.node_selector and not (pod.containers[0].resources.limits or {}) else None
    wait_for(released, 30, "node selector and GPU limit removed")


def test_undersized_target_is_oversubscribed(operator, kubectl, custom, namespace, wait_for):
    spec = {**NVL72_70B_X2, "target": {"kind": "Deployment", "name": "small"}}
    dep = _deployment("small", 1)
    _apply(kubectl, namespace, [dep, _workload("under", spec)])
    obj = _wait_condition(wait_for, custom, operator, namespace, "under", "Oversubscribed")
    assert _cond(obj, "Oversubscribed")["reason"] == "TargetUndersized"


def test_oversized_target_is_placed_with_what_is_booked(operator, kubectl, custom, namespace, wait_for):
    """A third replica of a two-replica plan: placed, and the condition says its GPUs are not booked."""
    spec = {**NVL72_70B_X2, "target": {"kind": "Deployment", "name": "big"}}
    _apply(kubectl, namespace, [_deployment("big", 3), _workload("over", spec)])
    obj = _wait_condition(wait_for, custom, operator, namespace, "over", "Placed")
    message = _cond(obj, "Placed")["message"]
    assert "it asks for 12 GPUs and 8 are booked" in message and "spec.parallelism.data" in message
    assert _cond(obj, "Oversubscribed")["status"] == "False"


def test_invalid_object_reports_instead_of_crashing(operator, kubectl, custom, namespace, wait_for):
    _apply(kubectl, namespace, [_workload("bad", {"model": {"preset": "llama-9"}, "workload": "inference"})])
    obj = _wait_condition(wait_for, custom, operator, namespace, "bad", "Estimated", "False")
    c = _cond(obj, "Estimated")
    assert c["reason"] == "InvalidSpec" and "spec.model.preset" in c["message"] and "llama-3.1-8b" in c["message"]
    assert operator.proc.poll() is None  # still running


def test_unplaceable_until_the_fleet_grows(operator, kubectl, custom, core_v1, namespace, wait_for):
    spec = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "precision": "fp8",
            "placement": {"instanceTypes": ["b200-8x"]}}  # no B200 nodes in the default fleet
    _apply(kubectl, namespace, [_workload("wants-b200", spec)])
    obj = _wait_condition(wait_for, custom, operator, namespace, "wants-b200", "Fits")
    assert _cond(obj, "Placed")["status"] == "False" and _cond(obj, "Placed")["reason"] == "WaitingForCapacity"
    b200 = [n for n in build_nodes({"b200-8x": 1})
            if n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "b200-8x"]
    for n in b200:
        n["metadata"]["name"] = f"{namespace}-b200"
        n["metadata"]["labels"]["kubernetes.io/hostname"] = n["metadata"]["name"]
    apply_fleet(core_v1, b200)
    try:
        obj = _wait_condition(wait_for, custom, operator, namespace, "wants-b200", "Placed", timeout=30)
        assert obj["status"]["placement"]["instanceType"] == "b200-8x"
    finally:
        core_v1.delete_node(f"{namespace}-b200")


def test_restart_resumes_without_repatching(operator, kubectl, custom, cluster, namespace, wait_for):
    spec = {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
            "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}, "target": {"kind": "Deployment", "name": "one"}}
    dep = _deployment("one", 1)
    _apply(kubectl, namespace, [dep, _workload("restart", spec)])
    before = _wait_condition(wait_for, custom, operator, namespace, "restart", "Placed")
    apps = client.AppsV1Api(cluster.api)
    # generation, not resourceVersion: the controllers keep updating the Deployment's status
    version = apps.read_namespaced_deployment("one", namespace).metadata.generation
    operator.stop()
    operator.start()
    # the resume handler runs once the operator is back: its metrics show the workload again
    wait_for(lambda: (t := operator.metrics()) and 'name="restart"' in t, 30, "operator resumed")
    after = _get(custom, namespace, "restart")
    assert after["status"]["placement"] == before["status"]["placement"]
    assert _cond(after, "Placed")["lastTransitionTime"] == _cond(before, "Placed")["lastTransitionTime"]
    assert apps.read_namespaced_deployment("one", namespace).metadata.generation == version


def test_metrics(operator, kubectl, custom, namespace, wait_for):
    _apply(kubectl, namespace, [_workload("m", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference"})])
    _wait_condition(wait_for, custom, operator, namespace, "m", "Placed")
    text = wait_for(lambda: (t := operator.metrics()) and 'name="m"' in t and t, 30, "metrics")
    assert f'rackfit_workload_memory_required_bytes{{name="m",namespace="{namespace}"}}' in text
    assert f'rackfit_workload_placed{{name="m",namespace="{namespace}"}} 1.0' in text
    assert "rackfit_domain_gpus_allocatable{" in text and "rackfit_reconcile_duration_seconds_bucket" in text


def test_suspended_job_is_placed_then_started(operator, kubectl, custom, core_v1, cluster, namespace, wait_for):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train"},
           "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "t", "image": "registry.k8s.io/pause:3.10",
                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    spec = {"model": {"preset": "qwen2.5-7b"}, "workload": "training",
            "training": {"method": "lora", "microBatchSize": 2, "sequenceLength": 2048},
            "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}, "target": {"kind": "Job", "name": "train"}}
    _apply(kubectl, namespace, [job, _workload("lora", spec)])
    _wait_condition(wait_for, custom, operator, namespace, "lora", "Placed")
    batch = client.BatchV1Api(cluster.api)
    started = wait_for(lambda: (j := batch.read_namespaced_job("train", namespace)) and not j.spec.suspend and j,
                       30, "job unsuspended")
    assert started.spec.template.spec.node_selector["node.kubernetes.io/instance-type"] == "gd-8xh100ib-i128"

    def bound():
        pods = core_v1.list_namespaced_pod(namespace, label_selector="job-name=train").items
        return next((p.spec.node_name for p in pods if p.spec.node_name), None)
    node = wait_for(bound, 60, "job pod bound")
    assert core_v1.read_node(node).metadata.labels["node.kubernetes.io/instance-type"] == "gd-8xh100ib-i128"
    # deleting the workload of a running Job does not wait on an immutable template
    assert kubectl("delete", "llmw", "lora", "-n", namespace, "--timeout=20s").returncode == 0


def test_hugging_face_config_from_a_configmap(operator, kubectl, custom, namespace, wait_for):
    config = {"model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "intermediate_size": 8192,
              "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
              "tie_word_embeddings": True}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tiny-llama"},
          "data": {"config.json": json.dumps(config)}}
    # the workload first: it waits for its ConfigMap, saying which, then is estimated once it exists
    _apply(kubectl, namespace, [_workload("hf", {"model": {"huggingFaceConfig": "tiny-llama"},
                                                  "workload": "inference"})])
    missing = _wait_condition(wait_for, custom, operator, namespace, "hf", "Estimated", status="False")
    assert _cond(missing, "Estimated")["reason"] == "ConfigMapNotFound"
    assert f"{namespace}/tiny-llama" in _cond(missing, "Estimated")["message"]
    _apply(kubectl, namespace, [cm])
    obj = _wait_condition(wait_for, custom, operator, namespace, "hf", "Estimated")
    assert obj["status"]["estimate"]["parameters"] == 1_235_814_400  # Llama-3.2-1B's shape


def _metric(operator, pattern: str) -> float | None:
    m = re.search(pattern, operator.metrics() or "", re.MULTILINE)
    return float(m.group(1)) if m else None


def _reconcile_count(operator) -> float:
    return _metric(operator, r"^rackfit_reconcile_duration_seconds_count (\S+)$") or 0.0


def _domain_allocatable(operator, domain: str) -> float | None:
    return _metric(operator, rf'^rackfit_domain_gpus_allocatable{{[^}}]*domain="{re.escape(domain)}"[^}}]*}} (\S+)$')


def test_cordoning_its_rack_moves_it_and_other_changes_do_not(operator, kubectl, custom, core_v1, namespace,
                                                              wait_for):
    _apply(kubectl, namespace, [_workload("mover", NVL72_405B)])
    first = _wait_condition(wait_for, custom, operator, namespace, "mover", "Placed")["status"]["placement"]
    clique = first["nvlinkDomain"].split("=")[1]
    # an unrelated fleet change (another rack's node cordoned) keeps the placement
    other = next(n for n in core_v1.list_node(label_selector="node.kubernetes.io/instance-type=gb200-4x").items
                 if n.metadata.labels["nvidia.com/gpu.clique"] != clique)
    rack = core_v1.list_node(label_selector=f"nvidia.com/gpu.clique={clique}").items
    try:
        reconciles = _reconcile_count(operator)
        core_v1.patch_node(other.metadata.name, {"spec": {"unschedulable": True}})
        other_clique = other.metadata.labels["nvidia.com/gpu.clique"]
        wait_for(lambda: _domain_allocatable(operator, other_clique) == 68, 30, "the operator saw the cordon")
        # the fleet changed, so its timer plans again: once it has, the placement must be the same
        wait_for(lambda: _reconcile_count(operator) > reconciles, 30, "a re-plan after the cordon")
        assert _get(custom, namespace, "mover")["status"]["placement"] == first
        # its own rack cordoned: it moves to the other one
        for n in rack:
            core_v1.patch_node(n.metadata.name, {"spec": {"unschedulable": True}})
        moved = wait_for(lambda: (p := _get(custom, namespace, "mover")["status"]["placement"]) != first and p,
                         30, "re-placed after its rack was cordoned")
        assert moved["nvlinkDomain"] != first["nvlinkDomain"]
    finally:
        for n in [other, *rack]:
            core_v1.patch_node(n.metadata.name, {"spec": {"unschedulable": False}})
