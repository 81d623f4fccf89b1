"""inference.vllmUseV1 (VLLM_USE_V1): the V0 engine on a release that defaults to V1, its refusals, and the CEL rules
that mirror them."""

from __future__ import annotations

import re

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.spec import RULES, parse_spec
from rackfit.spec.base import older
from rackfit.spec.releases import VLLM_V0_REMOVED, VLLM_V1_DEFAULT

H100 = load_catalog().get("gd-8xh100ib-i128").gpu


def _spec(**inference):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=inference))


@pytest.mark.parametrize("inference,v0", [
    ({}, False), ({"engineVersion": "0.7.3"}, True), ({"engineVersion": "0.8.5"}, False),
    ({"engineVersion": "0.8.5", "vllmUseV1": False}, True), ({"engineVersion": "0.10.2", "vllmUseV1": False}, True),
    ({"engineVersion": "0.8.5", "vllmUseV1": True}, False),
    ({"engineVersion": "0.7.3", "vllmUseV1": False}, True), ({"engine": "sglang", "engineVersion": "0.4.3"}, False),
])
def test_vllm_v0_is_a_release_before_0_8_or_vllm_use_v1_false(inference, v0):
    assert _spec(**inference).inference.vllm_v0 is v0


@pytest.mark.parametrize("inference,words", [
    ({"engine": "sglang", "vllmUseV1": False}, "only with engine vllm"),
    ({"engine": "tensorrt-llm", "vllmUseV1": True}, "only with engine vllm"),
    ({"engineVersion": "0.11.0", "vllmUseV1": False}, "0.11.0 removed"),
    ({"engineVersion": "0.19.1", "vllmUseV1": False}, "0.11.0 removed"),
    ({"vllmUseV1": False}, "an unset engineVersion means a current release"),
    ({"engineVersion": "0.7.3", "vllmUseV1": True}, "before vLLM 0.8.0"),
])
def test_vllm_use_v1_is_refused_where_the_release_has_no_such_engine(inference, words):
    with pytest.raises(InvalidWorkload) as e:
        _spec(**inference)
    (field, msg), = e.value.errors
    assert field == "spec.inference.vllmUseV1" and words in msg


@pytest.mark.parametrize("rule,refused", [
    ("vllm_v0_removed", lambda v: not older(v, VLLM_V0_REMOVED)),
    ("vllm_v1_before_default", lambda v: older(v, VLLM_V1_DEFAULT)),
])
def test_the_cel_release_patterns_agree_with_the_validator(rule, refused):
    pattern = re.search(r"matches\('([^']+)'\)", RULES["Inference"][rule].cel).group(1)
    for v in ("0.6", "0.6.6", "0.7", "0.7.0", "0.7.3", "00.7.3", "0.07.1", "0.8", "0.8.0", "0.08.5", "0.9.2", "0.10",
              "0.10.2", "0.010.2", "0.11", "0.11.0", "0.011.0", "0.12.0", "0.19.1", "0.20.0", "0.99.0", "0.100.1",
              "1.0", "1.0.3", "10.4.3"):
        assert bool(re.fullmatch(pattern, v)) == refused(v), v


def test_v0_forced_on_0_8_plans_v0_s_profile_and_not_v1_s():
    """0.8.5 under VLLM_USE_V1=0 profiles as 0.7.3's V0 does (max(contextLength, 2048) tokens over 256 sequences,
    engine_defaults.settings), not with V1's 8192 tokens and 1024 sequences on an H100, and its KV cache differs."""
    v1, v0, old = (_spec(contextLength=4096, engineVersion=v, **kw) for v, kw in
                   (("0.8.5", {}), ("0.8.5", {"vllmUseV1": False}), ("0.7.3", {})))
    s1, s0, s_old = (settings(s.inference, H100, 1, 1) for s in (v1, v0, old))
    assert (s1.max_num_batched_tokens, s1.max_num_seqs) == (8192, 1024)
    assert (s0.max_num_batched_tokens, s0.max_num_seqs) == (s_old.max_num_batched_tokens, s_old.max_num_seqs) \
        == (4096, 256)
    e1, e0 = estimate(v1, None, gpu=H100), estimate(v0, None, gpu=H100)
    assert e1.kv_cache_tokens != e0.kv_cache_tokens
    assert e1.breakdown.cuda_graph_bytes != e0.breakdown.cuda_graph_bytes
