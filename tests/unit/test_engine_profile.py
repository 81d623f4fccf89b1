"""vLLM V1's profile run by release (engines.py): the sampler of its dummy requests, FlashInfer's or PyTorch's native
top-k/top-p sort (`flashinferSampler`, by default what `pip install vllm` of the release runs), and the CUDA context,
inside the KV cache's budget before 0.9.1."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engines import FLASHINFER_SAMPLER_BYTES, NATIVE_SAMPLER_BYTES, native_sampler, sampler_peak_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

H100 = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")
ARCH = {"architecture": {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
                         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 151936}}


def spec(**inference):
    return parse_spec(dict(model=ARCH, workload="inference", inference=dict(contextLength=8192, **inference)))


def pool(**inference):
    return estimate(spec(**inference), Layout(tensor=2), gpu=H100).kv_cache_tokens


def test_native_sampler_holds_28_bytes_a_logit_where_pip_has_no_flashinfer():
    assert (NATIVE_SAMPLER_BYTES, FLASHINFER_SAMPLER_BYTES) == (28, 14)
    assert native_sampler(spec(engineVersion="0.9.2").inference)
    assert native_sampler(spec(engineVersion="0.12.0").inference)
    assert not native_sampler(spec(engineVersion="0.13.0").inference)
    assert not native_sampler(spec().inference)  # current releases: FlashInfer by default
    assert not native_sampler(spec(engineVersion="0.7.3").inference)  # V0's sampler is another model
    assert not native_sampler(spec(engineVersion="0.9.2", flashinferSampler=True).inference)
    assert native_sampler(spec(flashinferSampler=False).inference)
    a, layout = resolve(spec().model), Layout(tensor=2)
    assert sampler_peak_bytes(a, layout, 1024, native=True) == 1024 * 151936 * 28
    # H100 defaults: 1,024 dummy requests; the native sort takes 14 more bytes a logit, less the bf16 shard it outlives
    native, flashinfer = pool(engineVersion="0.9.2"), pool(engineVersion="0.9.2", flashinferSampler=True)
    per_token = 32 * 2 * 4 * 128 * 2
    freed = 1024 * 151936 * 14 - 1024 * (151936 // 2) * 2
    assert abs((flashinfer - native) * per_token - freed) <= 16 * per_token


def test_cuda_context_is_inside_the_budget_before_0_9_1():
    context = estimate(spec(), Layout(tensor=2), gpu=H100).breakdown.overhead_bytes
    per_token = 32 * 2 * 4 * 128 * 2
    old, new = pool(engineVersion="0.9.0", flashinferSampler=True), pool(engineVersion="0.9.1", flashinferSampler=True)
    assert abs((new - old) * per_token - context) <= 16 * per_token
