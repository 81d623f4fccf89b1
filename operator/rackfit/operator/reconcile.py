"""One reconcile of an LLMWorkload, as a pure function: spec, fleet and target in; the new status,
the patch for the target and the Event out. The kopf handlers (workloads.py) do the I/O around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rackfit.api import conditions as c
from rackfit.api.status import LLMWorkloadStatus, estimate_view, placement_view
from rackfit.api.v1alpha1 import LLMWorkloadSpec
from rackfit.catalog import Catalog
from rackfit.planner import Inventory, Plan, plan
from rackfit.operator import targets
from rackfit.units import fmt_bytes


@dataclass
class Decision:
    status: dict[str, Any]
    target_patch: dict[str, Any] | None = None
    unsuspend: bool = False
    event: tuple[str, str, str] | None = None  # (type Normal|Warning, reason, message)
    metrics: dict[str, float] = field(default_factory=dict)


def _keep(old: dict[str, Any], generation: int, allocatable: Inventory) -> bool:
    """A placed workload keeps its placement while its spec is unchanged and its domain still holds
    it (capacity counted without anyone's pods, since its own pods sit there)."""
    placement = old.get("placement")
    if not placement or old.get("observedGeneration") != generation:
        return False
    if not placement.get("nvlinkDomain"):
        return allocatable.free_nodes(placement["instanceType"], placement["gpusPerNode"]) >= placement["nodes"]
    label, value = placement["nvlinkDomain"].split("=", 1)
    members = allocatable.domains(placement["instanceType"]).get((label, value), [])
    return sum(1 for n in members if n.allocatable_gpus >= placement["gpusPerNode"]) >= placement["nodes"]


def invalid(message: str, generation: int, old: dict[str, Any]) -> Decision:
    conds = old.get("conditions") or []
    conds = c.set_condition(conds, c.ESTIMATED, False, c.INVALID_SPEC, message, generation)
    conds = c.set_condition(conds, c.FITS, "Unknown", c.INVALID_SPEC, "the spec is invalid", generation)
    conds = c.set_condition(conds, c.PLACED, False, c.INVALID_SPEC, "the spec is invalid", generation)
    status = {"observedGeneration": generation, "estimate": None, "memoryPerGPU": None, "placement": None,
              "alternatives": [], "conditions": conds}
    return Decision(status=status, event=("Warning", c.INVALID_SPEC, message),
                    metrics={"fits": 0, "placed": 0, "oversubscribed": 0})


def decide(name: str, spec: LLMWorkloadSpec, generation: int, old: dict[str, Any], catalog: Catalog,
           free: Inventory, allocatable: Inventory, target: dict[str, Any] | None,
           domain_usage: dict[tuple[str, str], tuple[int, int]], tolerations: list[dict[str, Any]],
           hf_config: dict[str, Any] | None = None, gated_pods: int = 0) -> Decision:
    anywhere: Plan = plan(spec, catalog, hf_config=hf_config)
    conds = list(old.get("conditions") or [])
    best = anywhere.chosen
    if best is None:
        reasons = "; ".join(f"{r.instance_type}: {r.reason}" for r in anywhere.rejected)
        conds = c.set_condition(conds, c.ESTIMATED, True, c.ESTIMATE_READY, "estimated", generation)
        conds = c.set_condition(conds, c.FITS, False, c.NO_FEASIBLE_INSTANCE_TYPE, reasons, generation)
        conds = c.set_condition(conds, c.PLACED, False, c.NO_FEASIBLE_INSTANCE_TYPE, "nothing to place", generation)
        status = {"observedGeneration": generation, "estimate": None, "memoryPerGPU": None, "placement": None,
                  "alternatives": [], "conditions": conds}
        return Decision(status=status, event=("Warning", c.NO_FEASIBLE_INSTANCE_TYPE, reasons[:1024]),
                        metrics={"fits": 0, "placed": 0, "oversubscribed": 0})

    kept = _keep(old, generation, allocatable)
    if kept:
        placement, estimate, alternatives = old["placement"], old["estimate"], old.get("alternatives") or []
    else:
        prefer = (old.get("placement") or {}).get("nvlinkDomain")
        here = plan(spec, catalog, free, hf_config=hf_config, prefer_domain=prefer.split("=", 1)[1] if prefer else None)
        chosen = here.chosen
        placement = placement_view(chosen.placement) if chosen else None
        estimate = estimate_view((chosen or best).estimate)
        alternatives = [{"placement": placement_view(o.placement), "totalBytes": o.estimate.total_bytes}
                        for o in (here.alternatives if chosen else anywhere.alternatives)]
    total = estimate["totalBytes"]
    b = best.placement
    conds = c.set_condition(conds, c.ESTIMATED, True, c.ESTIMATE_READY,
                            f"{fmt_bytes(total)} per GPU at the {estimate['peakPhase']} peak", generation)
    conds = c.set_condition(conds, c.FITS, True, c.FITS_INSTANCE_TYPE,
                            f"fits {b.instance_type}: {b.nodes} node(s) x {b.gpus_per_node} GPUs", generation)
    decision = Decision(status={})
    if placement is None:
        gated = f"; {gated_pods} pod(s) stay gated (SchedulingGated) until capacity appears" if gated_pods else ""
        conds = c.set_condition(conds, c.PLACED, False, c.WAITING_FOR_CAPACITY,
                                "no NVLink domain of an allowed instance type has enough free GPUs" + gated,
                                generation)
    else:
        conds = _place_target(decision, conds, name, spec, placement, target, tolerations, generation)
    conds = _oversubscription(conds, placement, total, target, domain_usage, generation)
    placed = c.condition(conds, c.PLACED)["status"] == "True"
    if placement and not kept and placed:
        decision.event = ("Normal", "Placed", f"{placement['instanceType']}: {placement['nodes']} node(s) x "
                          f"{placement['gpusPerNode']} GPUs" + (f" in {placement['nvlinkDomain']}"
                                                                  if placement.get("nvlinkDomain") else ""))
    status = {"observedGeneration": generation, "estimate": estimate, "memoryPerGPU": fmt_bytes(total),
              "placement": placement, "alternatives": alternatives, "conditions": conds}
    LLMWorkloadStatus.model_validate(status)  # what we write is what the CRD schema describes
    over = c.condition(conds, c.OVERSUBSCRIBED)["status"] == "True"
    capacity = placement["gpuMemoryBytes"] if placement else b.gpu_memory_bytes
    decision.status = status
    decision.metrics = {"required": total, "capacity": capacity, "fits": 1, "placed": int(placed),
                        "oversubscribed": int(over)}
    return decision


def _place_target(decision: Decision, conds: list, name: str, spec: LLMWorkloadSpec, placement: dict,
                  target: dict | None, tolerations: list, generation: int) -> list:
    if spec.target is None:
        return c.set_condition(conds, c.PLACED, True, c.CAPACITY_FOUND,
                               "capacity found; no spec.target to patch: use status.placement.nodeSelector",
                               generation)
    ref = f"{spec.target.kind}/{spec.target.name}"
    if target is None:
        return c.set_condition(conds, c.PLACED, False, c.TARGET_NOT_FOUND, f"{ref} not found", generation)
    is_job = spec.target.kind == "Job"
    patch = targets.place_patch(target, name, placement["nodeSelector"], placement["gpusPerNode"], tolerations,
                                set_limits=not is_job)
    if is_job and patch is not None and not target.get("spec", {}).get("suspend"):
        return c.set_condition(conds, c.PLACED, False, "TargetNotSuspended",
                               f"{ref} already runs; create Jobs with suspend: true so rackfit can place them",
                               generation)
    decision.target_patch = patch
    decision.unsuspend = is_job and bool(target.get("spec", {}).get("suspend"))
    return c.set_condition(conds, c.PLACED, True, c.TARGET_PATCHED,
                           f"{ref} pinned to {', '.join(f'{k}={v}' for k, v in placement['nodeSelector'].items())}",
                           generation)


def _oversubscription(conds: list, placement: dict | None, total: int, target: dict | None,
                      domain_usage: dict, generation: int) -> list:
    if placement and target is not None:
        # rackfit sets the GPU limit of Deployments and StatefulSets; a Job keeps its own
        per_pod = None if target.get("kind") == "Job" else placement["gpusPerNode"]
        asked = targets.requested_gpus(target, per_pod)
        if asked < placement["totalGPUs"]:
            return c.set_condition(conds, c.OVERSUBSCRIBED, True, c.TARGET_UNDERSIZED,
                                   f"the target asks for {asked} GPUs; the estimate needs {placement['totalGPUs']} "
                                   f"({fmt_bytes(total)} each)", generation)
    if placement and placement.get("nvlinkDomain"):
        domain = placement["nvlinkDomain"].split("=", 1)[1]
        alloc, used = domain_usage.get((placement["instanceType"], domain), (0, 0))
        if used > alloc:
            return c.set_condition(conds, c.OVERSUBSCRIBED, True, c.DOMAIN_OVERCOMMITTED,
                                   f"pods ask for {used} GPUs in {domain}, which has {alloc}", generation)
    return c.set_condition(conds, c.OVERSUBSCRIBED, False, c.WITHIN_CAPACITY, "within capacity", generation)
