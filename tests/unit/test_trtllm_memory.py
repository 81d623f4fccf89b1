"""TensorRT-LLM's PyTorch backend (estimator/trtllm.py): the custom all-reduce workspace outside torch at tensor
parallel, its start with a cache below one request (max_seq_len capped), and the estimation run it cannot finish."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import cuda_total_bytes
from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.estimator.trtllm import allreduce_workspace_bytes, estimation_request_tokens
from rackfit.spec import parse_spec

CATALOG = load_catalog()
H100 = CATALOG.get("gd-8xh100ib-i128").gpu
L40S = CATALOG.get("gd-8xl40s-i128").gpu
MiB = 1 << 20
LLAMA8_TOKEN = 32 * 2 * 8 * 128 * 2  # layers x (K, V) x KV heads x head_dim x bf16, one rank at tensor 1


def serve(preset="llama-3.1-8b", gpu=H100, layout=None, precision="bf16", **inference):
    spec = parse_spec(dict(model=dict(preset=preset), workload="inference", precision=precision,
                           parallelism=dict(tensor=layout) if layout else None, inference=inference or None))
    return estimate(spec, gpu=gpu)


@pytest.mark.parametrize("tensor,gpu,expected", [
    (1, H100, 0),
    # allocate_allreduce_fusion_workspace: 64 MiB x tp (IPC buffer) + 3 x 64 MiB x tp (Lamport) + 256 x tp barriers
    (2, H100, 64 * MiB * 2 + 3 * 64 * MiB * 2 + 256 * 2),
    (4, H100, 64 * MiB * 4 + 3 * 64 * MiB * 4 + 256 * 4),
    (8, H100, 64 * MiB * 8 + 3 * 64 * MiB * 8 + 256 * 8),
    (4, L40S, 0),  # no peer access (IpcMemory opens nothing): NCCL reduces, no workspace
    (4, None, 64 * MiB * 4 + 3 * 64 * MiB * 4 + 256 * 4),  # without a GPU, NVLink is assumed
])
def test_allreduce_workspace_is_four_64_mib_buffers_per_peer(tensor, gpu, expected):
    assert allreduce_workspace_bytes(Layout(tensor=tensor), gpu) == expected


def test_the_workspace_comes_out_of_tensorrt_llm_s_cache_only():
    """At tensor 4 on H100 the workspace (1 GiB a rank) is memory outside torch that the estimation run counts: the
    cache loses 0.9 x 1 GiB; vLLM's plan is untouched."""
    from rackfit.estimator.serving_nccl import non_torch_bytes
    from rackfit.estimator.startup import budgeted_non_torch
    trt = serve(preset="llama-3.1-70b", layout=4, engine="tensorrt-llm", contextLength=8192)
    workspace = 4 * 64 * MiB * 4 + 256 * 4
    inference = parse_spec(dict(model=dict(preset="llama-3.1-70b"), workload="inference",
                                inference=dict(engine="tensorrt-llm"))).inference
    nccl = budgeted_non_torch(inference, non_torch_bytes(inference, Layout(tensor=4), H100, False))
    assert trt.breakdown.non_torch_bytes == nccl + workspace
    b = trt.breakdown
    free = cuda_total_bytes(H100) - b.overhead_bytes - b.weights_bytes - b.activations_bytes - b.non_torch_bytes \
        - b.cuda_graph_bytes
    per_token = 80 * 2 * (8 // 4) * 128 * 2
    assert abs(trt.kv_cache_tokens * per_token - 0.9 * free) < 16 * per_token
    one = serve(preset="llama-3.1-8b", engine="tensorrt-llm", contextLength=8192)
    assert one.breakdown.non_torch_bytes == NON_TORCH_BASE  # tensor 1: no workspace


def test_tensorrt_llm_starts_below_one_request_and_caps_it():
    """KVCacheManager._validate_and_adjust_attention_windows reduces max_seq_len to what the blocks hold ("Adjusted
    max_seq_len to N") where vLLM refuses: Llama 3.1 70B in fp8 on one H100 at 131,072 tokens."""
    trt = serve(preset="llama-3.1-70b", precision="fp8", engine="tensorrt-llm", contextLength=131072)
    assert trt.max_concurrency < 1 and trt.kv_cache_tokens >= 32
    assert trt.engine_starts is True
    assert any("would start but reject requests longer than" in n for n in trt.notes)
    vllm = serve(preset="llama-3.1-70b", precision="fp8", contextLength=131072)
    assert vllm.max_concurrency < 1 and vllm.engine_starts is False


def test_estimation_request_is_min_of_max_num_tokens_and_max_seq_len_minus_one_plus_one_in_blocks():
    assert estimation_request_tokens(8192, 131072) == 8224  # 8,192 + 1 rounded up to 32-token blocks
    assert estimation_request_tokens(8192, 2048) == 2048  # 2,047 + 1
    assert estimation_request_tokens(23552, 157) == 160  # 156 + 1 -> 5 blocks (issue 6294's "pages per sequence: 5")


def test_tensorrt_llm_refuses_when_its_temporary_cache_cannot_hold_one_dummy_request():
    """_get_token_num_for_estimation sizes the temporary cache at free_gpu_memory_fraction x what is free after
    loading; at 0.01 on an H100 that is about 0.63 GiB, 5,189 tokens of Llama 3.1 8B, below one 8,224-token request."""
    e = serve(engine="tensorrt-llm", contextLength=131072, gpuMemoryUtilization=0.01)
    b = e.breakdown
    holds = int(0.01 * (cuda_total_bytes(H100) - b.overhead_bytes - b.weights_bytes - b.non_torch_bytes)) \
        // LLAMA8_TOKEN
    assert holds == 5189 < 8224
    assert e.engine_starts is False and e.max_concurrency == 0
    assert "would not finish its KV cache estimation" in e.refused and f"about {holds} tokens" in e.refused
    ok = serve(engine="tensorrt-llm", contextLength=131072, gpuMemoryUtilization=0.02)
    assert ok.refused is None and ok.engine_starts is True
