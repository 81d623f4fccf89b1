"""inference.v2ModelRunner (vLLM's VLLM_USE_V2_MODEL_RUNNER): the runner a spec forces over the release's choice
(vllm/config/vllm.py VllmConfig.use_v2_model_runner returns the variable when set, read in the 0.26.0 wheel), where the
spec refuses it (0.21.0's opt-in, 0.34.0's single runner), and the CEL rules that mirror the validator."""

from __future__ import annotations

import re

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.vllm_runner import v2_runner
from rackfit.models import resolve
from rackfit.spec import RULES, parse_spec
from rackfit.spec.base import older
from rackfit.spec.releases import VLLM_V2_RUNNER_BY_MODEL, VLLM_V2_RUNNER_ONLY

H100 = load_catalog().get("gd-8xh100ib-i128").gpu


def _spec(preset="qwen2.5-7b", precision="bf16", **inference):
    return parse_spec(dict(model=dict(preset=preset), workload="inference", precision=precision,
                           inference=inference))


def _v2(s):
    return v2_runner(s.inference, resolve(s.model))


@pytest.mark.parametrize("preset,precision,version,default", [
    ("qwen2.5-7b", "bf16", "0.26.0", True),    # 0.25.0-0.28.x: every model that is not MoE
    ("qwen2.5-7b", "int4", "0.26.0", True),
    ("qwen3-30b-a3b", "bf16", "0.26.0", False),  # an unlisted MoE: the old runner
    ("qwen2.5-7b", "bf16", "0.23.0", False),   # Qwen2 is not in 0.22.0-0.24.x's list
])
def test_the_spec_overrides_the_release_s_choice_both_ways(preset, precision, version, default):
    assert _v2(_spec(preset, precision, engineVersion=version)) is default
    assert _v2(_spec(preset, precision, engineVersion=version, v2ModelRunner=True)) is True
    assert _v2(_spec(preset, precision, engineVersion=version, v2ModelRunner=False)) is False


def test_the_old_runner_on_0_26_plans_the_old_runner_s_profile():
    """wattbench's RTX 4090 logs (S1960-S1966: vLLM 0.26.0 under VLLM_USE_V2_MODEL_RUNNER=0): forcing the old runner
    changes the planned profile and so the KV cache; with the variable set to 1 the plan is the default one."""
    default, new, old = (_spec(contextLength=4096, engineVersion="0.26.0", gpuMemoryUtilization=0.9, **kw)
                         for kw in ({}, {"v2ModelRunner": True}, {"v2ModelRunner": False}))
    e_default, e_new, e_old = (estimate(s, None, gpu=H100) for s in (default, new, old))
    assert e_new.kv_cache_tokens == e_default.kv_cache_tokens
    assert e_old.kv_cache_tokens != e_default.kv_cache_tokens
    assert e_old.breakdown.activations_bytes != e_default.breakdown.activations_bytes


@pytest.mark.parametrize("inference,words", [
    ({"engine": "sglang", "v2ModelRunner": False}, "only with engine vllm"),
    ({"engineVersion": "0.34.0", "v2ModelRunner": False}, "0.34.0 removed"),
    ({"v2ModelRunner": False}, "an unset engineVersion means a current release"),
    ({"engineVersion": "0.21.0", "v2ModelRunner": True}, "before vLLM 0.22.0"),
])
def test_v2_model_runner_is_refused_where_the_release_has_no_choice(inference, words):
    with pytest.raises(InvalidWorkload) as e:
        _spec(**inference)
    (field, msg), = e.value.errors
    assert field == "spec.inference.v2ModelRunner" and words in msg


@pytest.mark.parametrize("inference", [
    {"engineVersion": "0.33.1", "v2ModelRunner": False}, {"engineVersion": "0.22.0", "v2ModelRunner": True},
    {"engineVersion": "0.21.0", "v2ModelRunner": False}, {"v2ModelRunner": True},
])
def test_v2_model_runner_is_taken_where_it_is_read(inference):
    assert _spec(**inference).inference.v2_model_runner is inference["v2ModelRunner"]


@pytest.mark.parametrize("rule,refused", [
    ("v2_model_runner_only", lambda v: not older(v, VLLM_V2_RUNNER_ONLY)),
    ("v2_model_runner_before_default", lambda v: older(v, VLLM_V2_RUNNER_BY_MODEL)),
])
def test_the_cel_release_patterns_agree_with_the_validator(rule, refused):
    pattern = re.search(r"matches\('([^']+)'\)", RULES["Inference"][rule].cel).group(1)
    for v in ("0.6", "0.6.6", "0.8.5", "0.10.2", "0.11.0", "0.19.1", "0.20", "0.21.0", "0.021.1", "0.22", "0.22.0",
              "0.022.0", "0.26.0", "0.29.1", "0.30.0", "0.33", "0.33.1", "0.34", "0.34.0", "0.034.0", "0.35.2",
              "0.40.0", "0.99.0", "0.100.1", "1.0", "1.0.3", "10.4.3"):
        assert bool(re.fullmatch(pattern, v)) == refused(v), v
