"""vLLM's CUDA graph estimate and the KV cache's budget by release (docs/accuracy.md "vLLM's CUDA graph estimate in
the KV cache's budget, 0.18.0 and later"): gpu_worker.py determine_available_memory runs profile_cudagraph_memory from
0.18.0 but subtracts it only when VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS is set, which envs.py defaults to "0" in
0.18.0-0.19.x and to "1" from 0.20.0 (engines.GRAPHS_IN_BUDGET); it skips the profile when cudagraph_mode is NONE."""

from __future__ import annotations

from gpus import H100

from rackfit.estimator import Layout, estimate
from rackfit.estimator.cuda_graphs import GRAPH_PRIVATE_BYTES, GRAPH_SIZES
from rackfit.estimator.engine_profile import forward_peak_bytes
from rackfit.estimator.engines import GRAPHS_IN_BUDGET
from rackfit.models import resolve
from rackfit.spec import parse_spec


def llama(version: str, graphs: bool = True):
    spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                           inference=dict(contextLength=8192, engineVersion=version, gpuMemoryUtilization=0.9,
                                          cudaGraphs=graphs)))
    return estimate(spec, Layout(), gpu=H100)


def test_estimate_runs_from_0_18_but_is_applied_from_0_20():
    assert GRAPHS_IN_BUDGET == (0, 20)
    # 0.17.0 has no profile; 0.18.0-0.19.1 profile the graphs but apply 0 at the default: the same budget
    pools = {v: llama(v).kv_cache_pool_bytes for v in ("0.17.0", "0.18.0", "0.19.0", "0.19.1", "0.20.0")}
    assert pools["0.17.0"] == pools["0.18.0"] == pools["0.19.0"] == pools["0.19.1"]
    # from 0.20.0 the budget loses exactly the graph pool rackfit counts
    graphs = llama("0.20.0").breakdown.cuda_graph_bytes
    assert pools["0.19.1"] - pools["0.20.0"] == graphs


def test_graph_pool_counted_is_the_forward_and_the_pieces():
    # Llama 3.1 8B at vLLM's default on an H100: the 512-token forward, 67 sizes x (32 layers + 1) pieces of 288 KiB
    # (GRAPH_SIZES stands for the default capture list) and FlashAttention 3's split buffers of the largest FULL
    # decode graph (512 tokens: 32 splits x 32 heads x (128 + 1) x 4 bytes a token)
    a = resolve(parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference")).model)
    private = 67 * 33 * 288 * 1024
    assert GRAPH_SIZES * 33 * GRAPH_PRIVATE_BYTES == private == 652_050_432
    splits = 32 * 32 * 512 * 129 * 4
    assert llama("0.20.0").breakdown.cuda_graph_bytes == forward_peak_bytes(a, Layout(), 512) + private + splits


def test_enforce_eager_subtracts_nothing():
    # determine_available_memory skips profile_cudagraph_memory when cudagraph_mode is NONE
    assert llama("0.20.0", graphs=False).kv_cache_pool_bytes == llama("0.19.1", graphs=False).kv_cache_pool_bytes
    assert llama("0.20.0", graphs=False).breakdown.cuda_graph_bytes == 0
