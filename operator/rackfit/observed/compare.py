"""An observation beside the estimate: the figures the operator exports for PromQL (`estimate_figures`),
the EstimateHolds condition (`verdict`) and `status.observed` (`observed_view`). Pure.

What is compared, and why:
- training (and serving with engine transformers, whose KV cache grows per request): the peak framebuffer
  use of the busiest GPU (dcgm-exporter's DCGM_FI_DEV_FB_USED, max over the window) against
  `estimate.totalBytes`, the estimated peak per GPU;
- serving engines that preallocate (vllm, sglang, tensorrt-llm): NOT the framebuffer. They fill
  gpuMemoryUtilization of every GPU by design, so a healthy server reads ~0.9 x the GPU's memory and a
  framebuffer comparison would misfire on every one of them. What matters is the KV cache the engine
  allocated (per replica, in tokens) against what the spec needs: concurrency per replica x contextLength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rackfit.api import conditions as c
from rackfit.observed.promql import Observation
from rackfit.spec import replica_share
from rackfit.units import fmt_bytes

FRAMEBUFFER, KV_CACHE = "framebuffer", "kv_cache"
PREALLOCATING = ("vllm", "sglang", "tensorrt-llm")


@dataclass(frozen=True)
class EstimateFigures:
    """What rackfit said, in the figures an observation is compared with."""

    compare: str                            # FRAMEBUFFER or KV_CACHE
    estimate_bytes: int                     # estimate.totalBytes: per GPU, at the peak
    engine: str | None = None               # the serving engine
    estimate_kv_tokens: int | None = None   # estimate.kvCacheTokens: per replica
    required_kv_tokens: int | None = None   # concurrency per replica x contextLength
    concurrency: int | None = None          # per replica
    context_length: int | None = None


def estimate_figures(spec: dict[str, Any], status: dict[str, Any]) -> EstimateFigures | None:
    """From an LLMWorkload's spec and status as the API serves them (camelCase); None before an estimate."""
    est = (status or {}).get("estimate") or {}
    if not est.get("totalBytes"):
        return None
    inference = (spec or {}).get("inference") or {}
    if spec.get("workload") != "inference":
        return EstimateFigures(FRAMEBUFFER, int(est["totalBytes"]))
    engine = inference.get("engine", "vllm")
    data = int(((est.get("layout") or {}).get("data")) or 1)
    per_replica = replica_share(int(inference.get("concurrency", 1)), data,
                                int(inference.get("dataParallelAttention") or 1) if engine == "sglang" else None)
    context = int(inference.get("contextLength", 4096))
    return EstimateFigures(KV_CACHE if engine in PREALLOCATING else FRAMEBUFFER, int(est["totalBytes"]),
                           engine=engine, estimate_kv_tokens=est.get("kvCacheTokens"),
                           required_kv_tokens=per_replica * context, concurrency=per_replica,
                           context_length=context)


@dataclass(frozen=True)
class Verdict:
    status: str    # "True" | "False" | "Unknown"
    reason: str
    message: str


def _pct(observed: float, estimate: float) -> str:
    return f"{(observed / estimate - 1) * 100:+.1f}%"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _missing(f: EstimateFigures) -> str:
    if f.compare == FRAMEBUFFER:
        return ("no DCGM_FI_DEV_FB_USED series with the pod and namespace of its pods: dcgm-exporter not "
                "scraped, its Kubernetes pod mapping off, or its ServiceMonitor not honoring labels "
                "(docs/observed.md)")
    if f.engine == "tensorrt-llm":
        return "TensorRT-LLM publishes no KV cache size metric; only vLLM and SGLang are observed"
    return (f"no {'vllm:cache_config_info' if f.engine == 'vllm' else 'sglang:max_total_num_tokens'} series "
            f"for its pods: the engine's /metrics not scraped, or not started yet")


def verdict(f: EstimateFigures, obs: Observation | None, unreachable: str | None = None) -> Verdict:
    """EstimateHolds: True, False (ObservedAboveEstimate, EngineKVCacheSmaller) or Unknown (NoObservations,
    PrometheusUnreachable). `unreachable`: why the last query failed, when it did; the verdict is then
    the last observation's, and the message says how old it is."""
    v = _verdict(f, obs)
    if unreachable is None:
        return v
    if obs is None:
        return Verdict("Unknown", c.PROMETHEUS_UNREACHABLE, f"no observation yet: {unreachable}")
    return Verdict(v.status, v.reason, f"{v.message} (last observation at {_when(obs.at)}; {unreachable})")


def _verdict(f: EstimateFigures, obs: Observation | None) -> Verdict:
    if f.compare == FRAMEBUFFER:
        used = obs.gpu_memory_bytes if obs else None
        if used is None:
            return Verdict("Unknown", c.NO_OBSERVATIONS, _missing(f))
        what = (f"peak GPU memory {fmt_bytes(used)} on its busiest GPU (DCGM_FI_DEV_FB_USED) against "
                f"rackfit's estimate of {fmt_bytes(f.estimate_bytes)} per GPU ({_pct(used, f.estimate_bytes)})")
        if used > f.estimate_bytes:
            return Verdict("False", c.OBSERVED_ABOVE_ESTIMATE, (
                f"{what}. Likely cause: a larger batch or sequence length than the spec says, activation "
                f"checkpointing or the framework's settings not as in the spec, allocator fragmentation, or "
                f"another process on the GPU; close to out of memory"))
        return Verdict("True", c.WITHIN_ESTIMATE, what)
    tokens = obs.kv_cache_tokens if obs else None
    if tokens is None:
        return Verdict("Unknown", c.NO_OBSERVATIONS, _missing(f))
    need = f.required_kv_tokens or 0
    said = (f"; rackfit estimated {f.estimate_kv_tokens:,} ({_pct(tokens, f.estimate_kv_tokens)} observed)"
            if f.estimate_kv_tokens else "")
    what = (f"the engine ({obs.source}) allocated {tokens:,} KV cache tokens per replica; concurrency "
            f"{f.concurrency} x contextLength {f.context_length} needs {need:,}{said}")
    if tokens < need:
        fits = tokens / f.context_length if f.context_length else math.nan
        return Verdict("False", c.ENGINE_KV_CACHE_SMALLER, (
            f"{what}: {fits:.2f} requests of contextLength fit at once. Likely cause: the engine runs with a "
            f"lower gpuMemoryUtilization (or mem_fraction_static) or another release than the spec says, "
            f"more memory outside the KV cache (CUDA graphs, activations, another process on the GPU) than "
            f"estimated; requests will queue or be preempted"))
    return Verdict("True", c.WITHIN_ESTIMATE, what)


def observed_view(obs: Observation, f: EstimateFigures | None = None) -> dict[str, Any]:
    """`status.observed`. maxConcurrency: vLLM's own figure, else KV tokens / contextLength."""
    out: dict[str, Any] = {"source": obs.source, "observedAt": _when(obs.at)}
    if obs.gpu_memory_bytes is not None:
        out["gpuMemoryBytes"] = obs.gpu_memory_bytes
    if obs.kv_cache_tokens is not None:
        out["kvCacheTokens"] = obs.kv_cache_tokens
    conc = obs.max_concurrency
    if conc is None and obs.kv_cache_tokens is not None and f is not None and f.context_length:
        conc = obs.kv_cache_tokens / f.context_length
    if conc is not None:
        out["maxConcurrency"] = round(conc, 2)
    return out


def ratio(f: EstimateFigures, obs: Observation | None) -> float | None:
    """observed / estimate: framebuffer bytes, or the engine's KV tokens against rackfit's."""
    if obs is None:
        return None
    if f.compare == FRAMEBUFFER:
        return obs.gpu_memory_bytes / f.estimate_bytes if obs.gpu_memory_bytes is not None else None
    if obs.kv_cache_tokens is None or not f.estimate_kv_tokens:
        return None
    return obs.kv_cache_tokens / f.estimate_kv_tokens
