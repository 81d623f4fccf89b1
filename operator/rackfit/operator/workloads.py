"""kopf handlers for LLMWorkload: reconcile on create, spec change, resume and fleet change; undo
the target patch on delete. Thin glue around `reconcile.decide()`."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import kopf

from rackfit.api.conditions import CONFIG_MAP_NOT_FOUND, now
from rackfit.errors import RackfitError
from rackfit.names import GROUP, PLURAL, VERSION, WORKLOAD_ANNOTATION
from rackfit.operator import kube, metrics, targets
from rackfit.operator.admission import ungate_pods
from rackfit.operator.fleet import LEDGER, FleetVersion
from rackfit.operator.reconcile import Decision, Inputs, decide, invalid
from rackfit.operator.startup import CONFIG, catalog
from rackfit.planner import Plan, plan
from rackfit.spec import parse_spec

RESOURCE = (GROUP, VERSION, PLURAL)


class MissingConfig(Exception):
    """The huggingFaceConfig ConfigMap (or its config.json key) is not there yet."""


_fleet_seen: dict[str, int] = {}  # uid -> FleetVersion at its last plan
_freed_seen: dict[str, int] = {}  # uid -> LEDGER.freed at its last plan
# uid -> ((generation, config.json), its plan without the fleet): estimates are made once per spec,
# not at every re-plan of a waiting workload
_plans: dict[str, tuple[tuple, Plan]] = {}
# kopf runs a resource's timer alongside its change handlers: one reconcile per workload at a time
# (a change waits; a timer tick finding one in progress skips)
_one_at_a_time: dict[str, threading.Lock] = {}
# uids whose delete handler released them: a timer's reconcile already in flight (a thread kopf cannot
# cancel) must not book them again after the release
_released: set[str] = set()


def _lock(uid: str) -> threading.Lock:
    return _one_at_a_time.setdefault(uid, threading.Lock())


def _reconcile(body, spec, meta, status, namespace, name, uid, patch, logger, gated_pods, unschedulable_pods,
               seen) -> None:
    if uid in _released:
        return
    started = time.perf_counter()
    generation = meta.get("generation", 0)
    owner = (namespace, name)
    freed = -1  # not planned against the ledger: plan again at the next tick
    old = dict(status)
    try:
        workload = parse_spec(dict(spec))
        hf = None
        if workload.model.hugging_face_config:
            hf = kube.read_hf_config(namespace, workload.model.hugging_face_config)
            if hf is None:  # retried by the timer until it appears
                raise MissingConfig(f"spec.model.huggingFaceConfig: ConfigMap {namespace}/"
                                    f"{workload.model.hugging_face_config} with key config.json not found")
        target = kube.get_target(targets.adapter(workload.target.kind), namespace, workload.target.name) \
            if workload.target else None
        since = meta.get("creationTimestamp") or ""
        key = (generation, json.dumps(hf, sort_keys=True) if hf else None)
        cached = _plans.get(uid)
        anywhere = cached[1] if cached and cached[0] == key else plan(workload, catalog(), hf_config=hf)
        _plans[uid] = (key, anywhere)  # the estimates, made before the ledger's lock
        # Decide and reserve under the ledger's lock: two reconciles (kopf runs them in a thread
        # pool) can never both take the last room in a domain. One active operator holds the
        # ledger (kopf peering), so an in-process lock is enough; deciding takes milliseconds.
        with LEDGER.lock:
            freed = LEDGER.freed  # what it has seen: a later release must wake it
            held = LEDGER.reservation(owner)
            # strict FIFO for those without a place; one that holds a domain is never queued out of it
            blocked = frozenset() if held else LEDGER.blocked_types(owner, since)
            d = decide(Inputs(name=name, spec=workload, generation=generation, old=old, catalog=catalog(),
                              fleet=LEDGER.view(owner, blocked), held=held, target=target,
                              tolerations=CONFIG.tolerations, hf_config=hf, gated_pods=len(gated_pods.get(owner, [])),
                              unschedulable=sorted(unschedulable_pods.get(owner, [])), now=now(),
                              anywhere=anywhere))
            LEDGER.reserve(owner, d.reservation)
            LEDGER.wait(owner, since if d.waits_for is not None else None, d.waits_for or ())
    except MissingConfig as e:
        d = invalid(str(e), generation, old, reason=CONFIG_MAP_NOT_FOUND)
        LEDGER.forget(owner)
    except RackfitError as e:  # invalid spec or model: a status, never a crash loop
        d = invalid(str(e), generation, old)
        LEDGER.forget(owner)
    except kube.TransientError as e:
        metrics.reconcile_errors.inc()
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=10) from e
    except Exception:
        metrics.reconcile_errors.inc()
        raise
    _apply(d, body, namespace, name, patch, logger, workload_target(spec), seen)
    if d.status.get("placement"):
        ungate_pods(namespace, name, d.status["placement"], gated_pods, logger)
    _fleet_seen[uid] = FleetVersion.value
    _freed_seen[uid] = freed
    metrics.reconcile_duration.observe(time.perf_counter() - started)


def workload_target(spec: Any) -> tuple[str, str] | None:
    t = spec.get("target") or None
    return (t["kind"], t["name"]) if t else None


def _apply(d: Decision, body, namespace: str, name: str, patch, logger, target: tuple[str, str] | None,
           seen) -> None:
    try:
        if target and d.target_patch is not None:
            # the placement is in status before the target moves: an operator that dies between the two
            # rebuilds its ledger from status, so the domain stays held and the target is not patched twice
            kube.patch_status(namespace, name, {"placement": d.status["placement"],
                                                "estimate": d.status.get("estimate")})
            kube.patch_target(targets.adapter(target[0]), namespace, target[1], d.target_patch)
            logger.info(f"patched {target[0]}/{target[1]}")
        if target and d.unsuspend:
            # a Job's or JobSet's pods get the GPU limit and the plan's variables from the webhook only:
            # start it once the webhook's indexes hold this placement (the status watch lags the patch)
            if not _wait(lambda: seen((namespace, name), d.status["placement"]), 10):
                raise kopf.TemporaryError("waiting for the webhook to see the placement before starting the "
                                          f"{target[0]}", delay=1)
            kind = targets.adapter(target[0])
            kube.patch_target(kind, namespace, target[1], kind.resume_patch())
    except kube.TransientError as e:  # e.g. the target changed since it was read: read it again soon
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
    patch.status.update(d.status)
    if d.event:
        kind, reason, message = d.event
        (kopf.info if kind == "Normal" else kopf.warn)(body, reason=reason, message=message)
    m = d.metrics
    metrics.fits.labels(namespace, name).set(m.get("fits", 0))
    metrics.placed.labels(namespace, name).set(m.get("placed", 0))
    metrics.oversubscribed.labels(namespace, name).set(m.get("oversubscribed", 0))
    if "required" in m:
        metrics.memory_required.labels(namespace, name).set(m["required"])
        metrics.memory_capacity.labels(namespace, name).set(m["capacity"])


def _wait(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _seen(placements: kopf.Index, plan_envs: kopf.Index):
    """Whether the indexes the pod webhook reads hold a workload's placement (and its variables)."""
    def seen(key: tuple[str, str], placement: dict) -> bool:
        return next(iter(placements.get(key, [])), None) == placement and bool(plan_envs.get(key))
    return seen


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(body, spec, meta, status, namespace, name, uid, patch, logger, gated_pods: kopf.Index,
              unschedulable_pods: kopf.Index, placements: kopf.Index, plan_envs: kopf.Index, **_: Any) -> None:
    with _lock(uid):
        _reconcile(body, spec, meta, status, namespace, name, uid, patch, logger, gated_pods, unschedulable_pods,
                   _seen(placements, plan_envs))


@kopf.timer(*RESOURCE, interval=CONFIG.replan_seconds, initial_delay=CONFIG.replan_seconds)
def replan(body, spec, meta, status, namespace, name, uid, patch, logger, gated_pods: kopf.Index,
           unschedulable_pods: kopf.Index, placements: kopf.Index, plan_envs: kopf.Index, **_: Any) -> None:
    """Plans again when the fleet changed, while the workload waits for capacity or its target, and
    while its pods wait (gated, or unschedulable) or were last seen so."""
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    placed = conds.get("Placed", {})
    pods_waiting = gated_pods.get((namespace, name), []) or unschedulable_pods.get((namespace, name), []) or \
        conds.get("PodsScheduled", {}).get("status") == "False"
    if placed.get("status") == "True" and _fleet_seen.get(uid) == FleetVersion.value and not pods_waiting:
        return
    if placed.get("reason") == "WaitingForCapacity" and _freed_seen.get(uid) == LEDGER.freed and \
            _fleet_seen.get(uid) == FleetVersion.value:
        return  # nothing was freed since it last looked
    if placed.get("reason") == "InvalidSpec":
        return
    lock = _lock(uid)
    if not lock.acquire(blocking=False):
        return
    try:
        _reconcile(body, spec, meta, status, namespace, name, uid, patch, logger, gated_pods, unschedulable_pods,
                   _seen(placements, plan_envs))
    finally:
        lock.release()


@kopf.on.delete(*RESOURCE)
def release(spec, namespace, name, uid, logger, **_: Any) -> None:
    """Take back exactly what rackfit added to the target."""
    metrics.forget_workload(namespace, name)
    with _lock(uid):  # after a reconcile in flight, which would otherwise book it again
        _released.add(uid)
        LEDGER.forget((namespace, name))  # its GPUs are free for the next waiting workload
    _fleet_seen.pop(uid, None)
    _freed_seen.pop(uid, None)
    _plans.pop(uid, None)
    target = workload_target(spec)
    if not target:
        return
    kind = targets.adapter(target[0])
    try:
        obj = kube.get_target(kind, namespace, target[1])
    except kube.TransientError as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=10) from e
    if obj is None or obj.get("metadata", {}).get("annotations", {}).get(WORKLOAD_ANNOTATION) != name:
        return
    # a started Job's or JobSet's pod templates are immutable: only rackfit's annotations can go
    started = kind.suspendable and not kind.suspended(obj)
    undo = targets.unplace_patch(obj, scheduling=not started)
    if undo:
        try:
            kube.patch_target(kind, namespace, target[1], undo)
        except kube.TransientError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
        logger.info(f"removed rackfit's node selector, limits and variables from {target[0]}/{target[1]}")
