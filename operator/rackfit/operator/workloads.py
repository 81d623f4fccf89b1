"""kopf handlers for LLMWorkload: reconcile on create, spec change, resume and fleet change; undo
the target patch on delete. A reconcile is `gather` (read the spec, its model's config, its target,
the ledger's view), `decide` (pure: reconcile.py) and `apply` (status, target, pods, metrics).

Per-workload state lives in kopf's memo of the resource (dropped when it is deleted): its lock, its
estimates, and what it had seen at its last plan. The operator's state is `memo.ctx` (context.py)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import kopf

from rackfit.api.conditions import CONFIG_MAP_NOT_FOUND, now
from rackfit.api.status import placement_of
from rackfit.errors import RackfitError
from rackfit.names import WORKLOAD_ANNOTATION
from rackfit.operator import computedomains, kube, kueue, kueuecheck, targets
from rackfit.operator.context import OperatorContext
from rackfit.operator.gating import ungate_pods
from rackfit.operator.reconcile import Decision, Inputs, decide, invalid
from rackfit.planner import Placement, plan
from rackfit.spec import LLMWorkloadSpec, parse_spec


class MissingConfig(Exception):
    """The huggingFaceConfig ConfigMap (or its config.json key) is not there yet."""


@dataclass
class Gathered:
    """What one reconcile read before deciding."""

    spec: LLMWorkloadSpec
    hf: dict[str, Any] | None
    target: dict[str, Any] | None


def _state(memo: kopf.Memo) -> kopf.Memo:
    """This workload's own state, in its resource memo. dict.setdefault is atomic, so a timer and a
    change handler starting together share one lock."""
    memo.setdefault("lock", threading.Lock())  # one reconcile per workload at a time
    memo.setdefault("ungated", set())
    return memo


def gather(spec: Any, namespace: str) -> Gathered:
    workload = parse_spec(dict(spec))
    hf = None
    if workload.model.hugging_face_config:
        hf = kube.read_hf_config(namespace, workload.model.hugging_face_config)
        if hf is None:  # retried by the timer until it appears
            raise MissingConfig(f"spec.model.huggingFaceConfig: ConfigMap {namespace}/"
                                f"{workload.model.hugging_face_config} with key config.json not found")
    target = kube.get_target(targets.adapter(workload.target.kind), namespace, workload.target.name) \
        if workload.target else None
    return Gathered(workload, hf, target)


def _reconcile(ctx: OperatorContext, memo: kopf.Memo, body, spec, meta, status, namespace, name, patch, logger,
               indexes: dict[str, kopf.Index]) -> None:
    if memo.get("released"):  # a timer's run in flight when the delete handler released it
        return
    started = time.perf_counter()
    generation = meta.get("generation", 0)
    owner = (namespace, name)
    ledger = ctx.ledger
    freed = -1  # not planned against the ledger: plan again at the next tick
    # the fleet it plans on, read before planning: a node that changes while it decides (a rack cordoned node by
    # node) makes the next tick plan again, where reading it after the decision had marked that change as seen
    fleet = ctx.fleet_version
    old = dict(status)
    unschedulable = tuple(sorted(indexes["unschedulable_pods"].get(owner, [])))
    try:
        g = gather(spec, namespace)
        # a Kueue target: Kueue's Workload of it, for what Placed says (reconcile._kueues)
        kueues = ctx.kueue and kueuecheck.is_kueues(g.target)
        queued = kueue.workload_for(namespace, g.target) if kueues else None
        # estimates are made once per spec (and config.json), not at every re-plan of a waiting workload,
        # and before the ledger's lock
        key = (generation, json.dumps(g.hf, sort_keys=True) if g.hf else None)
        if memo.get("plan_key") != key:
            memo.plan, memo.plan_key = plan(g.spec, ctx.catalog, hf_config=g.hf), key
        # Decide and reserve under the ledger's lock, in the next scheduling cycle (scheduler.py): two
        # reconciles can never both take the last room in a domain, and a burst is decided oldest first.
        # One active operator holds the ledger (kopf peering), so an in-process lock is enough.
        since = meta.get("creationTimestamp") or ""

        def decide_and_book() -> tuple[Decision, int]:
            nonlocal fleet
            fleet = ctx.fleet_version
            seen = ledger.freed  # what it has seen: a later release must wake it
            held = ledger.reservation(owner)
            # strict FIFO for those without a place; one that holds a domain is never queued out of it
            blocked = frozenset() if held else ledger.blocked_types(owner, since)
            d = decide(Inputs(name=name, spec=g.spec, generation=generation, old=old, catalog=ctx.catalog,
                              fleet=ledger.view(owner, blocked), held=held, target=g.target,
                              tolerations=ctx.config.tolerations, hf_config=g.hf,
                              gated_pods=len(indexes["gated_pods"].get(owner, [])),
                              unschedulable=list(unschedulable), now=now(),
                              anywhere=memo.plan, compute_domains=ctx.compute_domains, kueue=ctx.kueue,
                              # Topologies read only while the target can still take the annotations
                              kueue_workload=queued,
                              kueue_tas=kueues and not kueuecheck.admitted(queued) and kueue.clique_tas()))
            ledger.reserve(owner, d.reservation)
            ledger.wait(owner, since if d.waits_for is not None else None, d.waits_for or ())
            return d, seen
        d, freed = ctx.scheduler.decide((since, namespace, name), decide_and_book)
    except MissingConfig as e:
        d = invalid(str(e), generation, old, reason=CONFIG_MAP_NOT_FOUND)
        ledger.forget(owner)
    except RackfitError as e:  # invalid spec or model: a status, never a crash loop
        d = invalid(str(e), generation, old)
        ledger.forget(owner)
    except kube.TransientError as e:
        ctx.metrics.reconcile_errors.inc()
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=10) from e
    except Exception:
        ctx.metrics.reconcile_errors.inc()
        raise
    apply(ctx, d, body, namespace, name, patch, logger, workload_target(spec), indexes, memo.ungated)
    memo.fleet_seen, memo.freed_seen = fleet, freed
    memo.unschedulable_seen = unschedulable
    ctx.metrics.reconcile_duration.observe(time.perf_counter() - started)


def workload_target(spec: Any) -> tuple[targets.TargetKind, str] | None:
    t = spec.get("target") or None
    return (targets.adapter(t["kind"]), t["name"]) if t else None


def _seen(indexes: dict[str, kopf.Index], key: tuple[str, str], placement: Placement | None) -> bool:
    """Whether the indexes the pod webhook reads hold a workload's placement (and its variables)."""
    return next(iter(indexes["placements"].get(key, [])), None) == placement and bool(indexes["plan_envs"].get(key))


def _patch_target(kind: targets.TargetKind, namespace: str, name: str, d: Decision, attempts: int = 5) -> bool:
    """Patch the target as decided; on a conflict (its controller wrote it since it was read: a
    Deployment's status while its pods churn) read it again and patch the same placement at once, as
    client-go's RetryOnConflict does, rather than deciding again seconds later into the same race.
    False when the target read again needs no patch."""
    patch = d.target_patch
    for _ in range(attempts - 1):
        try:
            kube.patch_target(kind, namespace, name, patch)
            return True
        except kube.Conflict:
            fresh = kube.get_target(kind, namespace, name)
            if fresh is None or d.repatch is None:
                raise
            patch = d.repatch(fresh)
            if patch is None:
                return False
    kube.patch_target(kind, namespace, name, patch)  # the last attempt: a conflict goes to kopf's retry
    return True


def apply(ctx: OperatorContext, d: Decision, body, namespace: str, name: str, patch, logger,
          target: tuple[targets.TargetKind, str] | None, indexes: dict[str, kopf.Index], ungated: set[str]) -> None:
    """Write what `decide` said: status, the target's patch, its start, the pods (`ungated`: the uids
    already let go, whose gate the pods index may still show while it catches up), metrics."""
    try:
        if ctx.compute_domains:  # before the target: its pods claim the ComputeDomain's channel
            computedomains.reconcile(namespace, name, body["metadata"]["uid"], d.status, d.placement, logger)
        if target and d.target_patch is not None:
            # the placement is in status before the target moves: an operator that dies between the two
            # rebuilds its ledger from status, so the domain stays held and the target is not patched twice
            kube.patch_status(namespace, name, {"placement": d.status["placement"],
                                                "estimate": d.status.get("estimate")})
            if _patch_target(target[0], namespace, target[1], d):
                logger.info(f"patched {target[0].kind}/{target[1]}")
        if target and d.unsuspend:
            # a Job's or JobSet's pods get the GPU limit and the plan's variables from the webhook only:
            # start it once the webhook's indexes hold this placement (the status watch lags the patch);
            # until then kopf calls again shortly (a retry, not a wait in a thread), and Placed is not
            # written before it has started
            if not _seen(indexes, (namespace, name), d.placement):
                raise kopf.TemporaryError(f"waiting for the webhook to see the placement before starting the "
                                          f"{target[0].kind}", delay=1)
            kube.patch_target(target[0], namespace, target[1], target[0].resume_patch())
    except kube.TransientError as e:  # e.g. the target changed since it was read: read it again soon
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
    if _changed(d.status, body.get("status") or {}):  # an unchanged verdict is not written again
        patch.status.update(d.status)
    if d.event:
        kind, reason, message = d.event
        (kopf.info if kind == "Normal" else kopf.warn)(body, reason=reason, message=message)
    if d.placement is not None:
        ungate_pods(namespace, name, d.placement, indexes["gated_pods"], logger, ungated)
    ctx.metrics.record(namespace, name, d.metrics)


def _changed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether writing `new` would change the status (absent and empty fields alike)."""
    def shown(v: Any) -> bool:
        return v not in (None, [], {})
    return any((new[k] if shown(new[k]) else None) != (old.get(k) if shown(old.get(k)) else None) for k in new)


def _indexes(kw: dict[str, Any]) -> dict[str, kopf.Index]:
    return {k: kw[k] for k in ("gated_pods", "unschedulable_pods", "placements", "plan_envs")}


def reconcile(body, spec, meta, status, namespace, name, patch, logger, memo: kopf.Memo, **kw: Any) -> None:
    """On create, spec change and resume."""
    state = _state(memo)
    with state.lock:
        _reconcile(memo.ctx, state, body, spec, meta, status, namespace, name, patch, logger, _indexes(kw))
    state.decided = meta.get("generation")  # raised (a retry kopf makes): not yet


def replan(body, spec, meta, status, namespace, name, patch, logger, memo: kopf.Memo, **kw: Any) -> None:
    """The timer: plans again when the fleet changed, while the workload waits for capacity (and
    something was freed) or for its target, and when what the scheduler says of its pods changed;
    a placed workload's newly gated pods are let go without planning again."""
    ctx, state, indexes = memo.ctx, _state(memo), _indexes(kw)
    if state.get("decided") != meta.get("generation"):
        # its change handler (create, spec update, resume) has not decided this generation yet: it will
        # (kopf retries it until it does), so a tick now would only decide twice; in a burst where
        # handlers wait for threads and decision cycles, ticks did, doubling reads and status writes
        return
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    placed = conds.get("Placed", {})
    key = (namespace, name)
    fleet_same = state.get("fleet_seen") == ctx.fleet_version
    if placed.get("status") == "True" and fleet_same:
        # placed, and the fleet is as it was: plan again only when what the scheduler says of its pods
        # changed (PodsScheduled); pods gated since are let go without reading or writing anything else
        if tuple(sorted(indexes["unschedulable_pods"].get(key, []))) == state.get("unschedulable_seen", ()):
            placement = placement_of(status)
            if placement is not None and state.lock.acquire(blocking=False):
                try:
                    ungate_pods(namespace, name, placement, indexes["gated_pods"], logger, state.ungated)
                finally:
                    state.lock.release()
            return
    if placed.get("reason") == "WaitingForCapacity" and state.get("freed_seen") == ctx.ledger.freed and fleet_same:
        return  # nothing was freed since it last looked
    if placed.get("reason") == "InvalidSpec":
        return
    if not state.lock.acquire(blocking=False):  # a change handler runs: it plans anyway
        return
    try:
        _reconcile(ctx, state, body, spec, meta, status, namespace, name, patch, logger, indexes)
    finally:
        state.lock.release()


def release(spec, namespace, name, logger, memo: kopf.Memo, **_: Any) -> None:
    """On delete: free its GPUs, and take back exactly what rackfit added to the target."""
    ctx, state = memo.ctx, _state(memo)
    ctx.metrics.forget_workload(namespace, name)
    with state.lock:  # after a reconcile in flight, which would otherwise book it again
        state.released = True
        ctx.ledger.forget((namespace, name))  # its GPUs are free for the next waiting workload
    target = workload_target(spec)
    if not target:
        return
    kind, target_name = target
    try:
        obj = kube.get_target(kind, namespace, target_name)
    except kube.TransientError as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=10) from e
    if obj is None or obj.get("metadata", {}).get("annotations", {}).get(WORKLOAD_ANNOTATION) != name:
        return
    # a started Job's or JobSet's pod templates are immutable: only rackfit's annotations can go
    started = kind.suspendable and not kind.suspended(obj)
    undo = targets.unplace_patch(obj, scheduling=not started)
    if undo:
        try:
            kube.patch_target(kind, namespace, target_name, undo)
        except kube.TransientError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
        logger.info(f"removed rackfit's node selector, limits and variables from {kind.kind}/{target_name}")
