"""rackfit as a Kueue AdmissionCheck controller: the decisions, pure (kueue.py does the I/O).

Kueue (kubernetes-sigs/kueue, site/content/en/docs/concepts/admission_check/_index.md,
site/content/en/docs/tasks/dev/develop-acc.md) runs an admission check's controller for each Workload
that carries the check once it has reserved quota: the controller sets the Workload's
`status.admissionChecks[<check>].state` to `Ready` (with `podSetUpdates`: labels, annotations, node
selectors, tolerations, applied to the pod templates when Kueue admits it), `Retry` (evicted and
queued again) or `Rejected` (deactivated), with a message. rackfit owns the checks whose
`spec.controllerName` is `rackfit.io/fit`:

- the Workload's owner (its controller ownerReference: a JobSet, Job or LeaderWorkerSet) is the
  `spec.target` of an LLMWorkload in its namespace; none yet: `Retry`;
- the instance type is the `node.kubernetes.io/instance-type` of the ResourceFlavor Kueue assigned;
  the LLMWorkload is planned on that type alone (`plan` with `instanceTypes` = it);
- nothing fits on it, or the plan needs more pods (nodes) than the Workload asks for: `Rejected`, with
  the estimate's message and what would fit;
- else `Ready`, each pod set labelled `rackfit.io/workload` and annotated with the plan's `RACKFIT_*`
  variables (`rackfit.io/kueue-plan`); no node selector, so nothing contradicts the rack Kueue's
  topology-aware scheduling chose.
"""

from __future__ import annotations

import json
from typing import Any

from rackfit.catalog import Catalog
from rackfit.names import (
    INSTANCE_TYPE_LABEL,
    KUEUE_CONTROLLER,
    KUEUE_PLAN_ANNOTATION,
    KUEUE_QUEUE_LABEL,
    WORKLOAD_LABEL,
)
from rackfit.operator.targets import plan_env
from rackfit.planner import plan
from rackfit.spec import LLMWorkloadSpec
from rackfit.units import count, fmt_bytes

READY, RETRY, REJECTED, PENDING = "Ready", "Retry", "Rejected", "Pending"
__all__ = ["KUEUE_CONTROLLER", "KUEUE_QUEUE_LABEL"]  # re-exported for reconcile.py


def is_kueues(target: dict[str, Any] | None) -> bool:
    """A target that names a Kueue LocalQueue: Kueue queues, admits and places it."""
    return bool(((target or {}).get("metadata") or {}).get("labels", {}).get(KUEUE_QUEUE_LABEL))


def pending(workload: dict[str, Any], checks: set[str]) -> list[str]:
    """Our checks on a Kueue Workload that wait for a verdict, once Kueue has reserved quota."""
    status = workload.get("status") or {}
    if not status.get("admission"):
        return []
    return [c["name"] for c in status.get("admissionChecks") or [] if c["name"] in checks and c.get("state") == PENDING]


def owner(workload: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object the Workload is Kueue's record of."""
    refs = (workload.get("metadata") or {}).get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    return (ref["kind"], ref["name"]) if ref else None


def assigned_flavors(workload: dict[str, Any]) -> list[str]:
    """The ResourceFlavors Kueue assigned, over all pod sets (in order, without repeats)."""
    out: list[str] = []
    for a in (workload.get("status") or {}).get("admission", {}).get("podSetAssignments") or []:
        for flavor in (a.get("flavors") or {}).values():
            if flavor not in out:
                out.append(flavor)
    return out


def pods_asked(workload: dict[str, Any]) -> int:
    """Pods of the Workload's pod sets that ask for GPUs (each pod a node of the plan)."""
    total = 0
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        containers = ((ps.get("template") or {}).get("spec") or {}).get("containers") or []
        if any(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu") or
               ((c.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu") for c in containers):
            total += ps.get("count", 1)
    return total


def verdict(name: str, spec: LLMWorkloadSpec | None, catalog: Catalog, workload: dict[str, Any],
            flavor_labels: dict[str, str] | None, hf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The check's new state for Kueue's Workload: {state, message, podSetUpdates?}."""
    if spec is None:
        return {"state": RETRY, "message": f"no LLMWorkload has spec.target {'/'.join(owner(workload) or ())} "
                                           f"in this namespace yet"}
    instance_type = (flavor_labels or {}).get(INSTANCE_TYPE_LABEL)
    if not instance_type:
        return {"state": REJECTED, "message": f"the assigned ResourceFlavor has no {INSTANCE_TYPE_LABEL} node label: "
                                              f"rackfit cannot tell the GPU"}
    if instance_type not in catalog.instance_types:
        return {"state": REJECTED, "message": f"instance type {instance_type} is not in rackfit's catalog"}
    on_it = spec.model_copy(update={"placement": spec.placement.model_copy(update={"instance_types": [instance_type]})})
    p = plan(on_it, catalog, hf_config=hf)
    best = p.chosen
    if best is None:
        why = "; ".join(r.reason for r in p.rejected) or "no layout fits"
        elsewhere = plan(spec, catalog, hf_config=hf).chosen
        hint = (f"; fits {elsewhere.placement.instance_type}: {count(elsewhere.placement.nodes, 'node')} x "
                f"{elsewhere.placement.gpus_per_node} GPUs" if elsewhere else "")
        return {"state": REJECTED, "message": f"{instance_type}: {why}{hint}"[:1024]}
    pl = best.placement
    asked = pods_asked(workload)
    if asked and asked < pl.nodes:
        return {"state": REJECTED, "message": (
            f"needs {pl.nodes} x {pl.gpus_per_node} GPUs of {instance_type} ({fmt_bytes(best.estimate.total_bytes)} "
            f"per GPU, tensor {pl.tensor} x pipeline {pl.pipeline} x data {pl.data}); the Workload asks for "
            f"{count(asked, 'pod')}")}
    env = plan_env(pl, best.estimate, spec)  # the engine's settings as estimated, as for pods rackfit places
    annotations = {KUEUE_PLAN_ANNOTATION: json.dumps(env, sort_keys=True)}
    updates = [{"name": ps["name"], "labels": {WORKLOAD_LABEL: name}, "annotations": annotations}
               for ps in (workload.get("spec") or {}).get("podSets") or []]
    return {"state": READY, "podSetUpdates": updates,
            "message": f"fits {instance_type}: {count(pl.nodes, 'node')} x {count(pl.gpus_per_node, 'GPU')}, "
                       f"{fmt_bytes(best.estimate.total_bytes)} per GPU"}


def with_state(workload: dict[str, Any], check: str, new: dict[str, Any], now: str) -> list[dict[str, Any]]:
    """The Workload's `status.admissionChecks` with `check` set to `new` (the whole list: a merge patch
    replaces it)."""
    out = []
    for c in (workload.get("status") or {}).get("admissionChecks") or []:
        if c["name"] == check:
            c = {k: v for k, v in c.items() if k not in ("podSetUpdates", "message", "state")}
            c |= {**new, "lastTransitionTime": now}
        out.append(c)
    return out


def kueue_pod_env(pod_spec: dict[str, Any], annotation: str) -> dict[str, Any]:
    """`containers` with the plan's variables (the `rackfit.io/kueue-plan` annotation Kueue copied from
    the check's podSetUpdates) on every container that does not set them; {} when none is missing."""
    env = json.loads(annotation)
    containers = [dict(c) for c in pod_spec.get("containers") or []]
    changed = False
    for c in containers:
        have = {e.get("name") for e in c.get("env") or []}
        missing = [{"name": k, "value": v} for k, v in env.items() if k not in have]
        if missing:
            c["env"] = [*(c.get("env") or []), *missing]
            changed = True
    return {"containers": containers} if changed else {}
