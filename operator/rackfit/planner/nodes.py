"""What the ledger keeps of nodes and pods (pure values): a node's NVLink domain, instance type and
allocatable GPUs; a bound pod's node and GPUs. Built by the operator's fleet watches
(`operator/fleet.py`), the CLI and the benchmarks; read by `capacity.py`.

The NVLink domain of a node is `nvidia.com/gpu.clique` (GB200/GB300 MNNVL), else CoreWeave's
`ds.coreweave.com/nvlink.domain`, else the node itself (an 8-GPU HGX host). InfiniBand labels are
never a substitute: IB is not NVLink.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from rackfit.names import DOMAIN_LABELS, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL

Owner = tuple[str, str]  # (namespace, LLMWorkload name)


class Domain(NamedTuple):
    """An NVLink domain: the node label that names it and its value."""

    label: str
    value: str

    def __str__(self) -> str:
        return f"{self.label}={self.value}"

    @classmethod
    def parse(cls, text: str) -> Domain:
        label, _, value = text.partition("=")
        return cls(label, value)


def domain_of(name: str, labels: dict[str, str]) -> Domain:
    """The node's NVLink domain."""
    for key in DOMAIN_LABELS:
        if labels.get(key):
            return Domain(key, labels[key])
    return Domain(HOSTNAME_LABEL, labels.get(HOSTNAME_LABEL, name))


@dataclass(frozen=True)
class NodeInfo:
    """What the ledger keeps of a GPU node: a few fields, not the object."""

    instance_type: str
    domain: Domain
    allocatable: int
    schedulable: bool = True

    @classmethod
    def from_labels(cls, name: str, labels: dict[str, str], allocatable: int, schedulable: bool = True
                    ) -> NodeInfo | None:
        itype = labels.get(INSTANCE_TYPE_LABEL)
        if not itype or allocatable <= 0:
            return None
        return cls(itype, domain_of(name, labels), allocatable, schedulable)


@dataclass(frozen=True)
class PodUse:
    """A bound, unfinished pod's GPUs; `owner` when it carries the `rackfit.io/workload` label."""

    node: str
    gpus: int
    owner: Owner | None = None
