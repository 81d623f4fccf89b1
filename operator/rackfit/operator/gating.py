"""Pod gating: labelled pods are held by rackfit's scheduling gate until their workload is placed,
then pinned to its NVLink domain and let go; one that escaped the gate is deleted.

- `mutate_pod`, the `mutate-pod` webhook (failurePolicy Fail, objectSelector `rackfit.io/workload`
  exists): gates pods of workloads (those of a `spec.target` and those rackfit cannot patch through
  it: RayCluster...) until the operator has placed their LLMWorkload; a pod of a workload already
  placed is pinned to its domain and marked placed at once instead. Once placed, it also adds the
  instance-type selector, GPU limit, tolerations and the plan's `RACKFIT_*` variables (the variables
  reach the pods of Jobs and JobSets only this way). Pods without
  the label never reach the webhook, so an operator that is down blocks no other pod; a labelled
  pod is refused while no replica answers (its controller retries) rather than admitted ungated
  onto GPUs another workload holds (docs/placement.md).
- `ungate_pods` and `ungate_new_pod`: the operator pins each gated pod to the workload's domain and
  removes the gate in one update, marking it placed (`rackfit.io/placed-into`).
- the backstop (`ungate_new_pod`, `escaped`): a labelled pod bound without that mark, outside its
  workload's placement or while the workload is not placed, escaped the gate; it is deleted (its
  controller makes it again, gated) with an Event saying why.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import kopf

from rackfit.api.conditions import OUTSIDE_PLACEMENT
from rackfit.api.status import estimate_of, placement_of
from rackfit.errors import RackfitError
from rackfit.names import GATE, GPU, KUEUE_CLAIM_ANNOTATION, KUEUE_PLAN_ANNOTATION, PLACED_ANNOTATION, WORKLOAD_LABEL
from rackfit.operator import kube
from rackfit.operator.kueuecheck import kueue_pod_env
from rackfit.operator.targets import plan_env, pod_gpus
from rackfit.operator.targets.computedomain import channel_claim, pod_claim
from rackfit.planner import Placement
from rackfit.planner.inventory import NodeInfo
from rackfit.spec import parse_spec
from rackfit.units import count


async def gated_pods(namespace: str, name: str, labels: dict, meta: dict, spec: dict, **_: Any):
    """(namespace, workload) -> its pods still carrying rackfit's gate, with what ungating them needs (their
    controller, GPUs, node selector and gates), so that placing a workload reads no pod again."""
    if not any(g.get("name") == GATE for g in spec.get("schedulingGates") or []):
        return None
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    containers = [{"resources": c.get("resources") or {}} for c in spec.get("containers") or []]
    pod = {"metadata": {"name": name, "uid": meta.get("uid"), "ownerReferences": owners},
           "spec": {k: v for k, v in (("schedulingGates", spec.get("schedulingGates")), ("containers", containers),
                                      ("nodeSelector", spec.get("nodeSelector"))) if v}}
    return {(namespace, labels[WORKLOAD_LABEL]): pod}


async def unschedulable_pods(namespace: str, labels: dict, spec: dict, status: dict, **_: Any):
    """(namespace, workload) -> kube-scheduler's message for each of its pods it cannot place."""
    if spec.get("nodeName"):
        return None
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        return {(namespace, labels[WORKLOAD_LABEL]): cond.get("message") or "Unschedulable"}
    return None


async def plan_envs(namespace: str, name: str, spec: dict, status: dict, **_: Any):
    """(namespace, workload) -> the `RACKFIT_*` variables of its placement, for the pods it admits."""
    placement = placement_of(status)
    if placement is None:
        return None
    try:
        workload = parse_spec(dict(spec))
    except RackfitError:
        return None
    return {(namespace, name): plan_env(placement, estimate_of(status), workload)}


def pod_hints(pod_spec: dict, placement: Placement | None, env: dict[str, str] | None = None,
              tolerations: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Fields to set on a new pod: the gate; when placed, the instance-type selector, GPU limit,
    `tolerations` and the plan's variables (`env`, on every container that does not set them)."""
    out: dict[str, Any] = {}
    gates = list(pod_spec.get("schedulingGates") or [])
    if not any(g.get("name") == GATE for g in gates):
        out["schedulingGates"] = [*gates, {"name": GATE}]
    if placement:
        selector = {**(pod_spec.get("nodeSelector") or {}), "node.kubernetes.io/instance-type":
                    placement.instance_type}
        out["nodeSelector"] = selector
        containers = copy.deepcopy(pod_spec.get("containers") or [])
        if containers:
            limits = containers[0].setdefault("resources", {}).setdefault("limits", {})
            limits.setdefault(GPU, str(placement.gpus_per_node))
            for c in containers:
                have = {e.get("name") for e in c.get("env") or []}
                missing_env = [{"name": k, "value": v} for k, v in (env or {}).items() if k not in have]
                if missing_env:
                    c["env"] = [*(c.get("env") or []), *missing_env]
            out["containers"] = containers
        missing = [t for t in tolerations if t not in (pod_spec.get("tolerations") or [])]
        if missing:
            out["tolerations"] = [*(pod_spec.get("tolerations") or []), *missing]
    return out


def pinned(pod_spec: dict, hints: dict[str, Any], placement: Placement) -> dict[str, Any]:
    """`hints` for a pod pinned at once: the domain's selector too, and no gate of ours."""
    out = {**hints, "nodeSelector": {**hints["nodeSelector"], **placement.node_selector}}
    gates = list(pod_spec.get("schedulingGates") or [])
    kept = [g for g in gates if g.get("name") != GATE]
    if kept != gates:
        out["schedulingGates"] = kept
    else:
        out.pop("schedulingGates", None)
    return out


async def mutate_pod(spec: dict, meta: dict, labels: dict, namespace: str, patch: kopf.Patch,
                     placements: kopf.Index, plan_envs: kopf.Index, memo: kopf.Memo, annotations: dict | None = None,
                     **_: Any) -> None:
    # async: pure and quick, so it runs on the event loop instead of hopping to a worker thread
    started = time.perf_counter()
    try:
        _mutate(spec, meta, labels, namespace, patch, placements, plan_envs, memo, annotations)
    finally:
        memo.ctx.metrics.webhook_duration.observe(time.perf_counter() - started)


def _mutate(spec: dict, meta: dict, labels: dict, namespace: str, patch: kopf.Patch, placements: kopf.Index,
            plan_envs: kopf.Index, memo: kopf.Memo, annotations: dict | None) -> None:
    if KUEUE_PLAN_ANNOTATION in (annotations or {}):  # Kueue's pod: the plan's variables only, never a gate
        hints = kueue_pod_env(dict(spec), annotations[KUEUE_PLAN_ANNOTATION])
        if memo.ctx.compute_domains and KUEUE_CLAIM_ANNOTATION in annotations:  # the clique's ComputeDomain
            hints |= pod_claim({**spec, **hints}, json.loads(annotations[KUEUE_CLAIM_ANNOTATION]))
        for key, value in hints.items():
            patch.spec[key] = value
        return
    owner = (namespace, labels[WORKLOAD_LABEL])
    placement = next(iter(placements.get(owner, [])), None)
    env = next(iter(plan_envs.get(owner, [])), None)
    tolerations = memo.ctx.config.tolerations
    hints = pod_hints(dict(spec), placement, env, tolerations)
    # a pod of a workload already placed is pinned to its domain now, as `ungate_patch` would right after
    # (one update and one scheduling round less per pod), unless it is stale: that one stays gated
    pin = placement is not None and not _stale_pod({"metadata": meta, "spec": {**spec, **hints}}, placement)
    if pin:
        hints = pinned(spec, hints, placement)
        patch.metadata.annotations[PLACED_ANNOTATION] = placement.where
    if memo.ctx.compute_domains:  # the ComputeDomain's channel (a Job's or JobSet's pods get it only here)
        hints |= pod_claim({**spec, **hints}, channel_claim(owner[1], placement))
    for key, value in hints.items():
        patch.spec[key] = value


# controllers whose pod templates rackfit edits (Deployments' ReplicaSets; StatefulSets, also a
# LeaderWorkerSet's): their pods made before the template was pinned are not the placement's
_TEMPLATED = frozenset({"ReplicaSet", "StatefulSet"})


def _controller(pod: dict) -> str | None:
    return next((o.get("kind") for o in (pod.get("metadata") or {}).get("ownerReferences") or []
                 if o.get("controller")), None)


def stale(pod_spec: dict, placement: Placement, templated: bool = False) -> bool:
    """Not a pod of the placement, so it must not run: made before its workload was placed, without
    the placement's GPUs (a pod's resources cannot change). A `templated` pod (of a template rackfit
    pins) must have exactly the placement's GPUs and its node selector, or it is one its controller
    replaces in the rollout of the patched template: run, it would hold GPUs the new pods wait for."""
    gpus = pod_gpus(pod_spec)
    if not templated:
        return gpus < placement.gpus_per_node
    selector = pod_spec.get("nodeSelector") or {}
    return gpus != placement.gpus_per_node or any(selector.get(k) != v for k, v in placement.node_selector.items())


def _stale_pod(pod: dict, placement: Placement) -> bool:
    """`stale` for a pod (its spec, and whether its controller's template is one rackfit pins)."""
    return stale(pod.get("spec") or {}, placement, _controller(pod) in _TEMPLATED)


def ungate_patch(pod: dict, placement: Placement) -> dict[str, Any] | None:
    """Pin a gated pod to the workload's domain, remove rackfit's gate and mark it placed, in one
    update (adding to nodeSelector is allowed while a pod is gated; pod affinity is not). None for a
    pod without the gate or a stale one."""
    spec = pod.get("spec") or {}
    gates = spec.get("schedulingGates") or []
    if not any(g.get("name") == GATE for g in gates) or _stale_pod(pod, placement):
        return None
    # strategic merge: selectors merge as a map; gates merge by name, so ours is deleted by directive
    return {"metadata": {"annotations": {PLACED_ANNOTATION: placement.where}},
            "spec": {"nodeSelector": dict(placement.node_selector),
                     "schedulingGates": [{"$patch": "delete", "name": GATE}]}}


def escaped(pod: dict, placement: Placement | None, node: NodeInfo | None) -> str | None:
    """Why a labelled pod holds GPUs outside its workload's placement, having escaped the gate (made
    while no webhook was in effect, or ungated by hand); None for a pod rackfit placed, one not bound,
    finished or going, one without GPUs, and one that runs inside the placement as it should."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    where = spec.get("nodeName")
    if (not where or meta.get("deletionTimestamp") or PLACED_ANNOTATION in (meta.get("annotations") or {})
            or KUEUE_PLAN_ANNOTATION in (meta.get("annotations") or {})  # Kueue placed it
            or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or not pod_gpus(spec)):
        return None
    workload = (meta.get("labels") or {}).get(WORKLOAD_LABEL)
    if placement is None:
        return f"bound to {where} while LLMWorkload {workload} is not placed"
    domain = placement.domain
    if node is None or node.instance_type != placement.instance_type or (domain and node.domain != domain):
        return f"bound to {where}, outside the placement of LLMWorkload {workload} ({placement.where})"
    if _stale_pod(pod, placement):
        return (f"bound to {where} with {pod_gpus(spec)} GPUs where LLMWorkload {workload}'s placement books "
                f"{placement.gpus_per_node} per pod: its replacement from the pinned template needs them")
    return None


def ungate_pods(namespace: str, workload: str, placement: Placement, gated: kopf.Index, logger,
                ungated: set[str] | None = None) -> int:
    """Ungate every gated pod of a placed workload (stale ones excepted, and those in `ungated`: let go
    already, the index not caught up yet; each uid let go is added, and one the index no longer shows
    gated is dropped). Returns how many."""
    pods = list(gated.get((namespace, workload), []))
    ungated = set() if ungated is None else ungated
    ungated.intersection_update(p["metadata"].get("uid") for p in pods)
    done = 0
    for pod in pods:
        pod_name, uid = pod["metadata"]["name"], pod["metadata"].get("uid")
        if uid in ungated:
            continue
        if _stale_pod(pod, placement):
            # a StatefulSet's rolling update waits on it, so it goes (this pod, not one made again under
            # its name); a ReplicaSet's goes with the Deployment's rollout of the patched template;
            # others (no controller) stay gated
            if _controller(pod) == "StatefulSet":
                kube.delete_pod(namespace, pod_name, uid)
                logger.info(f"deleted {pod_name}: made before the placement, without its GPUs")
            continue
        patch = ungate_patch(pod, placement)
        if patch and kube.patch_pod(namespace, pod_name, patch):
            done += 1
            if uid:
                ungated.add(uid)
    if done:
        logger.info(f"ungated {count(done, 'pod')} of {workload} into {placement.where}")
    return done


async def ungate_new_pod(type: str, body: dict, labels: dict, namespace: str, name: str, uid: str,
                         placements: kopf.Index, memo: kopf.Memo, logger, **_: Any) -> None:
    """A pod created after its workload was placed is ungated at once; one that escaped the gate is
    deleted. An event handler, not a create handler: kopf then stores no progress annotations on every
    labelled pod, and it sees every pod again in the listing after a restart."""
    if type == "DELETED":
        return
    placement = next(iter(placements.get((namespace, labels[WORKLOAD_LABEL]), [])), None)
    why = escaped(body, placement, memo.ctx.ledger.node(body.get("spec", {}).get("nodeName") or ""))
    # without the webhooks nothing gates the pod its controller makes again: deleting it would only
    # churn (a pod made, bound and deleted every few hundred milliseconds until the template is pinned)
    if why and memo.ctx.config.webhooks != "off":
        # the uid as precondition: a StatefulSet's pod made again under the same name is never taken
        await asyncio.to_thread(kube.delete_pod, namespace, name, uid)
        message = f"deleted: {why}; its controller makes it again, gated until it is placed"
        kopf.warn(dict(body), reason=OUTSIDE_PLACEMENT, message=message)
        logger.warning(f"pod {name} {message}")
        return
    patch = ungate_patch(body, placement) if placement else None
    if patch:
        await asyncio.to_thread(kube.patch_pod, namespace, name, patch)  # the client is blocking
