"""TensorRT-LLM's TRT-engine backend (spec.inference.tensorrtLlmBackend: trt; estimator/trtllm.py): the C++ executor's
cache is kv_cache_free_gpu_mem_fraction of what is free after the engine's weights, its execution context and the
logits buffers, in 64-token blocks; the spec field is TensorRT-LLM's only, and its default keeps the PyTorch backend."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import cuda_total_bytes
from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.estimator.trtllm import (
    ENGINE_TOKENS_PER_BLOCK,
    engine_allreduce_workspace_bytes,
    engine_cache_bytes,
    engine_decoder_bytes,
    engine_logits_bytes,
)
from rackfit.spec import parse_spec

CATALOG = load_catalog()
H100 = CATALOG.get("gd-8xh100ib-i128").gpu
LLAMA8_TOKEN = 32 * 2 * 8 * 128 * 2  # layers x (K, V) x KV heads x head_dim x bf16


def spec(**inference):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(engine="tensorrt-llm", **inference)))


def test_logits_buffer_is_max_batch_by_padded_vocab_in_fp32():
    # runtimeBuffers.cpp: [maxBatchSize x beam, vocabSizePadded] float32; 32,000 pads to 32,001 at tensor 3
    assert engine_logits_bytes(128256, 1, 2048) == 2048 * 128256 * 4
    assert engine_logits_bytes(32000, 3, 64) == 64 * 32001 * 4
    assert engine_logits_bytes(32000, 1, 8, beam=4) == 8 * 4 * 32000 * 4


def test_decoder_state_logits_and_penalty_workspace():
    # decoderState.cpp: ids, parentIds, logProbs [B, beam, S] and logProbsTiled [S, B, beam], 4 bytes each; embedding
    # bias [B, Vpad] and the workspace's runtime logits [B, 1, beam, Vpad] in float32; penaltyLayer.cpp's int32
    # workspace [B, 1, beam, V]
    assert engine_decoder_bytes(32000, 1, 4096, 4098) == (4096 * 4098 * 16 + 4096 * 32000 * 4 * 2
                                                          + 4096 * 32000 * 4)
    assert engine_decoder_bytes(32000, 3, 8, 100, beam=2) == (8 * 2 * 100 * 16 + 8 * 32001 * 4 * 3 + 8 * 2 * 32000 * 4)


def test_cache_is_fraction_of_free_in_whole_64_token_blocks():
    block = ENGINE_TOKENS_PER_BLOCK * LLAMA8_TOKEN  # 8 MiB
    free = 70 * 2**30 + 12345
    assert engine_cache_bytes(0.9, free, LLAMA8_TOKEN) == int(0.9 * free) // block * block
    assert engine_cache_bytes(0.9, -5, LLAMA8_TOKEN) == 0


def test_engine_allreduce_workspace_is_the_c_plus_plus_runtime_size():
    assert engine_allreduce_workspace_bytes(Layout(tensor=1), H100) == 0
    assert engine_allreduce_workspace_bytes(Layout(tensor=2), H100) == 4 * 16_000_000 * 2 + 256 * 2
    assert engine_allreduce_workspace_bytes(Layout(tensor=4), H100) == 4 * 8_000_000 * 4 + 256 * 4


def test_engine_backend_pool_by_hand():
    est = estimate(spec(tensorrtLlmBackend="trt", contextLength=4096, maxNumBatchedTokens=4096, maxNumSeqs=64),
                   gpu=H100)
    # weights, then the execution context (the widest layer's live tensors for 4,096 tokens: the residual plus the
    # fused gate/up output and its SwiGLU output, 4096 + 3 x 14336, bf16, and the lm_head's 16-bit output for 64
    # sequences: trtllm.engine_context_bytes), the logits of 64 sequences and the decoder's state of 64 slots x 4,096
    context_memory = 4096 * (4096 + 3 * 14336) * 2 + 64 * 128256 * 2
    logits = 64 * 128256 * 4
    decoder = 64 * 4096 * 16 + 64 * 128256 * 4 * 3
    # issue 22 (test_trtllm_decoder_buffers.py): three cache indirections and three per-slot id/log-prob tensors in
    # the runtime buffers; the top-k sampling workspace in the decoder
    runtime_slots = 64 * 4096 * 6 * 4
    decoder_rest = 64 * 128256 * 4 + 2 * 4 * 64 * 1024 * 8
    held = context_memory + logits + decoder + runtime_slots + decoder_rest
    free = cuda_total_bytes(H100) - est.breakdown.overhead_bytes - est.breakdown.weights_bytes - held - NON_TORCH_BASE
    block = 64 * LLAMA8_TOKEN
    assert est.kv_cache_tokens is not None
    assert est.engine_budget_bytes - est.breakdown.weights_bytes - held - NON_TORCH_BASE == (
        int(0.9 * free) // block * block)
    assert est.breakdown.cuda_graph_bytes == 0  # the C++ executor captures no CUDA graphs by default


def test_default_keeps_the_pytorch_backend():
    a = estimate(spec(contextLength=4096), gpu=H100)
    b = estimate(spec(contextLength=4096, tensorrtLlmBackend="pytorch"), gpu=H100)
    c = estimate(spec(contextLength=4096, tensorrtLlmBackend="trt"), gpu=H100)
    assert a.kv_cache_tokens == b.kv_cache_tokens != c.kv_cache_tokens
    assert a.breakdown.cuda_graph_bytes > 0


def test_engine_backend_does_not_start_when_the_execution_context_does_not_fit():
    # issue 401's shape: 192 x 2048 tokens of activations on a 40 GB A100 -> OOM before any KV cache
    a100 = GPU(model="A100", product="A100", memoryGB=40, memoryMiB=40960, architecture="ampere")
    est = estimate(spec(tensorrtLlmBackend="trt", contextLength=4096, maxNumBatchedTokens=393216, maxNumSeqs=192),
                   gpu=a100)
    assert est.engine_starts is False


def test_field_is_tensorrt_llm_only():
    with pytest.raises((InvalidWorkload, ValueError), match="tensorrtLlmBackend"):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                        inference=dict(engine="vllm", tensorrtLlmBackend="trt")))
    with pytest.raises((InvalidWorkload, ValueError)):
        spec(tensorrtLlmBackend="cpp")
