"""Serving engines' memory plans (estimator/engines.py): what moves the KV cache, and fit by concurrency."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.context import CONTEXT_BEFORE_CUBLAS
from rackfit.estimator.engine_defaults import cuda_total_bytes, settings
from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.planner import plan
from rackfit.spec import parse_spec

CATALOG = load_catalog()
H100 = CATALOG.get("gd-8xh100ib-i128").gpu
L40S = CATALOG.get("gd-8xl40s-i128").gpu


def serve(preset="llama-3.1-8b", gpu=H100, layout=None, precision="bf16", **inference):
    spec = parse_spec(dict(model=dict(preset=preset), workload="inference", precision=precision,
                           inference=inference or None))
    return estimate(spec, layout, gpu=gpu)


def test_vllm_budget_is_the_fraction_of_cuda_total_and_the_kv_cache_the_rest():
    e = serve(contextLength=8192, engineVersion="0.33.0")
    b = e.breakdown
    assert e.engine_budget_bytes == int(0.92 * cuda_total_bytes(H100))
    pool = e.engine_budget_bytes - b.weights_bytes - b.activations_bytes - b.non_torch_bytes - b.cuda_graph_bytes
    per_token = 32 * 2 * 8 * 128 * 2  # layers x (K, V) x KV heads x head_dim x bf16
    assert pool // per_token - 16 < e.kv_cache_tokens <= pool // per_token
    assert e.kv_cache_tokens % 16 == 0  # whole blocks
    assert e.max_concurrency == pytest.approx(pool / (per_token * 8192), abs=0.01)


def test_vllm_defaults_depend_on_the_gpu():
    inf = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference"}).inference
    big, small = settings(inf, H100, 1, 1), settings(inf, L40S, 1, 1)
    assert (big.max_num_batched_tokens, big.max_num_seqs) == (8192, 1024)
    assert (small.max_num_batched_tokens, small.max_num_seqs) == (2048, 256)
    # no release named: 0.92, which every release accepts (0.34.0's extensible cache would take 1.0)
    assert big.gpu_memory_utilization == small.gpu_memory_utilization == 0.92


@pytest.mark.parametrize("version,util", [("0.19.0", 0.9), ("0.20.0", 0.92), ("0.33.0", 0.92), ("0.34.0", 1.0),
                                          (None, 0.92)])
def test_vllm_default_utilization_by_release(version, util):
    """vllm/config/cache.py: 0.9 through 0.19.x, 0.92 from 0.20.0, 1.0 with the extensible KV cache (0.34.0)."""
    inf = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                      "inference": {"engineVersion": version} if version else {}}).inference
    assert settings(inf, H100, 1, 1).gpu_memory_utilization == util


def test_the_extensible_kv_cache_takes_what_warmup_leaves_less_the_activation_peak_and_a_margin():
    """vLLM 0.34.0, measure_kv_cache_bytes: min(util x total - held, free - margin) - the profiled activation peak,
    the margin max(1 GiB, 0.75 x that peak); at the default utilization 1.0 the margin decides."""
    from rackfit.estimator import CUDA_CONTEXT_BYTES
    from rackfit.units import GiB
    e = serve(contextLength=8192, engineVersion="0.34.0")
    b = e.breakdown
    total = cuda_total_bytes(H100)
    state = 1024 * (128256 + 2 * 4008) * 4  # the new runner's sampler state (max_num_seqs x vocab), held
    act = b.activations_bytes - state
    held = b.weights_bytes + b.non_torch_bytes + b.cuda_graph_bytes + state
    pool = total - CUDA_CONTEXT_BYTES - held - max(GiB, int(0.75 * act)) - act
    per_token = 32 * 2 * 8 * 128 * 2
    assert pool // per_token - 16 < e.kv_cache_tokens <= pool // per_token
    # an explicit utilization caps it: 0.9 of the GPU less what the engine holds
    capped = serve(contextLength=8192, engineVersion="0.34.0", gpuMemoryUtilization=0.9)
    pool = int(0.9 * total) - held - act
    assert pool // per_token - 16 < capped.kv_cache_tokens <= pool // per_token
    assert serve(contextLength=8192, extensibleKvCache=True).kv_cache_tokens == e.kv_cache_tokens
    # turned off, or no release named, 0.34.0 plans by the profile at 0.92, as 0.33.0 did: 0.33.0 runs Llama through
    # the new runner too (vllm_runner.v2_runner), its sampler state held and no random copy of the sampled rows
    off = serve(contextLength=8192, engineVersion="0.34.0", extensibleKvCache=False)
    v033 = serve(contextLength=8192, engineVersion="0.33.0")
    assert off.kv_cache_tokens == serve(contextLength=8192).kv_cache_tokens < e.kv_cache_tokens
    assert v033.kv_cache_tokens == off.kv_cache_tokens


def test_what_the_profile_run_takes_is_taken_from_the_kv_cache():
    base = serve(contextLength=8192)
    assert serve(contextLength=8192, maxNumBatchedTokens=32768).kv_cache_tokens < base.kv_cache_tokens
    assert serve(contextLength=8192, cudaGraphs=False).kv_cache_tokens > base.kv_cache_tokens
    assert serve(contextLength=8192, gpuMemoryUtilization=0.5).kv_cache_tokens < base.kv_cache_tokens / 2
    # contextLength does not change what the engine allocates, only how many requests it holds
    assert serve(contextLength=32768).kv_cache_tokens == base.kv_cache_tokens
    assert serve(contextLength=32768).max_concurrency == pytest.approx(base.max_concurrency / 4, abs=0.01)


def test_tensor_parallel_halves_weights_and_adds_nccl_buffers():
    one, two = serve(contextLength=8192), serve(contextLength=8192, layout=Layout(tensor=2))
    assert two.breakdown.weights_bytes < one.breakdown.weights_bytes * 0.51
    assert two.breakdown.non_torch_bytes > one.breakdown.non_torch_bytes
    assert two.kv_cache_tokens > 2 * one.kv_cache_tokens  # half the KV heads per rank, more room


def test_nccl_buffers_over_nvlink_are_one_flat_group_cost_over_pcie_per_peer():
    """NCCL_NVLINK_GROUP: a tensor rank on NVLink (SXM) holds about 1.8 GiB of NCCL channel buffers whatever the
    group's size (vLLM 0.19.0 logged 2.07 GiB of non-torch memory at tensor 2 and 2.13 at 4 on H100, 0.25 alone);
    over PCIe (L40S) the buffers stay small, flat from 3 ranks on (pcie_serving.py; from 0.11.0 PyNccl's communicator
    is in the baseline and only torch's counts)."""
    from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP, NCCL_PER_PEER, NON_TORCH_BASE
    nt = {(gpu.model, t): serve(contextLength=8192, gpu=gpu, layout=Layout(tensor=t),
                                engineVersion="0.19.0").breakdown.non_torch_bytes
          for gpu in (H100, L40S) for t in (1, 2, 4)}
    assert nt["H100", 1] == nt["L40S", 1] == NON_TORCH_BASE
    assert nt["H100", 2] == nt["H100", 4] == NON_TORCH_BASE + NCCL_NVLINK_GROUP
    from rackfit.estimator.pcie_serving import pcie_comm_bytes
    assert nt["L40S", 2] == NON_TORCH_BASE + NCCL_PER_PEER // 2 and nt["L40S", 4] == NON_TORCH_BASE + pcie_comm_bytes(4)
    # and the KV cache pays for it: Llama 3.1 8B at tensor 2 on H100, util 0.95, vLLM 0.19.0 (row S15): 63.76 GiB
    e = serve(contextLength=8192, layout=Layout(tensor=2), gpuMemoryUtilization=0.95, engineVersion="0.19.0")
    assert e.kv_cache_tokens == pytest.approx(1_044_688, rel=0.02)


def test_gpus_joined_by_nvlink():
    nvlink = {it.gpu.model: it.gpu.nvlink for it in CATALOG.instance_types.values()}
    assert nvlink["H100"] and nvlink["H200"] and nvlink["B200"] and nvlink["A100"]
    assert not nvlink["L40S"] and not nvlink["L40"] and not nvlink["RTX Pro 6000 Blackwell"]
    pcie = H100.model_copy(update={"product": "NVIDIA-H100-PCIe"})
    assert not pcie.nvlink
    # HGX H20 is an NVLink board; L20 is a PCIe card
    assert H100.model_copy(update={"model": "H20", "product": "NVIDIA-H20"}).nvlink
    assert not H100.model_copy(update={"model": "L20", "product": "NVIDIA-L20"}).nvlink


def test_one_request_that_does_not_fit_is_the_engines_refusal():
    e = serve("llama-3.1-70b", precision="fp8", contextLength=131072, gpu=L40S, layout=Layout(tensor=2))
    assert e.max_concurrency < 1
    assert any("would refuse to start" in n and f"about {e.kv_cache_tokens} tokens" in n for n in e.notes)


def test_sglang_starts_with_a_pool_shorter_than_one_request():
    """SGLang caps each request at its pool (tp_worker.py: max_req_len = min(context_len - 1, max_total_num_tokens -
    1), asserting only that it is positive), so it starts where vLLM refuses; the workload still does not fit."""
    args = dict(preset="llama-3.1-70b", precision="fp8", contextLength=131072, gpu=L40S, layout=Layout(tensor=2))
    vllm, sglang = serve(**args), serve(engine="sglang", **args)
    assert vllm.max_concurrency < 1 and vllm.engine_starts is False
    assert 0 < sglang.max_concurrency < 1 and sglang.engine_starts is True
    assert any("sglang would start but reject requests longer than" in n for n in sglang.notes)
    assert serve(contextLength=8192).engine_starts is True
    assert serve(contextLength=8192, gpu=None).engine_starts is None


def test_without_a_gpu_the_cache_is_what_the_requests_need():
    e = serve(contextLength=8192, concurrency=4, gpu=None)
    assert e.kv_cache_tokens is None and e.max_concurrency is None
    assert e.breakdown.kv_cache_bytes == 4 * 8192 * 32 * 2 * 8 * 128 * 2
    assert e.engine_budget_bytes is None  # no GPU, no fraction of it to claim


def test_sglang_default_fraction_follows_its_formula():
    """ServerArgs._handle_gpu_memory_settings: nvidia-smi's MiB (the label), a reserve for metadata, the prefill chunk,
    the CUDA graph batch and tp x pp, at least 10 GiB above 60 GiB. SGLang logged 0.851 on an L40S."""
    inf = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                      "inference": {"engine": "sglang"}}).inference
    s = settings(inf, H100, 1, 1)
    # metadata, prefill chunk, graphs, tp x pp / 8, and (current releases, from 0.5.10) 58 piecewise graphs of 8 MiB
    reserve = 512 + 8192 * 1.5 + 256 * 2 + 1 / 8 * 1024 + 58 * 8
    assert s.gpu_memory_utilization == round((H100.memory_mib - reserve) / H100.memory_mib, 3)
    # PR 13023's log (2025-11, main between 0.5.5 and 0.5.6): before the piecewise reserve of 0.5.10
    nov = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                      "inference": {"engine": "sglang", "engineVersion": "0.5.5"}}).inference
    l40s = settings(nov, L40S, 1, 1)
    assert (l40s.max_num_batched_tokens, l40s.max_num_seqs, l40s.gpu_memory_utilization) == (4096, 32, 0.851)
    # a 2,048-token chunk (--chunked-prefill-size) reserves 512 + 3,072 + 512 + 128 MiB: the 10 GiB floor applies
    small = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                        "inference": {"engine": "sglang", "maxNumBatchedTokens": 2048}}).inference
    assert settings(small, H100, 1, 1).gpu_memory_utilization == round((81559 - 10 * 1024) / 81559, 3)
    e = serve(engine="sglang", contextLength=8192)
    # the fraction is of what was free before loading (model_runner_kv_cache_mixin.py profile_max_num_token)
    b = e.breakdown
    assert e.engine_budget_bytes == int(s.gpu_memory_utilization * (cuda_total_bytes(H100) - CONTEXT_BEFORE_CUBLAS
                                                                      - b.non_torch_bytes + NON_TORCH_BASE))


def test_sglang_baseline_is_taken_before_cublas_and_the_workspaces():
    """ModelRunner.__init__ reads the free memory after init_torch_distributed and calls init_cublas() only after
    init_memory_pool: the bare CUDA context and NCCL's communicators are outside the fraction, cuBLAS's workspace and
    NON_TORCH_BASE are not (they come out of the 1 - mem_fraction_static reserve)."""
    one = serve(engine="sglang", contextLength=8192, gpuMemoryUtilization=0.88)
    assert one.breakdown.non_torch_bytes == NON_TORCH_BASE and one.breakdown.overhead_bytes > CONTEXT_BEFORE_CUBLAS
    assert one.engine_budget_bytes == int(0.88 * (cuda_total_bytes(H100) - CONTEXT_BEFORE_CUBLAS))
    four = serve(engine="sglang", contextLength=8192, gpuMemoryUtilization=0.88, layout=Layout(tensor=4))
    nccl = four.breakdown.non_torch_bytes - NON_TORCH_BASE
    assert nccl > 0
    assert four.engine_budget_bytes == int(0.88 * (cuda_total_bytes(H100) - CONTEXT_BEFORE_CUBLAS - nccl))


def test_tensorrt_llm_gives_the_cache_a_fraction_of_what_is_free():
    e = serve(engine="tensorrt-llm", contextLength=8192)
    b = e.breakdown
    free = cuda_total_bytes(H100) - b.overhead_bytes - b.weights_bytes - b.activations_bytes - b.non_torch_bytes \
        - b.cuda_graph_bytes
    per_token = 32 * 2 * 8 * 128 * 2
    assert abs(e.kv_cache_tokens * per_token - 0.9 * free) < 16 * per_token


def test_tensorrt_llm_samples_only_its_few_dummy_requests():
    """TensorRT-LLM's estimation run fills max_num_tokens with requests of max_seq_len - 1 tokens (KvCacheCreator.
    _create_dummy_context_requests): two at 8,192 tokens, so its activations are the forward's, not 2,048 requests'
    logits (3.4 GiB for Llama 3.1 8B at 14 bytes a logit), which vLLM's _dummy_sampler_run would take."""
    from rackfit.estimator.engine_profile import forward_peak_bytes
    from rackfit.estimator.engines import profile_requests
    from rackfit.estimator.sampler import sampler_peak_bytes
    from rackfit.models import resolve
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(engine="tensorrt-llm", contextLength=8192)))
    s = settings(spec.inference, H100, 1, 1)
    a = resolve(spec.model)
    assert profile_requests(spec.inference, s, a) == 2
    short = spec.inference.model_copy(update={"context_length": 1024})
    assert profile_requests(short, settings(short, H100, 1, 1), a) == 9  # 8 of 1,023 tokens and one of 8
    e = serve(engine="tensorrt-llm", contextLength=8192)
    assert e.breakdown.activations_bytes == max(forward_peak_bytes(a, Layout(), 8192),
                                                sampler_peak_bytes(a, Layout(), 2) + 2 * 4096 * 2)
    assert e.breakdown.activations_bytes < 1 << 30


def test_tensorrt_llm_graphs_share_one_pool_of_the_largest_decode_batch():
    """TensorRT-LLM's PyTorch backend captures a whole-forward decode graph per CudaGraphConfig batch size (up to 128),
    all in one memory pool (cuda_graph_runner.py CUDAGraphRunner.capture): the largest batch's forward and logits, not
    vLLM's 67 sizes x (layers + 1) piecewise graphs (0.83 GiB for Llama 3.1 8B)."""
    from rackfit.estimator.cuda_graphs import cuda_graph_bytes, fa3_split_bytes
    from rackfit.estimator.engine_profile import forward_peak_bytes
    from rackfit.models import resolve
    a = resolve(parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference")).model)
    e = serve(engine="tensorrt-llm", contextLength=8192)
    assert e.breakdown.cuda_graph_bytes == forward_peak_bytes(a, Layout(), 128) + 128 * a.vocab_size * 2
    assert e.breakdown.cuda_graph_bytes < 100 << 20
    vllm = serve(contextLength=8192)
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference")).inference
    # on the H100 vLLM's pool also holds FlashAttention 3's split buffers (cuda_graphs.fa3_split_bytes)
    assert vllm.breakdown.cuda_graph_bytes == (cuda_graph_bytes(a, Layout(), vllm.engine, inf)
                                               + fa3_split_bytes(a, Layout(), vllm.engine, inf, H100, "bf16"))
    assert serve(engine="tensorrt-llm", contextLength=8192, cudaGraphs=False).breakdown.cuda_graph_bytes == 0


def test_older_vllm_releases_plan_as_they_did():
    """Before 0.8.0 (V0) the profile run took max(contextLength, 2048) tokens and 256 sequences; before
    0.20.0 the CUDA graphs came out of the 1 - util share, so the KV cache did not give them room."""
    inf = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                      "inference": {"contextLength": 16384, "engineVersion": "0.7.3"}}).inference
    v0 = settings(inf, H100, 1, 1)
    assert (v0.max_num_batched_tokens, v0.max_num_seqs) == (16384, 256)
    assert settings(inf.model_copy(update={"context_length": 1024}), H100, 1, 1).max_num_batched_tokens == 2048
    # the same utilization (0.92) and sampler (FlashInfer's), the graphs counted inside the budget (0.20.0's envs.py
    # turns VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS on) or not (0.19.1's leaves it off)
    in_budget = serve(contextLength=8192, engineVersion="0.20.0", flashinferSampler=True)
    v019 = serve(contextLength=8192, engineVersion="0.19.1", flashinferSampler=True, gpuMemoryUtilization=0.92)
    assert in_budget.breakdown.cuda_graph_bytes == v019.breakdown.cuda_graph_bytes > 0
    per_token = 32 * 2 * 8 * 128 * 2
    graphs_in_tokens = in_budget.breakdown.cuda_graph_bytes // per_token
    assert graphs_in_tokens - 16 <= v019.kv_cache_tokens - in_budget.kv_cache_tokens <= graphs_in_tokens + 16
    # (0.22.0 runs Llama on the old runner still: vllm_runner.v2_runner)
    assert serve(contextLength=8192, engineVersion="0.22.0").kv_cache_tokens == in_budget.kv_cache_tokens
    assert serve(contextLength=8192, engineVersion="0.21.0").kv_cache_tokens == in_budget.kv_cache_tokens
    # from 0.33.0 cuBLAS's handles are in the baseline (startup.CUBLAS_BEFORE_SNAPSHOT): NON_TORCH_BASE more cache, less
    # what the new runner's second sampler pass (sampler.V2_SAMPLER_WARMUP_PASS) adds to the profile's peak
    v032, v033 = (serve(contextLength=8192, engineVersion=v) for v in ("0.32.0", "0.33.0"))
    more_peak = v033.breakdown.activations_bytes - v032.breakdown.activations_bytes
    moved = (NON_TORCH_BASE - more_peak) / per_token
    assert v033.kv_cache_tokens - v032.kv_cache_tokens == pytest.approx(moved, abs=16)


@pytest.mark.parametrize("inference,field,words", [
    ({"engine": "tensorrt-llm", "engineVersion": "1.2.1"}, "spec.inference.engineVersion",
     "engines vllm and sglang only"),
    ({"engine": "sglang", "extensibleKvCache": True}, "spec.inference.extensibleKvCache", "only with engine vllm"),
    ({"engineVersion": "0.33.0", "extensibleKvCache": True}, "spec.inference.extensibleKvCache", "came with 0.34.0"),
    ({"engineVersion": "v0.7"}, "spec.inference.engineVersion", "pattern"),
])
def test_engine_version_is_vllm_s_or_sglang_s_and_a_release_number(inference, field, words):
    with pytest.raises(InvalidWorkload) as e:
        parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "inference": inference})
    (got, msg), = e.value.errors
    assert got == field and words in msg


def test_engine_settings_are_refused_with_transformers():
    with pytest.raises(InvalidWorkload) as e:
        parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                    "inference": {"engine": "transformers", "gpuMemoryUtilization": 0.8}})
    (field, msg), = e.value.errors
    assert field == "spec.inference.engine" and "serving-engine settings" in msg


def test_host_memory_counts_for_vllm_on_gh200_only_when_asked():
    spec = dict(model=dict(preset="llama-3.1-70b"), workload="inference", precision="fp8",
                placement=dict(instanceTypes=["gd-1xgh200"], maxNodes=1))
    without = plan(parse_spec(spec), CATALOG).chosen.estimate.kv_cache_tokens
    spec["placement"]["useHostMemory"] = True
    with_host = plan(parse_spec(spec), CATALOG).chosen.estimate.kv_cache_tokens
    assert with_host > 2 * without


def test_the_plan_refuses_as_the_engine_would_with_the_largest_context():
    spec = parse_spec(dict(model=dict(preset="llama-3.1-70b"), workload="inference", precision="fp8",
                           inference=dict(contextLength=131072), parallelism=dict(tensor=2),
                           placement=dict(instanceTypes=["gd-8xl40s-i128"])))
    (rejection,) = plan(spec, CATALOG).rejected
    assert "vllm would refuse to start" in rejection.reason
    assert "the largest context that fits is about" in rejection.reason


def test_vllm_capture_sizes_by_release():
    from rackfit.estimator.cuda_graphs import graph_capture_sizes
    # VllmConfig._set_cudagraph_sizes: every 8 up to 512 through 0.11.0 (67), every 16 from 256 on from 0.11.1 (51,
    # what 0.19.0 logged: "PIECEWISE=51 (largest=512)"); gpt-oss's 1024 gives 83 ("PIECEWISE=83 (largest=1024)"), its
    # own list of 0.10.1-0.11.0 up to 992 gives 81
    assert graph_capture_sizes(512, step16=False) == 67
    assert graph_capture_sizes(512, step16=True) == 51
    assert graph_capture_sizes(1024, step16=True) == 83
    assert graph_capture_sizes(992, step16=True) == 81
    assert graph_capture_sizes(128, step16=True) == graph_capture_sizes(128, step16=False) == 19


def test_gpt_oss_captures_larger_cuda_graphs_under_vllm():
    # GptOssForCausalLMConfig.verify_and_update_config raises the largest capture to 1024 tokens (992 before 0.11.1):
    # the same shapes under another name keep vLLM's default 512
    arch = {"numLayers": 24, "numExperts": 32, "slidingWindowLayers": 12}

    def graphs(preset, version, engine="vllm"):
        inference = {"contextLength": 8192, "engine": engine}
        if engine == "vllm":
            inference["engineVersion"] = version
        spec = parse_spec(dict(model=dict(preset=preset, architecture=arch), workload="inference", precision="mxfp4",
                               inference=inference))
        return estimate(spec, gpu=H100).breakdown.cuda_graph_bytes

    piece = 67 * 25 * (288 << 10)  # GRAPH_SIZES x (layers + 1) x GRAPH_PRIVATE_BYTES at the default capture
    gpt = graphs("gpt-oss-120b-mxfp4", "0.19.0")
    assert gpt - graphs("gpt-oss-120b-mxfp4", "0.19.0", engine="sglang") > piece * (83 / 51 - 1) * 0.99
    assert graphs("gpt-oss-120b-mxfp4", "0.10.1") - graphs("gpt-oss-120b-mxfp4", "0.10.1", engine="sglang") > \
        piece * (81 / 67 - 1) * 0.99
