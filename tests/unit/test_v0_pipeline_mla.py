"""vLLM V0 under pipeline parallel and 0.7.x's MLA: the CUDA graphs V0 captures once per virtual engine
(cuda_graphs.cuda_graph_bytes; model_runner.py capture_model) and the absorbed MLA matrices vLLM 0.7.1-0.7.3 keep
beside the raw projections (weights.mla_absorbed_bytes; attention/backends/mla/utils.py)."""

from __future__ import annotations

from gpus import L40S

from rackfit.estimator import Layout, estimate
from rackfit.estimator.cuda_graphs import GRAPH_PRIVATE_BYTES, GRAPH_SIZES, cuda_graph_bytes
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.engine_profile import forward_peak_bytes
from rackfit.models import resolve
from rackfit.spec import ModelSource, parse_spec


def serving(version: str, pipeline: int = 1, tensor: int = 1, preset: str = "qwen2.5-7b", **inference):
    return parse_spec(dict(model=dict(preset=preset), workload="inference",
                           parallelism=dict(tensor=tensor, pipeline=pipeline),
                           inference=dict(contextLength=4096, engineVersion=version, **inference)))


def test_v0_captures_its_graphs_once_per_virtual_engine():
    a = resolve(ModelSource(preset="qwen2.5-7b"))  # 28 layers: 14 a stage at pipeline 2
    for version in ("0.5.1", "0.7.3"):
        spec = serving(version, pipeline=2)
        layout = Layout(pipeline=2)
        s = settings(spec.inference, L40S, 1, 2, a)
        pieces = cuda_graph_bytes(a, layout, s, spec.inference, L40S) - forward_peak_bytes(a, layout, 256)
        # V0's default 35 sizes stand for GRAPH_SIZES; each of the 2 virtual engines' graphs holds 14 layers + 1
        assert pieces == int(GRAPH_SIZES * 2 * 15 * GRAPH_PRIVATE_BYTES)
    # V1 (0.9.0 runs pipeline parallel under mp) captures one set
    v1 = estimate(serving("0.9.0", pipeline=2), gpu=L40S).breakdown.cuda_graph_bytes
    v0 = estimate(serving("0.7.3", pipeline=2), gpu=L40S).breakdown.cuda_graph_bytes
    assert v1 < GRAPH_SIZES * 1.5 * 15 * GRAPH_PRIVATE_BYTES < v0


def test_vllm_07_keeps_the_absorbed_mla_matrices():
    """DeepSeek-R1 (block fp8) at tensor 8: W_Q_UK 1,536 x 16 x 512 and W_UV_O 16 x 512 x 7,168 in fp8 with a 128 x 128
    block's fp32 scale per element, W_QR 1,536 x 16 x 64 in bf16: about 74 MB a layer over 0.8.0's."""
    layer = (1536 * 16 * 512 + 16 * 512 * 7168) * (1 + 4 / (128 * 128)) + 1536 * 16 * 64 * 2
    # four stages of 16 layers (S934's layout): the heaviest stage holds 16 layers' products
    runs = {v: estimate(serving(v, tensor=8, pipeline=4, preset="deepseek-v3-fp8", cudaGraphs=False), gpu=L40S)
            for v in ("0.7.0", "0.7.3", "0.8.0")}
    weights = {v: e.breakdown.weights_bytes for v, e in runs.items()}
    assert weights["0.7.0"] == weights["0.8.0"]
    assert abs(weights["0.7.3"] - weights["0.8.0"] - 16 * layer) < 16 * 64
    # the products are weights: the KV cache of the same GPU loses them
    assert abs(runs["0.7.0"].kv_cache_pool_bytes - runs["0.7.3"].kv_cache_pool_bytes - 16 * layer) < 16 * 64
