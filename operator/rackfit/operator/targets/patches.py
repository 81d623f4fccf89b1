"""What rackfit adds to a target's pod templates, and how to take exactly that back (pure).

Every template gets the node selector, tolerations and the workload label. Where the kind's
templates are editable (Deployment, StatefulSet, LeaderWorkerSet) its first container also gets the
GPU limit and every container the plan's `RACKFIT_*` variables (`env.plan_env`); a Job's or JobSet's
template takes only scheduling fields (while suspended), so their pods get the limit and variables
from the pod webhook instead. A kind with a group size (LeaderWorkerSet) gets it set to the nodes.
Editable templates of a placement across NVL72 nodes also claim its ComputeDomain's IMEX channel
(`spec.resourceClaims` and every container's `resources.claims`; computedomain.py).

Patches are JSON merge patches (RFC 7386; lists are given whole), built as the difference between
the target and the target as placed, so one function serves built-in kinds and custom resources.
The additions are recorded in the target's `rackfit.io/applied` annotation: node selector keys,
tolerations, each GPU limit with its previous value, the variables with any value of the user's that
they replaced, the group size with its previous value, the channel claim. Re-applying the same placement yields no
patch; deleting the LLMWorkload removes what the annotation lists and nothing the user owns (a value
the user changed since is left alone).

A target that is Kueue's (`kueue_patch`) gets only what Kueue's topology-aware scheduling reads from its
pod templates (`kueue.x-k8s.io/podset-*` annotations, added where the user set none): a suspended Job or
JobSet from the reconcile, with rackfit's topology toleration (names.KUEUE_TOPOLOGY_TOLERATION, why
there); a LeaderWorkerSet at its creation (the webhook), with the plan's variables. Recorded as
`templateAnnotations`, `tolerations` and `env` in the same annotation and taken back by `unplace_patch`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from rackfit.names import APPLIED_ANNOTATION as APPLIED
from rackfit.names import DOMAIN_LABELS, GPU, HOSTNAME_LABEL, KUEUE_TOPOLOGY_TOLERATION, WORKLOAD_LABEL
from rackfit.names import WORKLOAD_ANNOTATION as WORKLOAD
from rackfit.operator.targets.registry import adapter

_MISSING = object()


def applied(target: dict[str, Any]) -> dict[str, Any]:
    raw = (target.get("metadata", {}).get("annotations") or {}).get(APPLIED)
    return json.loads(raw) if raw else {}


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


def _set_claim(pod: dict[str, Any], claim: dict[str, str] | None, before: dict[str, str] | None) -> None:
    """The pod template claims `claim` (an entry of `spec.resourceClaims`) in every container, and no
    longer the claim of an earlier placement (`before`) that differs (in place)."""
    if before and before != claim:
        _unset_claim(pod, before)
    if claim is None:
        return
    claims = [c for c in pod.get("resourceClaims") or [] if c.get("name") != claim["name"]]
    pod["resourceClaims"] = [*claims, dict(claim)]
    for c in pod.get("containers") or []:
        resources = c.setdefault("resources", {})
        if not any(x.get("name") == claim["name"] for x in resources.get("claims") or []):
            resources["claims"] = [*(resources.get("claims") or []), {"name": claim["name"]}]


def _unset_claim(pod: dict[str, Any], claim: dict[str, str]) -> None:
    if claim not in (pod.get("resourceClaims") or []):
        return  # not ours any more (the user changed it): left alone
    pod["resourceClaims"] = [c for c in pod["resourceClaims"] if c != claim]
    for c in pod.get("containers") or []:
        resources = c.get("resources") or {}
        if resources.get("claims"):
            resources["claims"] = [x for x in resources["claims"] if x.get("name") != claim["name"]]
            _drop_empty(resources, "claims")
        _drop_empty(c, "resources")
    _drop_empty(pod, "resourceClaims")


def place_patch(target: dict[str, Any], workload: str, node_selector: dict[str, str], gpus_per_pod: int,
                tolerations: list[dict[str, Any]], set_limits: bool | None = None, env: dict[str, str] | None = None,
                group_size: int | None = None, claim: dict[str, str] | None = None) -> dict[str, Any] | None:
    """A merge patch that makes the target match the placement, or None if it already does.
    `set_limits` (GPU limit, `env` and `claim`) defaults to the kind: False for Jobs and JobSets, whose pod
    templates allow only scheduling fields to change. `group_size`: the kind's group size, where it has one.
    `claim`: the ComputeDomain channel every pod claims (computedomains.channel_claim), or None."""
    kind = adapter(target.get("kind"))
    editable = kind.editable if set_limits is None else set_limits
    env = env or {}
    new = copy.deepcopy(target)
    before = applied(target)
    record: dict[str, Any] = {"nodeSelector": node_selector, "tolerations": tolerations}
    gpu_before = _gpu_records(before)
    env_before, theirs_before = before.get("env") or {}, before.get("envPrevious") or {}
    gpu_limits, theirs_after, relabel = [], {}, False
    for name, template in kind.pod_templates(new):
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
            _env_on(containers, name, env, env_before, theirs_before, theirs_after)
            _set_claim(pod, claim, before.get("resourceClaim"))
    if gpu_limits:
        record["gpuLimits"] = gpu_limits
    if editable and env:
        record["env"] = env
    if editable and claim:
        record["resourceClaim"] = claim
    if theirs_after:
        record["envPrevious"] = theirs_after
    size = kind.set_group_size(new, before, group_size) if group_size is not None else None
    if size:
        record["groupSize"] = size
    if relabel or before.get("podLabel"):  # rackfit added it (now or earlier): undo removes it
        record["podLabel"] = True
    return _recorded(target, new, record, workload)


def _env_on(containers: list[dict[str, Any]], template: str, env: dict[str, str], env_before: dict[str, str],
            theirs_before: dict[str, dict], theirs_after: dict[str, dict]) -> None:
    """Set `env` on every container of one template (in place), giving back what an earlier `env_before`
    added; the user's own values it replaced are kept in `theirs_after` by `template/container`."""
    for c in containers:
        where = f"{template}/{c['name']}"
        c["env"], theirs = _set_env(c.get("env") or [], env, env_before, theirs_before.get(where, {}))
        if not c["env"]:
            del c["env"]
        if theirs:
            theirs_after[where] = theirs


def kueue_patch(target: dict[str, Any], workload: str, annotations: dict[str, dict[str, str]],
                env: dict[str, str] | None = None, claim: dict[str, str] | None = None) -> dict[str, Any] | None:
    """A merge patch that puts `annotations` (template name -> Kueue's TAS annotations) on the target's
    pod templates, with the topology toleration on a suspendable kind's (names.KUEUE_TOPOLOGY_TOLERATION)
    and `env` and `claim` (a ComputeDomain channel) on an editable kind's; None if it carries them. A key
    the user set on a template is never overwritten (and stays the user's: only what rackfit added is
    recorded)."""
    kind = adapter(target.get("kind"))
    before = applied(target)
    if set(before) - {"templateAnnotations", "tolerations", "env", "envPrevious", "resourceClaim"}:
        return None  # placed by rackfit before it named a queue: its release takes that back
    new = copy.deepcopy(target)
    ours_before = before.get("templateAnnotations") or {}
    env = (env or {}) if kind.editable else {}
    added: dict[str, dict[str, str]] = {}
    theirs_after: dict[str, dict] = {}
    for name, template in kind.pod_templates(new):
        current = (template.get("metadata") or {}).get("annotations") or {}
        mine = ours_before.get(name) or {}
        for key, value in (annotations.get(name) or {}).items():
            if key in current and mine.get(key) != current[key]:
                continue  # the user's own value stands
            template.setdefault("metadata", {}).setdefault("annotations", {})[key] = value
            added.setdefault(name, {})[key] = value
        pod = template.setdefault("spec", {})
        if name in added and kind.suspendable and KUEUE_TOPOLOGY_TOLERATION not in (pod.get("tolerations") or []):
            pod["tolerations"] = [*(pod.get("tolerations") or []), dict(KUEUE_TOPOLOGY_TOLERATION)]
        if env:
            _env_on(pod.get("containers") or [], name, env, before.get("env") or {}, before.get("envPrevious") or {},
                    theirs_after)
        if kind.editable and claim:
            _set_claim(pod, claim, before.get("resourceClaim"))
    record: dict[str, Any] = {}
    if added:
        record["templateAnnotations"] = added
        if kind.suspendable:
            record["tolerations"] = [KUEUE_TOPOLOGY_TOLERATION]
    if env:
        record["env"] = env
    if theirs_after:
        record["envPrevious"] = theirs_after
    if kind.editable and claim:
        record["resourceClaim"] = claim
    if not record:
        return None
    return _recorded(target, new, record, workload)


def _recorded(target: dict[str, Any], new: dict[str, Any], record: dict[str, Any], workload: str
              ) -> dict[str, Any] | None:
    """The merge patch from `target` to `new`, with `record` as what rackfit applied; None if nothing
    would change."""
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
    kind = adapter(target.get("kind"))
    gpus = _gpu_records(before)
    env, theirs = before.get("env") or {}, before.get("envPrevious") or {}
    for name, template in kind.pod_templates(new):
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
        if before.get("resourceClaim"):
            _unset_claim(pod, before["resourceClaim"])
        mine = (before.get("templateAnnotations") or {}).get(name) or {}
        theirs_meta = (template.get("metadata") or {}).get("annotations") or {}
        for key, value in mine.items():
            if theirs_meta.get(key) == value:
                del theirs_meta[key]
        _drop_empty(template.get("metadata") or {}, "annotations")
        for c in containers:
            if env and c.get("env"):
                c["env"] = _unset_env(c["env"], env, theirs.get(f"{name}/{c['name']}", {}))
            _drop_empty(c.get("resources") or {}, "limits")
            _drop_empty(c, "env", "resources")
        _drop_empty(pod, "nodeSelector", "tolerations")
        _drop_empty(template.get("metadata") or {}, "labels")
        _drop_empty(template, "metadata")
    kind.unset_group_size(new, before.get("groupSize"))
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
