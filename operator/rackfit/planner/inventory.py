"""Free GPU capacity by NVLink domain, as the operator reads it from Node objects (pure: it takes
plain label and count dicts, not Kubernetes objects).

The NVLink domain of a node is `nvidia.com/gpu.clique` (GB200/GB300 MNNVL), else CoreWeave's
`ds.coreweave.com/nvlink.domain`, else the node itself (an 8-GPU HGX host). InfiniBand labels are
never a substitute: IB is not NVLink.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CLIQUE_LABEL = "nvidia.com/gpu.clique"
COREWEAVE_DOMAIN_LABEL = "ds.coreweave.com/nvlink.domain"
HOSTNAME_LABEL = "kubernetes.io/hostname"
DOMAIN_LABELS = (CLIQUE_LABEL, COREWEAVE_DOMAIN_LABEL)


class NodeCapacity(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    instance_type: str
    domain_label: str = Field(description="label key that names the NVLink domain, or the hostname label")
    domain: str
    allocatable_gpus: int
    free_gpus: int


def domain_of(name: str, labels: dict[str, str]) -> tuple[str, str]:
    """(label key, value) of the node's NVLink domain."""
    for key in DOMAIN_LABELS:
        if labels.get(key):
            return key, labels[key]
    return HOSTNAME_LABEL, labels.get(HOSTNAME_LABEL, name)


class Inventory(BaseModel):
    """Schedulable GPU nodes (cordoned and NotReady ones are left out by the caller)."""

    model_config = ConfigDict(frozen=True)

    nodes: list[NodeCapacity] = []

    @classmethod
    def from_nodes(cls, nodes: list[tuple[str, dict[str, str], int, int]]) -> Inventory:
        """From (name, labels, allocatable GPUs, GPUs requested by bound pods) tuples."""
        out = []
        for name, labels, allocatable, requested in nodes:
            itype = labels.get(INSTANCE_TYPE_LABEL)
            if not itype or allocatable <= 0:
                continue
            key, domain = domain_of(name, labels)
            out.append(NodeCapacity(name=name, instance_type=itype, domain_label=key, domain=domain,
                                    allocatable_gpus=allocatable, free_gpus=max(0, allocatable - requested)))
        return cls(nodes=out)

    def domains(self, instance_type: str) -> dict[tuple[str, str], list[NodeCapacity]]:
        out: dict[tuple[str, str], list[NodeCapacity]] = {}
        for n in self.nodes:
            if n.instance_type == instance_type:
                out.setdefault((n.domain_label, n.domain), []).append(n)
        return out

    def find_domain(self, instance_type: str, nodes: int, gpus_per_node: int, prefer: str | None = None
                    ) -> tuple[str, str] | None:
        """An NVLink domain of this type with `nodes` nodes that each have `gpus_per_node` free GPUs.
        `prefer` (a domain already holding the workload) wins when it still fits; otherwise the domain
        with the least spare room that fits, to keep large domains whole for large jobs."""
        fitting = []
        for key, members in self.domains(instance_type).items():
            ready = sum(1 for n in members if n.free_gpus >= gpus_per_node)
            if ready >= nodes:
                if prefer is not None and key[1] == prefer:
                    return key
                fitting.append((ready - nodes, key))
        return min(fitting)[1] if fitting else None

    def free_nodes(self, instance_type: str, gpus_per_node: int) -> int:
        return sum(1 for n in self.nodes if n.instance_type == instance_type and n.free_gpus >= gpus_per_node)
