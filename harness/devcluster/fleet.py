"""A simulated GPU fleet: Node objects shaped like CoreWeave CKS GPU nodes, built from the catalog.

`build_nodes()` is pure (fleet spec in, Node dicts out; unit-tested). `apply_fleet()` creates them
through the `kubernetes` client on a control plane without kubelets, and `label_nodes()` copies the
same labels and GPU capacity onto the real nodes of a kind cluster. Callers: `python -m
devcluster up|label` and the e2e `cluster` fixture.

Labels follow GPU Feature Discovery and CKS (docs/local-cluster.md): product, memory (MiB), count,
instance type, zone, hostname, and `nvidia.com/gpu.clique` on multi-node NVLink types only (NVL72:
18 four-GPU nodes per rack). Real racks each report their own fabric ClusterUUID; the simulation
uses one UUID per instance type and the rack number as the clique ID, which keeps what matters:
one distinct value per NVLink domain.

The `kubernetes` client is only touched by the functions that take a `core_v1` API object, so
the pure builder works without the operator extra installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from rackfit.catalog import Catalog, load_catalog
from rackfit.names import CLIQUE_LABEL, GPU, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL

DEFAULT_FLEET: dict[str, int] = {
    "gb200-4x": 36,           # two NVL72 racks of 18 nodes
    "gd-8xh100ib-i128": 16,   # HGX H100
    "gd-8xh200ib-i128": 8,    # HGX H200
    "gd-8xl40s-i128": 4,      # PCIe L40S
}
DEFAULT_ZONE = "US-EAST-04A"
SIMULATED_LABEL = "devcluster.rackfit.io/simulated"

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
# The catalog describes GPUs only; hosts get one plausible CPU/memory shape (the planner counts GPUs).
HOST_CAPACITY = {"cpu": "128", "memory": "2Ti", "pods": "110", "ephemeral-storage": "7Ti"}
_FLEET_UUID_NAMESPACE = uuid.UUID("6f1c3d0e-5b7a-4e21-9a43-2d8f0c1b7e55")


def parse_fleet(spec: str | Mapping[str, int] | None, catalog: Catalog | None = None) -> dict[str, int]:
    """`"gb200-4x=36,gd-8xh100ib-i128=16"` or a mapping -> {instance type: node count}; None -> default.

    Raises `CatalogError` for unknown instance types and `ValueError` for malformed counts.
    """
    if spec is None:
        return dict(DEFAULT_FLEET)
    if isinstance(spec, str):
        pairs: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, count = item.partition("=")
            if not sep:
                raise ValueError(f"fleet entry {item!r} is not TYPE=COUNT")
            pairs[name.strip()] = count.strip()
        spec = pairs
    catalog = catalog or load_catalog()
    fleet: dict[str, int] = {}
    for name, count in spec.items():
        catalog.get(name)  # raises CatalogError listing the known types
        try:
            fleet[name] = int(count)
        except (TypeError, ValueError):
            raise ValueError(f"fleet count for {name} must be an integer, got {count!r}") from None
        if fleet[name] < 1:
            raise ValueError(f"fleet count for {name} must be at least 1, got {count}")
    if not fleet:
        raise ValueError("the fleet is empty")
    return fleet


def node_names(fleet: Mapping[str, int]) -> list[str]:
    """The names `build_nodes` gives, in the same order."""
    return [f"{name}-{i:03d}" for name, count in fleet.items() for i in range(count)]


def build_nodes(fleet: Mapping[str, int] | None = None, *, catalog: Catalog | None = None,
                cluster_name: str = "rackfit-dev", zone: str = DEFAULT_ZONE) -> list[dict[str, Any]]:
    """Node manifests (metadata + status) for `fleet`; status must be written via the status subresource."""
    catalog = catalog or load_catalog()
    nodes = []
    names = iter(node_names(fleet or DEFAULT_FLEET))
    for type_name, count in (fleet or DEFAULT_FLEET).items():
        itype = catalog.get(type_name)
        multi_node_domain = itype.nodes_per_domain > 1
        fabric_uuid = uuid.uuid5(_FLEET_UUID_NAMESPACE, f"{cluster_name}/{type_name}")
        for i in range(count):
            name = next(names)
            labels = {
                HOSTNAME_LABEL: name,
                INSTANCE_TYPE_LABEL: itype.name,
                "topology.kubernetes.io/zone": zone,
                "nvidia.com/gpu.product": itype.gpu.product,
                "nvidia.com/gpu.memory": str(itype.gpu.memory_mib),
                "nvidia.com/gpu.count": str(itype.gpus_per_node),
                SIMULATED_LABEL: "true",
            }
            if multi_node_domain:
                labels[CLIQUE_LABEL] = f"{fabric_uuid}.{i // itype.nodes_per_domain}"
            capacity = {**HOST_CAPACITY, GPU: str(itype.gpus_per_node)}
            nodes.append({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {},
                "status": {
                    "capacity": capacity,
                    "allocatable": dict(capacity),
                    "conditions": [{
                        "type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "simulated node (rackfit devcluster); no kubelet runs pods",
                    }],
                },
            })
    return nodes


def apply_fleet(core_v1, nodes: list[dict[str, Any]], workers: int = 8) -> None:
    """Create `nodes` (or update them if they exist), write their status and make them schedulable.

    `core_v1` is a `kubernetes.client.CoreV1Api`. The TaintNodesByCondition admission plugin puts
    `node.kubernetes.io/not-ready:NoSchedule` on every new Node; the node-lifecycle controller that
    would lift it once Ready is not running here, so the taint is removed explicitly.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda node: _apply_node(core_v1, node), nodes))


def _apply_node(core_v1, node: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException  # see the module docstring

    name = node["metadata"]["name"]
    body = {k: v for k, v in node.items() if k != "status"}
    try:
        created = core_v1.create_node(body)
    except ApiException as e:
        if e.status != 409:
            raise
        created = core_v1.patch_node(name, {"metadata": {"labels": node["metadata"]["labels"]}})
    core_v1.patch_node_status(name, {"status": _with_heartbeat(node["status"])})
    taints = created.spec.taints or []
    if any(t.key == NOT_READY_TAINT for t in taints):
        kept = [{"key": t.key, "value": t.value, "effect": t.effect} for t in taints if t.key != NOT_READY_TAINT]
        core_v1.patch_node(name, [{"op": "replace", "path": "/spec/taints", "value": kept}])


def _with_heartbeat(status: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{**c, "lastHeartbeatTime": now, "lastTransitionTime": now} for c in status["conditions"]]
    return {**status, "conditions": conditions}


def label_nodes(core_v1, node_names_in_cluster: list[str], fleet: Mapping[str, int],
                catalog: Catalog | None = None) -> dict[str, str]:
    """Give existing nodes (e.g. kind workers) the labels and GPU capacity of the fleet's nodes, in order.

    Returns {existing node: simulated node it now stands for}. Keeps each node's own hostname label
    (its kubelet owns it). Raises `ValueError` if the fleet has more nodes than the cluster.
    """
    simulated = build_nodes(fleet, catalog=catalog)
    if len(simulated) > len(node_names_in_cluster):
        raise ValueError(f"the fleet has {len(simulated)} nodes but the cluster only {len(node_names_in_cluster)}")
    mapping = {}
    for real, sim in zip(node_names_in_cluster, simulated, strict=False):  # more nodes than the fleet: the rest stay
        labels = {k: v for k, v in sim["metadata"]["labels"].items() if k != "kubernetes.io/hostname"}
        core_v1.patch_node(real, {"metadata": {"labels": labels}})
        # Extended resources are advertised by patching status; a kubelet keeps ones it does not manage.
        gpus = {GPU: sim["status"]["capacity"][GPU]}
        core_v1.patch_node_status(real, {"status": {"capacity": gpus, "allocatable": gpus}})
        mapping[real] = sim["metadata"]["name"]
    return mapping
