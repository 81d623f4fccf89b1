"""rackfit as Kueue's admission check controller (`rackfit.io/fit`): the kopf handlers and their I/O
around the pure decisions of kueuecheck.py. Registered only where Kueue's AdmissionCheck CRD is served
(API discovery at start) and `RACKFIT_KUEUE` (chart value `kueue.enabled`) is `auto` or `on`.

- `check_active`: every AdmissionCheck with `spec.controllerName: rackfit.io/fit` gets the condition
  `Active=True` (Kueue keeps a ClusterQueue whose checks are not active from admitting anything), and
  the `our_checks` index holds their names;
- `workload_checks`: for each Kueue Workload with such a check `Pending` once quota is reserved, the
  verdict (kueuecheck.verdict: Ready with the plan, Retry while the LLMWorkload is missing, Rejected
  with the estimate's message; no answer while Kueue builds a Workload again with the topology the plan
  needs) is written to its `status.admissionChecks`, onto the version read. Before `Ready` for a
  placement across nodes of the NVL72 clique TAS reserved, the ComputeDomain is made
  (`computedomains.for_kueue`): owned by Kueue's Workload, as Kueue, not rackfit, holds and frees that
  rack, so it goes when the Workload goes;
- `workload_for`: the Kueue Workload of a target, for the LLMWorkload's reconcile (what `Placed` says);
- `mutate_target`, the `mutate-kueue-target` webhook: a LeaderWorkerSet that names a queue gets, as it
  is created, the TAS annotations and the plan's variables of the LLMWorkload that targets it, and for
  one group across nodes of an NVL72 rack the claim of a channel whose ComputeDomain the check makes
  for the rack Kueue admits it into. Kueue makes its Workloads once per group from the templates as
  created (pkg/controller/jobs/leaderworkerset/leaderworkerset_reconciler.go) and its pods exist, gated,
  before Kueue admits them, so none of these can be added later.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from rackfit.api.conditions import now
from rackfit.errors import RackfitError
from rackfit.names import KUEUE_CONTROLLER, KUEUE_GROUP, KUEUE_VERSION
from rackfit.operator import computedomains, kube, targets
from rackfit.operator.kueuecheck import (
    PENDING,
    assigned_flavors,
    domain_lookup,
    has_clique_level,
    owner,
    pending,
    topology_for,
    verdict,
    with_state,
)
from rackfit.operator.targets.computedomain import group_claim
from rackfit.planner import plan
from rackfit.spec import parse_spec

ADMISSION_CHECKS = (KUEUE_GROUP, KUEUE_VERSION, "admissionchecks")
WORKLOADS = (KUEUE_GROUP, KUEUE_VERSION, "workloads")
FLAVORS = (KUEUE_GROUP, KUEUE_VERSION, "resourceflavors")
TOPOLOGIES = (KUEUE_GROUP, KUEUE_VERSION, "topologies")


def clique_tas(flavors: list[dict] | None = None) -> bool:
    """Whether Kueue's TAS can keep a job inside one NVL72 rack: a Topology with a level on the clique
    label (of these ResourceFlavors' `topologyName`s, or any). Without one, a pod set that asks for that
    level is never admitted (Kueue finds no flavor with the topology), so rackfit asks for nothing."""
    names = {(f.get("spec") or {}).get("topologyName") for f in flavors} if flavors is not None else None
    return any(has_clique_level(t) for t in kube.list_cluster_objects(TOPOLOGIES)
               if names is None or t["metadata"]["name"] in names)


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
    checks = pending(body, set(our_checks.get(None, [])))
    if not checks:
        return
    ctx = memo.ctx
    target = owner(body)
    kind = targets.ADAPTERS.get(target[0]) if target else None
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
        flavors = [kube.get_cluster_object(FLAVORS, f) or {} for f in assigned_flavors(body)]
        labels = next(((f.get("spec") or {}).get("nodeLabels") for f in flavors if f), None)
        obj = kube.get_target(kind, namespace, target[1]) if kind and spec else None
        new = verdict(workload["metadata"]["name"] if workload else "", spec, ctx.catalog, body, labels, hf,
                      target=obj, node_domain=domain_lookup(ctx.ledger), tas=clique_tas([f for f in flavors if f]),
                      # a Job's or JobSet's pods are made once Kueue admits it, and can claim the channel then
                      claim=ctx.compute_domains and kind is not None and kind.suspendable)
        placement = new.pop("placement", None)
        # a LeaderWorkerSet's pods were made claiming the channel its webhook named (mutate_target)
        made_with = targets.applied(obj).get("resourceClaim") if obj and kind and not kind.suspendable else None
        if placement is not None and ctx.compute_domains and kind is not None and (kind.suspendable or made_with):
            # before Ready: the channel exists before Kueue starts the pods that claim it
            created, deleted = computedomains.for_kueue(body, placement, made_with)
            for what, names in (("created", [created] if created else []), ("deleted", deleted)):
                if names:
                    logger.info(f"{what} ComputeDomain {', '.join(names)} for Kueue Workload {name}")
    if new["state"] == PENDING:  # Kueue replaces this Workload (kueuecheck.topology_wait): no answer
        logger.info(f"Kueue Workload {name}: {', '.join(checks)} left Pending: {new['message']}")
        return
    status = body.get("status") or {}
    for check in checks:
        status = {**status, "admissionChecks": with_state({"status": status}, check, new, now())}
    try:
        # only onto the version decided on: an answer to a Workload Kueue has evicted since (its checks
        # reset to Pending) would stick, and it is never reserved again
        written = kube.patch_namespaced_status(WORKLOADS, namespace, name, {"status": {
            "admissionChecks": status["admissionChecks"]}}, (body.get("metadata") or {}).get("resourceVersion"))
    except kube.TransientError as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=2) from e
    if written:
        logger.info(f"Kueue Workload {name}: {', '.join(checks)} {new['state']}: {new['message']}")


def workload_for(namespace: str, target: dict) -> dict | None:
    """Kueue's Workload of `target` (owned by it, not being deleted), newest first; None if Kueue has
    made none."""
    uid = (target.get("metadata") or {}).get("uid")
    mine = [w for w in kube.list_objects(WORKLOADS, namespace)
            if any(r.get("uid") == uid for r in (w.get("metadata") or {}).get("ownerReferences") or [])
            and not (w.get("metadata") or {}).get("deletionTimestamp")]
    return max(mine, key=lambda w: w["metadata"].get("creationTimestamp") or "", default=None)


def mutate_target(body: dict, patch: kopf.Patch, namespace: str, memo: kopf.Memo, logger, **_: Any) -> None:
    try:
        _mutate_target(copy.deepcopy(dict(body)), patch, namespace, memo, logger)
    except Exception as e:  # never refuse the user's object: the check then says what it lacks
        logger.warning(f"{body.get('kind')}/{(body.get('metadata') or {}).get('name')} admitted as written: {e!r}")


def _mutate_target(body: dict, patch: kopf.Patch, namespace: str, memo: kopf.Memo, logger) -> None:
    kind = targets.adapter(body.get("kind"))
    name = (body.get("metadata") or {}).get("name")
    # a list, not an index: the LLMWorkload applied just before its target is there (kopf's watch may lag)
    workload = _llmworkload(namespace, (kind.kind, name))
    if workload is None:
        return  # created before its LLMWorkload: the check refuses it, saying what to write
    try:
        spec = parse_spec(dict(workload["spec"]))
        hf = kube.read_hf_config(namespace, spec.model.hugging_face_config) if spec.model.hugging_face_config else None
    except RackfitError:
        return  # the LLMWorkload's own status says what is wrong with it
    best = plan(spec, memo.ctx.catalog, hf_config=hf).chosen
    if best is None:
        return
    p, llmw = best.placement, workload["metadata"]["name"]
    per_domain = memo.ctx.catalog.get(p.instance_type).nodes_per_domain
    wanted = topology_for(kind, body, llmw, p, per_domain) if clique_tas() else {}
    # one group across nodes of an NVL72 rack: its pods claim the ComputeDomain the check makes for the
    # rack Kueue admits it into (several groups would share one channel across racks: none then)
    one_group = ((body.get("spec") or {}).get("replicas", 1) == 1)
    claim = group_claim(name, p.nodes) if (memo.ctx.compute_domains and one_group
                                          and 2 <= p.nodes <= per_domain) else None
    change = targets.kueue_patch(body, llmw, wanted, targets.plan_env(p, best.estimate, spec), claim)
    if change is None:
        return
    for key, value in change.get("spec", {}).items():
        patch.spec[key] = _merged((body.get("spec") or {}).get(key), value)
    for key, value in change["metadata"]["annotations"].items():
        patch.metadata.annotations[key] = value
    logger.info(f"{kind.kind}/{name}: the topology and variables of LLMWorkload {llmw}'s plan")


def _merged(old: Any, patch: Any) -> Any:
    """RFC 7386: `old` with the merge patch applied (an admission patch replaces whole values)."""
    if not isinstance(patch, dict) or not isinstance(old, dict):
        return patch
    out = dict(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merged(old.get(k), v)
    return out


def _llmworkload(namespace: str, target: tuple[str, str] | None) -> dict | None:
    if target is None:
        return None
    for w in kube.list_namespaced_workloads(namespace):
        t = (w.get("spec") or {}).get("target") or {}
        if (t.get("kind"), t.get("name")) == target:
            return w
    return None
