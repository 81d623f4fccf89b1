"""A largest CUDA graph capture size the user sets (inference.maxCudaGraphCaptureSize, vLLM's
--max-cudagraph-capture-size) replaces the default list's largest, gpt-oss's own 1024 included
(VllmConfig._set_cudagraph_sizes and GptOssForCausalLMConfig.verify_and_update_config, read in 0.21.0 and 0.24.0);
the list stays filtered by max_num_batched_tokens. Row S1610 (gpt-oss-120b on one B200, --max-cudagraph-capture-size
2048) states it."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout
from rackfit.estimator.cuda_graphs import (
    GRAPH_PRIVATE_BYTES,
    GRAPH_SIZES,
    cuda_graph_bytes,
    graph_capture_sizes,
    v1_largest_capture,
)
from rackfit.estimator.engine_profile import forward_peak_bytes
from rackfit.estimator.result import EngineSettings
from rackfit.models import resolve
from rackfit.spec import parse_spec

B200 = GPU(model="B200", product="B200", memoryGB=192, memoryMiB=183359, architecture="blackwell")


def _graphs(preset, capture=None, batched=8192, seqs=512, version="0.24.0"):
    inference = dict(contextLength=32768, engineVersion=version, maxNumSeqs=seqs, maxNumBatchedTokens=batched)
    if capture:
        inference["maxCudaGraphCaptureSize"] = capture
    spec = parse_spec(dict(model={"preset": preset}, workload="inference", inference=inference))
    a = resolve(spec.model)
    s = EngineSettings(engine="vllm", gpu_memory_utilization=0.92, max_num_batched_tokens=batched,
                       max_num_seqs=seqs, max_model_len=32768)
    return a, spec.inference, s


def _pieces(a, tokens):
    full = graph_capture_sizes(512, True)
    return int(GRAPH_SIZES * graph_capture_sizes(tokens, True) / full * (a.num_layers + 1) * GRAPH_PRIVATE_BYTES)


def test_the_user_size_replaces_gpt_oss_1024():
    a, inf, s = _graphs("gpt-oss-120b-mxfp4")
    assert v1_largest_capture(a, s, inf, B200) == 1024     # gpt-oss's own, unset
    a, inf, s = _graphs("gpt-oss-120b-mxfp4", capture=2048)
    assert v1_largest_capture(a, s, inf, B200) == 2048
    # 1, 2, 4, 8..248 by 8, 256..2048 by 16: 147 sizes
    assert graph_capture_sizes(2048, True) == 147
    assert cuda_graph_bytes(a, Layout(), s, inf, B200) == forward_peak_bytes(a, Layout(), 2048) + _pieces(a, 2048)


def test_the_user_size_is_filtered_by_batched_tokens_and_can_lower_the_default():
    a, inf, s = _graphs("gpt-oss-120b-mxfp4", capture=2048, batched=1536)
    assert cuda_graph_bytes(a, Layout(), s, inf, B200) == forward_peak_bytes(a, Layout(), 1536) + _pieces(a, 1536)
    a, inf, s = _graphs("llama-3.1-8b", capture=64)
    assert v1_largest_capture(a, s, inf, B200) == 64
    assert cuda_graph_bytes(a, Layout(), s, inf, B200) == forward_peak_bytes(a, Layout(), 64) + _pieces(a, 64)


def test_only_vllm_takes_it():
    with pytest.raises(InvalidWorkload, match="maxCudaGraphCaptureSize"):
        parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                        inference={"engine": "sglang", "maxCudaGraphCaptureSize": 256}))
