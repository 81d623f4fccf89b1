"""Placement under contention, on the e2e fleet (the demo's two NVL72 racks and 16 HGX H100 nodes
among 384 nodes): no NVLink domain booked twice, no pod outside its placement, the rest waiting
until capacity frees up. The operator runs with its webhooks, so labelled pods are gated."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from rackfit_process import Operator, running_operator, webhooks_in_effect

from rackfit.catalog import load_catalog
from rackfit.planner import plan
from rackfit.spec import parse_spec

GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
TRAIN_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "training",
              "training": {"method": "full", "zeroStage": 3}, "placement": {"instanceTypes": ["gb200-4x"]}}
SERVE_70B_H100 = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                  "inference": {"contextLength": 32768, "concurrency": 32},
                  "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}


@pytest.fixture(scope="module")
def operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("contention") / "operator.log"
    with running_operator(cluster, kubectl, wait_for, log, webhooks=True) as op:
        yield op


def _planned(spec: dict):
    return plan(parse_spec(spec), load_catalog()).chosen.placement


def _manifests(name: str, spec: dict, kind: str, replicas: int) -> list[dict]:
    """An LLMWorkload and its target, whose pod template carries the workload label (so its pods are
    gated until placed, as the README asks)."""
    labels = {"app": name, "rackfit.io/workload": name}
    if kind == "JobSet":  # training across nodes: one pod per node, created suspended, with the plan's GPUs
        p = _planned(spec)
        limits = {"nvidia.com/gpu": str(p.gpus_per_node)}
        pod = {"restartPolicy": "Never",
               "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {"limits": limits}}]}
        job = {"parallelism": replicas, "completions": replicas, "backoffLimit": 0,
               "template": {"metadata": {"labels": labels}, "spec": pod}}
        target = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": kind, "metadata": {"name": name},
                  "spec": {"suspend": True, "replicatedJobs": [{"name": "workers", "replicas": 1,
                                                                "template": {"spec": job}}]}}
        workload = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name},
                    "spec": {**spec, "target": {"kind": kind, "name": name}}}
        return [workload, target]
    target = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                       "template": {"metadata": {"labels": labels},
                                    "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}}}
    if kind == "StatefulSet":
        target["spec"] |= {"serviceName": name, "podManagementPolicy": "Parallel"}
    workload = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name},
                "spec": {**spec, "target": {"kind": kind, "name": name}}}
    return [workload, target]


def _status(custom, ns, names):
    out = {}
    for n in names:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, n)
        placed = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Placed"), {})
        out[n] = (placed.get("status"), placed.get("reason"), (obj.get("status") or {}).get("placement"))
    return out


def _settled(custom, ns, names, placed: int):
    """The statuses once `placed` workloads are Placed and the rest wait for capacity."""
    s = _status(custom, ns, names)
    states = Counter(v[0] for v in s.values())
    waiting = [n for n, v in s.items() if v[1] == "WaitingForCapacity"]
    return s if states["True"] == placed and len(waiting) == len(names) - placed else None


def _check_pods(core_v1, ns, statuses, nodes_by_name):
    """Every pod of a placed workload bound inside its domain with the placement's GPUs; every pod of
    a waiting one unbound (gated); no node asked for more GPUs than it has."""
    pods = core_v1.list_namespaced_pod(ns).items
    for name, (state, _, placement) in statuses.items():
        mine = [p for p in pods if (p.metadata.labels or {}).get("app") == name and not p.metadata.deletion_timestamp]
        if state != "True":
            assert all(not p.spec.node_name for p in mine), f"a pod of waiting {name} was bound"
            continue
        label, value = placement["nvlinkDomain"].split("=", 1)
        bound = [p for p in mine if p.spec.node_name]
        if len(bound) < placement["nodes"]:
            return None
        for p in bound:
            assert nodes_by_name[p.spec.node_name].get(label) == value, f"{p.metadata.name} outside {value}"
            assert p.spec.containers[0].resources.limits["nvidia.com/gpu"] == str(placement["gpusPerNode"])
    asked = Counter()
    for p in core_v1.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items:
        if p.status.phase not in ("Succeeded", "Failed"):
            asked[p.spec.node_name] += sum(int((c.resources.limits or {}).get("nvidia.com/gpu", 0))
                                           for c in p.spec.containers)
    for node, gpus in asked.items():
        assert gpus <= int(nodes_by_name[node]["_gpus"]), f"{node}: {gpus} GPUs asked"
    return True


def _nodes(core_v1):
    return {n.metadata.name: {**(n.metadata.labels or {}), "_gpus": n.status.allocatable.get("nvidia.com/gpu", "0")}
            for n in core_v1.list_node().items}


@pytest.fixture
def released(kubectl, namespace) -> Iterator[None]:
    """Each case gives the fleet back before the next starts: its workloads deleted, and so released
    (the operator's finalizer runs first)."""
    yield
    try:
        kubectl("delete", "llmw", "--all", "-n", namespace, "--wait=true", "--timeout=90s", timeout=120)
        # a Job's pods keep its tracking finalizer until the Job controller counts them: delete the
        # JobSets with their pods here, or a loaded machine's next case can find a rack still held
        kubectl("delete", "jobsets", "--all", "-n", namespace, "--cascade=foreground", "--wait=true",
                "--timeout=90s", timeout=120)
    except subprocess.TimeoutExpired:  # cleanup: the namespace's deletion finishes the job
        pass


@pytest.mark.parametrize("spec,kind,count,placed", [
    (TRAIN_405B, "JobSet", 3, 2),            # 12+ nodes x 4 GPUs each: one per NVL72 rack, the third waits
    (TRAIN_405B, "JobSet", 10, 2),           # ten of them: still one per rack, eight wait
    (SERVE_70B_H100, "Deployment", 20, 16),  # one whole 8-GPU HGX node each: 16 nodes, four wait
], ids=["nvl72-3", "nvl72-10", "hgx-20"])
def test_competing_workloads_never_share_a_domain(operator, released, kubectl, core_v1, cluster, namespace,
                                                  wait_for, spec, kind, count, placed):
    p = _planned(spec)
    names = [f"w{i}" for i in range(count)]
    docs = [d for n in names for d in _manifests(n, spec, kind, p.nodes)]
    out = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))  # one apply, as users do
    assert out.returncode == 0, out.stderr
    custom = client.CustomObjectsApi(cluster.api)
    try:
        statuses = wait_for(lambda: _settled(custom, namespace, names, placed), 120,
                            f"{placed} of {count} placed, the rest waiting")
    except Exception:
        print({n: v[:2] for n, v in _status(custom, namespace, names).items()}, file=sys.stderr)
        raise
    held = [v[2]["nvlinkDomain"] for v in statuses.values() if v[0] == "True"]
    assert len(set(held)) == len(held), f"a domain booked twice: {held}"
    nodes = _nodes(core_v1)
    wait_for(lambda: _check_pods(core_v1, namespace, statuses, nodes), 120, "placed pods bound inside their domains")
    text = operator.metrics() or ""
    for line in text.splitlines():
        if line.startswith("rackfit_domain_gpus_requested{"):
            key, used = line.rsplit(" ", 1)
            alloc = next(x.rsplit(" ", 1)[1] for x in text.splitlines()
                         if x.startswith(key.replace("requested", "allocatable")))
            assert float(used) <= float(alloc), line
    waiting = [n for n, v in statuses.items() if v[0] != "True"]
    if waiting:  # deleting a placed workload lets the oldest waiting one in
        first = next(n for n, v in statuses.items() if v[0] == "True")
        assert kubectl("delete", "llmw", first, "-n", namespace).returncode == 0
        assert kubectl("delete", kind.lower(), first, "-n", namespace, "--cascade=foreground",
                       "--timeout=60s").returncode == 0
        rest = [n for n in names if n != first]
        after = wait_for(lambda: _settled(custom, namespace, rest, placed), 120, f"{waiting[0]} placed after {first}")
        assert after[waiting[0]][0] == "True"
        wait_for(lambda: _check_pods(core_v1, namespace, after, _nodes(core_v1)), 120, "its pods bound")


def test_a_restart_mid_burst_ends_in_the_same_state(operator, released, kubectl, core_v1, cluster, namespace,
                                                    wait_for):
    """Killed (SIGKILL) while 20 HGX workloads arrive and started again: what was placed before stays
    where it was, no target is patched twice, and the burst ends as it would have: 16 placed in 16
    distinct hosts, 4 waiting. The ledger is rebuilt from status and pods before any decision."""
    names = [f"r{i}" for i in range(20)]
    docs = [d for n in names for d in _manifests(n, SERVE_70B_H100, "Deployment", 1)]
    assert kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs)).returncode == 0
    custom = client.CustomObjectsApi(cluster.api)
    before = wait_for(lambda: (s := {n: v[2] for n, v in _status(custom, namespace, names).items() if v[0] == "True"})
                      and len(s) >= 5 and s, 120, "five placed")
    operator.kill()
    operator.start()
    after = wait_for(lambda: _settled(custom, namespace, names, 16), 180, "16 placed, 4 waiting after the restart")
    for name, placement in before.items():
        assert after[name][2]["nvlinkDomain"] == placement["nvlinkDomain"], f"{name} moved"
    held = [v[2]["nvlinkDomain"] for v in after.values() if v[0] == "True"]
    assert len(set(held)) == 16
    apps = client.AppsV1Api(cluster.api)
    twice = [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items if d.metadata.generation > 2]
    assert not twice, f"patched twice: {twice}"
    wait_for(lambda: webhooks_in_effect(kubectl), 60, "the webhooks in effect again")
