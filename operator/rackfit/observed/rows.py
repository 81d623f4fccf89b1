"""`rackfit observed`'s rows, from LLMWorkloads as the API serves them (pure): estimate beside observed, and
calibration cases in the format of bench/cases/public/{serving,training}.yaml (docs/observed.md)."""

from __future__ import annotations

from typing import Any

from rackfit.api.conditions import ESTIMATE_HOLDS, condition
from rackfit.api.status import placement_of
from rackfit.catalog import Catalog
from rackfit.observed.compare import FRAMEBUFFER, estimate_figures


def row(obj: dict[str, Any]) -> dict[str, Any]:
    """One workload: what rackfit estimated, what was observed, their ratio and EstimateHolds."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    f = estimate_figures(spec, status)
    obs = status.get("observed") or {}
    cond = condition(status.get("conditions"), ESTIMATE_HOLDS) or {}
    out: dict[str, Any] = {"namespace": meta.get("namespace"), "name": meta.get("name"),
                           "workload": spec.get("workload"), "compare": f.compare if f else None,
                           "estimateHolds": cond.get("status", "Unknown"), "reason": cond.get("reason", ""),
                           "observed": obs}
    if f is None:
        return out
    if f.compare == FRAMEBUFFER:
        out["estimate"] = {"gpuMemoryBytes": f.estimate_bytes}
        seen = obs.get("gpuMemoryBytes")
        out["ratio"] = seen / f.estimate_bytes if seen is not None else None
    else:
        out["estimate"] = {"kvCacheTokens": f.estimate_kv_tokens, "requiredKVTokens": f.required_kv_tokens}
        seen = obs.get("kvCacheTokens")
        out["ratio"] = seen / f.estimate_kv_tokens if seen is not None and f.estimate_kv_tokens else None
    return out


def case(obj: dict[str, Any], catalog: Catalog) -> dict[str, Any] | None:
    """A calibration row (bench/cases format: id, source, version, gpu, spec, measured, meaning) for a
    workload with an observation on a catalog instance type; None otherwise."""
    meta, spec, status = obj.get("metadata") or {}, dict(obj.get("spec") or {}), obj.get("status") or {}
    obs, placement = status.get("observed") or {}, placement_of(status)
    f = estimate_figures(spec, status)
    itype = catalog.instance_types.get(placement.instance_type) if placement else None
    if f is None or itype is None or not obs:
        return None
    spec.pop("target", None)
    spec["parallelism"] = placement.model_dump(include={"tensor", "pipeline", "data", "expert"})
    gpu = itype.gpu
    base = {"id": f"{meta.get('namespace')}/{meta.get('name')}",
            "source": f"rackfit observed: {obs.get('source', '')} at {obs.get('observedAt', '')}",
            "gpu": {"model": gpu.model, "memoryMiB": gpu.memory_mib, "architecture": gpu.architecture},
            "spec": {k: v for k, v in spec.items() if v is not None}}
    if f.compare == FRAMEBUFFER and obs.get("gpuMemoryBytes") is not None:
        return {**base, "version": ((spec.get("training") or {}).get("framework")) or "transformers",
                "measured": {"peakBytes": obs["gpuMemoryBytes"]},
                "meaning": "peak framebuffer use of the busiest GPU (dcgm-exporter DCGM_FI_DEV_FB_USED, max over "
                           "the window): CUDA context, NCCL and allocator slack included, as nvidia-smi"}
    if obs.get("kvCacheTokens") is not None:
        measured = {"kvCacheTokens": obs["kvCacheTokens"]}
        if obs.get("maxConcurrency") is not None:
            measured["maxConcurrency"] = obs["maxConcurrency"]
        return {**base, "version": f.engine, "measured": measured,
                "meaning": "the KV cache the engine allocated per replica, tokens (vllm:cache_config_info or "
                           "sglang:max_total_num_tokens)"}
    return None
