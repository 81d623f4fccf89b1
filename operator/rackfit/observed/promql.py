"""The one PromQL query that reads what every placed workload uses (`batched_query`), and its answer
parsed into one `Observation` per workload (`parse_result`). Pure: the caller sends the query.

The series, exactly as their exporters publish them:

- dcgm-exporter (NVIDIA/dcgm-exporter): `DCGM_FI_DEV_FB_USED`, a gauge in MiB ("Framebuffer memory used
  (in MiB)", etc/default-counters.csv), one series per GPU with labels gpu, UUID, pci_bus_id, device,
  modelName, Hostname (internal/pkg/rendermetrics/render_metrics.go), and, with the Kubernetes mapping on
  (`--kubernetes`, env DCGM_EXPORTER_KUBERNETES, pkg/cmd/app.go; its Helm chart sets it), the `pod`,
  `namespace` and `container` of the pod the kubelet's pod-resources API gave the GPU to
  (internal/pkg/transformation/const.go, kubernetes.go). Per device, not per process.
  `DCGM_FI_DEV_FB_TOTAL` is NOT in the default field set (etc/default-counters.csv lists FB_FREE, FB_USED
  and FB_RESERVED only), so nothing here needs it.
- vLLM (vllm-project/vllm): `vllm:cache_config_info`, an info gauge (value 1) whose labels are the
  CacheConfig fields as strings (vllm/config/cache.py `metrics_info()`: block_size, num_gpu_blocks,
  gpu_memory_utilization, and in recent releases kv_cache_size_tokens, the per-DP-engine capacity in tokens,
  and kv_cache_max_concurrency), plus `engine` (vllm/v1/metrics/loggers.py `log_metrics_info`). Unset
  fields read "None". PromQL cannot turn a label into a number, so the query returns the labels and
  `parse_result` reads them (the operator re-exports the figure: rackfit_workload_observed_kv_tokens).
- SGLang (sgl-project/sglang): `sglang:max_total_num_tokens`, a gauge, "Maximum total number of tokens in
  the KV cache pool" (python/sglang/srt/metrics/collector.py), one series per scheduler (tp_rank) with
  the same value.

The engines' series get `namespace` and `pod` from the scrape of the engine pod (a ServiceMonitor or
PodMonitor), dcgm-exporter's from its pod mapping (its ServiceMonitor must honor labels). Each is joined
to its workload through rackfit_pod_workload_info{namespace,pod,workload}, which every operator replica
exports (hence the `max by` that keeps one copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024

# `figure` label values of the batched query
FB_USED = "fb_used_mib"
VLLM = "vllm_cache_config_info"
SGLANG = "sglang_max_total_num_tokens"

INFO = "max by (namespace, pod, workload) (rackfit_pod_workload_info)"
VLLM_LABELS = ("num_gpu_blocks", "block_size", "kv_cache_size_tokens", "kv_cache_max_concurrency")


def _tag(expr: str, figure: str) -> str:
    return f'label_replace({expr}, "figure", "{figure}", "", "")'


def batched_query(window: str = "1h") -> str:
    """One instant query for every workload at once (never one per workload): per (namespace, workload),
    the peak framebuffer use per GPU over `window` (MiB), each vLLM cache configuration seen and the
    smallest SGLang token pool, each tagged with a `figure` label."""
    join = f"* on (namespace, pod) group_left (workload) {INFO}"
    fb = f"max by (namespace, workload) (max_over_time(DCGM_FI_DEV_FB_USED[{window}]) {join})"
    vllm = f"max by (namespace, workload, {', '.join(VLLM_LABELS)}) (vllm:cache_config_info {join})"
    sglang = f"min by (namespace, workload) (sglang:max_total_num_tokens {join})"
    return " or ".join(_tag(e, f) for e, f in ((fb, FB_USED), (vllm, VLLM), (sglang, SGLANG)))


@dataclass(frozen=True)
class Observation:
    """What Prometheus says one workload uses. gpu_memory_bytes: the peak framebuffer use of its busiest
    GPU over the query window; kv_cache_tokens: the KV cache the engine allocated per replica (the
    smallest replica's); max_concurrency: vLLM's own figure when it publishes it."""

    namespace: str
    workload: str
    at: float                                  # the query's evaluation time (Unix seconds)
    gpu_memory_bytes: int | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)

    @property
    def source(self) -> str:
        return ", ".join(self.sources)


def _num(v: Any) -> float | None:
    """A label value as a number; vLLM writes unset fields as 'None'."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _vllm_tokens(labels: dict[str, str]) -> tuple[int | None, float | None]:
    tokens = _num(labels.get("kv_cache_size_tokens"))
    if tokens is None:  # releases before kv_cache_size_tokens: blocks x block size
        blocks, size = _num(labels.get("num_gpu_blocks")), _num(labels.get("block_size"))
        tokens = blocks * size if blocks is not None and size is not None else None
    return (int(tokens) if tokens is not None else None), _num(labels.get("kv_cache_max_concurrency"))


def parse_result(result: list[dict[str, Any]], window: str = "1h") -> dict[tuple[str, str], Observation]:
    """The query's vector (Prometheus's /api/v1/query `data.result`) -> (namespace, workload) -> Observation."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in result:
        labels = sample.get("metric") or {}
        ns, wl, figure = labels.get("namespace"), labels.get("workload"), labels.get("figure")
        if not ns or not wl:
            continue
        at, raw = sample.get("value") or (0, "NaN")
        a = acc.setdefault((ns, wl), {"at": float(at), "sources": []})
        a["at"] = max(a["at"], float(at))
        value = _num(raw)
        if figure == FB_USED and value is not None:
            a["fb"] = max(a.get("fb", 0), int(value * MIB))
            a["sources"].append(f"DCGM_FI_DEV_FB_USED (max over {window})")
        elif figure == VLLM:
            tokens, conc = _vllm_tokens(labels)
            if tokens is not None and tokens < a.get("kv", math.inf):
                a["kv"], a["conc"] = tokens, conc
            a["sources"].append("vllm:cache_config_info")
        elif figure == SGLANG and value is not None:
            a["kv"] = min(a.get("kv", math.inf), int(value))
            a["sources"].append("sglang:max_total_num_tokens")
    return {k: Observation(namespace=k[0], workload=k[1], at=a["at"], gpu_memory_bytes=a.get("fb"),
                           kv_cache_tokens=a.get("kv"), max_concurrency=a.get("conc"),
                           sources=tuple(dict.fromkeys(a["sources"])))
            for k, a in acc.items()}
