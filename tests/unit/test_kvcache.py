"""KV cache bytes per token and per GPU against docs/reference/memory-model.md §1.4 and §3."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout, estimate
from rackfit.estimator.kvcache import kv_bytes_per_token_layer, kv_cache_bytes
from rackfit.models import resolve
from rackfit.spec import Architecture, ModelSource, parse_spec


def arch(preset: str, **overrides):
    return resolve(ModelSource(preset=preset, architecture=Architecture(**overrides) if overrides else None))


def per_token(preset: str, tensor: int = 1, precision: str = "bf16") -> int:
    a = arch(preset)
    return kv_bytes_per_token_layer(a, precision, tensor) * a.num_layers


# docs/reference/memory-model.md §3 "KV B/token", bf16, TP = 1 (nominal: sliding windows not applied)
TABLE = {
    "llama-3.2-1b": 32_768, "llama-3.2-3b": 114_688, "llama-3.1-8b": 131_072, "llama-3.1-70b": 327_680,
    "llama-3.1-405b": 516_096, "qwen2.5-7b": 57_344, "qwen2.5-14b": 196_608, "qwen2.5-32b": 262_144,
    "qwen2.5-72b": 327_680, "mistral-7b-v0.3": 131_072, "mixtral-8x7b": 131_072, "falcon-180b": 163_840,
    "nemotron-4-340b": 589_824, "deepseek-v3": 70_272, "gpt-oss-120b": 73_728, "gemma-2-27b": 376_832,
}


@pytest.mark.parametrize("preset", sorted(TABLE))
def test_bytes_per_token_tp1_bf16(preset):
    assert per_token(preset) == TABLE[preset]


def test_deepseek_latent():
    assert per_token("deepseek-v3") == 576 * 61 * 2


def cache(preset, context, sequences=1, tensor=1, pipeline=1, precision="bf16", chunk=None, **overrides):
    a = arch(preset, **overrides)
    return kv_cache_bytes(a, precision, Layout(tensor=tensor, pipeline=pipeline), context, sequences,
                          chunk if chunk is not None else min(context * sequences, 8192))


def test_full_attention_cache_is_per_token_times_tokens():
    assert cache("llama-3.1-8b", 8192, sequences=4) == 131_072 * 8192 * 4


@pytest.mark.parametrize("tensor", [1, 2, 4, 8])
def test_gqa_split_over_tensor(tensor):
    # 8 KV heads: each rank holds 8 / tensor of them
    assert per_token("llama-3.1-70b", tensor) * tensor == 327_680


@pytest.mark.parametrize("tensor", [8, 16, 32])
def test_gqa_replicated_beyond_kv_heads(tensor):
    # Qwen2.5-7B has 4 KV heads: from TP=4 on, each rank keeps one head
    assert per_token("qwen2.5-7b", tensor) == 57_344 // 4


def test_gqa_replication_boundary():
    assert per_token("qwen2.5-7b", 2) == 57_344 // 2
    assert per_token("qwen2.5-7b", 4) == 57_344 // 4


@pytest.mark.parametrize("tensor", [1, 2, 8, 16, 64])
def test_mla_replicated_on_every_rank(tensor):
    assert per_token("deepseek-v3", tensor) == 70_272


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "deepseek-v3", "qwen2.5-7b", "gemma-2-27b"])
@pytest.mark.parametrize("half", ["bf16", "fp16"])
def test_fp8_halves(preset, half):
    assert per_token(preset, precision=half) == 2 * per_token(preset, precision="fp8")


def test_fp8_deepseek_layer():
    a = arch("deepseek-v3")
    assert kv_bytes_per_token_layer(a, "fp8", 1) == 576


def test_pipeline_splits_layers():
    whole = cache("llama-3.1-8b", 4096)
    assert cache("llama-3.1-8b", 4096, pipeline=2) == whole // 2
    assert cache("llama-3.1-8b", 4096, pipeline=4) == whole // 4


# --- sliding windows --------------------------------------------------------------------------------

def test_gemma_short_context_is_nominal():
    # below the 4096 window every layer keeps every token
    assert cache("gemma-2-27b", 2048) == 376_832 * 2048


def test_gemma_long_context_capped():
    context, chunk = 131_072, 8192
    got = cache("gemma-2-27b", context, chunk=chunk)
    per_layer = 376_832 // 46
    assert got == 23 * per_layer * context + 23 * per_layer * (4096 + chunk)
    # the saving against the estimator's own count with the windows off (not a constant of this test)
    assert got < 0.55 * cache("gemma-2-27b", context, chunk=chunk, sliding_window_layers=0)


def test_gpt_oss_long_context_capped():
    context, chunk = 131_072, 8192
    got = cache("gpt-oss-120b", context, chunk=chunk)
    per_layer = 73_728 // 36
    assert got == 18 * per_layer * context + 18 * per_layer * (128 + chunk)
    assert got < 0.6 * cache("gpt-oss-120b", context, chunk=chunk, sliding_window_layers=0)


def test_window_never_exceeds_context():
    # window + chunk larger than the context: the context bounds it
    assert cache("gpt-oss-120b", 1000, chunk=1000) == 73_728 * 1000


def test_override_no_sliding_window_layers():
    assert cache("gemma-2-27b", 65_536, sliding_window_layers=0) == 376_832 * 65_536


def test_estimate_kv_in_breakdown():
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(contextLength=8192, concurrency=16)))
    assert estimate(spec).breakdown.kv_cache_bytes == 131_072 * 8192 * 16


def test_estimate_kv_split_over_data_parallel_replicas():
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(contextLength=8192, concurrency=16)))
    one = estimate(spec).breakdown.kv_cache_bytes
    assert estimate(spec, Layout(data=4)).breakdown.kv_cache_bytes == one // 4
    assert estimate(spec, Layout(tensor=8)).breakdown.kv_cache_bytes == one // 8


def test_estimate_kv_fp8():
    doc = dict(model=dict(preset="deepseek-v3"), workload="inference", precision="fp8",
               inference=dict(contextLength=32_768, concurrency=2, kvCachePrecision="fp8"))
    assert estimate(parse_spec(doc), Layout(tensor=8)).breakdown.kv_cache_bytes == 576 * 61 * 32_768 * 2
