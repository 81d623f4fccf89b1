"""LLMWorkload `status`: its model (the CRD's status schema is generated from it) and the views of
results that both `rackfit ... -o json|yaml` and the operator write. The estimate and placement are
the estimator's and planner's own result models, so the CLI and the status cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from rackfit.estimator import Estimate
from rackfit.planner import Placement, Plan
from rackfit.units import fmt_bytes


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    observed_generation: int = Field(0, ge=0)
    last_transition_time: str


class Alternative(_Model):
    placement: Placement
    total_bytes: int


class Observed(_Model):
    """What the workload really uses, from Prometheus (the operator's observed.prometheusURL); docs/observed.md."""

    gpu_memory_bytes: int | None = Field(None, ge=0, description=(
        "peak framebuffer use of the workload's busiest GPU over the query window (dcgm-exporter's "
        "DCGM_FI_DEV_FB_USED, MiB, in bytes); compared with estimate.totalBytes for training and engine "
        "transformers only: vLLM and SGLang fill gpuMemoryUtilization of every GPU by design"))
    kv_cache_tokens: int | None = Field(None, ge=0, description=(
        "KV cache the serving engine allocated per replica, in tokens (vLLM's vllm:cache_config_info "
        "kv_cache_size_tokens, else num_gpu_blocks x block_size; SGLang's sglang:max_total_num_tokens); "
        "the smallest replica's"))
    max_concurrency: float | None = Field(None, ge=0, description=(
        "contextLength requests that fit in that KV cache at once (vLLM's kv_cache_max_concurrency, else "
        "kvCacheTokens / contextLength)"))
    source: str = Field("", description="the series these figures come from")
    observed_at: str = Field(description="when Prometheus evaluated them (RFC 3339)")


class LLMWorkloadStatus(_Model):
    observed_generation: int | None = None
    model: str | None = Field(None, description="the model, as `kubectl get` shows it (preset, config.json, size)")
    estimate: Estimate | None = None
    memory_per_gpu: str | None = Field(None, alias="memoryPerGPU",
                                       description="estimate.totalBytes formatted for `kubectl get`")
    placement: Placement | None = None
    alternatives: list[Alternative] = Field(default_factory=list, max_length=3)
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    observed: Observed | None = None


def status_view(**fields: Any) -> dict[str, Any]:
    """The status to write, built as the typed model (so it is what the CRD schema describes) and
    dumped: absent values inside are left out; top-level ones are null, which a merge patch clears."""
    status = LLMWorkloadStatus.model_validate(fields)
    out = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {**{k: None for k in ("estimate", "memoryPerGPU", "placement")}, **out}


def estimate_view(est: Estimate) -> dict[str, Any]:
    """The estimate as status and `-o json` give it: engine fields only where an engine sized them."""
    return est.model_dump(by_alias=True, mode="json", exclude_none=True)


def placement_view(p: Placement) -> dict[str, Any]:
    return p.model_dump(by_alias=True, mode="json", exclude_none=True)


def placement_of(status: Mapping[str, Any]) -> Placement | None:
    """A status's placement, typed again (the status is the truth a restarted operator reads)."""
    placement = status.get("placement")
    return Placement.model_validate(placement) if placement else None


def estimate_of(status: Mapping[str, Any]) -> Estimate | None:
    estimate = status.get("estimate")
    return Estimate.model_validate(estimate) if estimate else None


def plan_view(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"fits": plan.fits}
    if plan.chosen:
        out["estimate"] = estimate_view(plan.chosen.estimate)
        out["memoryPerGPU"] = fmt_bytes(plan.chosen.estimate.total_bytes)
        out["placement"] = placement_view(plan.chosen.placement)
    out["alternatives"] = [{"placement": placement_view(o.placement), "totalBytes": o.estimate.total_bytes}
                           for o in plan.alternatives]
    out["rejected"] = [r.model_dump(by_alias=True) for r in plan.rejected]
    if plan.unplaced:
        out["unplaced"] = [r.model_dump(by_alias=True) for r in plan.unplaced]
    return out
