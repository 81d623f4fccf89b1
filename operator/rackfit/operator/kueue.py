"""rackfit as Kueue's admission check controller (`rackfit.io/fit`): the kopf handlers and their I/O
around the pure decisions of kueuecheck.py. Registered only where Kueue's AdmissionCheck CRD is served
(API discovery at start) and `RACKFIT_KUEUE` (chart value `kueue.enabled`) is `auto` or `on`.

- `check_active`: every AdmissionCheck with `spec.controllerName: rackfit.io/fit` gets the condition
  `Active=True` (Kueue keeps a ClusterQueue whose checks are not active from admitting anything), and
  the `our_checks` index holds their names;
- `workload_checks`: for each Kueue Workload with such a check `Pending` once quota is reserved, the
  verdict (Ready with the plan, Retry while the LLMWorkload is missing, Rejected with the estimate's
  message) is written to its `status.admissionChecks`. Before `Ready`: `Retry` while the target's
  templates lack the TAS annotations rackfit writes (its reconcile has not run yet); the ComputeDomain
  of a placement across nodes of the clique TAS reserved is created (owned by the LLMWorkload) and its
  channel named in podSetUpdates;
- `drop_stale`: a Workload not admitted yet and built before the TAS annotations rackfit wrote
  on its target is deleted (its finalizer taken off first, as Kueue does with a Workload that no longer
  matches its job: pkg/controller/jobframework/reconciler.go, ensureOneWorkload), so that Kueue builds
  it again with the topology request;
- `workload_for`: the Kueue Workload of a target, for the LLMWorkload's reconcile.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rackfit.api.conditions import now
from rackfit.errors import RackfitError
from rackfit.names import KUEUE_CONTROLLER, KUEUE_GROUP, KUEUE_VERSION, KUEUE_WORKLOAD_FINALIZER
from rackfit.operator import computedomains, kube, targets
from rackfit.operator.kueuecheck import (
    RETRY,
    admitted,
    assigned_flavors,
    owner,
    pending,
    topology_for,
    topology_missing,
    topology_stale,
    verdict,
    with_state,
)
from rackfit.operator.targets.computedomain import needs_one
from rackfit.planner import plan
from rackfit.spec import parse_spec

ADMISSION_CHECKS = (KUEUE_GROUP, KUEUE_VERSION, "admissionchecks")
WORKLOADS = (KUEUE_GROUP, KUEUE_VERSION, "workloads")
FLAVORS = (KUEUE_GROUP, KUEUE_VERSION, "resourceflavors")
log = logging.getLogger("rackfit.kueue")


def enabled(setting: str) -> bool:
    """`RACKFIT_KUEUE`: on, off, or auto (on where the API server serves Kueue's AdmissionChecks)."""
    if setting in ("on", "off"):
        return setting == "on"
    return kube.serves(*ADMISSION_CHECKS)


async def our_checks(name: str, spec: dict, **_: Any):
    """The AdmissionChecks rackfit is the controller of."""
    return {None: name} if spec.get("controllerName") == KUEUE_CONTROLLER else None


def check_active(name: str, spec: dict, status: dict, logger, **_: Any) -> None:
    if spec.get("controllerName") != KUEUE_CONTROLLER:
        return
    active = next((c for c in status.get("conditions") or [] if c.get("type") == "Active"), {})
    if active.get("status") == "True":
        return
    kube.patch_cluster_status(ADMISSION_CHECKS, name, {"status": {"conditions": [{
        "type": "Active", "status": "True", "reason": "Active", "message": "rackfit answers this check",
        "lastTransitionTime": now(), "observedGeneration": 0}]}})
    logger.info(f"AdmissionCheck {name}: Active")


def workload_checks(body: dict, namespace: str, name: str, our_checks: kopf.Index, memo: kopf.Memo, logger,
                    type: str | None = None, **_: Any) -> None:
    if type == "DELETED":
        return
    target = owner(body)
    kind = targets.ADAPTERS.get(target[0]) if target else None
    # read once: the verdict must see the templates drop_stale saw (the reconcile may patch them between)
    obj = kube.get_target(kind, namespace, target[1]) if kind else None
    if obj is not None and drop_stale(body, namespace, name, logger, obj):
        return
    checks = pending(body, set(our_checks.get(None, [])))
    if not checks:
        return
    ctx = memo.ctx
    workload = _llmworkload(namespace, target)
    spec, hf = None, None
    try:
        if workload is not None:
            spec = parse_spec(dict(workload["spec"]))
            if spec.model.hugging_face_config:
                hf = kube.read_hf_config(namespace, spec.model.hugging_face_config)
    except RackfitError as e:
        new = {"state": "Rejected", "message": f"LLMWorkload {workload['metadata']['name']}: {e}"[:1024]}
    else:
        llmw = workload["metadata"]["name"] if workload else ""
        new = _topology_wait(body, target, obj, llmw, spec, ctx.catalog, hf) if spec else None
        if new is None:
            flavors = [kube.get_cluster_object(FLAVORS, f) or {} for f in assigned_flavors(body)]
            labels = next(((f.get("spec") or {}).get("nodeLabels") for f in flavors if f), None)
            new = verdict(llmw, spec, ctx.catalog, body, labels, hf, node_domain=_domain_of(ctx),
                          claim=bool(ctx.compute_domains and kind and kind.suspendable))
        placement = new.pop("placement", None)
        if workload is not None and needs_one(placement) and ctx.compute_domains and "podSetUpdates" in new:
            # before Ready: the channel exists before Kueue starts the pods that claim it
            created, _ = computedomains.sync(namespace, llmw, workload["metadata"]["uid"], placement)
            if created:
                logger.info(f"created ComputeDomain {created} for {llmw} in {placement.nvlink_domain}")
    status = body.get("status") or {}
    for check in checks:
        status = {**status, "admissionChecks": with_state({"status": status}, check, new, now())}
    try:
        kube.patch_namespaced_status(WORKLOADS, namespace, name, {"status": {
            "admissionChecks": status["admissionChecks"]}})
    except kube.TransientError as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
    logger.info(f"Kueue Workload {name}: {', '.join(checks)} {new['state']}: {new['message']}")


def _domain_of(ctx):
    def domain(node: str):
        info = ctx.ledger.node(node)
        return info.domain if info else None
    return domain


def _topology_wait(body: dict, target: tuple[str, str] | None, obj: dict | None, llmw: str, spec, catalog, hf
                   ) -> dict | None:
    """`Retry` while the target's templates (`obj`) lack the TAS annotations its plan wants, or the
    Workload was built before them; None when the topology Kueue reserved is the one asked for."""
    best = plan(spec, catalog, hf_config=hf).chosen if obj is not None else None
    if best is None:
        return None
    kind, p = targets.adapter(target[0]), best.placement
    wanted = topology_for(kind, obj, llmw, p, catalog.get(p.instance_type).nodes_per_domain)
    if wanted and topology_missing(obj, wanted):
        return {"state": RETRY, "message": f"{kind.kind}/{target[1]}: rackfit has not written its topology "
                                           f"annotations on the pod templates yet"}
    if targets.applied(obj).get("templateAnnotations") and topology_stale(body, obj):
        return {"state": RETRY, "message": f"Kueue built this Workload before rackfit's topology annotations "
                                           f"were on {kind.kind}/{target[1]}: it is built again with them"}
    return None


def drop_stale(body: dict, namespace: str, name: str, logger, target: dict | None = None) -> bool:
    """Delete a Workload that Kueue has not admitted and that was built before rackfit's TAS annotations
    were on its target (`target`: read when not given); Kueue builds it again from the annotated target
    (its quota, if reserved, is released with it; the target is suspended or its pods gated). Whether it did."""
    ref = owner(body)
    kind = targets.ADAPTERS.get(ref[0]) if ref else None
    meta = body.get("metadata") or {}
    if kind is None or admitted(body) or meta.get("deletionTimestamp") or _finished(body):
        return False
    obj = target if target is not None else kube.get_target(kind, namespace, ref[1])
    if obj is None or not targets.applied(obj).get("templateAnnotations") or not topology_stale(body, obj):
        return False
    finalizers = [f for f in meta.get("finalizers") or [] if f != KUEUE_WORKLOAD_FINALIZER]
    try:
        kube.patch_object(WORKLOADS, namespace, name, {"metadata": {
            "finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}})
        kube.delete_object(WORKLOADS, namespace, name)
    except kube.TransientError as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
    (logger or log).info(f"Kueue Workload {name}: built before rackfit's topology annotations on {kind.kind}/"
                         f"{ref[1]}; deleted so that Kueue builds it again")
    return True


def _finished(body: dict) -> bool:
    return any(c.get("type") == "Finished" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


def workload_for(namespace: str, target: dict) -> dict | None:
    """Kueue's Workload of `target` (owned by it), newest first; None if Kueue has made none (or the one
    it made was built before rackfit's topology annotations and is deleted now, to be built again: the
    LLMWorkload's reconcile runs while it waits, so a Workload whose events have stopped goes too)."""
    uid = (target.get("metadata") or {}).get("uid")
    mine = [w for w in kube.list_objects(WORKLOADS, namespace)
            if any(r.get("uid") == uid for r in (w.get("metadata") or {}).get("ownerReferences") or [])
            and not (w.get("metadata") or {}).get("deletionTimestamp")]
    mine = [w for w in mine if not drop_stale(w, namespace, w["metadata"]["name"], None, target)]
    return max(mine, key=lambda w: w["metadata"].get("creationTimestamp") or "", default=None)


def _llmworkload(namespace: str, target: tuple[str, str] | None) -> dict | None:
    if target is None:
        return None
    for w in kube.list_namespaced_workloads(namespace):
        t = (w.get("spec") or {}).get("target") or {}
        if (t.get("kind"), t.get("name")) == target:
            return w
    return None
