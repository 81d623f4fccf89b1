"""The operator's shell without a cluster: a reconcile (gather, decide, apply) and a delete for every
target adapter, and the fleet's watch functions feeding the ledger, with kube.py's calls recorded
(a stand-in for the API only here; tests/e2e runs the same code against a real kube-apiserver)."""

from __future__ import annotations

import asyncio
import copy
import logging

import kopf
import pytest
from prometheus_client.registry import CollectorRegistry

from rackfit.api.status import placement_of
from rackfit.catalog import load_catalog
from rackfit.operator import fleet, gating, kube, targets, workloads
from rackfit.operator.config import OperatorConfig
from rackfit.operator.context import OperatorContext
from rackfit.planner import plan
from rackfit.planner.inventory import NodeInfo
from rackfit.spec import parse_spec

LOG = logging.getLogger("test")
NS = "ns"
PAUSE = {"name": "main", "image": "registry.k8s.io/pause:3.10"}
SERVE_8B = {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
            "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
SERVE_405B = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
              "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]}}
TRAIN_70B = {"model": {"preset": "llama-3.1-70b"}, "workload": "training", "training": {"method": "full"},
             "placement": {"instanceTypes": ["gb200-4x"]}}
LORA_8B = {"model": {"preset": "llama-3.1-8b"}, "workload": "training", "training": {"method": "lora"},
           "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}


def _target(kind: str, spec: dict) -> dict:
    template = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [dict(PAUSE)]}}
    body = {"apiVersion": f"{targets.adapter(kind).group}/{targets.adapter(kind).version}", "kind": kind,
            "metadata": {"name": "w", "namespace": NS, "resourceVersion": "1"}}
    if kind in ("Deployment", "StatefulSet"):
        return {**body, "spec": {"replicas": 1, "template": template}}
    if kind == "Job":
        return {**body, "spec": {"suspend": True, "template": template}}
    if kind == "LeaderWorkerSet":
        return {**body, "spec": {"replicas": 1, "leaderWorkerTemplate": {"workerTemplate": template}}}
    nodes = plan(parse_spec(spec), load_catalog()).chosen.placement.nodes
    return {**body, "spec": {"suspend": True, "replicatedJobs": [{"name": "workers", "template": {"spec": {
        "parallelism": nodes, "completions": nodes, "template": template}}}]}}


CASES = {"Deployment": SERVE_8B, "StatefulSet": SERVE_8B, "Job": LORA_8B, "LeaderWorkerSet": SERVE_405B,
         "JobSet": TRAIN_70B}


@pytest.fixture
def api(monkeypatch):
    """kube.py's calls, recorded; targets served from `api.objects`."""
    class Api:
        objects: dict[str, dict] = {}
        calls: list[tuple] = []
    monkeypatch.setattr(kube, "get_target", lambda kind, ns, name: copy.deepcopy(Api.objects.get(kind.kind)))
    monkeypatch.setattr(kube, "patch_target", lambda kind, ns, name, patch: Api.calls.append(("target", kind.kind,
                                                                                              patch)))
    monkeypatch.setattr(kube, "patch_status", lambda ns, name, status: Api.calls.append(("status", status)))
    monkeypatch.setattr(kube, "read_hf_config", lambda ns, name: None)
    for level in ("info", "warn"):  # kopf posts Events only inside a running operator
        monkeypatch.setattr(kopf, level, lambda body, reason, message, level=level: Api.calls.append(
            ("event", level, reason)))
    Api.objects, Api.calls = {}, []
    return Api


def _context() -> OperatorContext:
    ctx = OperatorContext.build(OperatorConfig(), CollectorRegistry())
    for i in range(18):  # one NVL72 rack of 4-GPU nodes, and 4 HGX H100 hosts
        labels = {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": "u.0"}
        ctx.ledger.set_node(f"g{i}", NodeInfo.from_labels(f"g{i}", labels, 4))
    for i in range(4):
        labels = {"node.kubernetes.io/instance-type": "gd-8xh100ib-i128", "kubernetes.io/hostname": f"h{i}"}
        ctx.ledger.set_node(f"h{i}", NodeInfo.from_labels(f"h{i}", labels, 8))
    return ctx


def _indexes(seen: dict | None = None) -> dict:
    return {"gated_pods": {}, "unschedulable_pods": {}, "placements": seen or {}, "plan_envs": seen or {}}


def _reconcile(ctx, memo, spec, indexes, status=None):
    patch = kopf.Patch()
    body = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "w", "namespace": NS}}
    workloads.reconcile(body=body, spec=spec, meta={"generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
                        status=status or {}, namespace=NS, name="w", patch=patch, logger=LOG, memo=memo, **indexes)
    return patch


@pytest.mark.parametrize("kind", list(targets.ADAPTERS))
def test_a_reconcile_places_each_kind_of_target_through_its_adapter(kind, api):
    spec = {**CASES[kind], "target": {"kind": kind, "name": "w"}}
    api.objects[kind] = _target(kind, CASES[kind])
    ctx = _context()
    memo = kopf.Memo(ctx=ctx)
    adapter = targets.adapter(kind)
    if adapter.suspendable:
        # the webhook's indexes do not hold the placement yet: the status and the pin are written, the
        # start waits for kopf's retry
        with pytest.raises(kopf.TemporaryError):
            _reconcile(ctx, memo, spec, _indexes())
        (status,), (pin,) = [c[1:] for c in api.calls if c[0] == "status"], \
            [c[1:] for c in api.calls if c[0] == "target"]
        placement = status[0]["placement"]
        assert pin[0] == kind and pin[1]["metadata"]["annotations"]["rackfit.io/workload"] == "w"
        api.calls.clear()
        api.objects[kind]["metadata"]["annotations"] = pin[1]["metadata"]["annotations"]  # the pin, applied
        seen = {(NS, "w"): [placement_of(status[0])]}
        patch = _reconcile(ctx, memo, spec, _indexes(seen), status=status[0])
        assert ("target", kind, adapter.resume_patch()) in api.calls
    else:
        patch = _reconcile(ctx, memo, spec, _indexes())
        (status,) = [c[1] for c in api.calls if c[0] == "status"]
        placement = status["placement"]
        (pin,) = [c[2] for c in api.calls if c[0] == "target"]
        for name, template in adapter.pod_templates(targets.patches.merge_diff({}, pin)):
            assert template["spec"]["nodeSelector"] == placement["nodeSelector"], name
    conds = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conds["Placed"]["status"] == "True" and conds["Placed"]["reason"] == "TargetPatched"
    assert ctx.ledger.reservation((NS, "w")) is not None  # booked in the ledger
    assert memo.get("fleet_seen") == ctx.fleet_version and "lock" in memo


@pytest.mark.parametrize("kind", list(targets.ADAPTERS))
def test_a_delete_frees_the_gpus_and_takes_back_what_was_added(kind, api):
    spec = {**CASES[kind], "target": {"kind": kind, "name": "w"}}
    target = _target(kind, CASES[kind])
    placement = plan(parse_spec(spec), load_catalog()).chosen.placement
    selector = {**placement.node_selector, "kubernetes.io/hostname": "h0"}
    pin = targets.place_patch(target, "w", selector, placement.gpus_per_node, [])
    placed = targets.patches.merge_diff({}, {**target, **pin, "metadata": {**target["metadata"], **pin["metadata"]}})
    api.objects[kind] = placed
    ctx = _context()
    memo = kopf.Memo(ctx=ctx)
    from rackfit.planner.inventory import Reservation
    ctx.ledger.reserve((NS, "w"), Reservation(placement.instance_type, None, placement.nodes, placement.gpus_per_node))
    workloads.release(spec=spec, namespace=NS, name="w", logger=LOG, memo=memo)
    assert ctx.ledger.reservation((NS, "w")) is None and memo.released
    (undo,) = [c[2] for c in api.calls if c[0] == "target"]
    assert undo["metadata"]["annotations"] == {"rackfit.io/applied": None, "rackfit.io/workload": None}


def test_the_fleet_watch_feeds_the_ledger_and_counts_only_fleet_changes():
    ctx = OperatorContext.build(OperatorConfig(), CollectorRegistry())
    labels = {"node.kubernetes.io/instance-type": "gd-8xh100ib-i128", "nvidia.com/gpu.product": "H100"}
    ready = {"allocatable": {"nvidia.com/gpu": "8"}, "conditions": [{"type": "Ready", "status": "True"}]}
    node = {"metadata": {"name": "h0", "labels": labels}, "spec": {}, "status": ready}
    fleet.observe_node(ctx, "h0", node)
    assert ctx.fleet_version == 1 and ctx.ledger.node("h0").allocatable == 8
    fleet.observe_node(ctx, "h0", node)
    assert ctx.fleet_version == 1  # a heartbeat is no change
    pod = {"metadata": {"namespace": NS, "labels": {"rackfit.io/workload": "w"}}, "status": {"phase": "Running"},
           "spec": {"nodeName": "h0", "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "3"}}}]}}
    fleet.observe_pod(ctx, "p", pod)
    assert [p.gpus for p in ctx.ledger.owner_pods((NS, "w"))] == [3] and ctx.fleet_version == 1
    fleet.observe_pod(ctx, "p", None)
    assert ctx.ledger.owner_pods((NS, "w")) == []
    fleet.observe_node(ctx, "h0", {**node, "spec": {"unschedulable": True}})
    assert ctx.fleet_version == 2  # cordoned
    fleet.observe_node(ctx, "h0", None)
    assert ctx.fleet_version == 3 and ctx.ledger.node("h0") is None


def test_a_workload_being_deleted_books_nothing_from_a_late_event():
    ctx = OperatorContext.build(OperatorConfig(), CollectorRegistry())
    placement = {"instanceType": "gb200-4x", "nvlinkDomain": "nvidia.com/gpu.clique=u.0", "nodes": 2, "gpusPerNode": 4,
                 "totalGPUs": 8, "tensor": 8, "pipeline": 1, "data": 1, "expert": 1, "gpuMemoryBytes": 1}
    memo = kopf.Memo(ctx=ctx)
    assert asyncio.run(fleet.placements(namespace=NS, name="w", meta={"deletionTimestamp": "x"},
                                        status={"placement": placement}, memo=memo)) is None
    assert ctx.ledger.reservation((NS, "w")) is None
    assert asyncio.run(fleet.placements(namespace=NS, name="w", meta={}, status={"placement": placement}, memo=memo))
    assert ctx.ledger.reservation((NS, "w")) is not None


def test_a_timer_tick_before_the_change_handler_decided_does_nothing(api, monkeypatch):
    """A burst: the create handler waits for a thread and its decision cycle while the timer ticks.
    The tick must not decide too (it did, doubling reads and status writes); once the handler has
    decided the generation, ticks plan again as before."""
    read = []
    monkeypatch.setattr(kube, "get_target", lambda kind, ns, name: read.append(name) or
                        copy.deepcopy(api.objects.get(kind.kind)))
    spec = {**SERVE_8B, "target": {"kind": "Deployment", "name": "w"}}
    api.objects["Deployment"] = _target("Deployment", SERVE_8B)
    ctx = _context()
    memo = kopf.Memo(ctx=ctx)
    meta = {"generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"}
    body = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "w", "namespace": NS}}

    def tick(status):
        workloads.replan(body=body, spec=spec, meta=meta, status=status, namespace=NS, name="w",
                         patch=kopf.Patch(), logger=LOG, memo=memo, **_indexes())
    tick({})
    assert read == [] and api.calls == []
    patch = _reconcile(ctx, memo, spec, _indexes())
    assert read == ["w"]
    ctx.fleet_version += 1  # a node changed: a placed workload's tick plans again
    tick(dict(patch["status"]))
    assert read == ["w", "w"]


def test_a_conflicting_target_patch_is_made_again_on_the_target_read_again(api, monkeypatch):
    """The Deployment's controller writes it between the read and the patch (its pods churn): the
    same placement is patched onto the target read again, at once, not a whole decision later."""
    spec = {**SERVE_8B, "target": {"kind": "Deployment", "name": "w"}}
    api.objects["Deployment"] = _target("Deployment", SERVE_8B)
    tries = []

    def patch_target(kind, ns, name, patch):
        tries.append(patch["metadata"]["resourceVersion"])
        if len(tries) < 3:
            api.objects["Deployment"]["metadata"]["resourceVersion"] = str(len(tries) + 1)  # written meanwhile
            raise kube.Conflict("409 Conflict")
        api.calls.append(("target", kind.kind, patch))
    monkeypatch.setattr(kube, "patch_target", patch_target)
    ctx = _context()
    patch = _reconcile(ctx, kopf.Memo(ctx=ctx), spec, _indexes())
    assert tries == ["1", "2", "3"]
    conds = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conds["Placed"]["reason"] == "TargetPatched"


def test_without_webhooks_a_pod_outside_the_placement_is_not_deleted(monkeypatch):
    """Nothing would gate the pod its controller makes again: deleting it only churns."""
    deleted = []
    monkeypatch.setattr(kube, "delete_pod", lambda ns, name, uid=None: deleted.append(name))
    monkeypatch.setattr(kopf, "warn", lambda *a, **k: None)
    pod = {"metadata": {"name": "p", "namespace": NS, "labels": {"rackfit.io/workload": "w"}},
           "spec": {"nodeName": "h0", "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
    for webhooks, expected in (("off", []), ("url", ["p"])):
        ctx = OperatorContext.build(OperatorConfig(webhooks=webhooks), CollectorRegistry())
        deleted.clear()
        asyncio.run(gating.ungate_new_pod(type="ADDED", body=pod, labels=pod["metadata"]["labels"], namespace=NS,
                                          name="p", uid="u", placements={}, memo=kopf.Memo(ctx=ctx), logger=LOG))
        assert deleted == expected, webhooks


def test_a_node_that_changes_while_it_decides_is_planned_on_at_the_next_tick(api, monkeypatch):
    """The fleet version a decision is marked with is the one it planned on: a rack cordoned node by node while
    a tick decides (the e2e cordon test, under load) must make the next tick plan again, not count as seen."""
    spec = {**SERVE_8B, "target": {"kind": "Deployment", "name": "w"}}
    api.objects["Deployment"] = _target("Deployment", SERVE_8B)
    ctx = _context()
    memo = kopf.Memo(ctx=ctx)
    real_view = ctx.ledger.view

    def view_then_a_node_changes(*args, **kwargs):
        fleet = real_view(*args, **kwargs)
        ctx.fleet_version += 1  # the informer's thread, between the decision's view and its end
        return fleet
    monkeypatch.setattr(ctx.ledger, "view", view_then_a_node_changes)
    _reconcile(ctx, memo, spec, _indexes())
    assert memo.get("fleet_seen") == ctx.fleet_version - 1  # the next tick's fleet_same is False
