"""What rackfit adds to a target's pod templates, and how to take exactly that back (pure).

Targets and their pod templates: a Deployment, StatefulSet or Job has one (`spec.template`); a
LeaderWorkerSet has the leader's and the workers' (`spec.leaderWorkerTemplate.{leaderTemplate,
workerTemplate}`, the workers' alone when there is no leader template) and its group size; a JobSet
has one per replicated Job. Every template gets the node selector, tolerations and the workload
label. Where the template may change (Deployment, StatefulSet, LeaderWorkerSet) its first container
also gets the GPU limit and every container the plan's `RACKFIT_*` variables (`plan_env`); a Job's
or JobSet's template takes only scheduling fields (while suspended), so their pods get the limit and
variables from the mutating webhook instead. A LeaderWorkerSet's group size is set to the nodes.

Patches are JSON merge patches (RFC 7386; lists are given whole), built as the difference between
the target and the target as placed, so one function serves built-in kinds and custom resources.
The additions are recorded in the target's `rackfit.io/applied` annotation: node selector keys,
tolerations, each GPU limit with its previous value, the variables with any value of the user's that
they replaced, the group size with its previous value. Re-applying the same placement yields no
patch; deleting the LLMWorkload removes what the annotation lists and nothing the user owns (a value
the user changed since is left alone).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from rackfit import names as n
from rackfit.names import APPLIED_ANNOTATION as APPLIED
from rackfit.names import DOMAIN_LABELS, GPU, HOSTNAME_LABEL, WORKLOAD_LABEL
from rackfit.names import WORKLOAD_ANNOTATION as WORKLOAD
from rackfit.spec import LLMWorkloadSpec

# kinds whose pod template takes only scheduling fields, and only while suspended
SCHEDULING_ONLY = frozenset({"Job", "JobSet"})
# kinds whose pods are independent replicas: one replica must fit on one node
SINGLE_NODE = frozenset({"Deployment", "StatefulSet"})
_MISSING = object()


def applied(target: dict[str, Any]) -> dict[str, Any]:
    raw = (target.get("metadata", {}).get("annotations") or {}).get(APPLIED)
    return json.loads(raw) if raw else {}


def pod_templates(target: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, PodTemplateSpec) of each pod template of the target, in place (missing specs created,
    so call it on a copy when the target must stay as it is)."""
    spec = target.setdefault("spec", {})
    kind = target.get("kind")
    if kind == "LeaderWorkerSet":
        lwt = spec.setdefault("leaderWorkerTemplate", {})
        return [(k, lwt[k]) for k in ("leaderTemplate", "workerTemplate") if lwt.get(k)]
    if kind == "JobSet":
        return [(f"replicatedJobs[{rj.get('name')}]",
                 rj.setdefault("template", {}).setdefault("spec", {}).setdefault("template", {}))
                for rj in spec.get("replicatedJobs") or []]
    return [("template", spec.setdefault("template", {}))]


def plan_env(placement: dict[str, Any], estimate: dict[str, Any] | None, spec: LLMWorkloadSpec) -> dict[str, str]:
    """The `RACKFIT_*` variables of a placement: the layout, nodes and instance type; for serving
    engines also the engine settings estimated for the GPU (`estimate.engine`), else the spec's."""
    env = {n.ENV_TENSOR: placement["tensor"], n.ENV_PIPELINE: placement["pipeline"], n.ENV_DATA: placement["data"],
           n.ENV_EXPERT: placement["expert"], n.ENV_NNODES: placement["nodes"],
           n.ENV_GPUS_PER_NODE: placement["gpusPerNode"], n.ENV_INSTANCE_TYPE: placement["instanceType"]}
    inference = spec.inference if spec.workload == "inference" else None
    if inference is not None and inference.serving_engine:
        engine = (estimate or {}).get("engine") or {}
        env[n.ENV_MAX_MODEL_LEN] = engine.get("maxModelLen") or inference.context_length
        # without an engine estimate: the spec's fraction, else what the plan leaves the GPU (1 - headroom)
        utilization = engine.get("gpuMemoryUtilization") or inference.gpu_memory_utilization or \
            round(1 - spec.placement.headroom, 4)
        env[n.ENV_GPU_MEMORY_UTILIZATION] = f"{utilization:g}"
        env[n.ENV_MAX_NUM_SEQS] = engine.get("maxNumSeqs") or inference.max_num_seqs or inference.concurrency
    return {k: str(v) for k, v in env.items()}


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: maps recursively, lists and
    scalars whole, None for a removed key. An empty map or list that `old` lacks is no change (the
    API server drops them)."""
    patch: dict[str, Any] = {}
    for k in old.keys() - new.keys():
        patch[k] = None
    for k, v in new.items():
        o = old.get(k, _MISSING)
        if o == v or (o is _MISSING and v in ({}, [], None)):
            continue
        if isinstance(o, dict) and isinstance(v, dict):
            sub = merge_diff(o, v)
            if sub:
                patch[k] = sub
        else:
            patch[k] = copy.deepcopy(v)
    return patch


def _set_env(entries: list[dict], env: dict[str, str], ours: dict[str, str], theirs: dict[str, dict]
             ) -> tuple[list[dict], dict[str, dict]]:
    """The container's env with `env` set (in place, new names last), variables of an earlier plan
    that no longer apply removed (or given back to the user), and the user's entries replaced."""
    theirs = dict(theirs)
    out, seen = [], set()
    for e in entries:
        name = e.get("name")
        if name in env:
            if name not in ours and name not in theirs:
                theirs[name] = e  # the user's own: given back on undo
            out.append({"name": name, "value": env[name]})
            seen.add(name)
        elif name in ours and e == {"name": name, "value": ours[name]}:
            if name in theirs:  # ours from an earlier plan, no longer set
                out.append(theirs.pop(name))
        else:
            out.append(e)
    out += [{"name": k, "value": v} for k, v in env.items() if k not in seen]
    return out, theirs


def _unset_env(entries: list[dict], ours: dict[str, str], theirs: dict[str, dict]) -> list[dict]:
    out = []
    for e in entries:
        name = e.get("name")
        if name in ours and e == {"name": name, "value": ours[name]}:
            if name in theirs:
                out.append(theirs[name])
        else:
            out.append(e)
    return out


def _gpu_records(before: dict[str, Any]) -> dict[str, dict]:
    """template name -> its GPU limit record (an older annotation held one, for `template`)."""
    if "gpuLimit" in before:
        return {"template": before["gpuLimit"]}
    return {r["template"]: r for r in before.get("gpuLimits") or []}


def place_patch(target: dict[str, Any], workload: str, node_selector: dict[str, str], gpus_per_pod: int,
                tolerations: list[dict[str, Any]], set_limits: bool | None = None, env: dict[str, str] | None = None,
                group_size: int | None = None) -> dict[str, Any] | None:
    """A merge patch that makes the target match the placement, or None if it already does.
    `set_limits` (GPU limit and `env`) defaults to the kind: False for Jobs and JobSets, whose pod
    templates allow only scheduling fields to change. `group_size` is a LeaderWorkerSet's size."""
    kind = target.get("kind")
    editable = kind not in SCHEDULING_ONLY if set_limits is None else set_limits
    env = env or {}
    new = copy.deepcopy(target)
    before = applied(target)
    record: dict[str, Any] = {"nodeSelector": node_selector, "tolerations": tolerations}
    gpu_before = _gpu_records(before)
    env_before, theirs_before = before.get("env") or {}, before.get("envPrevious") or {}
    gpu_limits, theirs_after, relabel = [], {}, False
    for name, template in pod_templates(new):
        pod = template.setdefault("spec", {})
        selector = dict(pod.get("nodeSelector") or {})
        for key, value in (before.get("nodeSelector") or {}).items():  # keys of an earlier placement
            if key not in node_selector and selector.get(key) == value:
                del selector[key]
        pod["nodeSelector"] = {**selector, **node_selector}
        present = pod.get("tolerations") or []
        missing = [t for t in tolerations if t not in present]
        if missing:
            pod["tolerations"] = present + missing
        # the workload label: its pods are counted as the workload's in the ledger and, with the
        # webhooks, gated at creation until they are pinned to the placement
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        if labels.get(WORKLOAD_LABEL) != workload:
            labels[WORKLOAD_LABEL] = workload
            relabel = True
        containers = pod.get("containers") or []
        if editable and containers:
            first = containers[0]
            limits = first.setdefault("resources", {}).setdefault("limits", {})
            old = gpu_before.get(name)
            previous = old["previous"] if old else limits.get(GPU)
            gpu_limits.append({"template": name, "container": first["name"], "value": str(gpus_per_pod),
                               "previous": previous})
            limits[GPU] = str(gpus_per_pod)
        if editable:
            for c in containers:
                where = f"{name}/{c['name']}"
                c["env"], theirs = _set_env(c.get("env") or [], env, env_before, theirs_before.get(where, {}))
                if not c["env"]:
                    del c["env"]
                if theirs:
                    theirs_after[where] = theirs
    if gpu_limits:
        record["gpuLimits"] = gpu_limits
    if editable and env:
        record["env"] = env
    if theirs_after:
        record["envPrevious"] = theirs_after
    if kind == "LeaderWorkerSet" and group_size is not None:
        lwt = new["spec"]["leaderWorkerTemplate"]
        previous = (before.get("groupSize") or {}).get("previous", lwt.get("size"))
        record["groupSize"] = {"value": group_size, "previous": previous}
        lwt["size"] = group_size
    if relabel or before.get("podLabel"):  # rackfit added it (now or earlier): undo removes it
        record["podLabel"] = True
    annotations = {APPLIED: json.dumps(record, sort_keys=True), WORKLOAD: workload}
    current = target.get("metadata", {}).get("annotations") or {}
    spec = merge_diff(target.get("spec") or {}, new["spec"])
    if not spec and all(current.get(k) == v for k, v in annotations.items()):
        return None
    return _with_metadata(target, annotations, spec)


def _with_metadata(target: dict[str, Any], annotations: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    # the target as read: a concurrent change makes the patch fail (409) and the reconcile retry,
    # instead of lists given whole overwriting it
    metadata: dict[str, Any] = {"annotations": annotations}
    if target.get("metadata", {}).get("resourceVersion"):
        metadata["resourceVersion"] = target["metadata"]["resourceVersion"]
    return {"metadata": metadata, "spec": spec} if spec else {"metadata": metadata}


def unplace_patch(target: dict[str, Any], scheduling: bool = True) -> dict[str, Any] | None:
    """Undo what the annotation records; None if rackfit added nothing. `scheduling` False leaves the
    templates alone (a started Job's or JobSet's cannot change): only rackfit's annotations go."""
    before = applied(target)
    if not before:
        return None
    annotations = {APPLIED: None, WORKLOAD: None}
    if not scheduling:
        return _with_metadata(target, annotations, {})
    new = copy.deepcopy(target)
    gpus = _gpu_records(before)
    env, theirs = before.get("env") or {}, before.get("envPrevious") or {}
    for name, template in pod_templates(new):
        pod = template.setdefault("spec", {})
        selector = pod.get("nodeSelector") or {}
        for key, value in (before.get("nodeSelector") or {}).items():
            if selector.get(key) == value:
                del selector[key]
        added = before.get("tolerations") or []
        if added and pod.get("tolerations"):
            pod["tolerations"] = [t for t in pod["tolerations"] if t not in added]
        if before.get("podLabel"):
            (template.get("metadata") or {}).get("labels", {}).pop(WORKLOAD_LABEL, None)
        containers = pod.get("containers") or []
        gpu = gpus.get(name)
        if gpu and containers and containers[0]["name"] == gpu["container"]:
            limits = (containers[0].get("resources") or {}).get("limits") or {}
            if limits.get(GPU) == gpu["value"]:
                if gpu["previous"] is None:
                    del limits[GPU]
                else:
                    limits[GPU] = gpu["previous"]
        for c in containers:
            if env and c.get("env"):
                c["env"] = _unset_env(c["env"], env, theirs.get(f"{name}/{c['name']}", {}))
            _drop_empty(c.get("resources") or {}, "limits")
            _drop_empty(c, "env", "resources")
        _drop_empty(pod, "nodeSelector", "tolerations")
        _drop_empty(template.get("metadata") or {}, "labels")
        _drop_empty(template, "metadata")
    size = before.get("groupSize")
    lwt = new["spec"].get("leaderWorkerTemplate") or {}
    if size and lwt.get("size") == size["value"]:
        if size["previous"] is None:
            lwt.pop("size", None)
        else:
            lwt["size"] = size["previous"]
    return _with_metadata(target, annotations, merge_diff(target.get("spec") or {}, new["spec"]))


def _drop_empty(obj: dict[str, Any], *keys: str) -> None:
    """Remove the keys whose value undo emptied (the API server drops empty maps and lists of these
    fields too, so the result reads as the user's manifest)."""
    for k in keys:
        if k in obj and obj[k] in ({}, [], None):
            del obj[k]


def pinned_domain(target: dict[str, Any] | None) -> str | None:
    """The NVLink domain value rackfit last pinned the target to (from its applied record)."""
    selector = applied(target or {}).get("nodeSelector") or {}
    return next((selector[k] for k in (*DOMAIN_LABELS, HOSTNAME_LABEL) if k in selector), None)


def pod_gpus(pod_spec: dict[str, Any] | None) -> int:
    """GPUs a pod (spec) asks for: each container's request, else its limit (the API server defaults an
    extended resource's request to its limit, and they must be equal when both are set)."""
    total = 0
    for c in (pod_spec or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(GPU) or (res.get("limits") or {}).get(GPU)
        total += int(value) if value else 0
    return total


def _pod_gpus(template: dict[str, Any] | None) -> int:
    return pod_gpus((template or {}).get("spec"))


def _job_spec(rj: dict[str, Any]) -> dict[str, Any]:
    """A replicated Job's JobSpec (its `template.spec`)."""
    return (rj.get("template") or {}).get("spec") or {}


def _gpu_jobs(target: dict[str, Any]) -> list[dict[str, Any]]:
    """A JobSet's replicated Jobs whose pods ask for GPUs (all of them when none does)."""
    jobs = (target.get("spec") or {}).get("replicatedJobs") or []
    with_gpus = [rj for rj in jobs if _pod_gpus(_job_spec(rj).get("template"))]
    return with_gpus or jobs


def _job_pods(rj: dict[str, Any]) -> int:
    parallelism = _job_spec(rj).get("parallelism")
    return rj.get("replicas", 1) * (1 if parallelism is None else parallelism)


def requested_gpus(target: dict[str, Any], per_pod: int | None = None, group_size: int | None = None) -> int:
    """GPUs the target asks for in all: its pods x the GPU limits of their template (`per_pod` when
    rackfit sets the limit; `group_size` a LeaderWorkerSet's size as rackfit sets it)."""
    spec = target.get("spec", {})
    kind = target.get("kind")
    if kind == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate") or {}
        size = group_size if group_size is not None else lwt.get("size", 1)
        workers = _pod_gpus(lwt.get("workerTemplate")) if per_pod is None else per_pod
        leader = _pod_gpus(lwt.get("leaderTemplate") or lwt.get("workerTemplate")) if per_pod is None else per_pod
        replicas = spec.get("replicas")
        return (1 if replicas is None else replicas) * (leader + (size - 1) * workers)
    if kind == "JobSet":
        return sum(_job_pods(rj) * _pod_gpus(_job_spec(rj).get("template")) for rj in _gpu_jobs(target))
    pods = spec.get("parallelism", 1) if kind == "Job" else spec.get("replicas", 1)
    if per_pod is None:
        per_pod = _pod_gpus(spec.get("template"))
    return (pods if pods is not None else 1) * per_pod


def shape_problem(target: dict[str, Any], ref: str, placement: dict[str, Any]) -> str | None:
    """Why this kind of target cannot run this placement, naming the field to change; None if it can.
    A Deployment's or StatefulSet's pods are independent servers, so one model replica (tensor x
    pipeline GPUs) must fit on one node; a LeaderWorkerSet is one group, the one rackfit books (a
    second group would run on GPUs nobody booked); a JobSet's GPU pods must be as many as the nodes
    (its replicated Jobs cannot change after creation, so rackfit cannot set them)."""
    kind = target.get("kind")
    per_node, nodes = placement["gpusPerNode"], placement["nodes"]
    replica = placement["tensor"] * placement["pipeline"]
    if kind in SINGLE_NODE and replica > per_node:
        return (f"spec.target.kind: one replica of the model spans {nodes} nodes (tensor {placement['tensor']} x "
                f"pipeline {placement['pipeline']} on {per_node}-GPU {placement['instanceType']} nodes), and the "
                f"pods of {ref} are independent servers, each with {per_node} GPUs; allowed: LeaderWorkerSet "
                f"(serving: one leader and {nodes - 1} workers per group) or JobSet (training), or, for data-"
                f"parallel replicas of a {kind}, a layout where each replica holds the whole model on one node "
                f"(spec.parallelism with tensor x pipeline <= {per_node})")
    groups = (target.get("spec") or {}).get("replicas")
    if kind == "LeaderWorkerSet" and groups not in (None, 1):
        return (f"spec.replicas: {groups} groups in {ref}, and rackfit books one group ({nodes} nodes x {per_node} "
                f"GPUs in one NVLink domain) per LLMWorkload; allowed: 1 (for more copies of the model, set the "
                f"LLMWorkload's spec.parallelism.data: its replicas run inside the one group as the engine's data "
                f"parallelism, RACKFIT_DATA_PARALLEL_SIZE; or give each LeaderWorkerSet its own LLMWorkload)")
    if kind == "JobSet":
        jobs = _gpu_jobs(target)
        pods = sum(_job_pods(rj) for rj in jobs)
        if pods != nodes:
            names = ", ".join(f"spec.replicatedJobs[{rj.get('name')}]" for rj in jobs) or "spec.replicatedJobs"
            return (f"{names}: {pods} pods (replicas x template.spec.parallelism) for a placement of {nodes} nodes "
                    f"x {per_node} GPUs; allowed: {nodes} (parallelism and completions {nodes} with replicas 1): "
                    f"create {ref} again, suspended (a JobSet's replicated Jobs cannot change after creation)")
    return None
