"""Admission webhooks, served by the operator through kopf:

- `validate-llmworkload` (failurePolicy Fail): refuses what cannot fit, with what would, and warns
  on near misses. Only LLMWorkloads go through it, so an operator that is down blocks nothing else.
- `mutate-pod` (failurePolicy Ignore, objectSelector `rackfit.io/workload` exists): gates pods of
  workloads (those of a `spec.target` and those rackfit cannot patch through it: RayCluster...),
  and adds the instance-type selector, GPU limit, tolerations and the plan's `RACKFIT_*` variables
  once the workload is placed (the variables reach the pods of Jobs and JobSets only this way). The
  operator pins each gated pod to the workload's NVLink domain and then removes the gate
  (`ungate_pods`). Pods without the label never reach the webhook.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from rackfit.errors import RackfitError
from rackfit.names import GATE, GPU, GROUP, PLURAL, VERSION, WORKLOAD_LABEL
from rackfit.operator import kube
from rackfit.operator.fleet import pod_gpus
from rackfit.operator.startup import CONFIG, catalog
from rackfit.operator.targets import plan_env
from rackfit.planner import admission
from rackfit.spec import parse_spec
from rackfit.units import count


@kopf.index("pods", labels={WORKLOAD_LABEL: kopf.PRESENT})
async def gated_pods(namespace: str, name: str, labels: dict, spec: dict, **_: Any):
    """(namespace, workload) -> names of its pods still carrying rackfit's gate."""
    if any(g.get("name") == GATE for g in spec.get("schedulingGates") or []):
        return {(namespace, labels[WORKLOAD_LABEL]): name}
    return None


@kopf.index("pods", labels={WORKLOAD_LABEL: kopf.PRESENT})
async def unschedulable_pods(namespace: str, labels: dict, spec: dict, status: dict, **_: Any):
    """(namespace, workload) -> kube-scheduler's message for each of its pods it cannot place."""
    if spec.get("nodeName"):
        return None
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        return {(namespace, labels[WORKLOAD_LABEL]): cond.get("message") or "Unschedulable"}
    return None


def validate_workload(spec: dict, namespace: str, warnings: list[str], **_: Any) -> None:
    doc = dict(spec)
    hf = None
    try:
        ref = (doc.get("model") or {}).get("huggingFaceConfig")
        if ref:
            hf = kube.read_hf_config(namespace, ref)
            if hf is None:  # applied together with its ConfigMap, it may come first: the operator waits
                warnings.append(f"ConfigMap {namespace}/{ref} with key config.json not found yet: the model is "
                                "checked once it exists")
                return
        warnings.extend(admission.check(doc, catalog(), hf))
    except RackfitError as e:
        raise kopf.AdmissionError(str(e), code=422) from None


@kopf.index(GROUP, VERSION, PLURAL)
async def plan_envs(namespace: str, name: str, spec: dict, status: dict, **_: Any):
    """(namespace, workload) -> the `RACKFIT_*` variables of its placement, for the pods it admits."""
    placement = status.get("placement")
    if not placement:
        return None
    try:
        workload = parse_spec(dict(spec))
    except RackfitError:
        return None
    return {(namespace, name): plan_env(placement, status.get("estimate"), workload)}


def pod_hints(pod_spec: dict, placement: dict | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Fields to set on a new pod: the gate always; selector, GPU limit, tolerations and the plan's
    variables (`env`, on every container that does not set them) when placed."""
    out: dict[str, Any] = {}
    gates = list(pod_spec.get("schedulingGates") or [])
    if not any(g.get("name") == GATE for g in gates):
        out["schedulingGates"] = [*gates, {"name": GATE}]
    if placement:
        selector = {**(pod_spec.get("nodeSelector") or {}), "node.kubernetes.io/instance-type":
                    placement["instanceType"]}
        out["nodeSelector"] = selector
        containers = copy.deepcopy(pod_spec.get("containers") or [])
        if containers:
            limits = containers[0].setdefault("resources", {}).setdefault("limits", {})
            limits.setdefault(GPU, str(placement["gpusPerNode"]))
            for c in containers:
                have = {e.get("name") for e in c.get("env") or []}
                missing_env = [{"name": k, "value": v} for k, v in (env or {}).items() if k not in have]
                if missing_env:
                    c["env"] = [*(c.get("env") or []), *missing_env]
            out["containers"] = containers
        missing = [t for t in CONFIG.tolerations if t not in (pod_spec.get("tolerations") or [])]
        if missing:
            out["tolerations"] = [*(pod_spec.get("tolerations") or []), *missing]
    return out


async def mutate_pod(spec: dict, labels: dict, namespace: str, patch: kopf.Patch, placements: kopf.Index,
                     plan_envs: kopf.Index, **_: Any) -> None:
    # async: pure and quick, so it runs on the event loop instead of hopping to a worker thread
    owner = (namespace, labels[WORKLOAD_LABEL])
    placement = next(iter(placements.get(owner, [])), None)
    env = next(iter(plan_envs.get(owner, [])), None)
    for key, value in pod_hints(dict(spec), placement, env).items():
        patch.spec[key] = value


# kopf refuses to start with admission handlers but no server: register them only when served
if CONFIG.webhooks != "off":
    kopf.on.validate(GROUP, VERSION, PLURAL, id="validate-llmworkload",
                     operations=["CREATE", "UPDATE"])(validate_workload)
    kopf.on.mutate("pods", id="mutate-pod", operations=["CREATE"], labels={WORKLOAD_LABEL: kopf.PRESENT},
                   ignore_failures=True)(mutate_pod)


def stale(pod_spec: dict, placement: dict) -> bool:
    """Made before its workload was placed, so without the GPUs of the placement (a pod's resources
    cannot change): it must not run, and its controller makes it again from the patched template."""
    return pod_gpus(pod_spec) < placement["gpusPerNode"]


def ungate_patch(pod_spec: dict, placement: dict) -> dict[str, Any] | None:
    """Pin a gated pod to the workload's domain and remove rackfit's gate, in one update (adding to
    nodeSelector is allowed while a pod is gated; pod affinity is not). None for a pod without the
    gate or a stale one."""
    gates = pod_spec.get("schedulingGates") or []
    if not any(g.get("name") == GATE for g in gates) or stale(pod_spec, placement):
        return None
    # strategic merge: selectors merge as a map; gates merge by name, so ours is deleted by directive
    return {"spec": {"nodeSelector": dict(placement["nodeSelector"]),
                     "schedulingGates": [{"$patch": "delete", "name": GATE}]}}


def ungate_pods(namespace: str, workload: str, placement: dict, gated: kopf.Index, logger) -> int:
    """Ungate every gated pod of a placed workload (stale ones excepted). Returns how many."""
    done = 0
    for pod_name in list(gated.get((namespace, workload), [])):
        pod = kube.get_pod(namespace, pod_name)
        if not pod:
            continue
        spec = pod.get("spec", {})
        if stale(spec, placement):
            # a StatefulSet's rolling update waits on it, so it goes; a ReplicaSet's goes with the
            # Deployment's rollout of the patched template; others (no controller) stay gated
            owners = {o.get("kind") for o in pod["metadata"].get("ownerReferences") or []}
            if "StatefulSet" in owners:
                kube.delete_pod(namespace, pod_name)
                logger.info(f"deleted {pod_name}: made before the placement, without its GPUs")
            continue
        patch = ungate_patch(spec, placement)
        if patch:
            kube.patch_pod(namespace, pod_name, patch)
            done += 1
    if done:
        into = placement.get("nvlinkDomain") or "its instance type"
        logger.info(f"ungated {count(done, 'pod')} of {workload} into {into}")
    return done


@kopf.on.event("pods", labels={WORKLOAD_LABEL: kopf.PRESENT})
async def ungate_new_pod(type: str, spec: dict, labels: dict, namespace: str, name: str, placements: kopf.Index,
                         **_: Any) -> None:
    """A pod created after its workload was placed is ungated at once. An event handler, not a
    create handler: kopf then stores no progress annotations on every labelled pod."""
    if type == "DELETED":
        return
    placement = next(iter(placements.get((namespace, labels[WORKLOAD_LABEL]), [])), None)
    patch = ungate_patch(dict(spec), placement) if placement else None
    if patch:
        await asyncio.to_thread(kube.patch_pod, namespace, name, patch)  # the client is blocking
