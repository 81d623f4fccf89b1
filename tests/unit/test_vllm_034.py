"""vLLM 0.34.0 (the current release, what an unversioned spec plans) against the mechanisms read in 0.19.0-0.21.0:
each release gate moves the current release and leaves the release before it where it was."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.estimator import CUDA_CONTEXT_BYTES, Layout, estimate
from rackfit.estimator.cuda_graphs import cuda_graph_bytes
from rackfit.estimator.engine_defaults import cuda_total_bytes, settings
from rackfit.estimator.engines import EXTENSIBLE_MARGIN_FLOOR, EXTENSIBLE_MARGIN_FRACTION
from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.estimator.sampler import profile_held_bytes, sampler_state_bytes
from rackfit.estimator.startup import NCCL_INIT_NVLINK
from rackfit.models import resolve
from rackfit.spec import parse_spec

CATALOG = load_catalog()
H100 = CATALOG.get("gd-8xh100ib-i128").gpu
B200 = next(i.gpu for i in CATALOG.instance_types.values() if i.gpu.model == "B200")
H200 = next(i.gpu for i in CATALOG.instance_types.values() if i.gpu.model == "H200")
PER_TOKEN = 32 * 2 * 8 * 128 * 2  # Llama 3.1 8B: layers x (K, V) x KV heads x head_dim x bf16


def inference_spec(**fields):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=fields or None))


def inference(**fields):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=fields or None)).inference


def serve(gpu=H100, layout=None, **fields):
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=fields or None))
    return estimate(spec, layout, gpu=gpu)


def test_gpus_of_160_gib_get_16384_batched_tokens_from_0_28_0():
    """EngineArgs.get_batch_defaults, 0.28.0-0.34.0: `device_memory >= 160 * GiB_bytes` -> 16384 and 1024 for
    `vllm serve`; 0.27.0 gave a B200 the H100's 8192. H200 (140 GiB) stays at 8192."""
    now, before = settings(inference(), B200, 1, 1), settings(inference(engineVersion="0.27.0"), B200, 1, 1)
    assert (now.max_num_batched_tokens, now.max_num_seqs) == (16384, 1024)
    assert (before.max_num_batched_tokens, before.max_num_seqs) == (8192, 1024)
    assert settings(inference(), H200, 1, 1).max_num_batched_tokens == 8192
    # the profile run's forward grows with it, so the cache shrinks
    assert serve(B200, contextLength=8192).breakdown.activations_bytes > serve(
        B200, contextLength=8192, engineVersion="0.27.0").breakdown.activations_bytes


def test_sm100_captures_cuda_graphs_up_to_1024_tokens_from_0_28_0():
    """VllmConfig._set_cudagraph_sizes, 0.28.0-0.34.0: 1024 on capability family 100 (B200), else 512."""
    a = resolve(inference_spec().model)
    inf_now, inf_old = inference(), inference(engineVersion="0.27.0")
    s = settings(inf_now, B200, 1, 1)
    now, old = cuda_graph_bytes(a, Layout(), s, inf_now, B200), cuda_graph_bytes(a, Layout(), s, inf_old, B200)
    assert now > old
    assert cuda_graph_bytes(a, Layout(), s, inf_now, H100) == cuda_graph_bytes(a, Layout(), s, inf_old, H100)
    # a max_num_seqs of 256 still caps the capture at 512 tokens there
    s256 = s.model_copy(update={"max_num_seqs": 256})
    assert cuda_graph_bytes(a, Layout(), s256, inf_now, B200) == cuda_graph_bytes(a, Layout(), s256, inf_old, B200)


def test_the_new_runner_keeps_sampler_state_and_drops_the_random_rows():
    """v1/worker/gpu/sample/penalties.py PenaltiesState (output_bin_counts int32 x vocab, prompt_bin_mask) and
    structured_outputs.py's grammar bitmask for max_num_seqs requests, from 0.34.0; its _dummy_sampler_run makes no
    torch.rand_like copy of the sampled rows."""
    a = resolve(inference_spec().model)
    inf_now, inf_old = inference(), inference(engineVersion="0.22.0")  # 0.22.0: Llama on the old runner
    s = settings(inf_now, H100, 1, 1)
    assert sampler_state_bytes(inf_old, a, s) == 0
    assert sampler_state_bytes(inf_now, a, s) == 1024 * (128256 + 2 * 4008) * 4  # 0.49 GiB
    rows = 1024 * a.hidden_size * 2
    assert profile_held_bytes(inf_old, a, Layout(), s, 1024) - profile_held_bytes(inf_now, a, Layout(), s, 1024) == rows
    # on a pipeline stage that does not sample, no state
    assert sampler_state_bytes(inference(engine="sglang"), a, s) == 0


def test_cublas_handles_move_to_the_baseline_from_0_33_0():
    """gpu_worker.py init_device, 0.33.0: cuBLAS's handles before the snapshot. The budget stops paying NON_TORCH_BASE,
    and the start-up check sees the whole CUDA context taken."""
    old, new = serve(contextLength=8192, engineVersion="0.32.0"), serve(contextLength=8192, engineVersion="0.33.0")
    assert old.breakdown.non_torch_bytes - new.breakdown.non_torch_bytes == NON_TORCH_BASE
    total = cuda_total_bytes(H100)
    # a utilization whose request fits beside the bare context but not beside the context with cuBLAS
    util = round(1 - (CUDA_CONTEXT_BYTES + 552_402_944) / 2 / total, 6)
    before = serve(contextLength=8192, engineVersion="0.32.0", gpuMemoryUtilization=util).refused
    assert before is None or "Free memory on device" not in before
    refused = serve(contextLength=8192, engineVersion="0.33.0", gpuMemoryUtilization=util).refused
    assert refused is not None and "Free memory on device" in refused


def test_the_extensible_cache_measures_free_memory_after_nccl_too():
    """measure_kv_cache_bytes: headroom is the free memory after warmup, so NCCL's communicators taken before the
    snapshot (startup.NCCL_BEFORE_SNAPSHOT) are not in it; at tensor 2 on NVLink the cache is smaller by them."""
    e = serve(contextLength=8192, engineVersion="0.34.0", layout=Layout(tensor=2))
    b = e.breakdown
    a = resolve(inference_spec().model)
    state = sampler_state_bytes(inference(), a, settings(inference(), H100, 2, 1))
    act = b.activations_bytes - state
    held = b.weights_bytes + b.non_torch_bytes + b.cuda_graph_bytes + state
    margin = max(EXTENSIBLE_MARGIN_FLOOR, int(EXTENSIBLE_MARGIN_FRACTION * act))
    pool = cuda_total_bytes(H100) - CUDA_CONTEXT_BYTES - NCCL_INIT_NVLINK - held - margin - act
    per_token = PER_TOKEN // 2
    assert pool // per_token - 16 < e.kv_cache_tokens <= pool // per_token


@pytest.mark.parametrize("version", ["0.19.0", "0.21.0", "0.27.0"])
def test_older_releases_do_not_move_on_b200(version):
    """The gates leave a named older release as it was: 8192 tokens and the 512-token capture on a B200."""
    s = serve(B200, contextLength=8192, engineVersion=version)
    assert s.engine.max_num_batched_tokens == 8192


def test_the_new_runner_samples_natively_through_triton_and_gumbel_at_6_bytes_a_logit():
    """0.34.0 without FlashInfer: apply_top_k_top_p_triton at any batch and gumbel.py's Triton draws, so the bf16 logits
    and their fp32 copy (6 bytes a logit) and the kernel's buffer rows; the old runner (0.21.0) held 14 and sorted
    below 8."""
    from rackfit.estimator.sampler import sampler_path, sampler_peak_bytes
    a = resolve(inference_spec().model)
    now, old = inference(flashinferSampler=False), inference(engineVersion="0.21.0", flashinferSampler=False)
    assert sampler_path(now, 1024) == sampler_path(now, 4) == "gumbel"
    assert sampler_path(old, 1024) == "triton" and sampler_path(old, 4) == "sort"
    buffer = 132 * a.vocab_size * 4
    assert sampler_peak_bytes(a, Layout(), 1024, "gumbel", H100) == 1024 * a.vocab_size * 6 + buffer
    assert sampler_peak_bytes(a, Layout(), 1024, "triton", H100) == 1024 * a.vocab_size * 14 + buffer
    assert sampler_path(inference()) == "flashinfer"  # the default: FlashInfer's 14 bytes, as from 0.21.0
