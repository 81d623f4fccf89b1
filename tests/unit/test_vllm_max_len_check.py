"""vLLM checks one max_model_len request against the KV cache at start-up only from 0.2.7 (engines.MAX_LEN_CHECK,
vllm/engine/llm_engine.py _init_cache); 0.2.6 and before start with any block of cache (row S1336)."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engines import BLOCK_TOKENS
from rackfit.spec import parse_spec

A100_80 = GPU(model="A100", product="A100", memoryGB=80, memoryMiB=81920, architecture="ampere")
# Qwen-72B-Chat's shapes (QWen, no GQA): 2.5 MiB of KV cache a token over two GPUs, so a 32,768-token request does not
# fit beside 67 GiB of weights on each of two 80 GB cards, while some blocks do
QWEN_72B = dict(numLayers=80, hiddenSize=8192, intermediateSize=24576, numAttentionHeads=64, numKeyValueHeads=64,
                headDim=128, vocabSize=152064, attentionBias=True, tieWordEmbeddings=False,
                maxPositionEmbeddings=32768)


def served(release: str, context: int):
    return estimate(parse_spec(dict(
        model=dict(architecture=QWEN_72B), workload="inference", precision="bf16", parallelism=dict(tensor=2),
        inference=dict(contextLength=context, engineVersion=release, cudaGraphs=False))), gpu=A100_80)


def test_before_0_2_7_vllm_starts_with_a_cache_shorter_than_one_request():
    old, new = served("0.2.6", 8192), served("0.2.7", 8192)
    assert old.kv_cache_tokens == new.kv_cache_tokens  # the same cache: only the start-up check differs
    assert BLOCK_TOKENS <= old.kv_cache_tokens < 8192
    assert old.engine_starts and "would start but reject requests longer" in " ".join(old.notes)
    assert new.engine_starts is False and "would refuse to start" in " ".join(new.notes)


def test_before_0_2_7_vllm_still_refuses_without_a_block():
    # at util 0.85 the budget holds the weights and the profile run but no block ("No available memory for the cache
    # blocks": num_gpu_blocks <= 0)
    spec = parse_spec(dict(
        model=dict(architecture=QWEN_72B), workload="inference", precision="bf16", parallelism=dict(tensor=2),
        inference=dict(contextLength=8192, engineVersion="0.2.6", cudaGraphs=False, gpuMemoryUtilization=0.85)))
    est = estimate(spec, gpu=A100_80)
    assert est.kv_cache_tokens < BLOCK_TOKENS and est.engine_starts is False
