"""SGLang's DP attention (inference.dataParallelAttention; estimator/sglang.py): the spec's validation, attention split
over tensor / dp GPUs with the experts still over the tensor group, the embedding and lm_head by release, each rank's
KV pool at its own requests, the running limit's share and the default fraction's reserve. Expected values are worked
by hand from the formulas read in the sglang wheels (0.4.1-0.5.23)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gpus import H100

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.sglang import attention_tensor, dp_reserve_mib, piecewise_graph_sizes, vocab_shards
from rackfit.observed.compare import estimate_figures
from rackfit.spec import Inference, parse_spec

ROOT = Path(__file__).resolve().parents[2]
H200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
# DeepSeek-V2.5 as bench row S561 states it (60 layers, MLA, 160 experts)
DSV2 = {"architecture": {"numLayers": 60, "hiddenSize": 5120, "intermediateSize": 12288, "numAttentionHeads": 128,
                         "numKeyValueHeads": 128, "headDim": 128, "vocabSize": 102400, "numExperts": 160,
                         "numExpertsPerToken": 6, "moeIntermediateSize": 1536, "numSharedExperts": 2,
                         "firstDenseLayers": 1, "kvLoraRank": 512, "qLoraRank": 1536, "qkRopeHeadDim": 64,
                         "qkNopeHeadDim": 128, "vHeadDim": 128, "maxPositionEmbeddings": 163840}}


def _spec(model=None, tensor=8, data=1, parallelism=True, **inf):
    doc = {"model": model or DSV2, "workload": "inference",
           "inference": {"engine": "sglang", "contextLength": 4096, **inf}}
    if parallelism:
        doc["parallelism"] = {"tensor": tensor, "data": data}
    return doc


def _error(doc) -> tuple[str, str]:
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(doc)
    assert len(e.value.errors) == 1, e.value.errors
    return e.value.errors[0]


# --- validation ------------------------------------------------------------------------------------------------------

def test_only_sglang_takes_data_parallel_attention():
    path, msg = _error(_spec(engine="vllm", dataParallelAttention=8))
    assert path == "spec.inference.dataParallelAttention"
    assert "only with engine sglang" in msg


def test_data_parallel_attention_needs_a_tensor_group_it_divides():
    for doc in (_spec(parallelism=False, dataParallelAttention=2), _spec(tensor=6, dataParallelAttention=4),
                _spec(tensor=8, data=2, dataParallelAttention=2)):
        path, msg = _error(doc)
        assert path == "spec.inference.dataParallelAttention"
        assert "parallelism.tensor set to a multiple of it" in msg
    assert parse_spec(_spec(tensor=8, dataParallelAttention=4)).inference.data_parallel_attention == 4


def test_dp_size_is_the_tensor_size_before_0_4_5():
    path, msg = _error(_spec(tensor=8, engineVersion="0.4.4", dataParallelAttention=4))
    # the field, as the CRD's CEL rule's fieldPath (invariant audit, round 3: it named the bare spec)
    assert path == "spec.inference.dataParallelAttention"
    assert msg.startswith("inference.dataParallelAttention: SGLang before 0.4.5 sets --dp-size to the tensor size")
    parse_spec(_spec(tensor=8, engineVersion="0.4.4", dataParallelAttention=8))
    parse_spec(_spec(tensor=8, engineVersion="0.4.5", dataParallelAttention=4))


def test_one_rank_is_not_dp_attention():
    path, _ = _error(_spec(tensor=8, dataParallelAttention=1))
    assert path == "spec.inference.dataParallelAttention"


# --- weights ---------------------------------------------------------------------------------------------------------

# DeepSeek-V2.5's attention split over tensor parallel a layer: q_b 1536 x 128 x 192, kv_b 512 x 128 x 256, o 128 x
# 128 x 5120, and the two latent norms (1536 + 512) rackfit counts among them; q_a and kv_a are whole either way
ATTN_SPLIT = 1536 * 128 * 192 + 512 * 128 * 256 + 128 * 128 * 5120 + 1536 + 512
VOCAB = 102400 * 5120


def _weights(**inf) -> int:
    return estimate(parse_spec(_spec(**inf))).breakdown.weights_bytes


def test_0_4_1_holds_attention_embedding_and_lm_head_whole():
    base = _weights(engineVersion="0.4.1")
    dp = _weights(engineVersion="0.4.1", dataParallelAttention=8)
    # 16-bit: 7/8 of the attention, the embedding and the lm_head more on every GPU; the experts unchanged
    assert dp - base == pytest.approx((ATTN_SPLIT * 60 + 2 * VOCAB) * 2 * 7 / 8, abs=2)


def test_from_0_4_5_attention_over_tp_over_dp_and_lm_head_over_tp():
    base = _weights(engineVersion="0.4.5")
    dp = _weights(engineVersion="0.4.5", dataParallelAttention=2)
    # attention over 4 GPUs instead of 8, the embedding whole (before 0.5.8), the lm_head still over 8
    assert dp - base == pytest.approx((ATTN_SPLIT * 60 * (1 / 4 - 1 / 8) + VOCAB * (1 - 1 / 8)) * 2, abs=2)


def test_from_0_5_8_the_embedding_is_split_over_the_attention_group():
    base = _weights(engineVersion="0.5.8")
    dp = _weights(engineVersion="0.5.8", dataParallelAttention=2)
    assert dp - base == pytest.approx((ATTN_SPLIT * 60 + VOCAB) * (1 / 4 - 1 / 8) * 2, abs=2)


def test_vocab_shards_and_attention_group_by_release():
    def inf(version):
        return Inference(engine="sglang", engineVersion=version, dataParallelAttention=2)
    assert vocab_shards(inf("0.4.4"), 8) == (1, 1)
    assert vocab_shards(inf("0.5.7"), 8) == (1, 8)
    assert vocab_shards(inf("0.5.8"), 8) == (4, 8)
    assert attention_tensor(inf("0.5.8"), 8) == 4
    assert attention_tensor(Inference(engine="sglang"), 8) == 8


# --- the KV pool and requests --------------------------------------------------------------------------------------

def test_each_rank_caches_its_own_requests_at_tensor_over_dp_kv_heads():
    llama = {"preset": "llama-3.1-70b"}  # 8 KV heads: one a GPU at tensor 8, all 8 on a rank of attention tensor 1
    plain = estimate(parse_spec(_spec(model=llama, concurrency=16)))
    dp = estimate(parse_spec(_spec(model=llama, concurrency=16, dataParallelAttention=8)))
    # a request's cache is 8 times larger on a rank, which holds 2 of the 16 requests instead of all of them
    assert dp.breakdown.kv_cache_bytes == plain.breakdown.kv_cache_bytes // 16 * 8 * 2
    assert parse_spec(_spec(model=llama, concurrency=17, dataParallelAttention=8)).inference.per_replica(1) == 3


def test_mla_latent_is_whole_on_every_rank_either_way():
    plain = estimate(parse_spec(_spec(concurrency=8)), gpu=H100)
    dp = estimate(parse_spec(_spec(concurrency=8, dataParallelAttention=8)), gpu=H100)
    assert dp.breakdown.kv_cache_bytes * 8 == plain.breakdown.kv_cache_bytes


def test_a_given_running_limit_is_shared_among_the_ranks_from_0_4_2():
    small = {"preset": "llama-3.1-8b"}

    def limit(version: str) -> float:
        doc = _spec(model=small, tensor=2, contextLength=1024, maxNumSeqs=64, engineVersion=version,
                    dataParallelAttention=2)
        return estimate(parse_spec(doc), gpu=H100).max_concurrency

    assert limit("0.4.1") > 32  # tp_worker.py of 0.4.1 does not divide --max-running-requests
    assert limit("0.4.2") == 32


def test_observed_comparison_takes_a_rank_s_share():
    spec = {"workload": "inference", "inference": {"engine": "sglang", "concurrency": 16, "contextLength": 1000,
                                                   "dataParallelAttention": 8}}
    fig = estimate_figures(spec, {"estimate": {"totalBytes": 1, "layout": {"tensor": 8}}})
    assert (fig.concurrency, fig.required_kv_tokens) == (2, 2000)


# --- the default fraction --------------------------------------------------------------------------------------------

def test_reserve_grows_by_4_gib_in_0_4_8_to_0_5_2():
    def util(**kw) -> float:
        return settings(Inference(engine="sglang", engineVersion="0.4.8", **kw), H100, 8, 1).gpu_memory_utilization
    # 81559 MiB less (9.5 + 8 / 2) GiB, and 4 GiB more with DP attention
    assert util() == round((81559 - 13.5 * 1024) / 81559, 3)
    assert util(dataParallelAttention=8) == round((81559 - 17.5 * 1024) / 81559, 3)
    assert settings(Inference(engine="sglang", engineVersion="0.4.7", dataParallelAttention=8), H100, 8,
                    1).gpu_memory_utilization == 0.81


def test_reserve_grows_with_graph_batch_times_dp_from_0_5_3():
    inf = Inference(engine="sglang", engineVersion="0.5.3", dataParallelAttention=8)
    assert dp_reserve_mib(inf, 512) == 512 * 8 * (3 + 1.5)
    assert dp_reserve_mib(inf, 160) == 160 * 8 * 3
    # H100 at tensor 8: chunk 8192, graph batch 512; 512 + 12288 + 1024 + 1024 = 14848 MiB, + 18432 with dp 8
    assert settings(inf, H100, 8, 1).gpu_memory_utilization == round((81559 - 14848 - 18432) / 81559, 3)


def test_no_piecewise_reserve_under_dp_attention():
    plain = settings(Inference(engine="sglang", engineVersion="0.5.10"), H200, 8, 1).gpu_memory_utilization
    dp = settings(Inference(engine="sglang", engineVersion="0.5.10", dataParallelAttention=8), H200, 8,
                  1).gpu_memory_utilization
    # H200 at tensor 8: chunk 8192, graph batch 512; 512 + 12288 + 1024 + 1024 = 14848 MiB with the piecewise graphs'
    # 8 MiB a size, which DP attention turns off, adding 512 x 8 x 4.5 MiB instead
    assert plain == round((143771 - 14848 - 8 * len(piecewise_graph_sizes(8192))) / 143771, 3)
    assert dp == round((143771 - 14848 - 512 * 8 * 4.5) / 143771, 3)


# --- the public facts ---------------------------------------------------------------------------------------------

def test_issue_2763_and_2882_facts():
    rows = {r["id"]: r for r in yaml.safe_load((ROOT / "bench/cases/public/serving.yaml").read_text())}
    gpus = {"H100": H100, "H200": H200}
    for rid in ("S561", "S583", "S584", "S585"):
        row = rows[rid]
        est = estimate(parse_spec(row["spec"]), gpu=gpus[row["gpu"]["model"]])
        assert est.engine_starts is row["measured"]["starts"], rid
