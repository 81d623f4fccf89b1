"""FlashAttention 3's split-KV buffers in vLLM's CUDA graph pool (cuda_graphs.py fa3_split_bytes): from 0.11.0 V1's
default cudagraph_mode FULL_AND_PIECEWISE captures FULL decode graphs, and FlashAttentionMetadataBuilder with FA3
(Hopper) fixes max_num_splits at 32 for batches up to the largest capture, so FA3's mha_fwd allocates out_accum
[32, heads, tokens, head_size_v] and softmax_lse_accum [32, heads, tokens] in fp32 inside the largest FULL graph (sizes
up to max_num_seqs). One such buffer stays in the shared pool; the piece constant is what S14's log leaves after it."""

from __future__ import annotations

import pytest
from gpus import H100

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.cuda_graphs import FA3_MAX_SPLITS, GRAPH_PRIVATE_BYTES, fa3_split_bytes
from rackfit.estimator.result import EngineSettings
from rackfit.models import resolve
from rackfit.spec import parse_spec
from rackfit.units import GiB

A100 = GPU(model="A100", product="A100", memoryGB=80, memoryMiB=81920, architecture="ampere")


def _split(preset="llama-3.1-8b", version="0.19.0", gpu=H100, seqs=1024, tensor=1, precision=None, **extra):
    spec = dict(model={"preset": preset}, workload="inference",
                inference=dict(contextLength=8192, engineVersion=version, **extra))
    if precision:
        spec["precision"] = precision
    spec = parse_spec(spec)
    s = EngineSettings(engine="vllm", gpu_memory_utilization=0.9, max_num_batched_tokens=8192, max_num_seqs=seqs,
                       max_model_len=8192)
    return fa3_split_bytes(resolve(spec.model), Layout(tensor=tensor), s, spec.inference, gpu,
                           precision or "bf16")


def test_the_largest_full_graph_holds_32_splits_of_every_head():
    # Llama 3.1 8B, H100's default 1024 sequences: the largest FULL decode graph is the 512-token capture
    assert FA3_MAX_SPLITS == 32
    assert _split() == 32 * 32 * 512 * (128 + 1) * 4 == 270_532_608
    # the heads are split over the tensor-parallel ranks: S14-S16's logs fall by 0.15 and 0.09 GiB
    assert _split(tensor=2) == _split() // 2 and _split(tensor=4) == _split() // 4
    # 256 sequences: FULL graphs up to 256 tokens (the piecewise ones still reach 512)
    assert _split(seqs=256) == _split() // 2
    # 32 sequences: captures to 64, FULL to 32
    assert _split(seqs=32) == 32 * 32 * 32 * 129 * 4


def test_only_fa3_with_full_graphs():
    assert _split(gpu=A100) == 0                  # FlashAttention 2: max_num_splits stays 0
    assert _split(version="0.10.2") == 0          # PIECEWISE only by default before 0.11.0
    assert _split(version="0.11.0") > 0
    assert _split(cudaGraphs=False) == 0          # --enforce-eager
    assert _split(precision="fp32") == 0          # no FlashAttention in float32
    assert _split(engine="sglang") == 0
    assert _split(preset="deepseek-v3") == 0      # MLA's own backends


def test_s14_s16_graph_pools_follow_the_log():
    def graphs(tensor):
        spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                               parallelism={"tensor": tensor},
                               inference=dict(contextLength=8192, engineVersion="0.19.0", gpuMemoryUtilization=0.95)))
        return estimate(spec, gpu=H100).breakdown.cuda_graph_bytes / GiB
    # "took 0.91 / 0.76 / 0.67 GiB" (S14-S16); with the buffers in the pieces rackfit said 0.91 / 0.89 / 0.88
    assert graphs(1) == pytest.approx(0.91, abs=0.01)
    assert graphs(2) == pytest.approx(0.76, abs=0.01)
    assert graphs(4) == pytest.approx(0.68, abs=0.02)
    assert GRAPH_PRIVATE_BYTES == 288 << 10
