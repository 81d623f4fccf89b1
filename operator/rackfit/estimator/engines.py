"""Serving engines' own memory plans: vLLM (V1), SGLang and TensorRT-LLM.

These engines do not grow a KV cache per request as `transformers` does: at start-up each measures
what the model needs (weights, a profile forward, buffers) and hands the rest of a fixed budget to
a preallocated KV cache. The question a workload asks is then how many tokens that cache holds,
and how many `contextLength` requests fit at once (vLLM's "Maximum concurrency").

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rackfit.catalog.types import GPU
from rackfit.estimator.context import context_before_cublas
from rackfit.estimator.cuda_graphs import (
    cuda_graph_bytes,
    fa3_split_bytes,
    flashinfer_graph_workspace_bytes,
    graphs_unbudgeted,
    trtllm_graph_bytes,
)
from rackfit.estimator.engine_defaults import cuda_total_bytes, settings, sglang_runner_vlm_factor, v0_under_pipeline
from rackfit.estimator.engine_profile import (
    ACT_BYTES,
    forward_peak_bytes,
    held_moe_workspace_bytes,
    pipeline_buffer_bytes,
)
from rackfit.estimator.kvcache import (
    GROUP_SIZE_SPREAD,
    HYBRID_MANAGER,
    kv_bytes_per_token_layer,
    kv_cache_bytes,
    vllm_chunked_hybrid,
    vllm_paged_layers,
    vllm_request_bytes,
)
from rackfit.estimator.linear_attention import (
    MAMBA_ALIGN_MODE,
    TOKENS_FROM_CONCURRENCY,
    gated_delta_net,
    mamba_blocks_refusal,
    prefix_caching,
    vllm_linear_kv,
)
from rackfit.estimator.lora_serving import lora_graph_cases, lora_held_bytes, lora_profile_bytes
from rackfit.estimator.mm_profile import (
    encoder_cache_bytes,
    encoder_peak_bytes,
    profile_forward_tokens,
    v0_mm_sequences,
)
from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.estimator.pre_ampere import PRE_AMPERE
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.estimator.sampler import (
    profile_held_bytes,
    sampler_path,
    sampler_peak_bytes,
    sampler_state_bytes,
    sampler_warmup_bytes,
    unbudgeted_state_bytes,
    warmup_before_capture,
)
from rackfit.estimator.serving_nccl import non_torch_bytes as nccl_non_torch_bytes
from rackfit.estimator.serving_nccl import outside_bytes as nccl_outside_bytes
from rackfit.estimator.sglang import (
    attention_tensor,
    cell_bytes,
    dp_attention,
    dp_running_cap,
    gdn_running_cap,
    gdn_state_bytes,
    gdn_states,
    hybrid_swa,
    kv_layers,
    max_num_reqs,
    max_running_requests,
    nsa,
    nsa_kv_precision,
    nsa_layer_bytes,
    online_quantization_refusal,
    page_size,
    pool_tokens,
    req_to_token_bytes,
)
from rackfit.estimator.speculative import (
    draft_graph_pieces,
    draft_held_bytes,
    sampler_profile_bytes,
    sglang_cell_bytes,
    sglang_draft_worker_bytes,
    sglang_extra_tokens,
    sglang_running_default,
    v0_peer_contexts,
    vllm_draft_kv_bytes_per_token,
)
from rackfit.estimator.startup import (
    CUBLAS_BEFORE_SNAPSHOT,
    INIT_FREE_CHECK,
    budgeted_non_torch,
    init_refusal,
    warmup_refusal,
)
from rackfit.estimator.trtllm import (
    TOKENS_PER_BLOCK,
    allreduce_workspace_bytes,
    engine_allreduce_workspace_bytes,
    engine_cache_bytes,
    engine_context_bytes,
    engine_decoder_total_bytes,
    engine_replicated_embedding_bytes,
    engine_rotary_table_bytes,
    engine_runtime_buffer_bytes,
    engine_tied_lm_head_bytes,
    estimation_refusal,
)
from rackfit.estimator.v0_reserved import context_outside_budget, v0_reserved_forward_bytes
from rackfit.estimator.vllm_tp import mm_inputs_held_bytes, qwen3_vit_extra_bytes
from rackfit.estimator.weights import quantization_of
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Inference
from rackfit.units import GiB

# vLLM's block size (vllm/config/cache.py: block_size 16 on CUDA): the cache holds whole blocks.
BLOCK_TOKENS = 16
# vLLM checks one max_model_len request against the cache at start-up from 0.2.7 (vllm/engine/llm_engine.py
# _init_cache: "The model's max seq len (...) is larger than the maximum number of tokens that can be stored in KV
# cache"); 0.2.6 and before raise only at `num_gpu_blocks <= 0` ("No available memory for the cache blocks") and start
# with any block, a longer prompt then refused per request ("exceeds the capacity of block_manager"). Read in the
# 0.2.6 and 0.2.7 wheels.
MAX_LEN_CHECK = (0, 2, 7)
# The CUDA graph pool is counted inside the KV cache's budget from 0.20.0: determine_available_memory subtracts the
# profile_cudagraph_memory estimate (PR 30515, "Account for CUDA graphs during memory profiling", opt-in) when
# VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS is set, and envs.py defaults it to "0" through 0.19.1 and to "1" from 0.20.0
# (read in the 0.19.0, 0.19.1, 0.20.0-0.20.2 and 0.21.0 wheels; 0.20.0's own log line says "default since v0.21.0",
# but its envs.py already turns it on). S14-S39's 0.19.0 logs print the variable False.
GRAPHS_IN_BUDGET = (0, 20)
# MLA cached as its latent (kv_lora_rank + rope dims, one "head") from v0.7.1, the release that brought MLA to
# vLLM's DeepSeek models; before it, deepseek_v2.py's DeepseekV2Attention cached full K and V per head at
# qk_head_dim (V zero-padded from v_head_dim to qk_nope + qk_rope).
MLA_LATENT = (0, 7, 1)
# ...and before v0.7.0 at a head size of 256, not 192: ModelConfig.get_head_size (vllm/config.py) returned 256 for
# model_type deepseek_v2 (and deepseek_v3 in 0.6.6) "FlashAttention supports only head_size 32, 64, 128, 256, we need
# to pad head_size 192 to 256", and CacheEngine.get_cache_block_size (vllm/worker/cache_engine.py) sizes K and V
# blocks at num_kv_heads (num_key_value_heads = 128 over tensor) x get_head_size(); deepseek_v2.py's
# DeepseekV2Attention pads q, k and v to 256 (torch.nn.functional.pad) into Attention(num_local_heads, 256). Read in the
# 0.5.1, 0.5.3-0.5.5 and 0.6.0-0.6.6 wheels; 0.7.0 returns qk_nope_head_dim + qk_rope_head_dim (192).
MLA_UNPADDED = (0, 7, 0)
MLA_PADDED_HEAD = 256
# V0's CacheEngine (vllm/worker/cache_engine.py) in 0.7.2 and 0.7.3 pads each MLA cache entry to 256 bytes:
# get_cache_block_size rounds key_cache_entry (num_kv_heads x head_size, 1 x 576 for DeepSeek) up with
# align_to_256bytes(extent, model_config.dtype) (vllm/utils.py: a multiple of 256 // the model dtype's size elements,
# 128 for a 16-bit model) when _align_cache holds (model_config.use_mla, CUDA, VLLM_CUDA_MEM_ALIGN_KV_CACHE, default
# "1"), and _allocate_kv_cache strides the cache at that size: 576 -> 640, a token 11% dearer. The swap space's CPU
# blocks use the same block size. Read in the 0.7.2 and 0.7.3 wheels; absent from 0.7.1 and from 0.8.0 (0.8.2, 0.8.5
# and 0.10.1.1 read too). V1's MLA spec pages the bare 576.
MLA_ALIGN = ((0, 7, 2), (0, 8, 0))
MLA_ALIGN_BYTES = 256
# SGLang starts with any pool that holds a few tokens: TpModelWorker.__init__ (python/sglang/srt/managers/tp_worker.py)
# caps each request at max_req_len = min(context_len - 1, max_total_num_tokens - 1) and asserts only that
# max_req_input_len = max_req_len - 5 is positive ("Memory pool size is too small"); longer inputs are rejected per
# request ("Input length ... exceeds the maximum allowed length"). vLLM refuses a max_model_len its cache cannot hold.
SGLANG_MIN_POOL_TOKENS = 7
# V1 releases before 0.9.1 sized the cache as util x total less torch's allocated peak and everything else the GPU
# holds (vllm/v1/worker/gpu_worker.py determine_available_memory: total_allocated_bytes = mem_get_info()[1] -
# mem_get_info()[0]; non_torch_allocations added to peak_memory): the CUDA context is inside the budget. From 0.9.1
# (memory_profiling against the snapshot taken at init_device, after the context) it is not.
V1_CONTEXT_IN_BUDGET_UNTIL = (0, 9, 1)
# The extensible KV cache (0.34.0, spec.EXTENSIBLE_KV_CACHE) is sized from the memory measured after warmup and
# CUDA graph capture (vllm/v1/worker/extensible_kv_cache.py, measure_kv_cache_bytes): min(requested - what the
# engine holds, free - margin) less the profiled activation peak, the margin max(KV_CACHE_MARGIN_FLOOR_BYTES 1 GiB,
# KV_CACHE_MARGIN_FRACTION 0.75 x that peak). The free memory it measures is after everything the process holds,
# the baseline's too (CUDA context, NCCL's communicators from startup.NCCL_BEFORE_SNAPSHOT, cuBLAS's handles from
# startup.CUBLAS_BEFORE_SNAPSHOT: outside_snapshot_bytes), and at the default utilization of 1.0 that side binds.
EXTENSIBLE_MARGIN_FLOOR = GiB
EXTENSIBLE_MARGIN_FRACTION = 0.75
# vLLM 0.14.0-0.16.x check one max_model_len request against the WHOLE model's KV cache under pipeline parallel:
# vllm/v1/core/kv_cache_utils.py get_kv_cache_configs merges every stage's layer specs (merged_kv_cache_specs), builds
# the global groups and calls _check_enough_kv_cache_memory(min(available_memory), _max_memory_usage_bytes_from_groups
# over those global groups, ...) (read in the 0.14.0, 0.15.0 and 0.16.0 wheels), so a stage must hold the cache of
# every layer of the model for one request ("To serve at least one request with the models's max seq len (L), (X GiB
# KV cache is needed ..."). 0.13.0 checked each worker's own layers (check_enough_kv_cache_memory per
# kv_cache_spec_one_worker) and 0.17.0 again checks each worker's projected groups (_project_kv_cache_groups_to_worker);
# vllm-project/vllm issues 32105 and 34076 report it. The cache itself is still sized per stage.
PP_WHOLE_MODEL_CHECK = ((0, 14), (0, 17))


def fp8_block_refusal(engine: str, a: ModelArch, layout: Layout) -> str | None:
    """A block-scaled fp8 checkpoint (`weight_block_size`, e.g. 128x128) split over tensor parallel so that a rank's
    share of a quantized MLP is not a whole number of blocks: vLLM refuses to load it (quantization/fp8.py,
    Fp8MoEMethod.create_weights: "The output_size of gate's and up's weight = 192 is not divisible by weight
    quantization block_n = 128"; dense layers: validate_fp8_block_shape, output_partition_size % block_n and, split
    over tensor, input_size_per_partition % block_k), and SGLang's fp8.py the same. Routed experts under expert
    parallelism keep their whole width."""
    q = a.quantization
    t = layout.tensor
    if q is None or q.weight_block is None or t == 1:
        return None
    block_n, block_k = q.weight_block
    widths = []
    if a.is_moe and layout.expert == 1 and any(lb.experts < q.dtype_bytes for lb in q.layers):
        widths.append(("routed experts' gate and up", a.moe_intermediate_size))
    if a.is_moe and a.num_shared_experts and any(lb.shared < q.dtype_bytes for lb in q.layers):
        widths.append(("shared experts' gate and up", a.num_shared_experts * a.moe_intermediate_size))
    if a.num_layers > a.moe_layers and any(lb.mlp < q.dtype_bytes for lb in q.layers):
        widths.append(("dense MLP's gate and up", a.intermediate_size))
    for what, width in widths:
        if width % t or (width // t) % block_n or (width // t) % block_k:
            share = width / t
            fits = [d for d in range(1, 9) if width % d == 0 and (width // d) % block_n == 0
                    and (d == 1 or (width // d) % block_k == 0)]
            return (f"{engine} would refuse to start: the checkpoint's fp8 weights are scaled per {block_n}x{block_k} "
                    f"block, and tensor {t} gives the {what} projections {share:g} columns per GPU, not a multiple of "
                    f"{block_n} (vLLM: \"output_size of gate's and up's weight = {share:g} is not divisible by weight "
                    f"quantization block_n = {block_n}\"); tensor degrees that divide it: "
                    f"{', '.join(map(str, fits)) or 'none'}" + (", or expert parallelism" if "routed" in what else ""))
    return None


def outside_snapshot_bytes(inf: Inference, layout: Layout, gpu: GPU | None, context: int, moe: bool) -> int:
    """What the process holds outside the KV cache's budget: the CUDA context and, from startup.NCCL_BEFORE_SNAPSHOT,
    NCCL's communicators in the baseline (serving_nccl.outside_bytes)."""
    return context + nccl_outside_bytes(inf, layout, gpu, moe)


def startup_refusal(inf: Inference, s: EngineSettings, layout: Layout, gpu: GPU, total: int, budget: int, act: int,
                    graphs: int, sampler: int, context: int, moe: bool = False, unbudgeted: bool = False,
                    state_outside: int = 0) -> str | None:
    """vLLM's start-up outside the KV cache's budget (startup.py): the free-memory check at init_device, then the
    graph pool (before GRAPHS_IN_BUDGET, or `unbudgeted`: cuda_graphs.graphs_unbudgeted) and V1's sampler warm-up
    in what the allocated cache leaves. From
    INIT_FREE_CHECK the baseline snapshot holds only the bare CUDA context (context_before_cublas: cuBLAS's workspace
    comes later, inside the non-torch count, until CUBLAS_BEFORE_SNAPSHOT), and from NCCL_BEFORE_SNAPSHOT NCCL's
    communicators. `state_outside`: the sampler state the budget left out (sampler.unbudgeted_state_bytes),
    allocated before the cache and still held after it."""
    if inf.engine != "vllm":
        return None
    v1 = not inf.vllm_v0
    if v1 and not inf.vllm_before(INIT_FREE_CHECK) and inf.vllm_before(CUBLAS_BEFORE_SNAPSHOT):
        context = min(context, context_before_cublas(gpu))
    outside = outside_snapshot_bytes(inf, layout, gpu, context, moe)
    return (init_refusal(inf, total, s.gpu_memory_utilization, outside) if v1 else None) or warmup_refusal(
        inf, s.gpu_memory_utilization, total, budget, act, graphs, sampler, outside + state_outside,
        inf.cuda_graphs and (inf.vllm_before(GRAPHS_IN_BUDGET) or unbudgeted), v1)


@dataclass(frozen=True)
class Served:
    """One engine rank's memory plan. `kv_needed` is the cache `concurrency` full-length requests
    take; `kv_pool` what the engine allocates on `gpu` (None without one)."""

    settings: EngineSettings
    activations: int  # the profile run's peak and, from vllm_runner.V2_RUNNER, the sampler's persistent state
    cuda_graphs: int
    non_torch: int
    kv_needed: int
    per_token: int  # KV bytes per token on this rank, all its layers
    per_request: int  # KV bytes of one contextLength request (sliding windows capped)
    budget: int | None = None
    kv_pool: int | None = None
    refused: str | None = None  # why the engine would not start on this layout (then no request fits)
    # SGLang: max_total_num_tokens and max_running_requests as its source derives them (sglang.py)
    engine_tokens: int | None = None
    running_limit: int | None = None
    # the model's weights on this rank with what the engine loads beside them (LoRA adapters' buffers, a drafter)
    weights: int = 0
    # vLLM V1 where one contextLength request does not fit: the longest that does (largest_context)
    largest_context: int | None = None
    # vLLM before MAX_LEN_CHECK: starts with one block of cache, whatever contextLength
    any_block_starts: bool = False

    @property
    def kv_tokens(self) -> int | None:
        if self.kv_pool is None:
            return None
        if self.engine_tokens is not None:
            return self.engine_tokens
        return self.kv_pool // (BLOCK_TOKENS * self.per_token) * BLOCK_TOKENS

    @property
    def max_concurrency(self) -> float | None:
        if self.kv_pool is None:
            return None
        if self.refused:
            return 0.0
        # two decimals as vLLM logs it ("Maximum concurrency ... %.2fx"), rounded down (in integers): a pool short of
        # one request must not read 1.00, since vLLM refuses it (v1/core/kv_cache_utils.py
        # check_enough_kv_cache_memory: `needed_memory > available_memory`) and the planner and `starts` compare this
        # value with the requests
        fit = self.kv_pool * 100 // self.per_request / 100
        # SGLang runs at most max_running_requests at once (sglang.max_running_requests)
        return float(fit if self.running_limit is None else min(fit, self.running_limit))

    @property
    def starts(self) -> bool | None:
        """Whether the engine process starts on this GPU (None without one): not when it refuses the layout; vLLM
        not below one contextLength request (before MAX_LEN_CHECK: with one block); SGLang whenever its pool holds
        SGLANG_MIN_POOL_TOKENS, TensorRT-LLM whenever its cache holds a block, each capping requests at what the cache
        holds."""
        if self.kv_pool is None:
            return None
        if self.refused:
            return False
        if self.settings.engine == "sglang":
            return self.kv_pool // self.per_token >= SGLANG_MIN_POOL_TOKENS
        if self.settings.engine == "tensorrt-llm":  # caps max_seq_len to the cache (trtllm.TOKENS_PER_BLOCK)
            return self.kv_pool // self.per_token >= TOKENS_PER_BLOCK
        if self.any_block_starts:
            return self.kv_tokens >= BLOCK_TOKENS
        return self.max_concurrency >= 1


def pipeline_check_refusal(inf: Inference, a: ModelArch, layout: Layout, pool: int, chunk: int, latent: bool
                           ) -> str | None:
    """vLLM 0.14.0-0.16.x under pipeline parallel (PP_WHOLE_MODEL_CHECK): one contextLength request of the whole model's
    layers must fit in a stage's KV cache, though each stage caches only its own layers."""
    first, fixed = PP_WHOLE_MODEL_CHECK
    if layout.pipeline == 1 or inf.vllm_before(first) or not inf.vllm_before(fixed):
        return None
    whole = kv_cache_bytes(a, inf.kv_cache_precision, layout.model_copy(update={"pipeline": 1}), inf.context_length,
                           1, chunk, mla_latent=latent)
    if whole <= pool:
        return None
    return (f"vllm {inf.engine_version} would refuse to start: under pipeline parallel it checks one request of "
            f"contextLength {inf.context_length} against the whole model's KV cache ({whole / GiB:.2f} GiB, every "
            f"stage's layers), more than one stage's {max(pool, 0) / GiB:.2f} GiB (fixed in vLLM 0.17.0); lower "
            f"contextLength or use a newer release")


def v0_virtual_engine_refusal(inf: Inference, layout: Layout, pool: int, per_token: int) -> str | None:
    """vLLM 0.8.x's V0 fallback under pipeline parallel (engine_defaults.v0_under_pipeline): V0 gives each of its
    pipeline_parallel_size virtual engines its own scheduler and cache (vllm/worker/cache_engine.py CacheEngine and
    vllm/core/scheduler.py Scheduler: `num_gpu_blocks //= pipeline_parallel_size`, from 0.5.1), and from 0.8.0
    worker.py raise_if_cache_size_invalid checks one contextLength request against one virtual engine's share,
    `block_size * (num_gpu_blocks // pipeline_parallel_size)`, not the whole pool (read in 0.8.0, 0.8.2, 0.8.4 and
    0.8.5; 0.5.1-0.7.3 check the whole count, so those start and leave the longer request unschedulable)."""
    if not v0_under_pipeline(inf, layout.pipeline) or per_token <= 0:
        return None
    share = pool // (BLOCK_TOKENS * per_token) // layout.pipeline * BLOCK_TOKENS
    if share >= inf.context_length:
        return None
    return (f"vllm {inf.engine_version} would refuse to start: under pipeline parallel its V0 engine splits the KV "
            f"cache between {layout.pipeline} virtual engines and one request of contextLength {inf.context_length} "
            f"must fit one share, {share} tokens (\"The model's max seq len ... is larger than the maximum number of "
            "tokens that can be stored in KV cache\"); lower contextLength, or start V1 with "
            "--distributed-executor-backend ray")


def _sglang_pool(s: EngineSettings, refused: str | None, inf: Inference, a: ModelArch, layout: Layout, gpu: GPU,
                 pool: int, per_layer: int, hybrid: bool, reserve: int, precision: str = "bf16",
                 states: int | None = None, allocated_layer: int | None = None) -> tuple[int, int, str | None]:
    """SGLang's pool in tokens (sglang.pool_tokens: the page, the hybrid sliding-window split), its running limit, and
    why it would not start (`refused` so far, else whether the (1 - mem_fraction_static) reserve holds the
    request-to-token table it allocates with the pool, with cuBLAS's workspace after it: sglang.req_to_token_bytes;
    init_memory_pool). `states`: a Gated DeltaNet hybrid's request states (sglang.gdn_states), capping the requests.
    `allocated_layer`: what a token of a layer takes where the pool allocates more than the cell `per_layer` it was
    sized with (DeepSeek-V3.2's NSA pool, sglang.nsa_layer_bytes): the excess comes out of the reserve."""
    stage_layers = kv_layers(a, heaviest_stage_layers(a.num_layers, layout.pipeline))
    page = page_size(inf, a, gpu)
    tokens = pool_tokens(pool, per_layer, stage_layers, a, hybrid, page)
    if allocated_layer is not None and allocated_layer > per_layer:
        reserve -= tokens * (allocated_layer - per_layer) * stage_layers
    cell = per_layer * stage_layers
    with_draft = sglang_cell_bytes(inf, a, cell, stage_layers)
    if not hybrid and with_draft != cell:  # the draft's pool inside (speculative.py)
        tokens = pool // with_draft // page * page if pool > 0 else 0
    reqs = inf.max_num_seqs or sglang_running_default(inf) or max_num_reqs(inf, tokens, inf.context_length)
    if states is not None:
        reqs = min(reqs, gdn_running_cap(inf, states))
    tokens += sglang_extra_tokens(inf, reqs) if tokens > 0 else 0  # draft_runner_cache_size (speculative.py)
    table = req_to_token_bytes(inf, reqs, inf.context_length)
    # the draft worker's weights and pool come after the target's pool, out of the same reserve (speculative.py)
    draft = sglang_draft_worker_bytes(inf, a, layout, tokens, precision, gpu)
    if refused is None and draft and tokens >= SGLANG_MIN_POOL_TOKENS and draft + table + NON_TORCH_BASE > reserve:
        refused = (f"sglang would run out of memory at start: the {inf.speculative_method} drafter's weights and KV "
                   f"pool ({draft / GiB:.2f} GiB, loaded after the target's pool) with the request-to-token table "
                   f"need more than the {max(reserve, 0) / GiB:.2f} GiB that mem_fraction_static "
                   f"{s.gpu_memory_utilization:g} leaves; lower gpuMemoryUtilization")
    if refused is None and tokens >= SGLANG_MIN_POOL_TOKENS and table + NON_TORCH_BASE > reserve:
        refused = (f"sglang would run out of memory at start: its request-to-token table ({reqs} requests x "
                   f"contextLength {inf.context_length} int32, {table / GiB:.2f} GiB, allocated with the KV pool) "
                   f"and cuBLAS's workspace need more than the {max(reserve, 0) / GiB:.2f} GiB that "
                   f"mem_fraction_static {s.gpu_memory_utilization:g} leaves; lower contextLength, set "
                   f"maxNumSeqs (--max-running-requests) or lower gpuMemoryUtilization")
    limit = max_running_requests(inf, tokens, reqs)
    share = dp_running_cap(inf)  # a DP attention rank's share of --max-running-requests (sglang.dp_running_cap)
    return tokens, limit if share is None else min(limit, share), refused


def profile_requests(inf: Inference, s: EngineSettings, a: ModelArch) -> int:
    """The requests whose logits the engine's profile run samples. vLLM V1's _dummy_sampler_run: one per sequence slot
    (max_num_seqs, at most max_num_batched_tokens). TensorRT-LLM's PyTorch backend estimates the KV cache with dummy
    context requests of min(max_num_tokens, max_seq_len - 1) tokens until max_num_tokens are used, each generating one
    token (tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator._create_dummy_context_requests, called with
    net_max_seq_len - 1): at 8,192 tokens and a context of 8,192 that is two requests, not 2,048. vLLM V0's
    multimodal profile: its dummy sequences, one a largest image (mm_profile.v0_mm_sequences)."""
    v0_mm = v0_mm_sequences(inf, a, s)
    if v0_mm is not None:
        return v0_mm
    if inf.engine == "tensorrt-llm":
        per_request = max(1, min(s.max_num_batched_tokens, s.max_model_len - 1))
        return -(-s.max_num_batched_tokens // per_request)
    return min(s.max_num_batched_tokens, s.max_num_seqs)


def serve(inf: Inference, a: ModelArch, layout: Layout, weights: int, context: int, gpu: GPU | None,
          precision: str = "bf16", weights_16bit: int = 0) -> Served:
    """The engine's plan for this rank (the heaviest stage: the minimum over ranks is what counts). `precision`, the
    spec's weights: a TRT engine's int8/int4 build keeps its gated MLP unfused (trtllm.engine_context_bytes). `context`:
    the CUDA context's bytes. `weights_16bit`: this rank's weights at 16 bits, which SGLang's online fp8
    quantization loads first (inference.onlineQuantization; 0 when it is not asked)."""
    r = _rank(inf, a, layout, gpu, context, precision)
    m = _measured(r, weights)
    paging = _paging(r)
    per_token, per_request, sglang_hybrid = _kv_costs(r, paging)
    # refusals before the profile, in the order the engine meets them: the checkpoint's config, then its load
    refused = fp8_block_refusal(inf.engine, a, layout) if inf.engine in ("vllm", "sglang") else None
    if refused is None and gpu is not None:
        refused = online_quantization_refusal(inf, precision, a, weights_16bit, r.total - context)
    # built once, at the end: a Served is frozen, and copies of it are a planner's hot path
    served = partial(Served, r.s, m.act + m.state, m.graphs, m.nt, per_request * inf.per_replica(layout.data),
                     per_token, per_request, weights=m.weights, any_block_starts=inf.vllm_before(MAX_LEN_CHECK))
    if gpu is None:
        return served(refused=refused)
    if inf.engine == "vllm":
        plan = _vllm_plan(r, m, paging, per_token, per_request, refused)
    elif inf.engine == "sglang":
        plan = _sglang_plan(r, m, paging, sglang_hybrid, refused)
    else:
        plan = _trtllm_plan(r, m, per_token, refused)
    pool = max(plan.pool, 0)
    largest = None
    if paging.v1 and plan.refused is None and pool < per_request:
        # in whole pages, as _kv_costs counts a request
        largest = largest_context(lambda n: paging.kv_request(-(-n // BLOCK_TOKENS) * BLOCK_TOKENS)[1], pool,
                                  inf.context_length, pool // (BLOCK_TOKENS * per_token) * BLOCK_TOKENS)
    return served(budget=plan.budget, kv_pool=pool, refused=plan.refused, engine_tokens=plan.engine_tokens,
                  running_limit=plan.running_limit, largest_context=largest)


# --- serve's phases ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rank:
    """serve's inputs and the engine's settings for them, shared by its phases."""

    inf: Inference
    a: ModelArch
    layout: Layout
    gpu: GPU | None
    context: int            # the CUDA context's bytes
    precision: str          # the spec's weights
    s: EngineSettings
    latent: bool            # MLA cached as its latent (MLA_LATENT)
    mla_head: int | None    # vLLM's padded MLA head size before MLA_UNPADDED
    mla_align: int | None   # the elements V0 pads an MLA latent entry to (MLA_ALIGN)
    total: int              # the GPU's memory as CUDA reports it (engine_defaults.cuda_total_bytes; 0 without a GPU)


def mla_align_elements(inf: Inference, precision: str) -> int | None:
    """The elements vLLM V0 pads an MLA latent cache entry to (MLA_ALIGN: 0.7.2-0.7.3), else None: 256 bytes of the
    model's dtype (fp32 for a float32 model, else 16-bit)."""
    start, end = MLA_ALIGN
    if not inf.vllm_v0 or inf.vllm_before(start) or not inf.vllm_before(end):
        return None
    return MLA_ALIGN_BYTES // (4 if precision == "fp32" else 2)


def _rank(inf: Inference, a: ModelArch, layout: Layout, gpu: GPU | None, context: int, precision: str) -> _Rank:
    """The engine's settings on this GPU and how its release caches MLA."""
    return _Rank(inf=inf, a=a, layout=layout, gpu=gpu, context=context, precision=precision,
                 s=settings(inf, gpu, layout.tensor, layout.pipeline, a),
                 latent=not (inf.engine == "vllm" and inf.vllm_before(MLA_LATENT)),
                 mla_head=MLA_PADDED_HEAD if inf.engine == "vllm" and inf.vllm_before(MLA_UNPADDED) else None,
                 mla_align=mla_align_elements(inf, precision),
                 total=cuda_total_bytes(gpu) if gpu is not None else 0)


@dataclass(frozen=True)
class _Measured:
    """What the engine loads, measures and holds beside its KV cache on this rank, in bytes."""

    weights: int        # the model's with what the engine loads beside them (Served.weights)
    act: int            # the profile run's peak
    graphs: int         # the CUDA graph pool
    nt: int             # non-torch memory inside the budget
    cache: int          # the multimodal encoder cache the profile holds
    sampler: int        # the profile's sampler peak with what it holds beside it
    state: int          # the sampler's persistent state
    state_outside: int  # of `state`, what the budget does not count


def _measured(r: _Rank, weights: int) -> _Measured:
    """The weights with what the engine loads beside them, the profile's sampler and what it holds, the
    communicators, then per backend the activation peak and CUDA graphs, and the sampler's state."""
    inf, a, layout, s, gpu = r.inf, r.a, r.layout, r.s, r.gpu
    # LoRA adapters' stacked buffers, counted with the weights where the engine measures them so (lora_serving.py)
    weights += lora_held_bytes(inf, a, layout, s)
    # a speculative drafter's weights, loaded with the target's where the engine measures them (speculative.py)
    weights += draft_held_bytes(inf, a, layout, r.precision, gpu)
    requests = profile_requests(inf, s, a)
    # a multimodal model's encoder profile (mm_profile.py mm_profile_items): the encoder's forward comes first,
    # then its outputs stay in the encoder cache through the text forward and the sampler (V0: through the text
    # forward only, mm_profile.V0_MM_PROFILE_FROM)
    cache = encoder_cache_bytes(inf, a, s)
    # vLLM's fused-MoE workspace for the profile's max_num_batched_tokens, which the profile holds and its forward's MoE
    # layer takes (engine_profile.held_moe_workspace_bytes): computed once here for both
    workspace = (held_moe_workspace_bytes(inf, a, layout, s.max_num_batched_tokens)
                 if a.is_moe and inf.engine == "vllm" else None)
    # beside either sampler of the profile
    held = profile_held_bytes(inf, a, layout, s, requests, gpu, workspace) + (0 if inf.vllm_v0 else cache)
    sampler = sampler_peak_bytes(a, layout, requests, sampler_path(inf, requests, a), gpu) + held
    # the communicators inside the budget, per engine, release and interconnect (serving_nccl.py)
    nt = budgeted_non_torch(inf, nccl_non_torch_bytes(inf, layout, gpu, a.is_moe))
    if inf.trt_engine:
        weights, act, graphs, nt = _trt_engine_memory(r, weights, nt)
    else:
        act = _profile_peak(r, requests, cache, workspace, held, sampler)
        graphs = _graph_pool(r)
        if inf.engine == "tensorrt-llm":
            nt += allreduce_workspace_bytes(layout, gpu)
    state = sampler_state_bytes(inf, a, s)
    # ...of which vLLM's budget before 0.27.0 counts none (sampler.TOTAL_CONSUMED): held beside the cache
    state_outside = unbudgeted_state_bytes(inf, a, s)
    return _Measured(weights=weights, act=act, graphs=graphs, nt=nt, cache=cache, sampler=sampler, state=state,
                     state_outside=state_outside)


def _trt_engine_memory(r: _Rank, weights: int, nt: int) -> tuple[int, int, int, int]:
    """TensorRT-LLM's TRT-engine backend: (weights, activations, CUDA graphs, non-torch) with what the engine adds to
    the weights and the communicators given."""
    inf, a, layout, s, gpu, precision = r.inf, r.a, r.layout, r.s, r.gpu, r.precision
    # TensorRT-LLM's TRT-engine backend (trtllm.py): the execution context holds the activation memory TensorRT
    # planned for max_num_tokens and the output projection's 16-bit output for max_batch_size sequences
    # (trtllm.engine_context_bytes; no profile run, no sampler of torch's), the runtime buffers the logits and the
    # per-slot ids and cache indirection of max_batch_size sequences (trtllm.engine_runtime_buffer_bytes), the
    # decoder its per-slot state and sampling workspace (trtllm.engine_decoder_total_bytes); the C++ executor
    # captures no CUDA graphs unless asked (cudaGraphMode false)
    act = (engine_context_bytes(a, layout, s.max_num_batched_tokens, s.max_num_seqs,
                                in_place_mlp=precision in ("int8", "int4"))
           + engine_runtime_buffer_bytes(a.vocab_size, layout.tensor, s.max_num_seqs, s.max_model_len)
           + engine_decoder_total_bytes(a.vocab_size, layout.tensor, s.max_num_seqs, s.max_model_len))
    graphs = 0
    # one NCCL communicator a tensor group, not two (serving_nccl.communicators), and the all-reduce workspace
    nt += engine_allreduce_workspace_bytes(layout, gpu)
    # convert_checkpoint.py's engine holds the whole embedding table on every tensor rank unless the spec says its
    # checkpoint splits it (tensorrtLlmParallelEmbedding; trtllm.engine_replicated_embedding_bytes)
    q = quantization_of(a, precision, a.num_layers, inf.engine, inference=inf)
    # the engine's fp32 rotary table on every rank, and a tied checkpoint's separate lm_head copy
    # (trtllm.engine_rotary_table_bytes, trtllm.engine_tied_lm_head_bytes)
    weights += engine_rotary_table_bytes(a) + engine_tied_lm_head_bytes(a, layout, q.lm_head)
    if layout.tensor > 1 and not inf.tensorrt_llm_parallel_embedding:
        weights += engine_replicated_embedding_bytes(a.vocab_size, a.hidden_size, q.embedding, layout,
                                                     a.vocab_size * a.hidden_size * q.lm_head)
    return weights, act, graphs, nt


def _profile_peak(r: _Rank, requests: int, cache: int, workspace: int | None, held: int, sampler: int) -> int:
    """The profile run's activation peak (vLLM, SGLang, TensorRT-LLM's PyTorch backend): the forward, the sampler, the
    encoder, each with what the profile holds beside it."""
    inf, a, layout, s, gpu, precision = r.inf, r.a, r.layout, r.s, r.gpu, r.precision
    # vLLM's MoE layers as its release allocates them (moe_serving.py); fp8 activations where W8A8 runs (Ada and
    # later: Ampere takes Marlin's weight-only fp8)
    fp8 = ((precision == "fp8" or (a.quantization is not None and a.quantization.method == "fp8"))
           and (gpu is None or gpu.architecture != "ampere"))
    # the profile's forward in the model's dtype: float32 under precision fp32 (vLLM --dtype float32)
    # (V0's one long multimodal sequence: mm_profile.profile_forward_tokens)
    forward = forward_peak_bytes(a, layout, profile_forward_tokens(inf, a, s), inf, fp8, gpu, workspace,
                                 4 if precision == "fp32" else ACT_BYTES)
    # vLLM 0.2.5-0.6.3 measured the profile as free memory lost, so the allocator's reserved high-water counts
    # (v0_reserved.py, replayed for 0.3.x on Ampere and later and 0.4.1-0.6.3: worker.py
    # determine_num_available_blocks, no empty_cache after profile_run)
    pre_ampere = gpu is not None and gpu.architecture in PRE_AMPERE
    forward = max(forward, v0_reserved_forward_bytes(inf, a, layout, s.max_num_batched_tokens, pre_ampere) or 0)
    act = max(forward
              + pipeline_buffer_bytes(inf, a, layout, s)
              + cache + lora_profile_bytes(inf, s), sampler,
              encoder_peak_bytes(inf, a, layout, s) + qwen3_vit_extra_bytes(inf, a, layout, s))
    # the profile's rejection sampler beside the sampler's logits (speculative.sampler_profile_bytes)
    if inf.speculative_on:
        sort_peak = sampler_peak_bytes(a, layout, requests, "sort", gpu)
        act = max(act, sampler_profile_bytes(inf, a, requests, sort_peak) + held)
    # the profile's pixel values, held through all of it (vllm_tp.mm_inputs_held_bytes)
    return act + mm_inputs_held_bytes(inf, a, s)


def _graph_pool(r: _Rank) -> int:
    """The CUDA graph pool the engine captures (vLLM, SGLang, TensorRT-LLM's PyTorch backend), 0 without graphs."""
    inf, a, layout, s, gpu = r.inf, r.a, r.layout, r.s, r.gpu
    if not inf.cuda_graphs:
        return 0
    if inf.engine == "tensorrt-llm":
        return trtllm_graph_bytes(a, layout, s)
    graphs = cuda_graph_bytes(a, layout, s, inf, gpu, lora_graph_cases(inf), draft_graph_pieces(inf, a))
    # FlashAttention 3's split buffers in the largest FULL decode graph (Hopper, from 0.11.0)
    graphs += fa3_split_bytes(a, layout, s, inf, gpu, r.precision)
    if not inf.vllm_before(GRAPHS_IN_BUDGET) and not graphs_unbudgeted(inf, a):
        # vLLM's estimate builds FlashInfer's workspace in its first FULL capture
        # (cuda_graphs.flashinfer_graph_workspace_bytes)
        graphs += flashinfer_graph_workspace_bytes(inf, gpu)
    return graphs


@dataclass(frozen=True)
class _Paging:
    """What a token of a layer costs in the KV cache on this rank, and what the paging of a V1 request depends on."""

    r: _Rank
    kv_layout: Layout   # the layout the KV heads split over (SGLang's DP attention: sglang.attention_tensor)
    per_layer: int      # KV bytes a token of a layer
    sizing_layer: int   # ...as SGLang's profile sizes its pool (DeepSeek-V3.2's NSA pool: smaller)
    v1: bool
    chunked: bool
    spread: float
    draft_kv: int

    def kv_request(self, context: int) -> tuple[int, int]:
        """(KV bytes a logged token costs, KV bytes one `context`-token request takes) on this rank."""
        inf, a, layout, s = self.r.inf, self.r.a, self.r.layout, self.r.s
        latent, per_layer, v1, chunked, spread = self.r.latent, self.per_layer, self.v1, self.chunked, self.spread
        per_request = kv_cache_bytes(a, inf.kv_cache_precision, self.kv_layout, context, 1, s.max_num_batched_tokens,
                                     mla_latent=latent, mla_head_size=self.r.mla_head, mla_align=self.r.mla_align)
        per_token = per_layer * heaviest_stage_layers(a.num_layers, layout.pipeline)
        if v1 and (a.sliding_window or chunked):
            # V1 pages a model with sliding layers, or chunked ones under the hybrid manager
            # (kvcache.vllm_chunked_hybrid), as kvcache.vllm_kv_groups says: a token costs group_size x groups
            # layers (padding included), a request what each group's spec needs (hybrid manager from 0.9.1)
            hybrid = not inf.vllm_before(HYBRID_MANAGER)

            def request(tokens: int) -> int:
                return vllm_request_bytes(a, inf.kv_cache_precision, layout, tokens, s.max_num_batched_tokens, hybrid,
                                          spread, mla_latent=latent, chunked=chunked)

            per_token = per_layer * vllm_paged_layers(a, layout.pipeline, hybrid, spread, chunked)
            per_request = request(context)
            if hybrid and not inf.vllm_before(TOKENS_FROM_CONCURRENCY):
                # from 0.21.0 the logged "GPU KV cache size" is max_concurrency x max_model_len
                # (v1/core/kv_cache_utils.py _report_kv_cache_config, for every model): a logged token costs one
                # request's pages (its windowed groups' few included) / contextLength, not group_size x groups layers
                pages = -(-context // BLOCK_TOKENS) * BLOCK_TOKENS
                per_token = -(-(per_request if pages == context else request(pages)) // context)
        if v1 and a.linear_attention_layers:
            # a hybrid linear-attention / Mamba model: KV pages and one state a linear layer, one pool
            # (linear_attention.py)
            states = 2 if prefix_caching(inf) and not inf.vllm_before(MAMBA_ALIGN_MODE) else 1
            per_token, per_request = vllm_linear_kv(a, per_layer, layout.tensor, layout.pipeline, context,
                                                    spread, not inf.vllm_before(TOKENS_FROM_CONCURRENCY),
                                                    states=states)
        if self.draft_kv:  # the drafter's layers share the cache's budget (speculative.draft_kv_bytes_per_token)
            per_token += self.draft_kv
            per_request += self.draft_kv * -(-context // BLOCK_TOKENS) * BLOCK_TOKENS
        return per_token, per_request


def _paging(r: _Rank) -> _Paging:
    """A token's KV bytes a layer on this rank, and the paging inputs of a V1 request."""
    inf, a, layout, gpu = r.inf, r.a, r.layout, r.gpu
    # SGLang's DP attention: a rank caches its own requests at tensor / dp for the KV heads (sglang.attention_tensor)
    kv_layout = layout if dp_attention(inf) == 1 else \
        layout.model_copy(update={"tensor": attention_tensor(inf, layout.tensor)})
    per_layer = kv_bytes_per_token_layer(a, inf.kv_cache_precision, kv_layout.tensor, mla_latent=r.latent,
                                         mla_head_size=r.mla_head, mla_align=r.mla_align)
    # DeepSeek-V3.2 under SGLang: the NSA pool's record and indexer keys a layer (what a token costs), and the smaller
    # cell its profile sizes the pool with (sglang.nsa_layer_bytes)
    sizing_layer = per_layer
    if nsa(inf, a):
        sizing_layer, per_layer = nsa_layer_bytes(inf, a, nsa_kv_precision(inf, gpu))

    # what the paging of a V1 request depends on, the same for every length kv_request is asked about
    return _Paging(r=r, kv_layout=kv_layout, per_layer=per_layer, sizing_layer=sizing_layer,
                   v1=inf.engine == "vllm" and not inf.vllm_v0,
                   chunked=bool(a.attention_chunk_size) and vllm_chunked_hybrid(inf),
                   spread=next((ratio for v, ratio in GROUP_SIZE_SPREAD if not inf.vllm_before(v)), 0.0),
                   draft_kv=vllm_draft_kv_bytes_per_token(inf, a, layout))


def _kv_costs(r: _Rank, paging: _Paging) -> tuple[int, int, bool]:
    """(KV bytes a token costs, KV bytes one contextLength request takes, whether SGLang's pool is its hybrid
    sliding-window pool) on this rank, as the engine counts them."""
    inf, a, layout, gpu = r.inf, r.a, r.layout, r.gpu
    per_token, per_request = paging.kv_request(inf.context_length)
    # V1: a request holds whole pages: a full-attention layer's spec needs cdiv(max_model_len, block_size) of them
    # (v1/kv_cache_interface.py FullAttentionSpec.max_memory_usage_bytes), which check_enough_kv_cache_memory
    # sums against the pool and get_max_concurrency_for_kv_cache_config divides it by
    pages = -(-inf.context_length // BLOCK_TOKENS) * BLOCK_TOKENS
    if paging.v1 and pages != inf.context_length:
        per_request = paging.kv_request(pages)[1]
    sglang_hybrid = inf.engine == "sglang" and hybrid_swa(inf, a, gpu)
    if inf.engine == "sglang":
        # SGLang keeps one token pool across all layers: a request takes contextLength tokens of every layer (sliding
        # windows included), or with the hybrid sliding-window pool (sglang.hybrid_swa) its full layers' tokens and
        # SGLANG_SWA_RATIO of a sliding token each (sglang.cell_bytes)
        # (a Gated DeltaNet hybrid: its full-attention layers only, sglang.kv_layers)
        per_token = cell_bytes(paging.per_layer, kv_layers(a, heaviest_stage_layers(a.num_layers, layout.pipeline)),
                               a, sglang_hybrid)
        per_request = per_token * inf.context_length
    return per_token, per_request, sglang_hybrid


@dataclass(frozen=True)
class _PoolPlan:
    """An engine's budget and KV cache pool on a GPU (the pool not yet floored at 0), why it would not start, and
    SGLang's tokens and running limit (_sglang_pool)."""

    budget: int
    pool: int
    refused: str | None
    engine_tokens: int | None = None
    running_limit: int | None = None


def _vllm_plan(r: _Rank, m: _Measured, paging: _Paging, per_token: int, per_request: int, refused: str | None
               ) -> _PoolPlan:
    """vLLM's budget and KV cache pool, then its start-up checks (`refused` so far, else the first that fails)."""
    inf, a, s, gpu, context = r.inf, r.a, r.s, r.gpu, r.context
    total = r.total
    # vllm/v1/worker/gpu_worker.py, determine_available_memory: the KV cache gets
    # util x total less weights, the profile run's torch peak, non-torch memory and the CUDA
    # graph pool (counted since v0.20.0; before, the graphs were captured after the cache was
    # sized and came out of the 1 - util). The CUDA context predates the baseline snapshot.
    budget = int(s.gpu_memory_utilization * total)
    in_budget, outside = _vllm_context_split(r)
    weights, act, graphs, nt, state = m.weights, m.act, m.graphs, m.nt, m.state
    if inf.extensible:
        held = weights + nt + graphs + state
        margin = max(EXTENSIBLE_MARGIN_FLOOR, int(EXTENSIBLE_MARGIN_FRACTION * act))
        baseline = outside_snapshot_bytes(inf, r.layout, gpu, context, a.is_moe)
        pool = min(budget - held, total - baseline - held - margin) - act
    else:
        pool = (budget - weights - act - (state - m.state_outside) - nt - in_budget
                - (0 if inf.vllm_before(GRAPHS_IN_BUDGET) or graphs_unbudgeted(inf, a) else graphs))
    if refused is None:
        refused = _vllm_startup_checks(r, m, paging, budget, pool, outside, per_token, per_request)
    return _PoolPlan(budget=budget, pool=pool, refused=refused)


def _vllm_context_split(r: _Rank) -> tuple[int, int]:
    """(the CUDA context's bytes inside vLLM's budget, those outside it) on this rank's GPU."""
    inf, gpu, context = r.inf, r.gpu, r.context
    # How much of the CUDA context the budget holds (in_budget) and how much lies outside it (outside). V0
    # 0.2.5-0.6.3 measured the profile as free memory lost (v0_reserved.context_outside_budget): before 0.3.3 the
    # bare context is inside the budget, from it only the bare context is outside (cuBLAS's handles, in the
    # non-torch count, and NCCL's communicators came after the baseline). V1 before 0.9.1 counted the whole
    # context inside (V1_CONTEXT_IN_BUDGET_UNTIL); then what the cache leaves free for graph capture is total -
    # budget + the freed activations, the context already paid. Other releases: all of it outside.
    bare = context_before_cublas(gpu)
    outside = context_outside_budget(inf, context, bare)
    if outside is not None:
        in_budget = min(context, bare) - outside
    else:
        in_budget = context if not inf.vllm_v0 and inf.vllm_before(V1_CONTEXT_IN_BUDGET_UNTIL) \
            else 0
        outside = context - in_budget
    # ...and, V0 speculative at tensor/pipeline > 1, the other ranks' contexts on this GPU
    # (speculative.v0_peer_contexts)
    peers_outside, peers_inside = v0_peer_contexts(inf, r.layout, gpu)
    outside += peers_outside
    in_budget += peers_inside
    return in_budget, outside


def _vllm_startup_checks(r: _Rank, m: _Measured, paging: _Paging, budget: int, pool: int, outside: int,
                         per_token: int, per_request: int) -> str | None:
    """Why vLLM would not start with this budget and pool, in the order it checks: the start-up outside the budget
    (startup_refusal), the pipeline checks of one request, then a hybrid model's Mamba blocks."""
    inf, a, layout, s, gpu = r.inf, r.a, r.layout, r.s, r.gpu
    refused = None
    if not inf.extensible:
        warm = sampler_warmup_bytes(inf, a, layout, s, m.sampler - m.cache, gpu) + m.cache  # the new runner's warm-up
        # ...which from 0.30.0 runs before capture, beside the budget's graph pool not yet taken
        early = m.graphs if warmup_before_capture(inf, a) and not inf.vllm_before(GRAPHS_IN_BUDGET) else 0
        refused = startup_refusal(inf, s, layout, gpu, r.total, budget, m.act + early, m.graphs, warm,
                                  outside, a.is_moe, graphs_unbudgeted(inf, a), m.state_outside)
    if refused is None:
        refused = (pipeline_check_refusal(inf, a, layout, pool, s.max_num_batched_tokens, r.latent)
                   or v0_virtual_engine_refusal(inf, layout, max(pool, 0), per_token))
    if refused is None and pool >= per_request:
        # after the cache is sized: vLLM refuses a pool short of one request first (check_enough_kv_cache_memory,
        # serve's largest context)
        refused = mamba_blocks_refusal(inf, a, paging.per_layer, layout.tensor, layout.pipeline, pool, paging.spread,
                                       s.max_num_seqs)
    return refused


def _sglang_plan(r: _Rank, m: _Measured, paging: _Paging, hybrid: bool, refused: str | None) -> _PoolPlan:
    """SGLang's budget (mem_fraction_static of what is free before loading) and its pool (_sglang_pool)."""
    inf, a, layout, s, gpu, context = r.inf, r.a, r.layout, r.s, r.gpu, r.context
    total = r.total
    # python/sglang/srt/model_executor/model_runner_kv_cache_mixin.py, profile_max_num_token (v0.5.8): the pool
    # is what is free after loading less (1 - mem_fraction_static) x what was free before it (after the CUDA
    # context and NCCL's buffers, init_torch_distributed): mem_fraction_static x (total - context - NCCL) - weights.
    # ModelRunner.__init__ (model_runner.py, 0.2 through 0.5) calls init_cublas() after init_memory_pool: cuBLAS's
    # handle and workspace and the other non-torch workspaces (NON_TORCH_BASE) come later, out of the
    # 1 - mem_fraction_static reserve, so the baseline holds the bare context and NCCL's communicators only.
    before = min(context, context_before_cublas(gpu)) + m.nt - NON_TORCH_BASE
    # 0.3.5-0.4.8 scaled the fraction for a multimodal model inside ModelRunner (sglang_runner_vlm_factor)
    budget = int(s.gpu_memory_utilization * sglang_runner_vlm_factor(inf, a) * (total - before))
    pool = budget - m.weights
    states = None
    if gated_delta_net(a):  # the linear layers' request states come out of the pool first (sglang.gdn_states)
        per_state = gdn_state_bytes(a, attention_tensor(inf, layout.tensor),
                                    heaviest_stage_layers(a.num_layers, layout.pipeline))
        states = gdn_states(inf, pool, per_state)
        pool -= states * per_state
    engine_tokens, running_limit, refused = _sglang_pool(s, refused, inf, a, layout, gpu, max(pool, 0),
                                                         paging.sizing_layer, hybrid, total - before - budget,
                                                         r.precision, states, paging.per_layer)
    return _PoolPlan(budget=budget, pool=pool, refused=refused, engine_tokens=engine_tokens,
                     running_limit=running_limit)


def _trtllm_plan(r: _Rank, m: _Measured, per_token: int, refused: str | None) -> _PoolPlan:
    """TensorRT-LLM's KV cache: its fraction of what the estimation run leaves free, and whether that run fits."""
    inf, s, context = r.inf, r.s, r.context
    total = r.total
    weights, act, nt, graphs = m.weights, m.act, m.nt, m.graphs
    # tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator.configure_kv_cache_capacity and _cal_max_memory:
    # (total - peak + the estimation run's temporary cache) x free_gpu_memory_fraction, the peak being torch's
    # (weights, the dummy requests' forward of max_num_tokens, that temporary cache) plus everything outside torch
    # once the run is done (CUDA context, NCCL, CUDA graphs): the fraction of what that run leaves free.
    free = total - context - weights - act - nt - graphs
    pool = int(s.gpu_memory_utilization * free)
    if inf.trt_engine:  # trtllm.engine_cache_bytes: fraction x what is free after engine, context and buffers
        pool = engine_cache_bytes(s.gpu_memory_utilization, free, per_token) if free > 0 else pool
    budget = weights + act + nt + graphs + max(pool, 0)
    if refused is None and not inf.trt_engine:
        refused = estimation_refusal(s.gpu_memory_utilization, total - context - weights - nt, per_token,
                                     s.max_num_batched_tokens, s.max_model_len)
    return _PoolPlan(budget=budget, pool=pool, refused=refused)


def largest_context(request_bytes, pool: int, context: int, guess: int = 0) -> int:
    """The longest request below `context` tokens whose KV cache (`request_bytes(tokens)`, growing with tokens) fits
    `pool`, 0 when none does: what vLLM V1 names when it refuses a max_model_len its cache cannot hold
    (v1/core/kv_cache_utils.py check_enough_kv_cache_memory -> estimate_max_model_len, a binary search over
    max_model_len of the summed max_memory_usage_bytes of every layer's spec against the available memory). Not the
    cache's logged tokens where a request's pages are not its tokens' share of the pool: sliding-window layers hold a
    window, a linear-attention layer one state whatever the length (linear_attention.vllm_linear_kv). `guess`, where
    the answer likely lies (the whole pages the pool holds at a token's cost), narrows the search before it bisects:
    two probes instead of some fifteen where it is right, the same answer whatever it is (request_bytes grows)."""
    lo, hi = 0, context - 1
    if 0 <= guess < hi:  # probed from 1 token on, as the bisection does (0 is the answer where none fits)
        if guess and request_bytes(guess) > pool:
            hi = guess - 1
        elif request_bytes(guess + 1) > pool:
            return guess
        else:
            lo = guess + 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if request_bytes(mid) <= pool:
            lo = mid
        else:
            hi = mid - 1
    return lo
