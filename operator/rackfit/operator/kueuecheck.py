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
- a plan that must stay inside one NVLink domain that Kueue's Workload does not ask for (its pod sets
  lack the topology request the target's templates should carry): no answer for a Job or JobSet, whose
  templates rackfit annotates and whose Workload Kueue then replaces; `Rejected` for a LeaderWorkerSet,
  whose Workloads Kueue makes once per group. A topology assignment across several NVL72 racks for a
  plan that needs one: `Retry`;
- else `Ready`, each pod set labelled `rackfit.io/workload` and annotated with the plan's `RACKFIT_*`
  variables (`rackfit.io/kueue-plan`); no node selector, so nothing contradicts the rack Kueue's
  topology-aware scheduling chose. A placement of several nodes that TAS put inside one NVL72 clique
  also names its ComputeDomain's channel (`rackfit.io/kueue-channel`), which the pod webhook claims.

Topology (`topology_for`): the LLMWorkload's reconcile writes Kueue's TAS annotations
(apis/kueue/v1beta2/topology_types.go) on the GPU pod templates of a suspended Job or JobSet:
`podset-required-topology: nvidia.com/gpu.clique` for a plan of several nodes inside one NVLink domain,
`podset-slice-required-topology` and `podset-slice-size` for a plan of several domain-sized groups. Kueue
reads them only when it builds its Workload (pkg/controller/jobframework/tas.go) and brings a Workload
it has not admitted up to date with its suspended job when their pod sets differ
(pkg/controller/jobframework/reconciler.go `ensureOneWorkload`: `updateWorkloadToMatchJob`, or delete and
make again one holding quota), comparing counts, containers and tolerations but not annotations
(pkg/util/equality/podset.go): so the same patch adds a toleration of rackfit's own (matching no
taint), and Kueue rebuilds its Workload itself. rackfit never deletes or edits a Kueue Workload's spec.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from rackfit.catalog import Catalog
from rackfit.names import (
    CLIQUE_LABEL,
    DOMAIN_LABELS,
    HOSTNAME_LABEL,
    INSTANCE_TYPE_LABEL,
    KUEUE_CLAIM_ANNOTATION,
    KUEUE_CONTROLLER,
    KUEUE_GROUP_NAME,
    KUEUE_PLAN_ANNOTATION,
    KUEUE_QUEUE_LABEL,
    KUEUE_REQUIRED_TOPOLOGY,
    KUEUE_SLICE_SIZE,
    KUEUE_SLICE_TOPOLOGY,
    KUEUE_TAS_ANNOTATIONS,
    WORKLOAD_LABEL,
)
from rackfit.operator.targets import adapter, applied, plan_env
from rackfit.operator.targets.base import TargetKind, template_gpus
from rackfit.operator.targets.computedomain import channel_claim, needs_one
from rackfit.planner import Placement, plan
from rackfit.planner.nodes import Domain
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
            flavor_labels: dict[str, str] | None, hf: dict[str, Any] | None = None,
            target: dict[str, Any] | None = None, node_domain: Callable[[str], Domain | None] | None = None,
            claim: bool = False, tas: bool = True) -> dict[str, Any]:
    """The check's new state for Kueue's Workload: {state, message, podSetUpdates?}, and for `Ready` also
    `placement` (not for the status: where TAS put it, typed; kueue.py takes it out). `target`: the
    object the Workload is Kueue's record of, as read; `node_domain`: a node's NVLink domain (the
    ledger's), to read the rack of a topology assignment by host; `claim`: name the ComputeDomain
    channel of a placement across nodes of one clique (ComputeDomains on); `tas`: the assigned flavor's
    Topology has a level on the clique label (else nothing keeps the pods in one rack: said, not held)."""
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
    per_domain = catalog.get(instance_type).nodes_per_domain
    if target is not None and tas:
        waiting = topology_wait(workload, target, name, pl, per_domain)
        if waiting:
            return waiting
    node_domain = node_domain or (lambda _: None)
    domain = admitted_domain(workload, node_domain)
    if 2 <= pl.nodes <= per_domain and domain is None and tas:
        where = "; ".join(f"{count(n, 'pod')} in {d}" for d, n in sorted(assigned_domains(
            workload, node_domain).items())) or "no topology assignment"
        return {"state": RETRY, "message": f"the plan needs its {count(pl.nodes, 'node')} inside one NVLink domain "
                                           f"of {per_domain} nodes; Kueue assigned {where}"}
    env = plan_env(pl, best.estimate, spec)  # the engine's settings as estimated, as for pods rackfit places
    carried = _env_conflict(workload, env)
    if carried:
        var = carried.split("=")[0]
        return {"state": REJECTED, "message": f"the pod templates carry {carried}, the plan for another instance "
                                              f"type; Kueue assigned {instance_type}, where the plan sets "
                                              f"{var}={env[var]}: allow only one instance type in "
                                              f"spec.placement.instanceTypes"}
    annotations = {KUEUE_PLAN_ANNOTATION: json.dumps(env, sort_keys=True)}
    placed = pl.model_copy(update={"nvlink_domain": str(domain) if domain else None,
                                   "node_selector": {domain.label: domain.value} if domain else {}})
    message = (f"fits {instance_type}: {count(pl.nodes, 'node')} x {count(pl.gpus_per_node, 'GPU')}, "
               f"{fmt_bytes(best.estimate.total_bytes)} per GPU")
    if 2 <= pl.nodes <= per_domain and not tas:
        message += (f"; the plan needs one NVLink domain, and the flavor's Topology has no {CLIQUE_LABEL} level: "
                    f"nothing keeps the pods in one rack")
    channel = channel_claim((workload.get("metadata") or {}).get("name", name), placed) if claim else None
    if channel:
        annotations[KUEUE_CLAIM_ANNOTATION] = json.dumps(channel, sort_keys=True)
        message += f"; its pods claim ComputeDomain channel {channel['resourceClaimTemplateName']}"
    updates = [{"name": ps["name"], "labels": {WORKLOAD_LABEL: name}, "annotations": annotations}
               for ps in (workload.get("spec") or {}).get("podSets") or []]
    return {"state": READY, "podSetUpdates": updates, "message": message,
            "placement": placed if needs_one(placed) else None}


def domain_lookup(nodes: Any) -> Callable[[str], Domain | None]:
    """A node's NVLink domain in `nodes` (the ledger, or a fleet view: anything with `.node(name)`), None
    for a node it does not know: how a topology assignment by host is read as racks."""
    def domain(node: str) -> Domain | None:
        info = nodes.node(node)
        return info.domain if info else None
    return domain


def has_clique_level(topology: dict[str, Any]) -> bool:
    """A Kueue Topology with a level on an NVLink-domain label (TAS can keep pods in one rack)."""
    return any(level.get("nodeLabel") in DOMAIN_LABELS for level in (topology.get("spec") or {}).get("levels") or [])


def _env_conflict(workload: dict[str, Any], env: dict[str, str]) -> str | None:
    """`NAME=value` of a plan variable the Workload's pod templates set otherwise (a LeaderWorkerSet's
    templates carry the plan of the type rackfit planned before Kueue chose the flavor)."""
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        for c in ((ps.get("template") or {}).get("spec") or {}).get("containers") or []:
            for e in c.get("env") or []:
                if e.get("name") in env and "value" in e and e["value"] != env[e["name"]]:
                    return f"{e['name']}={e['value']}"
    return None


# --- topology-aware scheduling: what the target's templates ask of Kueue, and where it put them ---------

def _gpu_templates(kind: TargetKind, target: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    templates = kind.pod_templates(copy.deepcopy(target))
    return [(n, t) for n, t in templates if template_gpus(t)] or templates


def topology_for(kind: TargetKind, target: dict[str, Any], workload: str, placement: Placement,
                 nodes_per_domain: int) -> dict[str, dict[str, str]]:
    """Template name -> the TAS annotations its pods need so that Kueue keeps the plan inside NVLink
    domains (pure). None for one node, for types whose NVLink domain is one host (HGX: nothing to keep
    together), and where the user set any TAS annotation on a GPU template (theirs stands)."""
    if placement.nodes < 2 or nodes_per_domain < 2:
        return {}
    templates = _gpu_templates(kind, target)
    ours = applied(target).get("templateAnnotations") or {}

    def theirs(name: str, t: dict[str, Any]) -> set[str]:
        current = (t.get("metadata") or {}).get("annotations") or {}
        return {k for k in KUEUE_TAS_ANNOTATIONS if k in current and (ours.get(name) or {}).get(k) != current[k]}
    if any(theirs(n, t) for n, t in templates):
        return {}
    if placement.nodes <= nodes_per_domain:  # the whole job inside one rack
        wanted = {KUEUE_REQUIRED_TOPOLOGY: CLIQUE_LABEL}
        if kind.grouped and len(templates) > 1:  # leader and workers fitted together
            wanted[KUEUE_GROUP_NAME] = workload
    else:  # several racks: each slice (whole model replicas) inside one
        per_replica = -(-placement.tensor * placement.pipeline // placement.gpus_per_node)
        sizes = [s for s in range(per_replica, nodes_per_domain + 1, per_replica) if placement.nodes % s == 0]
        wanted = {KUEUE_SLICE_TOPOLOGY: CLIQUE_LABEL, KUEUE_SLICE_SIZE: str(max(sizes or [per_replica]))}
    return {n: dict(wanted) for n, _ in templates}


def _asked_topology(annotations: dict[str, str]) -> tuple:
    """What Kueue's PodSetTopologyRequest builder reads from these annotations (the keys rackfit writes)."""
    return (annotations.get(KUEUE_REQUIRED_TOPOLOGY), annotations.get(KUEUE_SLICE_TOPOLOGY),
            annotations.get(KUEUE_SLICE_SIZE), annotations.get(KUEUE_GROUP_NAME))


def _podset_topology(ps: dict[str, Any]) -> tuple:
    tr = ps.get("topologyRequest") or {}
    size = tr.get("podSetSliceSize")
    return (tr.get("required"), tr.get("podSetSliceRequiredTopology"), str(size) if size else None,
            tr.get("podSetGroupName"))


def _gpu_podsets(workload: dict[str, Any]) -> list[dict[str, Any]]:
    podsets = (workload.get("spec") or {}).get("podSets") or []
    return [ps for ps in podsets if template_gpus(ps.get("template"))] or podsets


def topology_wait(workload: dict[str, Any], target: dict[str, Any], name: str, placement: Placement,
                  nodes_per_domain: int) -> dict[str, Any] | None:
    """While Kueue's Workload does not ask for the topology the plan needs: `Pending` (no answer) where
    the job's templates will ask for it (rackfit's reconcile writes them; Kueue then replaces the
    Workload itself, one holding quota too, with no Retry and its backoff), `Rejected` for a kind whose
    Workloads Kueue never rebuilds. None when it does or the plan needs none."""
    kind = adapter(target.get("kind"))
    wanted = topology_for(kind, target, name, placement, nodes_per_domain)
    templates = dict(_gpu_templates(kind, target))
    asked = {_asked_topology((t.get("metadata") or {}).get("annotations") or {}) for t in templates.values()}
    ref = f"{kind.kind}/{(target.get('metadata') or {}).get('name')}"
    if wanted and any(((templates.get(n) or {}).get("metadata") or {}).get("annotations", {}).get(k) != v
                      for n, ann in wanted.items() for k, v in ann.items()):
        if not kind.suspendable:
            keys = ", ".join(f"{k}: {v}" for k, v in next(iter(wanted.values())).items())
            return {"state": REJECTED, "message": (
                f"the plan needs its {count(placement.nodes, 'node')} inside one NVLink domain, and {ref}'s pod "
                f"templates do not ask Kueue for it: Kueue makes a {kind.kind}'s Workloads once, when it is "
                f"created, so write {keys} in its templates and create it again")}
        return {"state": PENDING, "message": f"{ref}: rackfit has not written its topology annotations on the "
                                             f"pod templates yet; Kueue builds this Workload again once it has"}
    if asked != {_podset_topology(ps) for ps in _gpu_podsets(workload)}:
        return {"state": PENDING, "message": f"Kueue built this Workload before {ref}'s pod templates asked for "
                                             f"its topology; Kueue builds it again"}
    return None


def topology_domains(assignment: dict[str, Any] | None, node_domain: Callable[[str], Domain | None]
                     ) -> Counter[str]:
    """Pods per topology domain of a pod set's `topologyAssignment`: its NVLink domain (`label=value`)
    where the levels name one or the hosts can be looked up, else the lowest level's selector. The
    slices' values are prefix + root + suffix, or one universal value (apis/kueue/v1beta2/workload_types.go)."""
    out: Counter[str] = Counter()
    levels = (assignment or {}).get("levels") or []
    for sl in (assignment or {}).get("slices") or []:
        n = sl.get("domainCount", 0)
        values = []
        for v in sl.get("valuesPerLevel") or []:
            if v.get("universal") is not None:
                values.append([v["universal"]] * n)
            else:
                ind = v.get("individual") or {}
                prefix, suffix = ind.get("prefix") or "", ind.get("suffix") or ""
                values.append([f"{prefix}{r}{suffix}" for r in ind.get("roots") or []])
        counts = sl.get("podCounts") or {}
        pods = counts.get("individual") or [counts.get("universal", 0)] * n
        for j in range(n):
            selector = {level: values[i][j] for i, level in enumerate(levels) if i < len(values) and j < len(values[i])}
            label = next((k for k in DOMAIN_LABELS if k in selector), None)
            domain = Domain(label, selector[label]) if label else (
                node_domain(selector[HOSTNAME_LABEL]) if HOSTNAME_LABEL in selector else None)
            key = str(domain) if domain else ",".join(f"{k}={v}" for k, v in selector.items())
            out[key] += pods[j] if j < len(pods) else 0
    return out


def _gpu_assignments(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Kueue's assignments of the Workload's GPU pod sets."""
    gpu = {ps["name"] for ps in _gpu_podsets(workload)}
    return [a for a in ((workload.get("status") or {}).get("admission") or {}).get("podSetAssignments") or []
            if a.get("name") in gpu]


def assigned_domains(workload: dict[str, Any], node_domain: Callable[[str], Domain | None]) -> Counter[str]:
    """Pods per topology domain over the Workload's GPU pod sets ({} where Kueue assigned no topology)."""
    out: Counter[str] = Counter()
    for a in _gpu_assignments(workload):
        out += topology_domains(a.get("topologyAssignment"), node_domain)
    return out


def admitted_domain(workload: dict[str, Any], node_domain: Callable[[str], Domain | None]) -> Domain | None:
    """The one multi-node NVLink domain (an NVL72 clique) Kueue's TAS put every GPU pod of the Workload
    in; None when it assigned no topology, several domains, or hosts of no such domain."""
    assignments = _gpu_assignments(workload)
    if not assignments or any(not a.get("topologyAssignment") for a in assignments):
        return None
    seen = set(assigned_domains(workload, node_domain))
    if len(seen) != 1:
        return None
    domain = Domain.parse(next(iter(seen)))
    return domain if domain.label in DOMAIN_LABELS else None


def _condition(workload: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (workload.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def admitted(workload: dict[str, Any] | None) -> bool:
    return _condition(workload or {}, "Admitted").get("status") == "True"


def admission_summary(workload: dict[str, Any], node_domain: Callable[[str], Domain | None]) -> str:
    """Kueue's word on its Workload for the `Placed` message: the ClusterQueue, the flavor of each pod set
    and the topology assignment (pods per NVLink domain), Kueue's own message, or why it waits."""
    status = workload.get("status") or {}
    admission = status.get("admission") or {}
    name = (workload.get("metadata") or {}).get("name")
    parts = []
    if admission:
        sets = []
        for a in admission.get("podSetAssignments") or []:
            flavors = ", ".join(f"{f} ({r})" for r, f in sorted((a.get("flavors") or {}).items()))
            where = topology_domains(a.get("topologyAssignment"), node_domain)
            placed = "; ".join(f"{count(p, 'pod')} in {d}" for d, p in sorted(where.items()))
            sets.append(f"{a.get('name')}: flavor {flavors or 'none'}" + (f", topology {placed}" if placed else ""))
        parts.append(f"Workload {name} in ClusterQueue {admission.get('clusterQueue')}: " + "; ".join(sets))
    for type_ in (("Admitted",) if admitted(workload) else ("Evicted", "Admitted", "QuotaReserved")):
        c = _condition(workload, type_)
        if c.get("message") and (type_ != "Evicted" or c.get("status") == "True"):
            parts.append(f"Kueue: {c['message']}")
            break
    checks = [f"check {c['name']} {c.get('state')}" + (f": {c['message']}" if c.get("message") else "")
              for c in status.get("admissionChecks") or [] if c.get("state") != READY and not admitted(workload)]
    if not parts:
        parts.append(f"Workload {name}")
    return "; ".join(parts + checks)


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
