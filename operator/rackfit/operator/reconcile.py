"""One reconcile of an LLMWorkload, as a pure function: spec, fleet and target in; the new status,
the patch for the target and the Event out. The kopf handlers (workloads.py) do the I/O around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rackfit.api import conditions as c
from rackfit.api.status import estimate_of, placement_of, status_view
from rackfit.catalog import Catalog
from rackfit.estimator import Estimate
from rackfit.operator import kueuecheck, targets
from rackfit.operator.targets.computedomain import channel_claim
from rackfit.planner import Placement, Plan, place, plan
from rackfit.planner.inventory import InventoryView, PodUse, Reservation
from rackfit.spec import LLMWorkloadSpec
from rackfit.units import count, fmt_bytes


@dataclass(frozen=True)
class Inputs:
    """Everything one reconcile reads: the workload, the fleet as it sees it, its target."""

    name: str
    spec: LLMWorkloadSpec
    generation: int
    old: dict[str, Any]                  # the status as it is
    catalog: Catalog
    fleet: InventoryView                 # the ledger, its own holdings discounted
    held: Reservation | None = None      # what the ledger holds for it (the truth; status may lag)
    target: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    hf_config: dict[str, Any] | None = None
    gated_pods: int = 0
    unschedulable: list[str] = field(default_factory=list)  # the scheduler's message for each Pending pod
    now: str | None = None               # RFC 3339, for condition transition times
    anywhere: Plan | None = None         # plan(spec, catalog) without the fleet, made before the ledger's lock
    compute_domains: bool = False        # pods of placements across NVL72 nodes claim a ComputeDomain's channel
    kueue: bool = False                  # targets with kueue.x-k8s.io/queue-name are Kueue's (kueuecheck.py)
    kueue_workload: dict[str, Any] | None = None  # Kueue's Workload of such a target, once Kueue made it
    kueue_tas: bool = True               # a Kueue Topology has a level on the clique label (kueue.clique_tas)


@dataclass
class Decision:
    status: dict[str, Any]
    placement: Placement | None = None         # status.placement, typed
    target_patch: dict[str, Any] | None = None
    repatch: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None  # the same patch for the target read again
    unsuspend: bool = False
    event: tuple[str, str, str] | None = None  # (type Normal|Warning, reason, message)
    metrics: dict[str, float] = field(default_factory=dict)
    reservation: Reservation | None = None     # what the workload holds in the ledger from now on
    waits_for: frozenset[str] | None = None    # instance types it queues for (None: it does not wait)


def reservation_of(placement: Placement | None) -> Reservation | None:
    """The GPUs a placement holds: its pods in its NVLink domain."""
    if placement is None:
        return None
    return Reservation(instance_type=placement.instance_type, domain=placement.domain, pods=placement.nodes,
                       gpus_per_pod=placement.gpus_per_node)


def conditions_at(generation: int, now: str | None) -> Callable[..., list]:
    """`set_condition` for one reconcile: its generation, and its time (the caller reads the clock)."""
    return lambda conds, *args: c.set_condition(conds, *args, generation, at=now)


def invalid(message: str, generation: int, old: dict[str, Any], reason: str = c.INVALID_SPEC,
            now: str | None = None) -> Decision:
    """Nothing to estimate: the spec is invalid, or (`CONFIG_MAP_NOT_FOUND`) its model's config.json is
    not there yet, which the operator retries."""
    why = "the spec is invalid" if reason == c.INVALID_SPEC else "the model's config.json is missing"
    put = conditions_at(generation, now)
    conds = old.get("conditions") or []
    conds = put(conds, c.ESTIMATED, False, reason, message)
    conds = put(conds, c.FITS, "Unknown", reason, why)
    conds = put(conds, c.PLACED, False, reason, why)
    return Decision(status=status_view(observedGeneration=generation, conditions=conds),
                    event=("Warning", reason, message),
                    metrics={"fits": 0, "placed": 0, "oversubscribed": 0})


def decide(i: Inputs) -> Decision:
    spec, generation, old = i.spec, i.generation, i.old
    put = conditions_at(generation, i.now)
    anywhere: Plan = i.anywhere or plan(spec, i.catalog, hf_config=i.hf_config)
    conds = list(old.get("conditions") or [])
    best = anywhere.chosen
    if best is None:
        reasons = "; ".join(f"{r.instance_type}: {r.reason}" for r in anywhere.rejected)
        conds = put(conds, c.ESTIMATED, True, c.ESTIMATE_READY, "estimated")
        conds = put(conds, c.FITS, False, c.NO_FEASIBLE_INSTANCE_TYPE, reasons)
        conds = put(conds, c.PLACED, False, c.NO_FEASIBLE_INSTANCE_TYPE, "nothing to place")
        return Decision(status=status_view(observedGeneration=generation, conditions=conds),
                        event=("Warning", c.NO_FEASIBLE_INSTANCE_TYPE, reasons[:1024]),
                        metrics={"fits": 0, "placed": 0, "oversubscribed": 0})

    if i.kueue and spec.target and kueuecheck.is_kueues(i.target):
        return _kueues(put, conds, i, best, anywhere)
    held = i.held
    # a placed workload keeps its placement while its spec is unchanged and its domain still holds it
    # (a status that lags the ledger, as when a timer runs before the last decision is written, plans
    # again, preferring the domain it holds)
    placement: Placement | None = placement_of(old) if held is not None else None
    kept = (placement is not None and reservation_of(placement) == held
            and old.get("observedGeneration") == generation and i.fleet.holds(held))
    if kept:
        estimate, alternatives = estimate_of(old), old.get("alternatives") or []
    else:
        # the domain it holds, else the one its target was last pinned to (a restart between patching
        # the target and writing the status must not move it)
        prefer = held.domain.value if held and held.domain else targets.pinned_domain(i.target)
        # with pods of its own running (an earlier placement, or pods that escaped the gate), a domain
        # where the new pods fit beside them first: a rolling update removes old pods only once new
        # ones run, so new pods pinned onto GPUs its old pods hold would wait forever
        # (its own pods of the reservation it holds are not old ones: planning again while they run, as
        # when the status lags, must not move it away from them)
        here = place(anywhere, i.catalog, i.fleet.with_own_pods(), prefer_domain=prefer) \
            if _old_pods(i, held) else None
        if here is None or here.chosen is None:
            here = place(anywhere, i.catalog, i.fleet, prefer_domain=prefer)
        chosen = here.chosen
        placement = chosen.placement if chosen else None
        estimate = (chosen or best).estimate
        alternatives = [{"placement": o.placement, "totalBytes": o.estimate.total_bytes}
                        for o in (here.alternatives if chosen else anywhere.alternatives)]
    total = estimate.total_bytes
    b = best.placement
    conds = put(conds, c.ESTIMATED, True, c.ESTIMATE_READY,
                f"{fmt_bytes(total)} per GPU at the {estimate.peak_phase} peak")
    band = f"; this regime's measured error: {best.estimate.error_band}" if best.estimate.error_band else ""
    conds = put(conds, c.FITS, True, c.FITS_INSTANCE_TYPE,
                f"fits {b.instance_type}: {count(b.nodes, 'node')} x {count(b.gpus_per_node, 'GPU')}{band}")
    decision = Decision(status={}, placement=placement, reservation=reservation_of(placement))
    if placement is None:
        fitting = {t for t in (spec.placement.instance_types or i.catalog.names())} - {
            r.instance_type for r in anywhere.rejected}
        decision.waits_for = frozenset(fitting)
        blocked = sorted(fitting & i.fleet.blocked)
        gated = (f"; {count(i.gated_pods, 'pod')} stay gated (SchedulingGated) until capacity appears"
                 if i.gated_pods else "")
        queued = f"; older workloads wait first for {', '.join(blocked)}" if blocked else ""
        conds = put(conds, c.PLACED, False, c.WAITING_FOR_CAPACITY,
                    f"waiting for {b.total_gpus} x {b.instance_type} GPUs ({count(b.nodes, 'node')} x "
                    f"{b.gpus_per_node}) in one NVLink domain, or another allowed type" + queued + gated)
    else:
        conds = _place_target(put, decision, conds, i, placement, estimate)
    conds = _oversubscription(put, conds, i, placement, decision.reservation, total)
    placed = c.condition(conds, c.PLACED)["status"] == "True"
    conds = _pods_scheduled(put, conds, placed, i.unschedulable, _old_pods(i, decision.reservation) if placed else [])
    if placement and not kept and placed:
        decision.event = ("Normal", "Placed", f"{placement.instance_type}: {count(placement.nodes, 'node')} x "
                          f"{count(placement.gpus_per_node, 'GPU')}" + (f" in {placement.nvlink_domain}"
                                                                       if placement.nvlink_domain else ""))
    status = status_view(observedGeneration=generation, model=spec.model.label, estimate=estimate,
                         memoryPerGPU=fmt_bytes(total),
                         placement=placement, alternatives=alternatives, conditions=conds)
    over = c.condition(conds, c.OVERSUBSCRIBED)["status"] == "True"
    capacity = (placement or b).gpu_memory_bytes
    decision.status = status
    decision.metrics = {"required": total, "capacity": capacity, "fits": 1, "placed": int(placed),
                        "oversubscribed": int(over)}
    return decision


def _place_target(put, decision: Decision, conds: list, i: Inputs, placement: Placement, estimate: Estimate
                  ) -> list:
    spec, target = i.spec, i.target
    if spec.target is None:
        return put(conds, c.PLACED, True, c.CAPACITY_FOUND,
                   "capacity found; no spec.target to patch: use status.placement.nodeSelector")
    kind = targets.adapter(spec.target.kind)
    ref = f"{kind.kind}/{spec.target.name}"
    if target is None:
        return put(conds, c.PLACED, False, c.TARGET_NOT_FOUND, f"{ref} not found")
    problem = kind.shape_problem(target, ref, placement)
    if problem:
        reason = c.TARGET_NOT_MULTI_NODE if kind.single_node else c.TARGET_SHAPE_MISMATCH
        return put(conds, c.PLACED, False, reason, problem)
    env, claim = targets.plan_env(placement, estimate, spec), \
        channel_claim(i.name, placement) if i.compute_domains else None

    def repatch(t: dict[str, Any]) -> dict[str, Any] | None:
        return targets.place_patch(t, i.name, placement.node_selector, placement.gpus_per_node, i.tolerations,
                                   env=env, group_size=kind.group_size(placement), claim=claim)
    patch = repatch(target)
    if kind.suspendable and patch is not None and not kind.suspended(target):
        return put(conds, c.PLACED, False, c.TARGET_NOT_SUSPENDED,
                   f"{ref} already runs; create {kind.kind}s with suspend: true so rackfit can place them")
    decision.target_patch, decision.repatch = patch, repatch
    decision.unsuspend = kind.suspended(target)
    message = f"{ref} pinned to {', '.join(f'{k}={v}' for k, v in placement.node_selector.items())}"
    asked, booked = kind.asked_gpus(target, placement), placement.total_gpus
    if asked > booked:  # more pods than the plan: the ledger holds only the plan's GPUs for them
        message += (f"; it asks for {asked} GPUs and {booked} are booked: its pods beyond them wait for room or take "
                    f"GPUs booked for others (lower its replicas, or raise spec.parallelism.data so they are booked)")
    return put(conds, c.PLACED, True, c.TARGET_PATCHED, message)


def _kueues(put, conds: list, i: Inputs, best, anywhere: Plan) -> Decision:
    """A target that names a Kueue queue: Kueue queues, admits and places it (its topology-aware
    scheduling picks the rack), rackfit answers its admission check and books nothing in the ledger."""
    kind = targets.adapter(i.spec.target.kind)
    ref = f"{kind.kind}/{i.spec.target.name}"
    queue = i.target["metadata"]["labels"][kueuecheck.KUEUE_QUEUE_LABEL]
    estimate = best.estimate
    conds = put(conds, c.ESTIMATED, True, c.ESTIMATE_READY,
                f"{fmt_bytes(estimate.total_bytes)} per GPU at the {estimate.peak_phase} peak")
    b = best.placement
    conds = put(conds, c.FITS, True, c.FITS_INSTANCE_TYPE,
                f"fits {b.instance_type}: {count(b.nodes, 'node')} x {count(b.gpus_per_node, 'GPU')}")
    queued = i.kueue_workload
    said = f": {kueuecheck.admission_summary(queued, kueuecheck.domain_lookup(i.fleet.inventory))}" if queued else ""
    patch = None
    problem = targets.shape_problem(i.target, ref, b)
    if problem:  # the check rejects it too (Kueue then deactivates its Workload): say here what to change
        reason = c.TARGET_NOT_MULTI_NODE if kind.single_node else c.TARGET_SHAPE_MISMATCH
        conds = put(conds, c.PLACED, False, reason, f"{problem}{said}")
    elif kind.suspendable and kind.suspended(i.target) and not kueuecheck.admitted(queued):
        # the TAS annotations its plan needs, while Kueue can still build its Workload again from them
        patch = targets.kueue_patch(i.target, i.name, kueuecheck.topology_for(
            kind, i.target, i.name, b, i.catalog.get(b.instance_type).nodes_per_domain) if i.kueue_tas else {})
        conds = put(conds, c.PLACED, False, c.PENDING_IN_KUEUE,
                    f"{ref} waits in Kueue's LocalQueue {queue}; rackfit answers its admission check "
                    f"{kueuecheck.KUEUE_CONTROLLER} with the plan for the flavor Kueue assigns{said}")
    elif kind.suspendable or kueuecheck.admitted(queued):
        conds = put(conds, c.PLACED, True, c.ADMITTED_BY_KUEUE, f"{ref} admitted by Kueue (LocalQueue {queue}){said}")
    else:
        conds = put(conds, c.PLACED, "Unknown", c.PENDING_IN_KUEUE,
                    f"{ref} is Kueue's (LocalQueue {queue}): Kueue gates its pods until it admits them{said}")
    conds = put(conds, c.OVERSUBSCRIBED, False, c.WITHIN_CAPACITY, "Kueue holds the quota")
    placed = c.condition(conds, c.PLACED)["status"] == "True"
    conds = _pods_scheduled(put, conds, placed, i.unschedulable, [])
    alternatives = [{"placement": o.placement, "totalBytes": o.estimate.total_bytes}
                    for o in anywhere.alternatives]
    status = status_view(observedGeneration=i.generation, model=i.spec.model.label, estimate=estimate,
                         memoryPerGPU=fmt_bytes(estimate.total_bytes), placement=None, alternatives=alternatives,
                         conditions=conds)
    return Decision(status=status, target_patch=patch,
                    metrics={"required": estimate.total_bytes, "capacity": b.gpu_memory_bytes,
                             "fits": 1, "placed": int(placed), "oversubscribed": 0})


def _own_pods(i: Inputs) -> list[PodUse]:
    return i.fleet.inventory.owner_pods(i.fleet.owner) if i.fleet.owner else []


def _old_pods(i: Inputs, r: Reservation | None) -> list[PodUse]:
    """The workload's bound pods that are not those of reservation `r` (its placement's): other GPUs,
    or outside its domain; all of them without one."""
    if r is None:
        return _own_pods(i)
    inv = i.fleet.inventory
    out = []
    for pod in _own_pods(i):
        node = inv.node(pod.node)
        inside = node is not None and node.instance_type == r.instance_type and (
            r.domain is None or node.domain == r.domain)
        if not inside or pod.gpus != r.gpus_per_pod:
            out.append(pod)
    return out


def _pods_scheduled(put, conds: list, placed: bool, unschedulable: list[str], old: list[PodUse]) -> list:
    if not placed:
        return put(conds, c.PODS_SCHEDULED, "Unknown", c.NOT_PLACED, "not placed yet")
    if unschedulable and old:
        nodes = ", ".join(sorted({p.node for p in old})[:3])
        return put(conds, c.PODS_SCHEDULED, False, c.ROLLOUT_BLOCKED,
                   f"{count(len(unschedulable), 'pod')} Pending while {count(len(old), 'older pod')} of the target "
                   f"hold {count(sum(p.gpus for p in old), 'GPU')} on {nodes} that are not the placement's "
                   f"(other GPUs, or outside its domain): a rolling update removes them only once new pods run, "
                   f"and no domain had room for both; delete the older pods, or allow the rollout maxUnavailable >= 1 "
                   f"(Pending: {unschedulable[0]})")
    if unschedulable:
        return put(conds, c.PODS_SCHEDULED, False, c.UNSCHEDULABLE,
                   f"{count(len(unschedulable), 'pod')} Pending: {unschedulable[0]}")
    return put(conds, c.PODS_SCHEDULED, True, c.NONE_UNSCHEDULABLE,
               "no pod of the workload is unschedulable")


def _oversubscription(put, conds: list, i: Inputs, placement: Placement | None, held: Reservation | None,
                      total: int) -> list:
    target = i.target
    if placement and target is not None:
        asked = targets.adapter(i.spec.target.kind).asked_gpus(target, placement)
        if asked < placement.total_gpus:
            return put(conds, c.OVERSUBSCRIBED, True, c.TARGET_UNDERSIZED,
                       f"the target asks for {asked} GPUs; the estimate needs {placement.total_gpus} "
                       f"({fmt_bytes(total)} each)")
    if held is not None and held.domain is not None:
        # pods and reservations of everyone in the domain, this one's included: pods placed by hand
        # (nodeName set, no scheduler) can overcommit a node even where the domain has room
        frees = i.fleet.inventory.domains(held.instance_type).get(held.domain, [])
        over = [-f for f in frees if f < 0]
        if over:
            return put(conds, c.OVERSUBSCRIBED, True, c.DOMAIN_OVERCOMMITTED,
                       f"pods and reservations ask for {count(sum(over), 'GPU')} more than "
                       f"{count(len(over), 'node')} "
                       f"of {held.domain.value} have")
    return put(conds, c.OVERSUBSCRIBED, False, c.WITHIN_CAPACITY, "within capacity")
