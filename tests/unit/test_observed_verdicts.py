"""rackfit.observed: the batched query, its parsing (series as dcgm-exporter, vLLM and SGLang publish them)
and the EstimateHolds verdict. Pure: no Prometheus here (tests/real runs a real one)."""

from __future__ import annotations

from rackfit.api import conditions as c
from rackfit.api.status import LLMWorkloadStatus
from rackfit.observed import batched_query, estimate_figures, observed_view, parse_result, verdict
from rackfit.observed.compare import FRAMEBUFFER, KV_CACHE, ratio
from rackfit.observed.promql import FB_USED, SGLANG, VLLM

GIB = 1024**3
TRAIN = {"workload": "training"}
TRAIN_STATUS = {"estimate": {"totalBytes": 40 * GIB, "layout": {"data": 1}}}
SERVE = {"workload": "inference", "inference": {"engine": "vllm", "concurrency": 8, "contextLength": 8192}}
SERVE_STATUS = {"estimate": {"totalBytes": 70 * GIB, "kvCacheTokens": 100_000, "layout": {"data": 2}}}


def _sample(figure: str, value: str, ns="ml", wl="job", at=1_700_000_000.0, **labels) -> dict:
    return {"metric": {"namespace": ns, "workload": wl, "figure": figure, **labels}, "value": [at, value]}


def test_one_query_for_every_workload():
    q = batched_query("30m")
    # one expression: no workload or namespace named in it, each source tagged
    assert "workload=" not in q and "namespace=" not in q
    assert q.count(" or ") == 2
    for name in ("DCGM_FI_DEV_FB_USED[30m]", "vllm:cache_config_info", "sglang:max_total_num_tokens",
                 "rackfit_pod_workload_info", "kv_cache_size_tokens", "num_gpu_blocks", "block_size"):
        assert name in q
    assert "FB_TOTAL" not in q  # not in dcgm-exporter's default field set


def test_parse_dcgm_mib_into_bytes_and_keep_the_busiest_gpu():
    obs = parse_result([_sample(FB_USED, "40960"), _sample(FB_USED, "1024", wl="other")])
    assert obs[("ml", "job")].gpu_memory_bytes == 40 * GIB
    assert obs[("ml", "other")].gpu_memory_bytes == GIB
    assert "DCGM_FI_DEV_FB_USED" in obs[("ml", "job")].source


def test_parse_vllm_labels_new_and_old_releases():
    new = _sample(VLLM, "1", num_gpu_blocks="12000", block_size="16", kv_cache_size_tokens="191984",
                  kv_cache_max_concurrency="23.44")
    old = _sample(VLLM, "1", wl="old", num_gpu_blocks="661", block_size="16", kv_cache_size_tokens="None")
    obs = parse_result([new, old])
    assert obs[("ml", "job")].kv_cache_tokens == 191984 and obs[("ml", "job")].max_concurrency == 23.44
    assert obs[("ml", "old")].kv_cache_tokens == 661 * 16 and obs[("ml", "old")].max_concurrency is None


def test_parse_keeps_the_smallest_replica_and_sglang():
    a = _sample(VLLM, "1", kv_cache_size_tokens="90000", kv_cache_max_concurrency="10")
    b = _sample(VLLM, "1", kv_cache_size_tokens="80000", kv_cache_max_concurrency="9")
    obs = parse_result([a, b, _sample(SGLANG, "367404", wl="sg")])
    assert obs[("ml", "job")].kv_cache_tokens == 80000 and obs[("ml", "job")].max_concurrency == 9
    assert obs[("ml", "sg")].kv_cache_tokens == 367404


def test_parse_ignores_series_without_a_workload():
    assert parse_result([{"metric": {"figure": FB_USED}, "value": [0, "1"]}]) == {}


def test_figures_training_and_serving():
    t = estimate_figures(TRAIN, TRAIN_STATUS)
    assert t.compare == FRAMEBUFFER and t.estimate_bytes == 40 * GIB
    s = estimate_figures(SERVE, SERVE_STATUS)
    # concurrency 8 over data 2: 4 per replica at 8192 tokens
    assert s.compare == KV_CACHE and s.required_kv_tokens == 4 * 8192 and s.estimate_kv_tokens == 100_000
    hf = estimate_figures({**SERVE, "inference": {**SERVE["inference"], "engine": "transformers"}}, SERVE_STATUS)
    assert hf.compare == FRAMEBUFFER  # its cache grows per request: framebuffer is the figure
    assert estimate_figures(TRAIN, {}) is None


def test_training_verdicts():
    f = estimate_figures(TRAIN, TRAIN_STATUS)
    assert verdict(f, None).reason == c.NO_OBSERVATIONS
    within = parse_result([_sample(FB_USED, str(30 * 1024))])[("ml", "job")]
    v = verdict(f, within)
    assert (v.status, v.reason) == ("True", c.WITHIN_ESTIMATE)
    above = parse_result([_sample(FB_USED, str(44 * 1024))])[("ml", "job")]
    v = verdict(f, above)
    assert (v.status, v.reason) == ("False", c.OBSERVED_ABOVE_ESTIMATE)
    assert "44.0 GiB" in v.message and "40.0 GiB" in v.message and "+10.0%" in v.message
    assert "Likely cause" in v.message
    assert abs(ratio(f, above) - 1.1) < 1e-9


def test_serving_compares_the_kv_cache_not_the_framebuffer():
    f = estimate_figures(SERVE, SERVE_STATUS)
    # a healthy vLLM pod fills ~0.92 of the GPU: the framebuffer alone says nothing
    full = parse_result([_sample(FB_USED, str(75 * 1024))])[("ml", "job")]
    assert verdict(f, full).reason == c.NO_OBSERVATIONS
    ok = parse_result([_sample(VLLM, "1", kv_cache_size_tokens="95000")])[("ml", "job")]
    v = verdict(f, ok)
    assert v.status == "True" and "95,000" in v.message and "32,768" in v.message and "-5.0%" in v.message
    small = parse_result([_sample(VLLM, "1", kv_cache_size_tokens="20000")])[("ml", "job")]
    v = verdict(f, small)
    assert (v.status, v.reason) == ("False", c.ENGINE_KV_CACHE_SMALLER)
    assert "20,000" in v.message and "concurrency 4 x contextLength 8192" in v.message and "2.44 requests" in v.message


def test_prometheus_unreachable_keeps_the_last_verdict_and_says_so():
    f = estimate_figures(TRAIN, TRAIN_STATUS)
    above = parse_result([_sample(FB_USED, str(44 * 1024))])[("ml", "job")]
    v = verdict(f, above, unreachable="Prometheus unreachable since 2026-01-01T00:00:00Z: timeout")
    assert (v.status, v.reason) == ("False", c.OBSERVED_ABOVE_ESTIMATE)
    assert "last observation at 2023-11-14T22:13:20Z" in v.message and "unreachable" in v.message
    v = verdict(f, None, unreachable="Prometheus unreachable since X: refused")
    assert (v.status, v.reason) == ("Unknown", c.PROMETHEUS_UNREACHABLE)


def test_observed_view_fits_the_status_model():
    f = estimate_figures({**SERVE, "inference": {**SERVE["inference"], "engine": "sglang"}}, SERVE_STATUS)
    obs = parse_result([_sample(SGLANG, "81920")])[("ml", "job")]
    view = observed_view(obs, f)
    assert view["kvCacheTokens"] == 81920 and view["maxConcurrency"] == 10.0
    assert view["observedAt"] == "2023-11-14T22:13:20Z" and view["source"] == "sglang:max_total_num_tokens"
    LLMWorkloadStatus.model_validate({"observed": view})
