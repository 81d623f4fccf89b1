"""The ComputeDomain a placement needs and the claim its pods carry (pure; the operator's
computedomains.py creates and deletes them, and says why)."""

from __future__ import annotations

import hashlib
from typing import Any

from rackfit.names import (
    CHANNEL_CLAIM,
    COMPUTE_DOMAIN_GROUP,
    COMPUTE_DOMAIN_KIND,
    COMPUTE_DOMAIN_PLURAL,
    COMPUTE_DOMAIN_VERSION,
    DOMAIN_LABELS,
    GROUP,
    KIND,
    VERSION,
    WORKLOAD_LABEL,
)
from rackfit.planner import Placement

API = (COMPUTE_DOMAIN_GROUP, COMPUTE_DOMAIN_VERSION, COMPUTE_DOMAIN_PLURAL)
_NAME_MAX = 63 - 9  # <workload>-<8 hex>, a DNS label


def needs_one(placement: Placement | None) -> bool:
    """More than one node inside one multi-node NVLink domain (an NVL72 clique)."""
    domain = placement.domain if placement else None
    return placement is not None and placement.nodes >= 2 and domain is not None and domain.label in DOMAIN_LABELS


def name(workload: str, placement: Placement) -> str:
    """The ComputeDomain of `workload` for this placement: a new one when the domain or nodes change."""
    digest = hashlib.sha256(f"{placement.nvlink_domain}/{placement.nodes}".encode()).hexdigest()[:8]
    return f"{workload[:_NAME_MAX].rstrip('-.')}-{digest}"


def channel_claim(workload: str, placement: Placement | None) -> dict[str, str] | None:
    """The pod's claim of the placement's channel (an entry of `spec.resourceClaims`), or None."""
    if placement is None or not needs_one(placement):
        return None
    return {"name": CHANNEL_CLAIM, "resourceClaimTemplateName": f"{name(workload, placement)}-channel"}


def group_claim(target: str, nodes: int) -> dict[str, str]:
    """The channel claim written into a Kueue LeaderWorkerSet's templates as it is created, before any
    rack is known (one group: its ComputeDomain is made for the rack Kueue admits it into)."""
    digest = hashlib.sha256(f"kueue-group/{nodes}".encode()).hexdigest()[:8]
    return {"name": CHANNEL_CLAIM, "resourceClaimTemplateName": f"{target[:_NAME_MAX].rstrip('-.')}-{digest}-channel"}


def compute_domain(namespace: str, workload: str, uid: str, placement: Placement,
                   owner: tuple[str, str, str] = (f"{GROUP}/{VERSION}", KIND, WORKLOAD_LABEL),
                   claim: dict[str, str] | None = None) -> dict[str, Any]:
    """The ComputeDomain a placement needs (pure). `owner`: (apiVersion, kind, label key) of the object
    `workload` names, which owns it (an LLMWorkload; a Kueue Workload for a placement Kueue admitted);
    `claim`: the channel its pods claim, where they were made with it (`group_claim`)."""
    claim = claim or channel_claim(workload, placement)
    assert claim is not None
    api_version, kind, label = owner
    template = claim["resourceClaimTemplateName"]
    return {"apiVersion": f"{COMPUTE_DOMAIN_GROUP}/{COMPUTE_DOMAIN_VERSION}", "kind": COMPUTE_DOMAIN_KIND,
            "metadata": {"name": template.removesuffix("-channel"), "namespace": namespace,
                         "labels": {label: workload},
                         "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": workload,
                                              "uid": uid, "controller": True}]},
            "spec": {"numNodes": placement.nodes,
                     "channel": {"resourceClaimTemplate": {"name": template}, "allocationMode": "Single"}}}


def changes(existing: list[str], wanted: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """(the ComputeDomain to create, or None; the names to delete), from the names the workload has
    and the one it needs (pure)."""
    keep = wanted["metadata"]["name"] if wanted else None
    return (wanted if keep and keep not in existing else None), sorted(n for n in existing if n != keep)


def pod_claim(pod_spec: dict[str, Any], claim: dict[str, str] | None) -> dict[str, Any]:
    """Fields to set on a new pod so every container holds the channel: `resourceClaims` and
    `containers` (only those that change; empty when it already claims it or there is none)."""
    if claim is None or any(c.get("name") == claim["name"] for c in pod_spec.get("resourceClaims") or []):
        return {}
    containers = [dict(c) for c in pod_spec.get("containers") or []]
    for c in containers:
        resources = dict(c.get("resources") or {})
        if not any(x.get("name") == claim["name"] for x in resources.get("claims") or []):
            resources["claims"] = [*(resources.get("claims") or []), {"name": claim["name"]}]
        c["resources"] = resources
    return {"resourceClaims": [*(pod_spec.get("resourceClaims") or []), dict(claim)], "containers": containers}
