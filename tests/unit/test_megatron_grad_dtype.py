"""Megatron-Core's gradient buffer dtype and its optimizer's tensors (issue 22), counts by hand.

`training.gradReduceInFp32`: fp32 main gradients with bf16 (Megatron-LM's --accumulate-allreduce-grads-in-fp32), the
parameters' 16-bit dtype when grad_reduce_in_fp32 is off (Megatron-Bridge's performance recipes) or with fp16, and then
the optimizer step's fp32 copy of the rank's share (distrib_optimizer.py _copy_model_grads_to_main_grads,
`shard_model_grad.float()`), held until the next step's zero_grad (RuntimePeak.after_step, the `steady` reading).

`training.precisionAwareOptimizer`, `adamMomentsDtype`: Transformer Engine's FusedAdam holds the distributed
optimizer's tensors (megatron/core/optimizer/__init__.py at 24bad8e6: master_weights True, use_decoupled_grad True,
exp_avg_dtype / exp_avg_sq_dtype, store_param_remainders True by default). Under bf16 the fp32 main parameters are
16-bit remainders, 2 bytes a parameter (fused_adam.py `torch.zeros_like(param, dtype=torch.int16)`), the moments are
adamMomentsDtype wide, and the step reads the 16-bit gradient shard in place (distrib_optimizer.py
`shard_main_param.decoupled_grad = shard_model_grad`): no fp32 copy."""

from __future__ import annotations

import pytest
from bench_modules import bench
from pydantic import ValidationError

from rackfit.estimator import Layout, estimate
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training, parse_spec

GPT = ModelArch(name="gpt", num_layers=8, hidden_size=1024, intermediate_size=4096, num_attention_heads=8,
                num_key_value_heads=8, head_dim=128, vocab_size=64000, tie_word_embeddings=False, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
            sequenceLength=1024, activationCheckpointing="none", distributedOptimizer=True)
LAY = Layout(data=8)
N = count_params(GPT).total   # TP 1, PP 1: every parameter on the rank


def peak(precision: str = "bf16", **kw):
    return runtime_peak(GPT, count_params(GPT), Training(**{**BASE, **kw}), precision, LAY, 0)


def test_bf16_gradients_halve_the_buffer_and_add_the_step_s_fp32_copy_of_the_shard():
    fp32, bf16 = peak(), peak(gradReduceInFp32=False)
    assert fp32.gradients - bf16.gradients == N * 2
    assert fp32.weights == bf16.weights and fp32.optimizer == bf16.optimizer
    # the distributed optimizer's shard over 8 ranks, 4 bytes a gradient, only in the step
    assert bf16.step_transient - fp32.step_transient == N // 8 * 4
    assert peak(gradReduceInFp32=True) == fp32


def test_fp16_keeps_16_bit_gradients_unless_told_and_copies_them_at_the_step():
    fp16 = peak("fp16")
    assert fp16.gradients == peak(gradReduceInFp32=False).gradients
    assert fp16.step_transient == peak(gradReduceInFp32=False).step_transient
    told = peak("fp16", gradReduceInFp32=True)
    assert told.gradients - fp16.gradients == N * 2
    assert fp16.step_transient - told.step_transient == N // 8 * 4


def test_without_the_distributed_optimizer_the_copy_is_every_gradient():
    whole = peak(gradReduceInFp32=False, distributedOptimizer=False)
    fp32 = peak(distributedOptimizer=False)
    assert whole.step_transient - fp32.step_transient == N * 4


def test_the_field_is_megatron_s():
    with pytest.raises(ValidationError, match="gradReduceInFp32 is Megatron's --accumulate-allreduce-grads-in-fp32"):
        Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                 sequenceLength=1024, gradReduceInFp32=False)


def test_the_copy_is_held_between_steps_and_not_at_the_backward():
    # train_step calls optimizer.zero_grad() before its forward, so the fp32 copies the step made stay allocated until
    # then: in Megatron's "(after N iterations)" allocated reading, not at the next backward's peak (after_step)
    whole = peak("fp16", distributedOptimizer=False)
    assert whole.after_step == N * 4
    assert peak(gradReduceInFp32=False).after_step == N // 8 * 4
    # an fp32 buffer's .float() is the buffer itself: nothing held
    assert peak().after_step == 0 and peak("fp16", gradReduceInFp32=True).after_step == 0
    # the held copies are of the step's transient, not of the states the backward's peak holds
    assert whole.step_transient >= whole.after_step
    assert whole.states == peak("fp16", distributedOptimizer=False, gradReduceInFp32=True).states - N * 2


def test_steady_reading_adds_the_held_copies():
    comparable = bench("public_training").comparable
    spec = parse_spec({"model": {"architecture": {"numLayers": 8, "hiddenSize": 1024, "intermediateSize": 4096,
                                                  "numAttentionHeads": 8, "numKeyValueHeads": 8, "headDim": 128,
                                                  "vocabSize": 64000, "tieWordEmbeddings": False, "gatedMlp": False}},
                       "workload": "training", "precision": "fp16",
                       "training": {**BASE, "distributedOptimizer": False}, "parallelism": {"data": 8}})
    est = estimate(spec)
    told = parse_spec({**spec.model_dump(by_alias=True, exclude_none=True),
                       "training": {**BASE, "distributedOptimizer": False, "gradReduceInFp32": True}})
    # fp16 buffer (2 bytes) + its held fp32 copy (4) against an fp32 buffer (4) and none
    assert comparable("steady", spec, est) - comparable("steady", told, estimate(told)) == N * 2


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
