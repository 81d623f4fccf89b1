"""Weight bytes per GPU for each precision, quantisation scales included.

Quantised checkpoints compress the decoder's matrices; embeddings, lm_head, norms and MoE routers
stay 16-bit (GPTQ/AWQ, bitsandbytes, FP8 and MXFP4 checkpoints all do this). MXFP4 (gpt-oss)
compresses only the routed experts.
"""

from __future__ import annotations

from rackfit.estimator.params import ParamCounts
from rackfit.estimator.result import Layout

# Bytes per parameter of a compressed matrix, scales included (docs/reference/memory-model.md §1.1).
BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1 + 4 / (128 * 128),    # fp32 scale per 128x128 block (DeepSeek-style)
    "int8": 1 + 2 / 4096,       # 16-bit scale per output channel of ~4k inputs
    "int4": 0.5 + 2.5 / 128,  # 4-bit + (fp16 scale + 4-bit zero) per group of 128
    "nf4": 0.5 + 1 / 64 + 4 / (64 * 256),  # 8-bit absmax/64 + fp32 per 256 blocks
    "mxfp4": 0.5 + 1 / 32,     # 8-bit shared exponent per 32
    "nvfp4": 0.5 + 1 / 16,     # fp8 scale per 16
}
HALF = 2.0


def unquantised_bytes(precision: str) -> float:
    """Parts a quantised checkpoint keeps in 16-bit; fp32 models keep everything in fp32."""
    return 4.0 if precision == "fp32" else HALF


def stage_share(num_layers: int, pipeline: int) -> float:
    """Share of the layers on the heaviest pipeline stage: ceil(L / p) of L."""
    return -(-num_layers // pipeline) / num_layers


def weight_bytes(p: ParamCounts, precision: str, layout: Layout, num_layers: int) -> int:
    """Per-GPU weight bytes under tensor, pipeline and expert sharding (the most loaded stage)."""
    q, u = BYTES_PER_PARAM[precision], unquantised_bytes(precision)
    experts_q = q
    dense_q = u if precision == "mxfp4" else q
    expert_shard = layout.expert if layout.expert > 1 else layout.tensor
    layers = (p.attention + p.dense_mlp + p.shared) * dense_q / layout.tensor + p.experts * experts_q / expert_shard
    stage = stage_share(num_layers, layout.pipeline)
    per_stage = layers * stage + p.norms * u * stage
    # vocab-parallel embedding/lm_head; with pipelining the first stage holds the embedding, the last the
    # lm_head: the heaviest stage holds the larger one (both when there is one stage).
    vocab = (p.embedding + p.lm_head) if layout.pipeline == 1 else max(p.embedding, p.lm_head or p.embedding)
    return int(per_stage + vocab * u / layout.tensor)
