"""vLLM's CUDA graph capture list follows max_num_seqs (cuda_graphs.py cuda_graph_bytes): V1's largest size is
min(2 x max_num_seqs, 512), V0 captures one decode graph for each of 1, 2, 4, 8, 16, ... 256 up to the padded
max_num_seqs (vllm/worker/model_runner.py _BATCH_SIZES_TO_CAPTURE, _get_graph_batch_size, read in 0.5.3 and 0.6.4).
The defaults keep what S14 set; a --max-num-seqs under 256 captures fewer pieces."""

from __future__ import annotations

from rackfit.estimator import Layout
from rackfit.estimator.cuda_graphs import GRAPH_PRIVATE_BYTES, GRAPH_SIZES, cuda_graph_bytes, graph_capture_sizes
from rackfit.estimator.engine_profile import forward_peak_bytes
from rackfit.estimator.result import EngineSettings
from rackfit.models import resolve
from rackfit.spec import parse_spec


def _graphs(version, seqs=None, engine="vllm"):
    inference = dict(engine=engine, contextLength=4096, engineVersion=version)
    if seqs:
        inference["maxNumSeqs"] = seqs
    spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference", inference=inference))
    a = resolve(spec.model)
    s = EngineSettings(engine=engine, gpu_memory_utilization=0.9, max_num_batched_tokens=8192,
                       max_num_seqs=seqs or 256, max_model_len=4096)
    return a, cuda_graph_bytes(a, Layout(), s, spec.inference)


def test_v0_captures_decode_batches_up_to_max_num_seqs():
    a, default = _graphs("0.6.4")
    # the default 256 sequences: 35 sizes stand for GRAPH_SIZES pieces, the forward of a 256-sequence batch
    assert graph_capture_sizes(256, False) == 35
    assert default == forward_peak_bytes(a, Layout(), 256) + GRAPH_SIZES * (a.num_layers + 1) * GRAPH_PRIVATE_BYTES
    # --max-num-seqs 16: 1, 2, 4, 8, 16 of the 35
    _, small = _graphs("0.6.4", seqs=16)
    pieces = GRAPH_SIZES * 5 / 35 * (a.num_layers + 1)
    expected = forward_peak_bytes(a, Layout(), 16) + int(pieces * GRAPH_PRIVATE_BYTES)
    assert small == expected and small < default / 5
    # 13 sequences pad to a 16-sequence graph, as _get_graph_batch_size does
    assert _graphs("0.6.4", seqs=13)[1] == small


def test_v1_largest_capture_is_twice_max_num_seqs():
    a, default = _graphs("0.19.0")
    assert default == forward_peak_bytes(a, Layout(), 512) + GRAPH_SIZES * (a.num_layers + 1) * GRAPH_PRIVATE_BYTES
    # 16 sequences: sizes 1, 2, 4, 8, 16, 24, 32 of the 51 a 512-token capture has from 0.11.1
    _, small = _graphs("0.19.0", seqs=16)
    assert graph_capture_sizes(32, True) == 7 and graph_capture_sizes(512, True) == 51
    assert small == forward_peak_bytes(a, Layout(), 32) + int(GRAPH_SIZES * 7 / 51 * (a.num_layers + 1)
                                                               * GRAPH_PRIVATE_BYTES)


def test_sglang_graphs_unchanged_by_the_vllm_count():
    a, g = _graphs("0.4.4", seqs=16, engine="sglang")
    assert g == forward_peak_bytes(a, Layout(), 32) + GRAPH_SIZES * (a.num_layers + 1) * GRAPH_PRIVATE_BYTES


def test_v1_before_0_10_captured_up_to_512_whatever_max_num_seqs():
    a, default = _graphs("0.9.2")
    assert _graphs("0.9.2", seqs=16)[1] == default   # 0.9.2: cuda_graph_sizes [512]
    assert _graphs("0.10.0", seqs=16)[1] < default   # 0.10.0: [min(max_num_seqs * 2, 512)]
