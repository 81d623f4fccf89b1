"""Megatron-Core's precision-aware optimizer (issue 22, `training.precisionAwareOptimizer`, `adamMomentsDtype`):
Transformer Engine's FusedAdam holds the distributed optimizer's tensors (megatron/core/optimizer/__init__.py at
24bad8e6: master_weights True, use_decoupled_grad True, exp_avg_dtype / exp_avg_sq_dtype, store_param_remainders True
by default). Under bf16 the fp32 main parameters are 16-bit remainders, 2 bytes a parameter (fused_adam.py
`torch.zeros_like(param, dtype=torch.int16)`), the moments are adamMomentsDtype wide, and the step reads the 16-bit
gradient shard in place (distrib_optimizer.py `shard_main_param.decoupled_grad = shard_model_grad`): no fp32 copy.
Counts by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training

GPT = ModelArch(name="gpt", num_layers=8, hidden_size=1024, intermediate_size=4096, num_attention_heads=8,
                num_key_value_heads=8, head_dim=128, vocab_size=64000, tie_word_embeddings=False, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
            sequenceLength=1024, activationCheckpointing="none", distributedOptimizer=True)
LAY = Layout(data=8)
N = count_params(GPT).total   # TP 1, PP 1: every parameter on the rank


def peak(precision: str = "bf16", **kw):
    return runtime_peak(GPT, count_params(GPT), Training(**{**BASE, **kw}), precision, LAY, 0)


def test_fp32_moments_keep_the_moments_and_store_2_byte_main_parameter_remainders():
    plain, aware = peak(), peak(precisionAwareOptimizer=True)
    # the shard over 8 ranks: 4 + 4 + 4 bytes (main parameter, two moments) against 2 + 4 + 4
    assert plain.optimizer == N // 8 * 12
    assert aware.optimizer == N // 8 * 10
    assert aware.weights == plain.weights and aware.gradients == plain.gradients
    assert peak(precisionAwareOptimizer=True, adamMomentsDtype="fp32") == aware


def test_bf16_moments_halve_them():
    assert peak(precisionAwareOptimizer=True, adamMomentsDtype="bf16").optimizer == N // 8 * 6


def test_fp16_parameters_keep_a_4_byte_main_copy():
    # TE stores remainders only for bf16 parameters (fused_adam.py `p.dtype == torch.bfloat16`)
    assert peak("fp16", precisionAwareOptimizer=True, adamMomentsDtype="bf16").optimizer == N // 8 * 8


def test_16_bit_gradients_are_read_in_place_at_the_step():
    copy = peak(gradReduceInFp32=False)
    aware = peak(gradReduceInFp32=False, precisionAwareOptimizer=True)
    assert copy.after_step == N // 8 * 4 and aware.after_step == 0
    assert copy.step_transient - aware.step_transient == N // 8 * 4


def test_the_fields_are_megatron_s_and_need_its_distributed_adam():
    with pytest.raises(ValidationError, match="precisionAwareOptimizer is Megatron's"):
        Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                 sequenceLength=1024, precisionAwareOptimizer=True)
    with pytest.raises(ValidationError, match="needs optimizer adamw, method full and the distributed optimizer"):
        Training(**{**BASE, "distributedOptimizer": False}, precisionAwareOptimizer=True)
    with pytest.raises(ValidationError, match="needs training.precisionAwareOptimizer true"):
        Training(**BASE, adamMomentsDtype="bf16")
    assert Training(**BASE, adamMomentsDtype="fp32").adam_moments_dtype == "fp32"
