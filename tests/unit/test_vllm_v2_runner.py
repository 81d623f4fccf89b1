"""vLLM's new GPU model runner before 0.34.0 (vllm_runner.v2_runner): which model each release runs through it
(vllm/config/vllm.py VllmConfig.use_v2_model_runner, _is_default_v2_model_runner_model,
DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES, read in the 0.21.0-0.34.0 wheels), and what its profile and warm-up allocate
(v1/worker/gpu/model_runner.py _dummy_sampler_run, sample/penalties.py, structured_outputs.py, warmup.py)."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.sampler import (
    profile_held_bytes,
    sampler_path,
    sampler_peak_bytes,
    sampler_state_bytes,
    sampler_warmup_bytes,
)
from rackfit.estimator.vllm_runner import v2_runner
from rackfit.models import resolve
from rackfit.spec import parse_spec

H100 = load_catalog().get("gd-8xh100ib-i128").gpu
VOCAB = 128256  # Llama 3.1


def spec(preset="llama-3.1-8b", **fields):
    return parse_spec(dict(model=dict(preset=preset), workload="inference", inference=fields or None))


def runs_v2(preset, version):
    s = spec(preset, engineVersion=version)
    return v2_runner(s.inference, resolve(s.model))


@pytest.mark.parametrize("preset,first", [
    ("qwen3-8b", "0.22.0"),             # DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES = {"Qwen3ForCausalLM"}
    ("llama-3.1-8b", "0.23.0"),         # + LlamaForCausalLM, MistralForCausalLM
    ("mistral-7b-v0.3", "0.23.0"),
    ("qwen2.5-7b", "0.25.0"),           # Qwen2ForCausalLM never listed: every dense model from 0.25.0
    ("gemma-2-27b", "0.25.0"),
    ("llama-3.1-405b-instruct-fp8", "0.24.0"),  # listed but quantized: `not is_quantized` through 0.23.x
    ("mixtral-8x7b", "0.29.0"),         # MoE, not listed: only once the check is gone
    ("qwen3-30b-a3b", "0.29.0"),        # Qwen3MoeForCausalLM is not Qwen3ForCausalLM
    ("deepseek-v3", "0.29.0"),          # DeepseekV3ForCausalLM is not DeepseekV2ForCausalLM
    ("gpt-oss-120b", "0.29.0"),
])
def test_each_release_runs_a_model_through_the_new_runner_from_its_first_release(preset, first):
    releases = ["0.21.0", "0.22.0", "0.23.0", "0.24.0", "0.25.0", "0.27.0", "0.28.0", "0.29.0", "0.33.0", "0.34.0"]
    got = {v: runs_v2(preset, v) for v in releases}
    want = {v: tuple(map(int, v.split("."))) >= tuple(map(int, first.split("."))) for v in releases}
    assert got == want
    assert runs_v2(preset, "0.34.0")


def test_llama_and_mistral_leave_the_list_in_0_25_0_as_dense_models_and_stay():
    """0.25.0 drops Qwen3, Llama and Mistral from the list, which now names MoE models only, because every dense model
    takes the new runner; an unknown architecture before 0.29.0 is planned on the old runner."""
    assert runs_v2("llama-3.1-8b", "0.25.1") and runs_v2("qwen3-8b", "0.26.0")
    assert not v2_runner(spec(engineVersion="0.28.0").inference)  # no model given
    assert v2_runner(spec(engineVersion="0.29.0").inference)
    assert not v2_runner(spec(engine="sglang").inference, resolve(spec().model))


def test_the_profile_before_0_33_0_samples_bare_bf16_logits():
    """_dummy_sampler_run through 0.32.x: make_dummy's requests carry no sampling parameters (temperature 0, top_k the
    vocabulary, top_p 1), so no fp32 copy: the bf16 logits, gathered whole on every tensor rank, 2 bytes a logit."""
    a = resolve(spec().model)
    inf = spec(engineVersion="0.28.0").inference
    assert sampler_path(inf, 1024, a) == "logits"
    assert sampler_peak_bytes(a, Layout(), 1024, "logits") == 1024 * VOCAB * 2  # 0.24 GiB
    assert sampler_peak_bytes(a, Layout(tensor=2), 1024, "logits") == 1024 * (VOCAB + VOCAB // 2) * 2
    # from 0.33.0 the second, for_sampler_warmup pass: FlashInfer's 14 bytes (the default) or Triton and Gumbel's 6
    assert sampler_path(spec(engineVersion="0.33.0").inference, 1024, a) == "flashinfer"
    assert sampler_path(spec(engineVersion="0.33.0", flashinferSampler=False).inference, 1024, a) == "gumbel"
    # the old runner in the same release: FlashInfer, or Triton
    assert sampler_path(spec(engineVersion="0.22.0", flashinferSampler=False).inference, 1024, a) == "triton"


def test_the_new_runner_holds_its_sampler_state_and_makes_no_random_copy_where_it_runs():
    a = resolve(spec().model)
    new, old = spec(engineVersion="0.23.0").inference, spec(engineVersion="0.22.0").inference
    s = settings(new, H100, 1, 1)
    assert (s.max_num_batched_tokens, s.max_num_seqs) == (8192, 1024)
    # PenaltiesState.output_bin_counts (1024 x vocab int32), prompt_bin_mask and the grammar bitmask (ceil(vocab/32))
    assert sampler_state_bytes(new, a, s) == 1024 * (VOCAB + 2 * 4008) * 4 == 558_170_112
    assert sampler_state_bytes(old, a, s) == 0
    rows = 1024 * 4096 * 2
    assert profile_held_bytes(old, a, Layout(), s, 1024) - profile_held_bytes(new, a, Layout(), s, 1024) == rows


def test_llama_3_1_8b_on_0_28_0_by_hand():
    """Profile peak: the 8,192-token forward (8192 x (2 x 4096 + 3 x 14336) x 2 = 0.78 GiB) outweighs the bare logits
    and what is held (1024 x 128256 x 2 + rows + hidden states = 0.31 GiB); the sampler state comes on top. The
    warm-up samples min(1024, 8192 // 2) requests with for_sampler_warmup, FlashInfer's 14 bytes a logit."""
    e = estimate(spec(engineVersion="0.28.0", contextLength=8192), None, gpu=H100)
    forward = 8192 * (2 * 4096 + 3 * 14336) * 2
    state = 1024 * (VOCAB + 2 * 4008) * 4
    assert 1024 * VOCAB * 2 + 1024 * 4096 * 2 + 8192 * 4096 * 2 < forward
    assert e.breakdown.activations_bytes == forward + state
    # the old runner the release before (0.22.0): FlashInfer's sampler is the peak, no state
    old = estimate(spec(engineVersion="0.22.0", contextLength=8192), None, gpu=H100)
    held = 1024 * 4096 * 2 * 2 + 8192 * 4096 * 2  # rows, their random copy, the hidden states
    assert old.breakdown.activations_bytes == 1024 * VOCAB * 14 + held
    assert e.kv_cache_tokens > old.kv_cache_tokens
    # the warm-up after the cache: FlashInfer over 1024 requests, beside rows and hidden states
    inf = spec(engineVersion="0.28.0").inference
    a = resolve(spec().model)
    s = settings(inf, H100, 1, 1)
    assert sampler_warmup_bytes(inf, a, Layout(), s, 0, H100) == 1024 * VOCAB * 14 + 1024 * 4096 * 2 + 8192 * 4096 * 2
    # on the old runner, or from 0.33.0, the warm-up is the profile's sampler again
    assert sampler_warmup_bytes(spec(engineVersion="0.22.0").inference, a, Layout(), s, 123, H100) == 123
    assert sampler_warmup_bytes(spec(engineVersion="0.33.0").inference, a, Layout(), s, 123, H100) == 123


def test_a_small_max_num_batched_tokens_caps_the_warm_up_requests():
    """warmup.py: num_reqs = min(max_num_seqs, max_num_batched_tokens // (decode_query_len + 1))."""
    inf = spec(engineVersion="0.27.0", maxNumBatchedTokens=512, maxNumSeqs=1024).inference
    a = resolve(spec().model)
    s = settings(inf, H100, 1, 1)
    held = profile_held_bytes(inf, a, Layout(), s, 512)
    assert sampler_warmup_bytes(inf, a, Layout(), s, 0, H100) == 256 * VOCAB * 14 + held


def test_the_warm_up_must_fit_what_the_lighter_profile_left():
    """Under the new runner the profile freed only the 0.78 GiB forward, but warmup_kernels samples 1,024 requests
    with for_sampler_warmup (FlashInfer, 1.71 GiB, and what is held): at 0.985 of an H100 0.29.0 dies there, where
    0.22.0's old runner re-runs the sampler its profile measured, and 0.30.0 warms up before capture, beside the graph
    pool the budget set aside but has not taken."""
    def refused(version):
        e = estimate(spec(engineVersion=version, contextLength=8192, gpuMemoryUtilization=0.985), None, gpu=H100)
        return e.refused
    assert "warming up the sampler" in refused("0.29.0")
    assert refused("0.22.0") is None
    assert refused("0.30.0") is None


def test_fewer_than_8_requests_sort_until_0_30_0():
    """topk_topp_sampler.py apply_top_k_top_p: `HAS_TRITON and logits.shape[0] >= 8` through 0.29.x, PyTorch's sort
    below; `if HAS_TRITON:` from 0.30.0, for the new runner's warm-up pass as for the old runner."""
    a = resolve(spec().model)
    native = {v: spec(engineVersion=v, flashinferSampler=False).inference for v in ("0.21.0", "0.29.0", "0.30.0")}
    assert sampler_path(native["0.29.0"], 4, a, warmup=True) == "sort"
    assert sampler_path(native["0.29.0"], 1024, a, warmup=True) == "gumbel"
    assert sampler_path(native["0.30.0"], 4, a, warmup=True) == "gumbel"
    assert sampler_path(native["0.21.0"], 4, a) == "sort"


def test_the_new_runner_leaves_the_graphs_out_of_the_budget_until_0_29_0():
    """v1/worker/gpu/model_runner.py profile_cudagraph_memory returns 0 through 0.28.x: the cache is the budget less
    weights, peak, state and non-torch memory, the graph pool captured afterwards; from 0.29.0 it is estimated (and
    taken from the cache) again. Between 0.28.0 and 0.29.0 the model moves by exactly the pool."""
    v028 = estimate(spec(engineVersion="0.28.0", contextLength=8192), None, gpu=H100)
    v029 = estimate(spec(engineVersion="0.29.0", contextLength=8192), None, gpu=H100)
    graphs = v028.breakdown.cuda_graph_bytes
    assert graphs == v029.breakdown.cuda_graph_bytes > 0
    per_token = 32 * 2 * 8 * 128 * 2
    assert v028.kv_cache_tokens - v029.kv_cache_tokens == pytest.approx(graphs / per_token, abs=16)
    # so --enforce-eager plans the same cache there
    eager = estimate(spec(engineVersion="0.28.0", contextLength=8192, cudaGraphs=False), None, gpu=H100)
    assert eager.kv_cache_tokens == v028.kv_cache_tokens
