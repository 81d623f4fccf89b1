"""The live GPU fleet, kept by kopf indexes over Nodes and Pods, turned into a planner `Inventory`.

Cordoned and NotReady nodes are left out; free GPUs = allocatable minus the GPU requests of the
pods bound to the node that have not finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from rackfit.planner import Inventory
from rackfit.planner.inventory import INSTANCE_TYPE_LABEL

GPU = "nvidia.com/gpu"


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_gpus(spec: Mapping[str, Any]) -> int:
    total = 0
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(GPU) or (res.get("limits") or {}).get(GPU)
        total += int(value) if value else 0
    return total


# Index functions are async (they only read the body): kopf then runs them on its event loop
# instead of handing each watch event to a worker thread.
def _node_info(labels: Mapping[str, str], spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict | None:
    allocatable = int((status.get("allocatable") or {}).get(GPU, 0) or 0)
    if not allocatable or INSTANCE_TYPE_LABEL not in labels:
        return None
    return {"labels": dict(labels), "allocatable": allocatable,
            "schedulable": not spec.get("unschedulable") and _ready(status)}


@kopf.index("nodes")
async def gpu_nodes(name: str, labels: Mapping[str, str], spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any):
    info = _node_info(labels, spec, status)
    return {name: info} if info else None


class FleetVersion:
    """Counts changes of the GPU fleet (a GPU node added, removed, cordoned, NotReady, relabelled),
    not pod churn or heartbeats, so that timers can tell in O(1) whether to plan again."""

    value = 0
    _nodes: dict[str, dict | None] = {}

    @classmethod
    def observe(cls, name: str, info: dict | None) -> None:
        if cls._nodes.get(name) != info:
            cls._nodes[name] = info
            cls.value += 1


@kopf.on.event("nodes")
async def track_fleet(type: str, name: str, labels: Mapping[str, str], spec: Mapping[str, Any],
                      status: Mapping[str, Any], **_: Any) -> None:
    FleetVersion.observe(name, None if type == "DELETED" else _node_info(labels, spec, status))


@kopf.index("pods")
async def gpu_pods(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any):
    node = spec.get("nodeName")
    if not node or status.get("phase") in ("Succeeded", "Failed"):
        return None
    gpus = pod_gpus(spec)
    return {node: gpus} if gpus else None


def inventory(nodes: kopf.Index, pods: kopf.Index) -> tuple[Inventory, Inventory]:
    """(schedulable capacity now, the same with nothing requested): the second tells whether a
    placement still fits once its own pods are discounted."""
    rows, empty = [], []
    for name, infos in nodes.items():
        for info in infos:
            if not info["schedulable"]:
                continue
            requested = sum(pods.get(name, []))
            rows.append((name, info["labels"], info["allocatable"], requested))
            empty.append((name, info["labels"], info["allocatable"], 0))
    return Inventory.from_nodes(rows), Inventory.from_nodes(empty)


def domain_usage(nodes: kopf.Index, pods: kopf.Index) -> dict[tuple[str, str], tuple[int, int]]:
    """(instance type, domain) -> (allocatable GPUs, requested GPUs), schedulable nodes only."""
    inv, _ = inventory(nodes, pods)
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for n in inv.nodes:
        alloc, used = out.get((n.instance_type, n.domain), (0, 0))
        out[(n.instance_type, n.domain)] = (alloc + n.allocatable_gpus, used + n.allocatable_gpus - n.free_gpus)
    return out
