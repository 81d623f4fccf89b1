"""vLLM 0.8.0-0.10.1 fall back from V1 to V0 for what their V1 does not take yet (engine/arg_utils.py
_is_v1_supported_oracle; estimator/v1_oracle.py): S1711, Phi-4 bitsandbytes 4-bit with LoRA under 0.8.2, logged
"--quantization bitsandbytes is not supported by the V1 Engine. Falling back to V0."."""

from __future__ import annotations

from rackfit.catalog import load_catalog
from rackfit.estimator import estimate_arch
from rackfit.estimator.result import Layout
from rackfit.estimator.v1_oracle import v1_unsupported
from rackfit.models import resolve
from rackfit.spec import parse_spec

CATALOG = load_catalog()
A100 = CATALOG.get("gd-8xa100-i128").gpu
H100 = CATALOG.get("gd-8xh100ib-i128").gpu
B200 = H100.model_copy(update={"architecture": "blackwell"})


def serving(version, precision="bf16", **inference):
    inf = dict(contextLength=4096, engineVersion=version, **inference)
    return parse_spec(dict(model={"preset": "llama-3.2-3b"}, workload="inference", precision=precision,
                           inference=inf))


def why(spec, gpu=A100):
    return v1_unsupported(spec, resolve(spec.model), gpu)


def _estimate(spec, gpu=A100):
    return estimate_arch(spec, resolve(spec.model), Layout(), gpu)


def test_bitsandbytes_and_lora_until_0_8_3():
    for version in ("0.8.0", "0.8.2"):
        assert why(serving(version, "nf4")) == "--quantization bitsandbytes"
        assert why(serving(version, maxLoraRank=16)) == "LORA"
    for version in ("0.8.3", "0.8.5", "0.10.1"):
        assert why(serving(version, "nf4")) is None and why(serving(version, maxLoraRank=16)) is None
    assert why(serving("0.7.3", "nf4")) is None  # V0 already
    assert why(serving("0.8.2", "nf4", vllmUseV1=True)) is None  # VLLM_USE_V1=1: V1 (or refused), as stated


def test_fp32_until_0_9_2():
    assert why(serving("0.9.1", "fp32")) == "--dtype float32"
    assert why(serving("0.9.2", "fp32")) is None


def test_speculative_decoding():
    assert why(serving("0.8.5", speculativeMethod="ngram", speculativeTokens=3)) == "Speculative Decoding"
    assert why(serving("0.9.0", speculativeMethod="ngram", speculativeTokens=3)) is None


def test_fp8_kv_cache_off_hopper():
    fp8 = dict(kvCachePrecision="fp8")
    assert why(serving("0.8.1", **fp8), H100) == "--kv-cache-dtype"  # any non-auto cache dtype
    assert why(serving("0.8.2", **fp8), H100) is None  # FlashAttention 3 takes fp8
    assert why(serving("0.9.2", **fp8), A100) == "--kv-cache-dtype"
    assert why(serving("0.10.1", **fp8), A100) == "--kv-cache-dtype"
    assert why(serving("0.9.2", **fp8), B200) == "--kv-cache-dtype"
    assert why(serving("0.10.0", **fp8), B200) is None  # compute capability 10.0 admitted (12.0 not told apart)
    assert why(serving("0.10.2", **fp8), A100) is None  # not modelled from 0.10.2


def test_fallback_is_estimated_as_v0():
    """S1711's setting: nf4 with LoRA under 0.8.2 on an A100 gets V0's cache, as vllmUseV1 false would."""
    spec = serving("0.8.2", "nf4", maxLoras=1, maxLoraRank=16)
    fallback, v0 = _estimate(spec), _estimate(serving("0.8.2", "nf4", maxLoras=1, maxLoraRank=16, vllmUseV1=False))
    assert fallback.kv_cache_tokens == v0.kv_cache_tokens > 0
    assert any("Falling back to V0" in n for n in fallback.notes)
    v1 = _estimate(serving("0.8.3", "nf4", maxLoras=1, maxLoraRank=16))
    assert not any("V0" in n for n in v1.notes)
