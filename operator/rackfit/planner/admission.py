"""Admission verdicts (pure): refuse a workload that cannot fit before it is stored, saying what
would; warn when it fits only with less than 5% of the GPU's memory to spare.

Called by the validating webhook; the CLI's `plan` shows the same reasons.
"""

from __future__ import annotations

from typing import Any

from rackfit.catalog import Catalog
from rackfit.errors import InvalidWorkload
from rackfit.models import resolve
from rackfit.planner import allowed_types, plan
from rackfit.planner.search import DEFAULT_MAX_NODES
from rackfit.spec import LLMWorkloadSpec, parse_spec
from rackfit.units import count, fmt_bytes

NEAR_MISS = 0.05  # fits, but with less than this fraction of the GPU's memory left


def _capacity_text(spec: LLMWorkloadSpec, catalog: Catalog) -> str:
    max_nodes = spec.placement.max_nodes or DEFAULT_MAX_NODES
    parts = []
    for t in allowed_types(spec, catalog):
        gpus = max_nodes * t.gpus_per_node
        parts.append(f"{t.name} with maxNodes {max_nodes} holds at most {gpus} x {t.gpu.memory_gb:g} GB")
    return "; ".join(parts)


def check(doc: dict[str, Any], catalog: Catalog, hf_config: dict[str, Any] | None = None) -> list[str]:
    """Warnings for an admissible workload; InvalidWorkload (field, message) for one that is not."""
    spec = parse_spec(doc)
    arch = resolve(spec.model, hf_config)
    types = allowed_types(spec, catalog)  # unknown instance types raise here
    if spec.parallelism is not None:
        widest = max(t.tensor_parallel_limit for t in types)
        if spec.parallelism.tensor > widest:
            raise InvalidWorkload([("spec.parallelism.tensor", (
                f"{spec.parallelism.tensor} exceeds the NVLink domain of every allowed instance type "
                f"(at most {widest}: {', '.join(f'{t.name} {t.tensor_parallel_limit}' for t in types)})"))])
    result = plan(spec, catalog, arch=arch)
    if result.chosen is None:
        field = "spec.parallelism" if spec.parallelism is not None else "spec.placement"
        # what would fit: the allowed types without the node limit and fixed layout, else any type
        anywhere = None
        for types_ in (spec.placement.instance_types, None):
            free = spec.model_copy(update={"placement": spec.placement.model_copy(
                update={"instance_types": types_, "max_nodes": None}), "parallelism": None})
            anywhere = anywhere or plan(free, catalog, arch=arch).chosen
        hint = ""
        if anywhere:
            p = anywhere.placement
            hint = (f"needs at least {p.total_gpus} x {catalog.get(p.instance_type).gpu.model} "
                    f"{catalog.get(p.instance_type).gpu.memory_gb:g} GB ({count(p.nodes, 'node')}); ")
        reasons = "; ".join(f"{r.instance_type}: {r.reason}" for r in result.rejected)
        raise InvalidWorkload([(field, f"{hint}allowed: {_capacity_text(spec, catalog)}. {reasons}")])
    warnings = []
    p, est = result.chosen.placement, result.chosen.estimate
    raw = catalog.get(p.instance_type).gpu.memory_bytes
    if est.max_concurrency is not None:
        need = spec.inference.per_replica(p.data)
        if est.max_concurrency < need * (1 + NEAR_MISS):
            warnings.append(f"near miss: the {spec.inference.engine} KV cache on {p.instance_type} holds "
                            f"{est.max_concurrency:g} requests of contextLength {spec.inference.context_length}, "
                            f"{need} needed: under {NEAR_MISS:.0%} to spare; this regime's measured error is "
                            f"{est.error_band}")
    elif est.total_bytes > raw * (1 - NEAR_MISS):
        warnings.append(f"near miss: {fmt_bytes(est.total_bytes)} per GPU leaves under {NEAR_MISS:.0%} of "
                        f"{p.instance_type}'s {fmt_bytes(raw)} free; a longer context or larger batch will not fit; "
                        f"this regime's measured error is {est.error_band}")
    return warnings

