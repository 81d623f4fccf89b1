"""The live GPU fleet: the operator's ledger (`memo.ctx.ledger`) fed from the Node, Pod and LLMWorkload
watches.

Index functions feed it (kopf runs them for every object of the initial listing before any
reconcile, so the first decision after a start or a takeover already sees every node, pod and held
placement); event handlers take out what was deleted (kopf calls no index function for that). Each
update is O(1); the functions return None, so kopf's own indexes hold nothing per object.

Cordoned and NotReady nodes hold no free capacity; bound, unfinished pods count on their node
whoever owns them; an LLMWorkload's placement holds its GPUs from the moment it is decided
(`workloads.py` reserves it) until the workload is deleted or moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from rackfit.names import GPU, WORKLOAD_LABEL
from rackfit.operator.context import OperatorContext
from rackfit.operator.reconcile import reservation_of
from rackfit.operator.targets import pod_gpus
from rackfit.planner.inventory import NodeInfo, PodUse


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def node_info(name: str, labels: Mapping[str, str], spec: Mapping[str, Any], status: Mapping[str, Any]
              ) -> NodeInfo | None:
    allocatable = int((status.get("allocatable") or {}).get(GPU, 0) or 0)
    return NodeInfo.from_labels(name, dict(labels), allocatable,
                                schedulable=not spec.get("unschedulable") and _ready(status))


def pod_use(labels: Mapping[str, str], spec: Mapping[str, Any], status: Mapping[str, Any], namespace: str
            ) -> PodUse | None:
    node = spec.get("nodeName")
    if not node or status.get("phase") in ("Succeeded", "Failed"):
        return None
    gpus = pod_gpus(spec)
    if not gpus:
        return None
    workload = labels.get(WORKLOAD_LABEL)
    return PodUse(node=node, gpus=gpus, owner=(namespace, workload) if workload else None)


def _observe_node(ctx: OperatorContext, name: str, info: NodeInfo | None) -> None:
    if ctx.ledger.set_node(name, info):
        ctx.fleet_version += 1


# Index functions are async (they only read the body): kopf then runs them on its event loop
# instead of handing each watch event to a worker thread. Registered by handlers.register().
async def gpu_nodes(name: str, labels: Mapping[str, str], spec: Mapping[str, Any], status: Mapping[str, Any],
                    memo: kopf.Memo, **_: Any) -> None:
    _observe_node(memo.ctx, name, node_info(name, labels, spec, status))


async def node_gone(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        _observe_node(memo.ctx, name, None)


async def gpu_pods(uid: str, namespace: str, labels: Mapping[str, str], spec: Mapping[str, Any],
                   status: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.ctx.ledger.set_pod(uid, pod_use(labels, spec, status, namespace))


async def pod_gone(type: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":  # deleted, or finished (out of the watch's field selector)
        memo.ctx.ledger.set_pod(uid, None)


async def placements(namespace: str, name: str, meta: Mapping[str, Any], status: Mapping[str, Any],
                     memo: kopf.Memo, **_: Any):
    """(namespace, workload) -> its placement, once it has one. Also rebuilds the ledger's
    reservations from status after a restart or a takeover. A workload being deleted holds nothing:
    its delete handler released it, and a later event of it (kopf's own patches) must not book again."""
    if meta.get("deletionTimestamp"):
        return None
    placement = status.get("placement")
    if placement:
        memo.ctx.ledger.reserve((namespace, name), reservation_of(placement))
        return {(namespace, name): dict(placement)}
    return None
