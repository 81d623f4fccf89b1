"""The live GPU fleet: the operator's ledger (`memo.ctx.ledger`) fed from the Node and Pod informers
(informer.py: a plain list-and-watch, listed before kopf starts, so the first decision after a start
or a takeover already sees every node and pod) and kopf's LLMWorkload index (held placements,
rebuilt from status). Each update is O(1).

Cordoned and NotReady nodes hold no free capacity; bound, unfinished pods count on their node
whoever owns them; an LLMWorkload's placement holds its GPUs from the moment it is decided
(`workloads.py` reserves it) until the workload is deleted or moved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf

from rackfit.api.status import placement_of
from rackfit.names import ACTIVE_POD_FIELD_SELECTOR, GPU, WORKLOAD_LABEL
from rackfit.operator.context import OperatorContext
from rackfit.operator.informer import Informer
from rackfit.operator.reconcile import reservation_of
from rackfit.operator.targets import pod_gpus
from rackfit.planner.inventory import NodeInfo, PodUse

log = logging.getLogger(__name__)


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


def observe_node(ctx: OperatorContext, name: str, node: Mapping[str, Any] | None) -> None:
    """A node listed, changed or (None) gone."""
    info = None if node is None else node_info(name, (node.get("metadata") or {}).get("labels") or {},
                                               node.get("spec") or {}, node.get("status") or {})
    _observe_node(ctx, name, info)


def observe_pod(ctx: OperatorContext, uid: str, pod: Mapping[str, Any] | None) -> None:
    """A pod listed, changed or (None) gone: deleted, or finished (out of the watch's field selector)."""
    meta = (pod or {}).get("metadata") or {}
    use = None if pod is None else pod_use(meta.get("labels") or {}, pod.get("spec") or {}, pod.get("status") or {},
                                           meta.get("namespace", ""))
    ctx.ledger.set_pod(uid, use)


def start_informers(ctx: OperatorContext, stop: threading.Event) -> None:
    """List GPU nodes and unfinished pods into the ledger (blocking: before any decision), then keep
    watching them in two threads."""
    nodes = Informer("nodes", lambda key, obj: observe_node(ctx, key, obj), lambda o: o["metadata"]["name"],
                     label_selector=ctx.config.node_selector)
    pods = Informer("pods", lambda key, obj: observe_pod(ctx, key, obj), lambda o: o["metadata"]["uid"],
                    field_selector=ACTIVE_POD_FIELD_SELECTOR)
    for informer in (nodes, pods):
        started = time.monotonic()
        count = informer.relist()
        log.info(f"listed {count} {informer.kind} in {time.monotonic() - started:.1f}s")
        informer.start(stop)


async def placements(namespace: str, name: str, meta: Mapping[str, Any], status: Mapping[str, Any],
                     memo: kopf.Memo, **_: Any):
    """(namespace, workload) -> its placement, once it has one. Also rebuilds the ledger's
    reservations from status after a restart or a takeover. A workload being deleted holds nothing:
    its delete handler released it, and a later event of it (kopf's own patches) must not book again."""
    if meta.get("deletionTimestamp"):
        return None
    placement = placement_of(status)
    if placement is None:
        return None
    memo.ctx.ledger.reserve((namespace, name), reservation_of(placement))
    return {(namespace, name): placement}
