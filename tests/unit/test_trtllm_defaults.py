"""TensorRT-LLM's defaults by path (issue 22; docs/accuracy.md "TensorRT-LLM's embedding table and defaults by path"):
a trtllm-build engine from convert_checkpoint.py holds the whole embedding table on every tensor rank
(--use_parallel_embedding off by default), an engine whose checkpoint splits it (quantize.py / ModelOpt, the LLM API,
tensorrtLlmParallelEmbedding true) and the PyTorch backend hold a vocab-parallel share; the backend rackfit plans when
the spec does not say is the PyTorch one, whatever the release (engineVersion is refused for tensorrt-llm)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.trtllm import engine_replicated_embedding_bytes
from rackfit.spec import parse_spec

GiB = 1 << 30
MiB = 1 << 20
H100 = GPU(model="H100", product="H100", memoryGB=81559 / 954, memoryMiB=81559, architecture="hopper")
VOCAB, HIDDEN = 128_256, 4_096  # Llama 3 8B


def spec(tensor=2, pipeline=1, precision="bf16", **inference):
    inf = dict(engine="tensorrt-llm", contextLength=8192, **inference)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", precision=precision,
                           parallelism=dict(tensor=tensor, pipeline=pipeline), inference=inf))


def test_replica_bytes_by_hand():
    # the whole table, 128,256 x 4,096 x 2 bytes = 1,050,673,152 (0.98 GiB), less the 1/t share weight_bytes counts
    table = VOCAB * HIDDEN * 2
    assert table == 1_050_673_152
    assert engine_replicated_embedding_bytes(VOCAB, HIDDEN, 2, Layout(tensor=2)) == 525_336_576  # 0.49 GiB
    assert round(525_336_576 / GiB, 2) == 0.49
    assert engine_replicated_embedding_bytes(VOCAB, HIDDEN, 2, Layout(tensor=8)) == table - table // 8
    assert engine_replicated_embedding_bytes(VOCAB, HIDDEN, 2, Layout()) == 0


def test_replica_bytes_with_pipeline_stages():
    # weights.weight_bytes counts max(embedding, lm_head) / t for the heaviest end; the engine's first stage holds the
    # whole embedding, its last lm_head / t: max(table, head / t) - max(table, head) / t
    table = VOCAB * HIDDEN * 2
    got = engine_replicated_embedding_bytes(VOCAB, HIDDEN, 2, Layout(tensor=4, pipeline=2), lm_head_bytes=table)
    assert got == table - table // 4
    # a 4-bit lm_head (not a TRT default; the formula's other branch): the embedding still dominates
    assert engine_replicated_embedding_bytes(VOCAB, HIDDEN, 2, Layout(tensor=2, pipeline=2),
                                             lm_head_bytes=table // 4) == table - table // 2


def test_trt_engine_holds_the_whole_table_by_default():
    rep = estimate(spec(tensorrtLlmBackend="trt"), gpu=H100)
    split = estimate(spec(tensorrtLlmBackend="trt", tensorrtLlmParallelEmbedding=True), gpu=H100)
    assert rep.breakdown.weights_bytes - split.breakdown.weights_bytes == 525_336_576
    # the cache is fraction 0.9 of what is free: 0.9 x 0.49 GiB less, in whole 64-token blocks of 64 KiB a token
    # (32 layers x K, V x 4 KV heads a rank x 128 x 2 bytes = 64 KiB; 4 MiB a block)
    per_block = 64 * 32 * 2 * 4 * 128 * 2
    lost = (split.kv_cache_tokens - rep.kv_cache_tokens) // 64
    assert abs(lost - int(0.9 * 525_336_576) // per_block) <= 1


def test_one_rank_and_pytorch_backend_unchanged():
    one = estimate(spec(tensor=1, tensorrtLlmBackend="trt"), gpu=H100)
    one_split = estimate(spec(tensor=1, tensorrtLlmBackend="trt", tensorrtLlmParallelEmbedding=True), gpu=H100)
    assert one.breakdown.weights_bytes == one_split.breakdown.weights_bytes
    # the PyTorch backend's LlamaModel splits the embedding (TensorParallelMode.COLUMN), as a split engine's does
    pyt = estimate(spec(), gpu=H100)
    split = estimate(spec(tensorrtLlmBackend="trt", tensorrtLlmParallelEmbedding=True), gpu=H100)
    # less the engine's fp32 rotary table (131,072 x 128 x 4 + 64 x 4 bytes, trtllm.engine_rotary_table_bytes)
    assert split.breakdown.weights_bytes - pyt.breakdown.weights_bytes == 131_072 * 128 * 4 + 64 * 4


def test_field_only_for_the_trt_engine():
    with pytest.raises(InvalidWorkload, match="tensorrtLlmParallelEmbedding"):
        spec(tensorrtLlmParallelEmbedding=True)  # PyTorch backend (the default)
    with pytest.raises(InvalidWorkload, match="tensorrtLlmParallelEmbedding"):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                        inference=dict(tensorrtLlmParallelEmbedding=False)))


def test_backend_default_is_pytorch_whatever_the_release():
    # trtllm-serve's default backend moved from the TRT engine to PyTorch (1.0); rackfit plans current releases:
    # no backend means the PyTorch one, and engineVersion cannot name an older release for tensorrt-llm
    assert not spec().inference.trt_engine
    assert spec(tensorrtLlmBackend="trt").inference.trt_engine
    with pytest.raises(InvalidWorkload, match="engineVersion"):
        spec(engineVersion="0.19.0")
