"""SGLang beyond its memory fraction, by release (estimator/sglang.py, engine_defaults.py's SGLang branch, engines.py's
SGLang pool): max_total_num_tokens from the pool's bytes (page size, gpt-oss's hybrid sliding-window pool), the
request-to-token table and max_running_requests, the piecewise CUDA graphs' reserve from 0.5.10 and the graph batch
of 0.5.3-0.5.4. Expected values are worked by hand from the formulas read in the sglang wheels."""

from __future__ import annotations

from gpus import H100, L40S

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.engines import serve
from rackfit.estimator.result import Layout
from rackfit.estimator.sglang import (
    cell_bytes,
    hybrid_swa,
    max_num_reqs,
    max_running_requests,
    page_size,
    piecewise_graph_sizes,
    piecewise_reserve_mib,
    pool_tokens,
    req_to_token_bytes,
)
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource, parse_spec
from rackfit.units import GiB

B200 = GPU(model="B200", product="B200", memoryGB=180, memoryMiB=183359, architecture="blackwell")
RTX3090 = GPU(model="RTX 3090", product="RTX 3090", memoryGB=24, memoryMiB=24576, architecture="ampere")


def _inf(version: str | None, **kw) -> Inference:
    return Inference(engine="sglang", **({"engineVersion": version} if version else {}), **kw)


def _arch(preset: str, **over):
    a = resolve(ModelSource(preset=preset))
    return a.model_copy(update=over) if over else a


def gpt_oss_20b():
    # gpt-oss-20b: 24 layers (12 sliding), 32 experts, the 120b's attention (8 KV heads of 64)
    return _arch("gpt-oss-120b-mxfp4", num_layers=24, num_experts=32, sliding_window_layers=12)


def test_pool_tokens_every_layer_and_the_page():
    """profile_max_num_token: rest // (per layer x layers), then init_memory_pool's page rounding."""
    a = _arch("llama-3.1-8b")
    per_layer = 2 * 8 * 128 * 2                       # K and V, 8 KV heads of 128, bf16: 4,096 B
    pool = 10 * GiB + 123_456
    assert pool_tokens(pool, per_layer, 32, a, False, 1) == 81_920      # 10,737,541,696 // 131,072
    assert pool_tokens(pool - 200_000, per_layer, 32, a, False, 1) == 81_919
    assert pool_tokens(pool - 200_000, per_layer, 32, a, False, 64) == 81_856   # 1,279 pages of 64


def test_hybrid_swa_pool_counts_full_layer_tokens():
    """set_num_tokens_hybrid_swa: tokens x 24 layers over (0.8 x 12 sliding + 12 full) layers."""
    a = gpt_oss_20b()
    per_layer = 2 * 8 * 64 * 2                        # 2,048 B
    pool = 20 * GiB
    every = pool // (per_layer * 24)                  # 436,906
    assert every == 436_906
    assert pool_tokens(pool, per_layer, 24, a, True, 1) == int(436_906 * 24 / 21.6) == 485_451
    assert pool_tokens(pool, per_layer, 24, a, False, 1) == 436_906
    # a pool token costs the full layers and 0.8 of a sliding one: 2,048 x 21.6
    assert cell_bytes(per_layer, 24, a, True) == 44_237
    assert cell_bytes(per_layer, 24, a, False) == 49_152


def test_which_models_and_releases_get_the_hybrid_pool():
    oss = gpt_oss_20b()
    assert not hybrid_swa(_inf("0.5.7"), oss, H100)                  # disable_hybrid_swa_memory for gpt-oss
    assert hybrid_swa(_inf("0.5.8"), oss, H100)
    assert not hybrid_swa(_inf("0.5.9"), oss, B200)                  # trtllm_mha on SM100 disables it
    assert hybrid_swa(_inf("0.5.10"), oss, B200)
    assert hybrid_swa(_inf(None), oss, H100)
    assert not hybrid_swa(_inf(None), _arch("gemma-2-27b"), H100)    # Gemma keeps one pool (dense)
    assert not hybrid_swa(_inf(None), _arch("llama-3.1-8b"), H100)


def test_page_size_under_trtllm_mha_on_sm100():
    oss, llama = gpt_oss_20b(), _arch("llama-3.1-8b")
    assert page_size(_inf("0.5.0"), oss, B200) == 1
    assert page_size(_inf("0.5.3"), oss, B200) == 64        # gpt-oss's own default from 0.5.1
    assert page_size(_inf("0.5.6"), llama, B200) == 1
    assert page_size(_inf("0.5.7"), llama, B200) == 64      # every non-MLA model's auto backend from 0.5.7
    assert page_size(_inf(None), llama, H100) == 1
    assert page_size(_inf(None), _arch("deepseek-v3"), B200) == 1


def test_request_table_and_running_limit_match_s74s_log():
    """S74 (SGLang of 2025-02, 0.4.2): max_total_num_tokens=105531 at context_len=131072 logged
    max_running_requests=2049: max_num_reqs = max(int(105531 / 131072 x 512), 2048) = 2048, the table's spare row
    (0.3.6-0.4.6) makes 2049, and min(105531 // 2, 2049) = 2049."""
    inf = _inf("0.4.2")
    reqs = max_num_reqs(inf, 105_531, 131_072)
    assert reqs == 2048
    assert max_running_requests(inf, 105_531, reqs) == 2049
    assert req_to_token_bytes(inf, reqs, 131_072) == 2049 * 131_076 * 4


def test_request_table_by_release():
    assert max_num_reqs(_inf("0.5.8"), 2_000_000, 8192) == 4096           # 125,000 capped at 4096
    assert max_num_reqs(_inf("0.3.0"), 2_000_000, 8192) == 5120           # cap 5120 before 0.3.6
    assert max_num_reqs(_inf("0.5.8"), 1_000_000, 131_072) == 3906        # int(3906.25)
    assert req_to_token_bytes(_inf("0.5.8"), 2048, 131_072) == 2048 * 131_076 * 4 == 1_073_774_592
    assert req_to_token_bytes(_inf("0.3.0"), 2048, 131_072) == 2048 * 131_080 * 4
    assert max_running_requests(_inf("0.3.0"), 100_000, 2048) == 2047      # size - 1 before 0.3.6
    assert max_running_requests(_inf("0.5.8"), 1000, 2048) == 500          # tokens // 2


def test_piecewise_graph_sizes_and_reserve():
    """_generate_piecewise_cuda_graph_tokens: 8 + 14 + 8 + 8 sizes to 1,024, then every 256 to 4,096 and every 512."""
    assert len(piecewise_graph_sizes(2048)) == 42     # the list Kimi-K2.5's 0.5.8 server_args printed
    assert len(piecewise_graph_sizes(4096)) == 50
    assert len(piecewise_graph_sizes(8192)) == 58
    llama = _arch("llama-3.1-8b")
    assert piecewise_reserve_mib(_inf("0.5.9"), llama, 8192, 1) == 0
    assert piecewise_reserve_mib(_inf("0.5.10"), llama, 8192, 1) == 58 * 8
    assert piecewise_reserve_mib(_inf("0.5.10"), llama, 8192, 2) == 0          # off under pipeline parallel
    assert piecewise_reserve_mib(_inf("0.5.10"), _arch("deepseek-v3"), 8192, 1) == 1536


def _util(gpu: GPU, version: str | None, tensor: int = 1) -> float:
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", parallelism=dict(tensor=tensor),
                          inference=dict(engine="sglang", **({"engineVersion": version} if version else {})))).inference
    return settings(inf, gpu, tensor, 1, _arch("llama-3.1-8b")).gpu_memory_utilization


def test_default_fraction_with_the_piecewise_reserve_from_0_5_10():
    """H100 (81,559 MiB): 512 + 8192 x 1.5 + 256 x 2 + 128 = 13,440 MiB -> 0.835; with 58 x 8 MiB -> 13,904, 0.830.
    L40S (46,068): 512 + 4096 x 1.5 + 32 x 2 + 128 = 6,848 -> 0.851 (PR 13023's log); + 50 x 8 -> 7,248, 0.843."""
    assert _util(H100, "0.5.8") == 0.835
    assert _util(H100, "0.5.10") == 0.830
    assert _util(L40S, "0.5.8") == 0.851
    assert _util(L40S, "0.5.10") == 0.843


def test_graph_batch_16_before_0_5_5():
    """RTX 3090 (24,576 MiB), tensor 1: 512 + 2048 x 1.5 + bs x 2 + 128; bs 16: 3,744, 0.848; bs 24: 3,760, 0.847."""
    assert _util(RTX3090, "0.5.3") == 0.848
    assert _util(RTX3090, "0.5.5") == 0.847


def _served(preset: str, gpu: GPU, context: int, version: str | None, **inf):
    spec = parse_spec(dict(model=dict(preset=preset), workload="inference",
                           inference=dict(engine="sglang", contextLength=context,
                                          **({"engineVersion": version} if version else {}), **inf)))
    a = resolve(spec.model)
    return spec, a, serve(spec.inference, a, Layout(), estimate(spec, gpu=gpu).breakdown.weights_bytes, 0, gpu)


def test_sliding_window_models_hold_every_layer_per_request():
    """Gemma 2 keeps one pool (disable_hybrid_swa_memory): a request of 8,192 tokens takes 8,192 slots of all 46
    layers, not the window on the sliding ones."""
    spec, a, s = _served("gemma-2-27b", H100, 8192, "0.5.8")
    per_layer = 2 * 16 * 128 * 2
    assert s.per_token == per_layer * 46
    assert s.per_request == per_layer * 46 * 8192
    assert s.kv_tokens == s.kv_pool // (per_layer * 46)


def test_gpt_oss_tokens_by_release():
    _, a, old = _served("gpt-oss-120b-mxfp4", H100, 131_072, "0.5.7")
    _, _, new = _served("gpt-oss-120b-mxfp4", H100, 131_072, "0.5.8")
    per_layer = 2 * 8 * 64 * 2
    assert old.kv_tokens == old.kv_pool // (per_layer * 36)
    every = new.kv_pool // (per_layer * 36)
    assert new.kv_tokens == int(every * 36 / (0.8 * 18 + 18))


def test_request_table_beyond_the_reserve_refuses():
    """A 24 GB card at mem_fraction_static 0.97 and 131,072 tokens of context: the table (2,048 x 131,076 x 4 B,
    1.00 GiB) and cuBLAS need more than the 3% left (about 0.7 GiB)."""
    _, _, s = _served("llama-3.1-8b", RTX3090, 131_072, "0.5.8", gpuMemoryUtilization=0.97)
    assert s.refused and "request-to-token table" in s.refused and s.starts is False
    _, _, ok = _served("llama-3.1-8b", RTX3090, 131_072, "0.5.8", gpuMemoryUtilization=0.90)
    assert ok.refused is None and ok.starts
    _, _, few = _served("llama-3.1-8b", RTX3090, 131_072, "0.5.8", gpuMemoryUtilization=0.97, maxNumSeqs=64)
    assert few.refused is None                         # --max-running-requests 64: 64 rows, 32 MiB


H200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
H20 = GPU(model="H20", product="H20", memoryGB=96, memoryMiB=97871, architecture="hopper")


def _graph_bs(gpu: GPU, version: str) -> int:
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                          inference=dict(engine="sglang", engineVersion=version))).inference
    return settings(inf, gpu, 1, 1, _arch("llama-3.1-8b")).max_num_seqs


def test_graph_batch_by_card_before_the_reserve_formula():
    """cuda_graph_runner.get_batch_sizes_to_capture (0.4.5-0.5.2 wheels): 160, extended to 256 over 96 GiB in
    0.4.6-0.4.7 (over 90 GiB from 0.4.8: the H20's 97,871 MiB) and to 512 over 180,000 MiB in 0.4.7 (160,000 from
    0.4.8); 0.4.5 extended on ROCm only."""
    assert _graph_bs(H100, "0.4.6") == 160 and _graph_bs(H200, "0.4.5") == 160
    assert _graph_bs(H200, "0.4.6") == 256 and _graph_bs(B200, "0.4.6") == 256
    assert _graph_bs(H20, "0.4.7") == 160 and _graph_bs(H20, "0.4.8") == 256
    assert _graph_bs(B200, "0.4.7") == 512 and _graph_bs(B200, "0.5.2") == 512
    assert _graph_bs(RTX3090, "0.4.6") == 8
