"""Serving with LoRA adapters (lora_serving.py): vLLM's and SGLang's stacked A/B buffers of maxLoras x maxLoraRank
per wrapped layer, counted with the weights where the engine counts them; vLLM's punica shrink buffer in the profile
run, and its CUDA graphs captured with and without LoRA from 0.11.1. Unset: no LoRA, nothing changes."""

from __future__ import annotations

import pytest
from gpus import H100
from pydantic import ValidationError

from rackfit.errors import RackfitError
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.lora_serving import (
    layer_lora_elements,
    lora_buffer_bytes,
    lora_graph_cases,
    lora_held_bytes,
    lora_meta_bytes,
    lora_profile_bytes,
)
from rackfit.models import resolve
from rackfit.spec import Inference, parse_spec

# Llama 3.1 8B's shape
ARCH = {"architecture": {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
                         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 128256}}


def spec(**inference):
    return parse_spec(dict(model=ARCH, workload="inference", inference=dict(contextLength=8192, **inference)))


def arch():
    return resolve(spec().model)


# One slot, rank 16, tensor 1, one decoder layer, from base_linear.py's shapes:
# qkv A 3 x 16 x 4096, o A 16 x 4096, qkv B 16 x (4096 + 2 x 8 x 128), o B 4096 x 16,
# gate_up A 2 x 16 x 4096, down A 16 x 14336, gate_up B 2 x 14336 x 16, down B 4096 x 16
LAYER_T1 = (196_608 + 65_536 + 98_304 + 65_536 + 131_072 + 229_376 + 458_752 + 65_536)
# embedding A 128256 x 16 and B 4096 x 16; lm_head A 16 x 4096 and B 128256 x 16
VOCAB = 2 * (128_256 * 16 + 4096 * 16)


def test_one_layer_slot_by_hand():
    assert LAYER_T1 == 1_310_720
    assert layer_lora_elements(arch(), 1, 16) == LAYER_T1
    # tensor 2: column layers' B and row layers' A halve, A of column / B of row stay whole
    t2 = 196_608 + 32_768 + 49_152 + 65_536 + 131_072 + 114_688 + 229_376 + 65_536
    assert layer_lora_elements(arch(), 2, 16) == t2
    # fully sharded: the column layers' A rank and the row layers' B output split too
    fs = 98_304 + 32_768 + 49_152 + 32_768 + 65_536 + 114_688 + 229_376 + 32_768
    assert layer_lora_elements(arch(), 2, 16, fully_sharded=True) == fs


def test_vllm_buffers_max_loras_times_rank():
    inf = spec(engineVersion="0.19.0", maxLoras=4, maxLoraRank=64).inference
    # rank 64 is 4 x rank 16 element for element
    expected = 4 * 4 * (32 * LAYER_T1 + VOCAB) * 2
    assert lora_buffer_bytes(inf, arch(), Layout()) == expected == 1_477_705_728
    # default max_loras 1, rank 16
    assert lora_buffer_bytes(spec(maxLoraRank=16).inference, arch(), Layout()) == (32 * LAYER_T1 + VOCAB) * 2


def test_extra_vocab_before_0_12():
    new = lora_buffer_bytes(spec(engineVersion="0.12.0", maxLoras=1).inference, arch(), Layout())
    old = lora_buffer_bytes(spec(engineVersion="0.11.0", maxLoras=1).inference, arch(), Layout())
    # embedding A covers 256 more rows of rank 16, and both embeddings_tensors hold 256 x hidden
    assert old - new == (256 * 16 + 2 * 256 * 4096) * 2


def test_sglang_default_eight_slots_no_vocab():
    inf = spec(engine="sglang", maxLoraRank=16).inference
    assert lora_buffer_bytes(inf, arch(), Layout()) == 8 * 32 * LAYER_T1 * 2


# Qwen3-30B-A3B's shape: 48 layers, all MoE, 128 experts of width 768, no shared experts
MOE = {"architecture": {"numLayers": 48, "hiddenSize": 2048, "intermediateSize": 6144, "numAttentionHeads": 32,
                        "numKeyValueHeads": 4, "headDim": 128, "vocabSize": 151936, "numExperts": 128,
                        "numExpertsPerToken": 8, "moeIntermediateSize": 768}}


def test_moe_experts_from_0_11_1():
    a = resolve(parse_spec(dict(model=MOE, workload="inference")).model)
    attention = 98_304 + 65_536 + 81_920 + 32_768  # qkv A, o A, qkv B (4096 + 2 x 4 x 128), o B
    router = 16 * 2048 + 128 * 16
    experts = 128 * (2 * 16 * 2048 + 2 * 768 * 16 + 16 * 768 + 2048 * 16)  # w13 A, w13 B, w2 A, w2 B
    vocab = 2 * (151_936 * 16 + 2048 * 16)

    def lora(version, layout=None):
        layout = layout or Layout()
        inf = parse_spec(dict(model=MOE, workload="inference",
                              inference=dict(engineVersion=version, maxLoras=1))).inference
        return lora_buffer_bytes(inf, a, layout)

    assert lora("0.19.0") == (48 * (attention + router + experts) + vocab) * 2 == 1_700_880_384
    extra = 256 * 16 + 2 * 256 * 2048
    assert lora("0.11.0") == (48 * (attention + router) + vocab + extra) * 2
    # expert parallel 4: a quarter of the experts, each whole
    ep = 32 * (2 * 16 * 2048 + 2 * 768 * 16 + 16 * 768 + 2048 * 16)
    attention_t4 = 98_304 + 16_384 + 16 * (1024 + 256) + 32_768
    assert lora("0.19.0", Layout(tensor=4, expert=4)) == (48 * (attention_t4 + router + ep) + vocab) * 2


def test_unset_is_no_lora():
    inf = spec(engineVersion="0.19.0").inference
    s = settings(inf, H100, 1, 1, arch())
    assert lora_held_bytes(inf, arch(), Layout(), s) == 0
    assert lora_profile_bytes(inf, s) == 0
    assert lora_graph_cases(inf) == 1


def test_held_by_release():
    a = arch()
    for version, counted in (("0.6.3", True), ("0.6.4", False), ("0.7.3", False), ("0.8.5", True), ("0.19.0", True)):
        inf = spec(engineVersion=version, maxLoras=2).inference
        s = settings(inf, H100, 1, 1, a)
        held = lora_held_bytes(inf, a, Layout(), s)
        assert (held > 0) is counted, version
        if counted:
            assert held == lora_buffer_bytes(inf, a, Layout()) + lora_meta_bytes(inf, s)


def test_meta_and_shrink_buffer_by_hand():
    inf = spec(engineVersion="0.19.0", maxLoras=2, maxLoraRank=32, maxNumBatchedTokens=8192, maxNumSeqs=256).inference
    s = settings(inf, H100, 1, 1, arch())
    assert lora_meta_bytes(inf, s) == 8192 * (24 + 16) + 256 * 16
    assert lora_profile_bytes(inf, s) == 3 * 8192 * 32 * 4


def test_graph_cases_from_0_11_1():
    assert lora_graph_cases(spec(engineVersion="0.11.0", maxLoras=1).inference) == 1
    assert lora_graph_cases(spec(engineVersion="0.11.1", maxLoras=1).inference) == 2
    assert lora_graph_cases(spec(engine="sglang", maxLoras=1).inference) == 1


def pool(**inference):
    sp = spec(**inference)
    return estimate(sp, Layout(), gpu=H100).kv_cache_pool_bytes


def test_pool_shrinks_by_the_buffers_on_v1():
    inf = spec(engineVersion="0.10.1", maxLoras=4, maxLoraRank=64).inference
    s = settings(inf, H100, 1, 1, arch())
    held = lora_held_bytes(inf, arch(), Layout(), s)
    assert held == lora_buffer_bytes(inf, arch(), Layout()) + lora_meta_bytes(inf, s) > 1.4e9
    # the shrink buffer joins the forward's peak, here under the sampler's: the pool loses the buffers alone
    assert pool(engineVersion="0.10.1") - pool(engineVersion="0.10.1", maxLoras=4, maxLoraRank=64) == held
    # SGLang: the buffers come out of the pool (its profile has no LoRA shrink buffer counted)
    sg = spec(engine="sglang", maxLoras=4, maxLoraRank=64).inference
    assert pool(engine="sglang") - pool(engine="sglang", maxLoras=4, maxLoraRank=64) == lora_held_bytes(
        sg, arch(), Layout(), settings(sg, H100, 1, 1, arch()))
    # V0 from 0.6.4: the buffers are not counted; the pool stays
    assert pool(engineVersion="0.7.3", maxLoras=4) == pool(engineVersion="0.7.3")


def test_graphs_twice_from_0_11_1():
    base = estimate(spec(engineVersion="0.19.0"), Layout(), gpu=H100).breakdown.cuda_graph_bytes
    lora = estimate(spec(engineVersion="0.19.0", maxLoras=1), Layout(), gpu=H100).breakdown.cuda_graph_bytes
    assert lora > base
    old = estimate(spec(engineVersion="0.11.0"), Layout(), gpu=H100).breakdown.cuda_graph_bytes
    assert estimate(spec(engineVersion="0.11.0", maxLoras=1), Layout(), gpu=H100).breakdown.cuda_graph_bytes == old


def test_refused_for_other_engines():
    for engine in ("tensorrt-llm", "transformers"):
        with pytest.raises(ValidationError, match="maxLoras and maxLoraRank"):
            Inference(engine=engine, max_loras=2)
        with pytest.raises(ValidationError, match="maxLoras and maxLoraRank"):
            Inference(engine=engine, max_lora_rank=8)
    assert Inference(engine="sglang", max_loras=2).max_loras == 2


def test_vllm_refuses_a_rank_it_does_not_accept():
    base = dict(model=dict(preset="llama-3.1-8b"), workload="inference")
    with pytest.raises((RackfitError, ValueError), match="maxLoraRank under engine vllm.*8, 16, 32"):
        parse_spec(dict(base, inference=dict(maxLoraRank=24)))
    assert parse_spec(dict(base, inference=dict(maxLoraRank=320))).inference.max_lora_rank == 320
    # SGLang takes any rank
    assert parse_spec(dict(base, inference=dict(engine="sglang", maxLoraRank=24))).inference.max_lora_rank == 24


def test_the_breakdown_shows_the_adapters_with_the_weights():
    """vLLM's "Model loading took" includes the adapters' buffers: the estimate's weights do too."""
    base = estimate(spec(), Layout(), gpu=H100)
    lora_spec = spec(maxLoras=4, maxLoraRank=16)
    lora = estimate(lora_spec, Layout(), gpu=H100)
    held = lora_held_bytes(lora_spec.inference, arch(), Layout(), settings(lora_spec.inference, H100, 1, 1, arch()))
    assert held > 4 * 92_356_608 - 1  # four rank-16 slots of Llama 3.1 8B's layers, at least
    assert lora.breakdown.weights_bytes - base.breakdown.weights_bytes == held
