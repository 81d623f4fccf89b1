"""Serving a model in float32 (issue 22, row S608: vLLM 0.11.2 --dtype float32): the engine's `auto` KV cache, its
profile forward and its rotary cos/sin cache all take the model's dtype (vLLM gpu_model_runner.py: kv_cache_dtype =
model_config.dtype; the dummy forward runs in that dtype; RotaryEmbedding: cache.to(dtype))."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.kvcache import kv_bytes_per_token_layer
from rackfit.estimator.weights import rope_cache_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

H100 = load_catalog().get("gd-8xh100ib-i128").gpu


def _spec(precision: str, **inference):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", precision=precision,
                           inference=dict(contextLength=8192, engineVersion="0.11.2", cudaGraphs=False, maxNumSeqs=32,
                                          **inference)))


def test_the_kv_cache_takes_the_model_dtype_unless_the_spec_names_one():
    assert _spec("fp32").inference.kv_cache_precision == "fp32"
    assert _spec("bf16").inference.kv_cache_precision == "bf16"
    assert _spec("fp8").inference.kv_cache_precision == "bf16"  # quantized weights, 16-bit compute
    assert _spec("fp32", kvCachePrecision="bf16").inference.kv_cache_precision == "bf16"
    assert _spec("fp32", kvCachePrecision="fp8").inference.kv_cache_precision == "fp8"


def test_an_fp32_kv_token_costs_twice_a_bf16_one():
    a = resolve(_spec("bf16").model)
    assert kv_bytes_per_token_layer(a, "fp32", 1) == 2 * kv_bytes_per_token_layer(a, "bf16", 1) == 2 * 8 * 128 * 4


def test_the_rotary_cache_is_in_the_model_dtype():
    a = resolve(_spec("bf16").model)
    assert rope_cache_bytes(a, "vllm", 4) == 2 * rope_cache_bytes(a, "vllm") == 131072 * 128 * 4


def test_an_fp32_model_doubles_its_weights_and_its_profile_forward():
    half, full = estimate(_spec("bf16"), gpu=H100), estimate(_spec("fp32"), gpu=H100)
    assert full.breakdown.weights_bytes == pytest.approx(2 * half.breakdown.weights_bytes, abs=2)
    # the forward (8,192 tokens through the widest MLP) is the profile's peak at either width (32 sequences: a small
    # sampler)
    assert full.breakdown.activations_bytes == pytest.approx(2 * half.breakdown.activations_bytes, abs=2)
    assert full.kv_cache_pool_bytes / full.kv_cache_tokens == pytest.approx(
        2 * half.kv_cache_pool_bytes / half.kv_cache_tokens, rel=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp8", "int4"])
def test_an_fp32_cache_beside_other_weights_is_refused_naming_the_field(precision):
    # the engines' --kv-cache-dtype offers no float32: an fp32 cache is only `auto` under --dtype float32
    with pytest.raises(InvalidWorkload, match=r"spec\.inference\.kvCachePrecision: .*float32 model"):
        _spec(precision, kvCachePrecision="fp32")
    assert _spec("fp32", kvCachePrecision="fp32").inference.kv_cache_precision == "fp32"
