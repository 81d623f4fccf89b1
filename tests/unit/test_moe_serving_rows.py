"""vLLM's fused-MoE layer in the profile run by release (estimator/moe_serving.py): VLLM_FUSED_MOE_CHUNK_SIZE's
default, fused_experts_impl's caches, fp8 activations' input copies, the data-parallel dispatch under expert
parallelism and its groups' NCCL buffers; the expected bytes computed by hand from vLLM's formulas."""

from __future__ import annotations

from pathlib import Path

from bench_modules import bench

from rackfit.estimator import Layout
from rackfit.estimator.engine_profile import (
    MOE_WORKSPACE_HELD,
    forward_peak_bytes,
    moe_workspace_bytes,
    vllm_moe_layer_bytes,
)
from rackfit.estimator.moe_serving import (
    chunked_tokens,
    dispatched_tokens,
    fp8_input_bytes,
    fused_experts_bytes,
    fused_moe_chunk,
)
from rackfit.models import resolve
from rackfit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
# Qwen3-Coder-480B-A35B (S257): hidden 6144, 160 experts of 2,560, top 8
CODER = {"numLayers": 62, "hiddenSize": 6144, "intermediateSize": 8192, "numAttentionHeads": 96,
         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 151936, "numExperts": 160, "numExpertsPerToken": 8,
         "moeIntermediateSize": 2560}


def _inf(version: str | None, engine: str = "vllm"):
    inference = {"contextLength": 8192, "engine": engine}
    if version:
        inference["engineVersion"] = version
    return parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "inference": inference}).inference


def _arch(fields: dict):
    return resolve(parse_spec({"model": {"architecture": fields}, "workload": "inference"}).model)


def test_chunk_default_by_release():
    assert fused_moe_chunk(_inf("0.5.3")) == 65536
    assert fused_moe_chunk(_inf("0.6.0")) == 32768
    assert fused_moe_chunk(_inf("0.11.2")) == 32768
    assert fused_moe_chunk(_inf("0.12.0")) == 16384
    assert fused_moe_chunk(_inf("0.17.0")) == 16384
    assert fused_moe_chunk(_inf("0.18.0")) is None
    assert fused_moe_chunk(_inf(None)) is None  # the current release
    assert fused_moe_chunk(_inf(None, engine="sglang")) is None
    assert chunked_tokens(_inf("0.7.1"), 40960) == 32768
    assert chunked_tokens(_inf("0.14.0"), 65536) == 16384
    assert chunked_tokens(_inf("0.19.0"), 65536) == 65536


def test_dispatch_over_data_parallel_ranks_with_expert_parallel():
    inf = _inf("0.10.1")
    assert dispatched_tokens(inf, 8, 8, 8192) == 65536
    assert dispatched_tokens(inf, 8, 1, 8192) == 8192  # replicas without expert parallel: no shared MoE group
    assert dispatched_tokens(inf, 1, 8, 8192) == 8192  # tensor x expert: every rank already has the tokens
    assert dispatched_tokens(_inf("0.7.1"), 8, 8, 8192) == 8192  # V0
    assert dispatched_tokens(_inf(None, engine="sglang"), 8, 8, 8192) == 8192


def test_fused_experts_caches_by_hand():
    a = _arch(CODER)
    m = 32768
    # cache13: m x 8 x max(2 x 2560, 6144); intermediate_cache2: m x 8 x 2560; bf16
    assert fused_experts_bytes(a, 1, 8, m) == m * 8 * (6144 + 2560) * 2
    # split over tensor 8 without expert parallel: N = 2 x 320 = 640 < K
    assert fused_experts_bytes(a, 8, 1, m) == m * 8 * (6144 + 320) * 2
    # fp8 copies of both inputs with a 4-byte scale per 128 values
    assert fp8_input_bytes(a, 1, 8, m) == int((m * 6144 + m * 8 * 2560) * (1 + 4 / 128))


def test_moe_layer_s257_by_hand():
    """S257's setup: vLLM 0.10.1, data 8 x expert 8, 8,192 batched tokens a rank: the layer runs over 65,536 tokens,
    chunked to 32,768, with the gathered hidden states and router logits beside the caches."""
    a, inf = _arch(CODER), _inf("0.10.1")
    layout = Layout(data=8, expert=8)
    m, t, dispatched = 32768, 8192, 65536
    expected = (m * 8 * (6144 + 2560) * 2                                  # cache13 + intermediate_cache2
                + int((m * 6144 + m * 8 * 2560) * (1 + 4 / 128))           # fp8 input copies
                + t * 160 * 2 + dispatched * 8 * 12                        # router logits, fused_topk's outputs
                + dispatched * (6144 + 160) * 2)                           # dispatched hidden states and logits
    assert vllm_moe_layer_bytes(inf, a, layout, t, fp8=True) == expected
    assert forward_peak_bytes(a, layout, t, inf, fp8=True) == t * 2 * 6144 * 2 + expected


def test_workspace_release_uses_modular_kernel_shapes():
    a, inf = _arch(CODER), _inf("0.14.0")
    layout = Layout(data=8, expert=8)
    assert not inf.vllm_before(MOE_WORKSPACE_HELD)
    m = 16384  # 65,536 dispatched tokens, 0.14.0's chunk
    extra = 8192 * 160 * 2 + 65536 * 8 * 12 + 65536 * (6144 + 160) * 2
    assert vllm_moe_layer_bytes(inf, a, layout, 8192) == moe_workspace_bytes(a, layout, m) + extra


def test_other_engines_keep_the_old_count():
    a = _arch(CODER)
    layout = Layout(tensor=8)
    old = forward_peak_bytes(a, layout, 8192)
    assert forward_peak_bytes(a, layout, 8192, _inf(None, engine="sglang")) == old
    # rackfit's previous count: 2h + top_k x (3 x width + h) per token
    assert old == int(8192 * (2 * 6144 + 8 * (3 * 320 + 6144)) * 2)


def test_s257_s258_within_five_percent():
    """Qwen3-Coder-480B-FP8 at data 8 x expert 8 on H20 (vLLM 0.10.1): +8.1% / +7.1% before the dispatch and the
    DP/EP groups' NCCL buffers (serving_nccl.communicators) were counted."""
    ps = bench("public_serving")
    got = {r["id"]: r for r in ps.results()}
    for rid in ("S257", "S258"):
        assert 0 < got[rid]["error"] < 5.0, got[rid]
