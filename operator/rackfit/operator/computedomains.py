"""ComputeDomains: NVLink between the nodes of one placement inside a GB200/GB300 NVL72 rack.

Pods on two nodes of one NVL72 rack share GPU memory over NVLink only through IMEX channels, which
NVIDIA's DRA driver hands out per ComputeDomain (github.com/NVIDIA/k8s-dra-driver-gpu, now
kubernetes-sigs/dra-driver-nvidia-gpu: api/nvidia.com/resource/v1beta1/computedomain.go,
site/content/docs/guides/compute-domain-workloads.md). Every placement of more than one node inside
one multi-node NVLink domain (`nvidia.com/gpu.clique`, CoreWeave's `ds.coreweave.com/nvlink.domain`)
gets one, as NVIDIA Grove's auto-MNNVL does (one per NVLink group per replica), made from the plan:

- named after the workload and its placement (`name`), in its namespace, labelled with the workload
  and owned by the LLMWorkload (the garbage collector deletes it with it);
- `spec.numNodes` = the placement's nodes. The driver's default mode (IMEXDaemonsWithDNSNames) uses it
  only to report the domain Ready and recommends 0; its legacy mode requires exactly the nodes, so
  the nodes are right in both; `spec.channel.resourceClaimTemplate.name` = `<name>-channel`, the
  ResourceClaimTemplate the driver's controller creates (its spec is immutable: CEL `self == oldSelf`);
- every pod of the target claims it: `spec.resourceClaims` `{name: rackfit-imex-channel,
  resourceClaimTemplateName: <name>-channel}` and `resources.claims` on each container. Templates
  rackfit may edit (Deployment, StatefulSet, LeaderWorkerSet leader and workers) carry it
  (`targets.place_patch`, recorded so it is taken back exactly); a Job's and a JobSet's templates
  take only scheduling fields, so their pods get it from the pod webhook (`targets.computedomain.pod_claim`);
- a placement that moves (another domain or node count) gets another ComputeDomain and the old one
  is deleted; one no longer placed, or single-node, keeps none.

On only where the ComputeDomain CRD is served (API discovery at start) and `RACKFIT_COMPUTE_DOMAINS`
(chart value `computeDomains.enabled`) is `auto` or `on`.
"""

from __future__ import annotations

from typing import Any

from rackfit.api.conditions import PLACED
from rackfit.names import GROUP, KIND, KUEUE_GROUP, KUEUE_VERSION, KUEUE_WORKLOAD_LABEL, VERSION, WORKLOAD_LABEL
from rackfit.operator import kube
from rackfit.operator.targets.computedomain import API, changes, compute_domain, needs_one
from rackfit.planner import Placement


def sync(namespace: str, workload: str, uid: str, placement: Placement | None,
         owner: tuple[str, str, str] | None = None, claim: dict[str, str] | None = None
         ) -> tuple[str | None, list[str]]:
    """Make the workload's ComputeDomains what `placement` (None: not placed) needs: create the one it
    needs, delete the others. Returns (created, deleted). `owner`, `claim`: as `compute_domain`'s."""
    owner = owner or (f"{GROUP}/{VERSION}", KIND, WORKLOAD_LABEL)
    wanted = compute_domain(namespace, workload, uid, placement, owner, claim) if needs_one(placement) else None
    create, delete = changes(kube.list_names(API, namespace, f"{owner[2]}={workload}"), wanted)
    if create:
        kube.create_object(API, namespace, create)
    for old in delete:
        kube.delete_object(API, namespace, old)
    return (create["metadata"]["name"] if create else None), delete


def reconcile(namespace: str, workload: str, uid: str, status: dict[str, Any], placement: Placement | None,
              logger) -> None:
    """After a decision, before the target is patched: the ComputeDomain of a placed workload's
    placement, none for one not placed (status `Placed` not True)."""
    placed = any(c.get("type") == PLACED and c.get("status") == "True" for c in status.get("conditions") or [])
    created, deleted = sync(namespace, workload, uid, placement if placed else None)
    if created:
        logger.info(f"created ComputeDomain {created}")
    if deleted:
        logger.info(f"deleted ComputeDomain {', '.join(deleted)}")


def for_kueue(kueue_workload: dict[str, Any], placement: Placement, claim: dict[str, str] | None = None
              ) -> tuple[str | None, list[str]]:
    """The ComputeDomain of a placement Kueue admitted into one clique, owned by Kueue's Workload (the
    garbage collector deletes it with the Workload; one of an earlier admission elsewhere goes now).
    `claim`: the channel the pods were made with (a LeaderWorkerSet's, `group_claim`)."""
    meta = kueue_workload["metadata"]
    return sync(meta["namespace"], meta["name"], meta["uid"], placement,
                (f"{KUEUE_GROUP}/{KUEUE_VERSION}", "Workload", KUEUE_WORKLOAD_LABEL), claim)


def enabled(setting: str) -> bool:
    """`RACKFIT_COMPUTE_DOMAINS`: on, off, or auto (on where the API server serves the CRD)."""
    if setting in ("on", "off"):
        return setting == "on"
    return kube.serves(*API)
