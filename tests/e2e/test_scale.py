"""The operator on a fleet beyond any per-object limit (regression: a cap of 64 kopf workers left it
idle on any cluster with more than 64 GPU nodes or pods, nolar/kopf#1243).

Before the operator starts, the e2e fleet (384 GPU nodes) already runs 150 GPU pods of no workload
and 80 labelled pods; then 40 workloads arrive. Every one must be Placed, on the node its placement
names, with no node asked for more GPUs than it has (the bystanders count)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import yaml
from kubernetes import client
from rackfit_process import Operator, install_crd

GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
A100 = "gd-8xa100-i128"
BYSTANDERS, LABELLED, WORKLOADS = 150, 80, 40


def _pod(name: str, node: str | None, gpus: int, labels: dict | None = None) -> dict:
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec = {"containers": [container], **({"nodeName": node} if node else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def _pairs(i: int) -> list[dict]:
    name = f"s{i:03d}"
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name},
             "spec": {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                      "placement": {"instanceTypes": [A100]}, "target": {"kind": "Deployment", "name": name}}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": {"app": name}},
                                   "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}}}]


def test_hundreds_of_nodes_and_pods_then_every_workload_placed(cluster, kubectl, core_v1, namespace, wait_for,
                                                                tmp_path):
    install_crd(kubectl)
    nodes = {n.metadata.name: n for n in core_v1.list_node(label_selector="nvidia.com/gpu.product").items}
    assert len(nodes) > 300
    a100 = sorted(n for n in nodes if n.startswith(A100))
    pods = [_pod(f"bystander-{i}", a100[i], 4) for i in range(BYSTANDERS)]
    pods += [_pod(f"labelled-{i}", None, 0, {"rackfit.io/workload": "ghost"}) for i in range(LABELLED)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda body: core_v1.create_namespaced_pod(namespace, body), pods))

    op = Operator(cluster.kubeconfig, tmp_path / "operator.log")
    started = time.monotonic()
    op.start()
    try:
        out = kubectl("apply", "-n", namespace, "-f", "-",
                      input=yaml.safe_dump_all([d for i in range(WORKLOADS) for d in _pairs(i)]))
        assert out.returncode == 0, out.stderr
        custom = client.CustomObjectsApi(cluster.api)

        def placed():
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            done = [w for w in items if any(c["type"] == "Placed" and c["status"] == "True"
                                            for c in (w.get("status") or {}).get("conditions") or [])]
            return items if len(done) == WORKLOADS else None
        items = wait_for(placed, 180, f"{WORKLOADS} workloads Placed")
        print(f"{WORKLOADS} workloads placed {time.monotonic() - started:.1f}s after the operator started",
              file=sys.stderr)

        def bound():
            running = [p for p in core_v1.list_namespaced_pod(namespace, label_selector="app").items
                       if p.spec.node_name and not p.metadata.deletion_timestamp
                       and (p.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu")]
            return running if len(running) == WORKLOADS else None
        running = wait_for(bound, 120, "every workload's pod bound with its GPU")
        where = {w["metadata"]["name"]: w["status"]["placement"]["nodeSelector"]["kubernetes.io/hostname"]
                 for w in items}
        for p in running:
            assert p.spec.node_name == where[p.metadata.labels["app"]]
        asked = Counter()
        for p in core_v1.list_namespaced_pod(namespace).items:
            if p.spec.node_name:
                asked[p.spec.node_name] += int((p.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu", 0))
        assert max(asked.values()) <= 8
        # best fit: the workloads fill the half-used nodes before they open empty ones
        assert all(where[n] in a100[:BYSTANDERS] for n in where)
    finally:  # released while the operator runs: its finalizer must not outlive it
        kubectl("delete", "llmw", "--all", "-n", namespace, "--wait=true", "--timeout=90s", timeout=120)
        op.stop()
        print(op.tail(20), file=sys.stderr)
