"""The plan's value objects: what the CLI prints and the operator stores in `status.placement`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from rackfit.estimator.result import Estimate
from rackfit.planner.nodes import Domain


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Placement(_Out):
    instance_type: str
    gpus_per_node: int
    nodes: int
    total_gpus: int = Field(alias="totalGPUs")
    tensor: int
    pipeline: int
    data: int
    expert: int
    gpu_memory_bytes: int = Field(description="usable per GPU after headroom")
    price_per_hour: float | None = Field(None, description="for all nodes, when the catalog has prices")
    nvlink_domain: str | None = Field(None, description="label=value of the chosen domain (with an inventory)")
    node_selector: dict[str, str] = Field(default_factory=dict)

    @property
    def domain(self) -> Domain | None:
        return Domain.parse(self.nvlink_domain) if self.nvlink_domain else None

    @property
    def where(self) -> str:
        """Its NVLink domain, else its instance type: where its pods go, for messages."""
        return self.nvlink_domain or self.instance_type


class Option(_Out):
    placement: Placement
    estimate: Estimate


class Rejection(_Out):
    instance_type: str
    reason: str


class Plan(_Out):
    chosen: Option | None
    alternatives: list[Option] = Field(default_factory=list, description="the next best, ranked")
    rejected: list[Rejection] = Field(default_factory=list)
    unplaced: list[Rejection] = Field(default_factory=list, description="fit, but no domain has free capacity")
    options: list[Option] = Field(default_factory=list, exclude=True,
                                  description="every ranked option (up to 3 per type), for `place`")

    @property
    def fits(self) -> bool:
        return self.chosen is not None or bool(self.unplaced)
