"""What rackfit adds to a target's pod template, and how to take exactly that back (pure).

The additions are recorded in the target's `rackfit.io/applied` annotation: node selector keys,
tolerations, and the GPU limit of the first container with its previous value. Re-applying the same
placement yields no patch; deleting the LLMWorkload removes what the annotation lists and nothing
the user owns (a selector value the user changed since is left alone).
"""

from __future__ import annotations

import json
from typing import Any

from rackfit.names import APPLIED_ANNOTATION as APPLIED
from rackfit.names import DOMAIN_LABELS, GPU, HOSTNAME_LABEL, WORKLOAD_LABEL
from rackfit.names import WORKLOAD_ANNOTATION as WORKLOAD


def _template(target: dict[str, Any]) -> dict[str, Any]:
    return target.get("spec", {}).get("template", {}).get("spec", {}) or {}


def applied(target: dict[str, Any]) -> dict[str, Any]:
    raw = (target.get("metadata", {}).get("annotations") or {}).get(APPLIED)
    return json.loads(raw) if raw else {}


def place_patch(target: dict[str, Any], workload: str, node_selector: dict[str, str], gpus_per_pod: int,
                tolerations: list[dict[str, Any]], set_limits: bool = True) -> dict[str, Any] | None:
    """A strategic-merge patch that makes the target match the placement, or None if it already does.
    `set_limits` is False for Jobs, whose pod template allows only scheduling fields to change."""
    pod = _template(target)
    before = applied(target)
    record: dict[str, Any] = {"nodeSelector": node_selector, "tolerations": tolerations}
    selector: dict[str, Any] = dict(node_selector)
    for key in before.get("nodeSelector", {}):  # keys of an earlier placement that no longer apply
        if key not in node_selector and (pod.get("nodeSelector") or {}).get(key) == before["nodeSelector"][key]:
            selector[key] = None
    spec: dict[str, Any] = {}
    if any((pod.get("nodeSelector") or {}).get(k) != v for k, v in selector.items()):
        spec["nodeSelector"] = selector
    missing = [t for t in tolerations if t not in (pod.get("tolerations") or [])]
    if missing:
        spec["tolerations"] = (pod.get("tolerations") or []) + missing
    containers = pod.get("containers") or []
    if set_limits and containers:
        first = containers[0]
        limits = (first.get("resources") or {}).get("limits") or {}
        previous = before.get("gpuLimit", {}).get("previous", limits.get(GPU)) if before else limits.get(GPU)
        record["gpuLimit"] = {"container": first["name"], "value": str(gpus_per_pod), "previous": previous}
        if limits.get(GPU) != str(gpus_per_pod):
            spec["containers"] = [{"name": first["name"], "resources": {"limits": {GPU: str(gpus_per_pod)}}}]
    # the workload label on the pod template: its pods are counted as the workload's in the ledger
    # and, with the webhooks, gated at creation until they are pinned to the placement
    labels = target.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    relabel = labels.get(WORKLOAD_LABEL) != workload
    if relabel or before.get("podLabel"):  # rackfit added it (now or earlier): undo removes it
        record["podLabel"] = True
    annotations = {APPLIED: json.dumps(record, sort_keys=True), WORKLOAD: workload}
    current = target.get("metadata", {}).get("annotations") or {}
    if not spec and not relabel and all(current.get(k) == v for k, v in annotations.items()):
        return None
    patch: dict[str, Any] = {"metadata": {"annotations": annotations}}
    template: dict[str, Any] = {}
    if spec:
        template["spec"] = spec
    if relabel:
        template["metadata"] = {"labels": {WORKLOAD_LABEL: workload}}
    if template:
        patch["spec"] = {"template": template}
    return patch


def unplace_patch(target: dict[str, Any]) -> dict[str, Any] | None:
    """Undo what the annotation records; None if rackfit added nothing."""
    before = applied(target)
    if not before:
        return None
    pod = _template(target)
    spec: dict[str, Any] = {}
    ours = {k: v for k, v in before.get("nodeSelector", {}).items() if (pod.get("nodeSelector") or {}).get(k) == v}
    if ours:
        spec["nodeSelector"] = {k: None for k in ours}
    added = before.get("tolerations") or []
    if added and any(t in added for t in pod.get("tolerations") or []):
        spec["tolerations"] = [t for t in pod.get("tolerations") or [] if t not in added]
    gpu = before.get("gpuLimit")
    containers = pod.get("containers") or []
    if gpu and containers and containers[0]["name"] == gpu["container"]:
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        if limits.get(GPU) == gpu["value"]:
            spec["containers"] = [{"name": gpu["container"], "resources": {"limits": {GPU: gpu["previous"]}}}]
    patch: dict[str, Any] = {"metadata": {"annotations": {APPLIED: None, WORKLOAD: None}}}
    template: dict[str, Any] = {}
    if spec:
        template["spec"] = spec
    if before.get("podLabel"):
        template["metadata"] = {"labels": {WORKLOAD_LABEL: None}}
    if template:
        patch["spec"] = {"template": template}
    return patch


def pinned_domain(target: dict[str, Any] | None) -> str | None:
    """The NVLink domain value rackfit last pinned the target to (from its applied record)."""
    selector = applied(target or {}).get("nodeSelector") or {}
    return next((selector[k] for k in (*DOMAIN_LABELS, HOSTNAME_LABEL) if k in selector), None)


def requested_gpus(target: dict[str, Any], per_pod: int | None = None) -> int:
    """GPUs the target asks for in all: replicas (or Job parallelism) x GPU limits of its pod
    (`per_pod` when rackfit sets the limit)."""
    spec = target.get("spec", {})
    pods = spec.get("parallelism", 1) if target.get("kind") == "Job" else spec.get("replicas", 1)
    if per_pod is None:
        per_pod = 0
        for c in _template(target).get("containers") or []:
            limit = ((c.get("resources") or {}).get("limits") or {}).get(GPU)
            per_pod += int(limit) if limit else 0
    return (pods if pods is not None else 1) * per_pod
