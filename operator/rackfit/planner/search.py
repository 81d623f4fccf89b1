"""Layout search for one instance type: the smallest tensor x pipeline x data layout that fits.

Tensor parallel stays inside one NVLink domain (one node on HGX and PCIe machines, a whole rack on
NVL72) and divides the attention heads; pipeline stages and data-parallel replicas cross nodes.
Per-GPU memory falls as pipeline stages are added, so the fewest stages are found by a search
that starts from a lower bound.
"""

from __future__ import annotations

from collections.abc import Iterator

from rackfit.catalog import InstanceType
from rackfit.catalog.types import GPU
from rackfit.estimator import Estimate, Layout, estimate_arch, vllm_weights, vllm_weights_overflow
from rackfit.models import ModelArch
from rackfit.spec import LLMWorkloadSpec
from rackfit.units import MiB

DEFAULT_MAX_NODES = 128


def tensor_degrees(a: ModelArch, limit: int, powers_of_two: bool = True) -> list[int]:
    """Degrees that divide the attention heads and split or evenly replicate the KV heads (vLLM
    replicates KV heads when tensor exceeds them: vllm/model_executor/layers/linear.py,
    QKVParallelLinear). The planner proposes powers of two, the degrees the engines' kernels and
    NCCL rings are tuned for; a fixed layout may use any degree the engine accepts."""
    kv = a.num_key_value_heads
    return [t for t in range(1, limit + 1)
            if (not powers_of_two or t & (t - 1) == 0)
            and a.num_attention_heads % t == 0 and (kv % t == 0 or t % kv == 0 or a.is_mla)]


def layout_problems(spec: LLMWorkloadSpec, a: ModelArch, t: InstanceType, layout: Layout) -> list[str]:
    """Why a fixed layout is impossible on this type, if it is."""
    out = []
    if layout.tensor not in tensor_degrees(a, layout.tensor, powers_of_two=False):
        out.append(f"tensor {layout.tensor} must divide numAttentionHeads {a.num_attention_heads} and split "
                   f"or replicate numKeyValueHeads {a.num_key_value_heads} evenly")
    if layout.tensor > t.tensor_parallel_limit:
        out.append(f"tensor {layout.tensor} exceeds the NVLink domain of {t.name} ({t.tensor_parallel_limit} GPUs)")
    if layout.pipeline > a.num_layers:
        out.append(f"pipeline {layout.pipeline} exceeds numLayers {a.num_layers}")
    if a.is_moe and layout.expert > 1 and a.num_experts % layout.expert:
        out.append(f"expert {layout.expert} must divide numExperts {a.num_experts}")
    return out


def device(t: InstanceType, spec: LLMWorkloadSpec) -> GPU:
    """The GPU as the estimate sees it: with placement.useHostMemory, GH200's CPU memory counts, as
    vLLM's --cpu-offload-gb ("a virtual way to increase the GPU memory size", vllm/config/cache.py) uses it."""
    if not (spec.placement.use_host_memory and t.gpu.host_memory_gb):
        return t.gpu
    return t.gpu.model_copy(update={"memory_mib": t.gpu.memory_mib + t.gpu.host_memory_bytes // MiB})


def fits(spec: LLMWorkloadSpec, est: Estimate, capacity: int) -> bool:
    """A serving engine fits when its KV cache holds `concurrency` full-length requests per replica
    (and so at least one: the engines refuse to start otherwise); anything else when the peak fits."""
    if est.max_concurrency is not None:
        return est.max_concurrency >= spec.inference.per_replica(est.layout.data)
    return est.total_bytes <= capacity


def _fits(spec: LLMWorkloadSpec, a: ModelArch, t: InstanceType, layout: Layout, capacity: int,
          seen: dict[tuple[int, int, int, int], Estimate | None],
          weighed: dict[tuple[int, int, int, int, str], int | None]) -> tuple[bool, Estimate | None]:
    """Whether `layout` fits, and its estimate (None where the weights alone overflow: no estimate is made). `weighed`:
    vllm_weights by layout and GPU architecture, the only property of the GPU they read (weights.weight_bytes), kept
    over the instance types of a plan."""
    key = (layout.tensor, layout.pipeline, layout.data, layout.expert)  # tuples hash faster than models
    if key not in seen:
        gpu = device(t, spec)
        by_arch = (*key, gpu.architecture)
        if by_arch not in weighed:
            weighed[by_arch] = vllm_weights(spec, a, layout, gpu)  # None for other runtimes
        weights = weighed[by_arch]
        seen[key] = (None if weights is not None and vllm_weights_overflow(weights, gpu)
                     else estimate_arch(spec, a, layout, gpu, weights))
    est = seen[key]
    return est is not None and fits(spec, est, capacity), est


def sharded_data(spec: LLMWorkloadSpec) -> bool:
    """Whether data parallelism shrinks each GPU's share: FSDP, and ZeRO (DeepSpeed, or its accelerate
    plugin under transformers) shard states over the data-parallel GPUs; Megatron's distributed optimizer
    shards the optimizer states."""
    tr = spec.training
    return tr is not None and (tr.zero_stage > 0 or tr.framework in ("fsdp", "megatron"))


def pipeline_stages_allowed(spec: LLMWorkloadSpec) -> bool:
    """Whether the runtime runs pipeline stages (Training.runs_pipeline_stages; serving engines do)."""
    return spec.training is None or spec.training.runs_pipeline_stages


def candidates(spec: LLMWorkloadSpec, a: ModelArch, t: InstanceType, capacity: int, max_gpus: int,
               weighed: dict[tuple[int, int, int, int, str], int | None] | None = None
               ) -> Iterator[tuple[Layout, Estimate]]:
    """Layouts as the engines and frameworks run them, fewest GPUs first for each data degree:
    - one pipeline stage, at the smallest tensor degree that fits inside the NVLink domain;
    - else tensor fills the domain (a whole HGX node, or up to 64 GPUs of an NVL72 rack) and pipeline
      stages cross nodes, rounded to whole nodes (vLLM's multi-node recipe: tensor parallel within the
      node, pipeline parallel across; Megatron's the same), where the runtime runs stages
      (pipeline_stages_allowed).
    Data parallelism is tried first where it shards the states (FSDP, ZeRO, Megatron's distributed
    optimizer); elsewhere a replica must hold the whole model. `weighed`: the plan's vLLM weights by layout and GPU
    architecture (_fits), shared by its instance types."""
    weighed = {} if weighed is None else weighed
    datas = [d for d in (1, 2, 4, 8, 16, 32, 64, 128) if d <= max_gpus] if sharded_data(spec) else [1]
    degrees = tensor_degrees(a, min(t.tensor_parallel_limit, max_gpus))
    seen: dict[tuple[int, int, int, int], Estimate | None] = {}  # bisection and rounding revisit layouts
    fewest = max_gpus + 1
    for data in datas:
        def layout(p: int, tensor: int, data: int = data) -> Layout:
            expert = tensor * data if a.is_moe and tensor * data > 1 and a.num_experts % (tensor * data) == 0 \
                else 1
            return Layout(tensor=tensor, pipeline=p, data=data, expert=expert)

        found = False
        for tensor in degrees:
            if tensor * data >= fewest:
                break
            ok, est = _fits(spec, a, t, layout(1, tensor), capacity, seen, weighed)
            if ok:
                fewest, found = tensor * data, True
                yield est.layout, est
                break
        if found or not degrees:
            continue
        tensor = degrees[-1]
        hi = min(a.num_layers, max_gpus // (tensor * data))
        if hi < 2 or not pipeline_stages_allowed(spec):
            continue
        if seen.get((1, 1, 1, 1)) is None:  # one GPU's weights overflowed it: estimated only now that it is needed
            seen[(1, 1, 1, 1)] = estimate_arch(spec, a, Layout(), device(t, spec))
        # n GPUs together hold at least what one would: a lower bound on the stages worth trying
        single = seen[(1, 1, 1, 1)].total_bytes
        lo = min(hi, max(2, -(-single // (capacity * tensor * data))))
        p = _fewest_stages(lambda p, tensor=tensor: _fits(spec, a, t, layout(p, tensor), capacity, seen, weighed)[0],
                           lo, hi)
        if p is None:
            continue
        n = tensor * p * data
        if n % t.gpus_per_node:  # whole nodes: more stages, each lighter
            step = next(s for s in range(1, t.gpus_per_node + 1) if (tensor * s * data) % t.gpus_per_node == 0)
            p = -(-p // step) * step
            if tensor * p * data > max_gpus or p > a.num_layers:
                continue
        ok, est = _fits(spec, a, t, layout(p, tensor), capacity, seen, weighed)
        if ok and tensor * p * data < fewest:
            fewest = tensor * p * data
            yield est.layout, est


def _fewest_stages(fits, lo: int, hi: int) -> int | None:
    """Smallest p in [lo, hi] with fits(p), memory falling as p grows: gallop up from the lower
    bound (the answer is usually near it), then bisect."""
    prev, cur = lo - 1, lo
    while not fits(cur):
        if cur == hi:
            return None
        prev, cur = cur, min(hi, max(cur + 1, 2 * cur))
    lo, hi = prev + 1, cur
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def smallest_need(spec: LLMWorkloadSpec, a: ModelArch, t: InstanceType, max_gpus: int) -> Estimate:
    """The lowest per-GPU estimate reachable on this type within `max_gpus`, for rejection messages."""
    tensor = max(tensor_degrees(a, min(t.tensor_parallel_limit, max_gpus)))
    pipeline = max(1, min(a.num_layers, max_gpus // tensor)) if pipeline_stages_allowed(spec) else 1
    return estimate_arch(spec, a, Layout(tensor=tensor, pipeline=pipeline), device(t, spec))
