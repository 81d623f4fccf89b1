"""KV cache bytes per token per GPU: GQA heads split over tensor parallel (replicated when tensor
exceeds the KV heads, as vLLM does), MLA's latent replicated on every rank, sliding-window and chunked-attention
caps."""

from __future__ import annotations

from rackfit.estimator.result import Layout
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Inference

KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def kv_bytes_per_token_layer(a: ModelArch, kv_precision: str, tensor: int, mla_latent: bool = True,
                             mla_head_size: int | None = None, mla_align: int | None = None) -> int:
    """`mla_latent` False: an MLA model cached as full K and V per head at qk_head_dim, as vLLM before
    v0.7.1 did (engines.py MLA_LATENT); `mla_head_size`, the head size those full heads are cached at where the
    release pads it (vLLM before 0.7.0: 256, engines.py MLA_PADDED_HEAD); `mla_align`, the multiple of elements the
    latent entry is padded to where the release aligns it (vLLM V0 0.7.2-0.7.3: 256 bytes, engines.py MLA_ALIGN)."""
    b = KV_BYTES[kv_precision]
    if a.is_mla and not mla_latent:
        head = mla_head_size or (a.qk_nope_head_dim + a.qk_rope_head_dim)
        return 2 * max(1, a.num_attention_heads // tensor) * head * b
    if a.is_mla:
        # one compressed latent + the decoupled RoPE key, shared by all heads, on every rank
        entry = a.kv_lora_rank + a.qk_rope_head_dim
        if mla_align:
            entry = -(-entry // mla_align) * mla_align
        return entry * b
    heads_per_gpu = max(1, a.num_key_value_heads // tensor)
    return 2 * heads_per_gpu * a.head_dim * b


def kv_cache_bytes(a: ModelArch, kv_precision: str, layout: Layout, context: int, sequences: int,
                   chunk_tokens: int, mla_latent: bool = True, mla_head_size: int | None = None,
                   mla_align: int | None = None) -> int:
    """Per GPU, for `sequences` sequences of `context` tokens on this data-parallel replica.

    Sliding-window layers keep at most window + one prefill chunk tokens (vLLM's SlidingWindowSpec)."""
    per_layer = kv_bytes_per_token_layer(a, kv_precision, layout.tensor, mla_latent, mla_head_size, mla_align)
    window_tokens = min(context, a.sliding_window + chunk_tokens) if a.sliding_window else context
    # the heaviest pipeline stage: ceil(L / p) layers, full-attention ones first
    stage_layers = heaviest_stage_layers(a.num_layers, layout.pipeline)
    full_layers = min(stage_layers, a.num_layers - a.sliding_window_layers)
    tokens = full_layers * context + (stage_layers - full_layers) * window_tokens  # layer-tokens per sequence
    return tokens * per_layer * sequences


# vLLM V1's hybrid KV cache manager (vllm/v1/core/kv_cache_utils.py). Before 0.9.1 get_kv_cache_config called
# unify_hybrid_kv_cache_specs unconditionally: a model with both full-attention and sliding-window layers had every
# SlidingWindowSpec turned into a FullAttentionSpec, so its sliding layers cached the whole context. From 0.9.1
# (_get_kv_cache_config_uniform_page_size, 0.11.0 on _get_kv_cache_groups_uniform_page_size) the layers of each
# attention type are split into groups of `group_size` layers, the last group of a type padded, and every group pages
# one shared pool: num_blocks = pool // page_size // group_size, and the logged "GPU KV cache size" is
# num_blocks // len(groups) x block_size (_report_kv_cache_config). Gemma 3 27B (10 full, 52 sliding layers): group
# size 10, 1 + cdiv(52, 10) = 7 groups, so a token costs 70 layers' worth of the pool, not 62.
HYBRID_MANAGER = (0, 9, 1)
# group_size is the fewest layers of a type; from 0.12.0 the most when max < 1.25 x min (gpt-oss + an EAGLE drafter:
# 12 sliding + 13 full padded to 13 + 13, not 12 + 24), 1.5 from 0.18.0
GROUP_SIZE_SPREAD = (((0, 18), 1.5), ((0, 12), 1.25))
BLOCK_TOKENS = 16  # CacheConfig.block_size on CUDA


# Llama 4's chunked local attention (ChunkedLocalAttentionSpec, v1/kv_cache_interface.py) joined the hybrid manager in
# 0.10.0; VllmConfig.__post_init__ (vllm/config/vllm.py) turns the manager off for a model with attention_chunk_size
# unless VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE is set ("There is a latency regression when using chunked
# local attention with the hybrid KV cache manager. Disabling it, by default"), and with an EAGLE drafter whatever it
# says; envs.py defaults the variable to False in 0.10.1-0.13.x and to True from 0.14.0. Off, every chunked layer is a
# FullAttentionSpec caching the whole context.
CHUNKED_HYBRID = (0, 10)
CHUNKED_HYBRID_OPT_IN = ((0, 10, 1), (0, 14))  # the releases whose default is off


def _local_layers(a: ModelArch, stage_layers: int, chunked: bool) -> int:
    """The stage's layers that keep a window, not the whole context: its sliding-window layers, or with `chunked`
    (the hybrid manager pages chunked local attention apart) its chunked ones; full-attention layers first."""
    if a.sliding_window:
        return stage_layers - min(stage_layers, a.num_layers - a.sliding_window_layers)
    if chunked and a.attention_chunk_size:
        return stage_layers - min(stage_layers, a.num_layers - a.chunked_attention_layers)
    return 0


def vllm_kv_groups(a: ModelArch, pipeline: int, hybrid: bool, spread: float = 0.0,
                   chunked: bool = False) -> tuple[int, int, int]:
    """(group_size, full-attention groups, sliding-window or chunked groups) of the heaviest pipeline stage's KV cache
    under vLLM V1. `hybrid`: the hybrid manager groups the two types apart (else a model with both caches every layer
    in full, unify_hybrid_kv_cache_specs); `spread`: the release's max/min ratio under which the group size is the
    larger count (0: always the smaller); `chunked`: chunked local attention is paged apart too (CHUNKED_HYBRID). A
    model of one type is one group of all its layers. Under pipeline parallel the stage's own counts are grouped (as
    0.9.1-0.10.x did; later releases group the whole model and project it on the stage, about the same for the n:1
    patterns of real models)."""
    stage_layers = heaviest_stage_layers(a.num_layers, pipeline)
    sliding = _local_layers(a, stage_layers, chunked)
    full = stage_layers - sliding
    if not sliding:
        return stage_layers, 1, 0
    if not full:
        return stage_layers, 0, 1
    if not hybrid:
        return stage_layers, 1, 0
    small, large = min(full, sliding), max(full, sliding)
    group = large if large < small * spread else small
    return group, -(-full // group), -(-sliding // group)


def vllm_paged_layers(a: ModelArch, pipeline: int, hybrid: bool, spread: float = 0.0, chunked: bool = False) -> int:
    """The layers' worth of pool one token costs: group_size x number of groups (padding layers included)."""
    group, full, sliding = vllm_kv_groups(a, pipeline, hybrid, spread, chunked)
    return group * (full + sliding)


def vllm_request_bytes(a: ModelArch, kv_precision: str, layout: Layout, context: int, chunk_tokens: int,
                       hybrid: bool, spread: float = 0.0, mla_latent: bool = True, chunked: bool = False) -> int:
    """One `context`-token request's KV cache as vLLM V1 counts it for "Maximum concurrency"
    (get_max_concurrency_for_kv_cache_config: group_size x page_size x the blocks each group's spec needs).
    FullAttentionSpec.max_memory_usage_bytes: cdiv(max_model_len, block_size) blocks; SlidingWindowSpec's:
    cdiv(min(sliding_window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1 blocks;
    ChunkedLocalAttentionSpec's (with `chunked`): cdiv(min(attention_chunk_size + max_num_batched_tokens,
    max_model_len), block_size) blocks."""
    group, full, sliding = vllm_kv_groups(a, layout.pipeline, hybrid, spread, chunked)
    page = BLOCK_TOKENS * kv_bytes_per_token_layer(a, kv_precision, layout.tensor, mla_latent)
    blocks = full * -(-context // BLOCK_TOKENS)
    if sliding and a.sliding_window:
        blocks += sliding * (-(-min(a.sliding_window - 1 + chunk_tokens, context) // BLOCK_TOKENS) + 1)
    elif sliding:
        blocks += sliding * -(-min(a.attention_chunk_size + chunk_tokens, context) // BLOCK_TOKENS)
    return group * page * blocks


def vllm_chunked_hybrid(inf: Inference) -> bool:
    """Whether vLLM V1 pages chunked local attention apart (CHUNKED_HYBRID): the spec's
    chunkedLocalAttentionHybrid, else the release's default; never with an EAGLE drafter."""
    if inf.engine != "vllm" or inf.vllm_before(CHUNKED_HYBRID) or inf.speculative_method in ("eagle", "eagle3"):
        return False
    if inf.chunked_local_attention_hybrid is not None:
        return inf.chunked_local_attention_hybrid
    start, end = CHUNKED_HYBRID_OPT_IN
    return inf.vllm_before(start) or not inf.vllm_before(end)
