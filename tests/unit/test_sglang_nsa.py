"""DeepSeek-V3.2's lightning indexer (spec architecture.indexHeadDim / indexNumHeads) and SGLang's NSA pool
(estimator/sglang.py nsa_*): the indexer's parameters held whole on every rank, the pool's record and indexer keys a
token and layer against the smaller cell its profile sizes it with, the fp8 cache Blackwell gets, the 0.5.3 fraction
and the page of 64. Expected values are worked by hand from the formulas read in the sglang 0.5.3-0.5.5 wheels and
bench rows S1232/S1233 (SGLang PR 11309's logs)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.params import count_params, indexer_params
from rackfit.estimator.sglang import nsa, nsa_kv_precision, nsa_layer_bytes, page_size
from rackfit.estimator.weights import mla_replicated_params
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import Architecture, Inference, ModelSource, parse_spec

B200 = GPU(model="B200", product="B200", memoryGB=192, memoryMiB=183359, architecture="blackwell")
H200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
INDEXER = {"indexHeadDim": 128, "indexNumHeads": 64}


def v32():
    return resolve(ModelSource(preset="deepseek-v3-fp8", architecture=Architecture(**INDEXER)))


def sglang(version: str, **kw) -> Inference:
    return Inference(engine="sglang", contextLength=4096, engineVersion=version, **kw)


def test_indexer_parameters_and_config_json():
    a = v32()
    # wq_b 1536 x 64 x 128 + wk 7168 x 128 + k_norm 2 x 128 + weights_proj 7168 x 64
    assert indexer_params(a) == 12_582_912 + 917_504 + 256 + 458_752
    base = resolve(ModelSource(preset="deepseek-v3-fp8"))
    assert count_params(a).total - count_params(base).total == 61 * indexer_params(a)
    # whole on every rank, beside MLA's q_a and kv_a projections
    assert mla_replicated_params(a, "sglang") - mla_replicated_params(base, "sglang") == indexer_params(a)
    parsed = architecture_from_hf_config({"hidden_size": 7168, "index_head_dim": 128, "index_n_heads": 64,
                                          "index_topk": 2048})
    assert (parsed.index_head_dim, parsed.index_num_heads) == (128, 64)


def test_nsa_pool_bytes_by_release():
    a = v32()
    # fp8: 512 fp8 + 4 float32 scales + 64 bf16 rope = 656, and the indexer's 128 fp8 + one float32 scale = 132;
    # the profile's cell is the bare 576 fp8 bytes, plus the indexer's 132 from 0.5.4
    assert nsa_layer_bytes(sglang("0.5.3"), a, "fp8") == (576, 788)
    assert nsa_layer_bytes(sglang("0.5.4"), a, "fp8") == (708, 788)
    assert nsa_layer_bytes(sglang("0.5.4"), a, "bf16") == (1152 + 132, 1152 + 132)
    assert not nsa(sglang("0.5.2"), a) and not nsa(sglang("0.5.4"), resolve(ModelSource(preset="deepseek-v3-fp8")))
    assert page_size(sglang("0.5.4"), a, H200) == 64


def test_blackwell_caches_in_fp8():
    assert nsa_kv_precision(sglang("0.5.4"), B200) == "fp8"
    assert nsa_kv_precision(sglang("0.5.4", kvCachePrecision="bf16"), B200) == "fp8"  # over the flag
    assert nsa_kv_precision(sglang("0.5.5", kvCachePrecision="bf16"), B200) == "bf16"  # auto only
    assert nsa_kv_precision(sglang("0.5.5"), B200) == "fp8"
    assert nsa_kv_precision(sglang("0.5.4"), H200) == "bf16"


def test_fraction_set_in_053_only():
    a = v32()
    assert settings(sglang("0.5.3", gpuMemoryUtilization=0.9), B200, 8, 1, a).gpu_memory_utilization == 0.8
    assert settings(sglang("0.5.4", gpuMemoryUtilization=0.9), B200, 8, 1, a).gpu_memory_utilization == 0.9


def _tokens(version: str) -> int:
    doc = {"model": {"preset": "deepseek-v3-fp8", "architecture": INDEXER}, "workload": "inference",
           "parallelism": {"tensor": 8},
           "inference": {"engine": "sglang", "contextLength": 163840, "engineVersion": version,
                         "dataParallelAttention": 8}}
    return estimate(parse_spec(doc), gpu=B200).kv_cache_tokens


def test_pool_tokens_follow_the_cell():
    # the same rest memory sized with 576 B a layer holds 708/576 more tokens than with 708, less the 0.8 vs default
    # fraction's difference; both are whole pages of 64
    t053, t054 = _tokens("0.5.3"), _tokens("0.5.4")
    assert t053 % 64 == 0 and t054 % 64 == 0
    assert t053 > t054 * 708 / 576 > t054
    # without the indexer the model is plain MLA: bf16 latent, 1152 B a layer, far fewer tokens
    plain = {"model": {"preset": "deepseek-v3-fp8"}, "workload": "inference", "parallelism": {"tensor": 8},
             "inference": {"engine": "sglang", "contextLength": 163840, "engineVersion": "0.5.4",
                           "dataParallelAttention": 8}}
    assert estimate(parse_spec(plain), gpu=B200).kv_cache_tokens < t054 * 708 / 1152 * 1.05


@pytest.mark.parametrize("version", ["0.5.3", "0.5.4"])
def test_bench_rows_within_ten_percent(version):
    logged = {"0.5.3": 1_462_784, "0.5.4": 975_424}[version]
    assert abs(_tokens(version) - logged) / logged < 0.10
