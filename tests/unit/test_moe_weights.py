"""Weights vLLM holds beyond the checkpoint's tensors for large MoE models (issue 22): the rotary cos/sin cache."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.estimator.weights import ROPE_CACHE_BYTES, rope_cache_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

SCOUT = {"numLayers": 48, "hiddenSize": 5120, "intermediateSize": 16384, "numAttentionHeads": 40,
         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 202048, "numExperts": 16, "numExpertsPerToken": 1,
         "moeIntermediateSize": 8192, "numSharedExperts": 1, "maxPositionEmbeddings": 10485760,
         "attentionChunkSize": 8192, "chunkedAttentionLayers": 36,
         "visionParameters": 830644736, "visionHiddenSize": 1408, "visionIntermediateSize": 5632,
         "visionPatchesPerItem": 9809, "visionTokensPerItem": 2448}


def _spec(model: dict, engine: str = "vllm", tensor: int = 4):
    return parse_spec({"model": model, "workload": "inference", "parallelism": {"tensor": tensor},
                       "inference": {"engine": engine, "contextLength": 8192, "engineVersion": "0.19.0"}
                       if engine == "vllm" else {"engine": engine, "contextLength": 8192}})


def test_rope_cache_is_every_declared_position_on_every_rank():
    # Llama 4 Scout declares 10,485,760 positions: 2.5 GiB of bf16 cos/sin a rank, whatever the tensor degree
    a = resolve(_spec({"architecture": SCOUT}).model)
    assert rope_cache_bytes(a, "vllm") == 10485760 * 128 * ROPE_CACHE_BYTES == 5 * 2 ** 29
    assert rope_cache_bytes(a, "sglang") == 0 and rope_cache_bytes(None, "vllm") == 0
    assert resolve(_spec({"preset": "llama-4-scout"}).model).model_copy(update={"name": a.name}) == a
    w = {t: estimate(_spec({"architecture": SCOUT}, tensor=t)).breakdown.weights_bytes for t in (2, 4)}
    plain = {t: estimate(_spec({"architecture": SCOUT}, "sglang", t)).breakdown.weights_bytes for t in (2, 4)}
    assert w[4] - plain[4] == w[2] - plain[2] == rope_cache_bytes(a, "vllm")


def test_rope_cache_of_a_preset_and_of_mla():
    llama = resolve(_spec({"preset": "llama-3.1-8b"}).model)
    assert rope_cache_bytes(llama, "vllm") == 131072 * 128 * 2  # 32 MiB: S14's 0.03 GiB
    ds = resolve(_spec({"preset": "deepseek-v3"}).model)
    assert rope_cache_bytes(ds, "vllm") == 163840 * 64 * 2  # MLA rotates only qk_rope_head_dim


def test_vllm_keeps_16_bit_copies_of_a_quantized_mla_up_projection():
    # DeepSeek-V3's block-fp8 kv_b_proj: vLLM holds W_UK_T and W_UV dequantized beside it (512 x 16 heads x 256 x 2 B
    # a layer at tensor 8); the bf16 model's are views, and other runtimes hold none
    def w(preset, engine):
        return estimate(_spec({"preset": preset}, engine, 8)).breakdown.weights_bytes
    copies = 61 * 512 * (128 // 8) * (128 + 128) * 2
    rope = 163840 * 64 * 2
    assert w("deepseek-v3-fp8", "vllm") - w("deepseek-v3-fp8", "sglang") == copies + rope
    assert w("deepseek-v3", "vllm") - w("deepseek-v3", "sglang") == rope


def test_mla_down_projections_are_whole_on_every_rank():
    # vLLM and SGLang keep q_a_proj and kv_a_proj_with_mqa replicated: 7168 x (1536 + 512 + 64) a layer of
    # DeepSeek-V3, held whole by each of 8 ranks instead of an eighth
    from rackfit.estimator.weights import mla_replicated_params
    ds = resolve(_spec({"preset": "deepseek-v3"}).model)
    assert mla_replicated_params(ds, "sglang") == 7168 * 2112
    assert mla_replicated_params(ds, "tensorrt-llm") == 0
    assert mla_replicated_params(resolve(_spec({"preset": "llama-3.1-8b"}).model), "vllm") == 0

    def w(engine, tensor=8):
        return estimate(_spec({"preset": "deepseek-v3"}, engine, tensor)).breakdown.weights_bytes
    assert w("sglang") - w("tensorrt-llm") == pytest.approx(61 * 7168 * 2112 * 2 * 7 / 8, abs=64)
    assert w("sglang", 1) == w("tensorrt-llm", 1)  # one rank holds everything either way
