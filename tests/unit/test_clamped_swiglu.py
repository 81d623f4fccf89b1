"""architecture.swigluLimit: gpt-oss's clamped SwiGLU in torchtitan's experts (torchtitan/models/gpt_oss/moe.py,
GptOssGroupedExperts and `swiglu`: the 2F-wide fused gate/up output, clamp of each half, sigmoid, product, addcmul).
Eager, a routed copy keeps its input, the 2F output, the clamped gate, the sigmoid, the gated output, the clamped
linear half and the product: three F-wide tensors more than a plain SwiGLU (bench row T1843, GPT-OSS-20B without
activation checkpointing on 64 x GB300). Counts by hand on GPT-OSS-20B's shapes."""

from __future__ import annotations

import pytest

from rackfit.estimator import moe_training
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import ModelSource, Training

GPT_OSS_20B = ModelSource(preset="gpt-oss-120b", architecture={"numLayers": 24, "numExperts": 32,
                                                               "slidingWindowLayers": 12})
F, D, K, LAYERS = 2880, 2880, 4, 24
TOKENS = 2 * 8192


def _tr(ckpt: str = "none", compile_model: bool = False, framework: str = "fsdp", **extra) -> Training:
    return Training(framework=framework, method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=2,
                    sequenceLength=8192, activationCheckpointing=ckpt, compile=compile_model, **extra)


def test_the_gpt_oss_presets_and_config_json_carry_the_limit():
    assert resolve(GPT_OSS_20B).swiglu_limit == 7.0
    assert resolve(ModelSource(preset="gpt-oss-120b-mxfp4")).swiglu_limit == 7.0
    assert architecture_from_hf_config({"model_type": "gpt_oss", "swiglu_limit": 7.0}).swiglu_limit == 7.0
    assert resolve(ModelSource(preset="qwen3-30b-a3b")).swiglu_limit == 0.0


def test_eager_experts_keep_three_expert_widths_more_a_routed_copy():
    a = resolve(GPT_OSS_20B)
    plain = a.model_copy(update={"swiglu_limit": 0.0})
    eager = _tr()
    assert moe_training.clamped_swiglu_elements(a, eager) == 3 * F
    assert moe_training.routed_row_bytes(a, eager) == (D + 7 * F) * 2
    assert moe_training.routed_row_bytes(plain, eager) == (D + 4 * F) * 2
    layout = Layout(data=64)
    extra = moe_training.eager_extra_bytes(a, eager, layout, TOKENS) - \
        moe_training.eager_extra_bytes(plain, eager, layout, TOKENS)
    # every layer is MoE: K copies of 3F 16-bit elements a token, and the padded rows' three more F each
    padded_rows = 32 * moe_training.TOKEN_GROUP_ALIGN_SIZE_M
    assert extra == K * 3 * F * 2 + padded_rows * 3 * F * 2 / TOKENS
    with_limit = runtime_activations(a, eager, layout)
    without = runtime_activations(plain, eager, layout)
    # no checkpointing: every layer keeps it; full AC: the one recomputed layer holds it
    assert with_limit.kept - without.kept == pytest.approx(LAYERS * TOKENS * extra, abs=LAYERS)
    full = _tr("full")
    grown = runtime_activations(a, full, layout).recompute - runtime_activations(plain, full, layout).recompute
    assert grown == pytest.approx(TOKENS * extra, abs=2)


def test_compiled_and_non_torchtitan_runs_are_unchanged():
    a = resolve(GPT_OSS_20B)
    plain = a.model_copy(update={"swiglu_limit": 0.0})
    layout = Layout(data=64)
    assert moe_training.clamped_swiglu_elements(a, _tr(compile_model=True)) == 0
    assert moe_training.routed_row_bytes(a, _tr(compile_model=True)) == (D + 3 * F) * 2
    for tr in (_tr(compile_model=True), _tr(framework="transformers"), _tr(fsdpVersion=2, modelCode="transformers")):
        assert runtime_activations(a, tr, layout) == runtime_activations(plain, tr, layout)
