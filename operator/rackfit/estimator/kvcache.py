"""KV cache bytes per token per GPU: GQA heads split over tensor parallel (replicated when tensor
exceeds the KV heads, as vLLM does), MLA's latent replicated on every rank, sliding-window caps."""

from __future__ import annotations

from rackfit.estimator.result import Layout
from rackfit.models import ModelArch

KV_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1}


def kv_bytes_per_token_layer(a: ModelArch, kv_precision: str, tensor: int, mla_latent: bool = True) -> int:
    """`mla_latent` False: an MLA model cached as full K and V per head at qk_head_dim, as vLLM before
    v0.7.1 did (engines.py MLA_LATENT)."""
    b = KV_BYTES[kv_precision]
    if a.is_mla and not mla_latent:
        return 2 * max(1, a.num_attention_heads // tensor) * (a.qk_nope_head_dim + a.qk_rope_head_dim) * b
    if a.is_mla:
        # one compressed latent + the decoupled RoPE key, shared by all heads, on every rank
        return (a.kv_lora_rank + a.qk_rope_head_dim) * b
    heads_per_gpu = max(1, a.num_key_value_heads // tensor)
    return 2 * heads_per_gpu * a.head_dim * b


def kv_cache_bytes(a: ModelArch, kv_precision: str, layout: Layout, context: int, sequences: int,
                   chunk_tokens: int, mla_latent: bool = True) -> int:
    """Per GPU, for `sequences` sequences of `context` tokens on this data-parallel replica.

    Sliding-window layers keep at most window + one prefill chunk tokens (vLLM's SlidingWindowSpec)."""
    per_layer = kv_bytes_per_token_layer(a, kv_precision, layout.tensor, mla_latent)
    window_tokens = min(context, a.sliding_window + chunk_tokens) if a.sliding_window else context
    # the heaviest pipeline stage: ceil(L / p) layers, full-attention ones first
    stage_layers = -(-a.num_layers // layout.pipeline)
    full_layers = min(stage_layers, a.num_layers - a.sliding_window_layers)
    tokens = full_layers * context + (stage_layers - full_layers) * window_tokens  # layer-tokens per sequence
    return tokens * per_layer * sequences
