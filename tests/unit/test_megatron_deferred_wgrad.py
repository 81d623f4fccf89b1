"""Megatron-LM's deferred embedding weight gradient (--defer-embedding-wgrad-compute, --wgrad-deferral-limit) and the
fp32 gradient copy the optimizer leaves allocated after the step when the gradient buffer is 16-bit (issue 22: rows
T1124 and T1123 of the third Megatron golden-value pass), each against bytes computed by hand."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import megatron_deferred_wgrad_bytes, runtime_activations
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training

# Megatron-LM's functional-test GPT (T973, T1124): 12 x 512, 8 heads, GELU 2048, vocab padded to 50432 for TP 2, tied
GPT_TEST = ModelArch(name="gpt-test", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                     num_key_value_heads=8, head_dim=64, vocab_size=50432, tie_word_embeddings=True, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=4,
            sequenceLength=1024, activationCheckpointing="none", sequenceParallel=False, distributedOptimizer=False,
            transformerImpl="transformer_engine", gradientAccumulationSteps=4)
TP2_PP2 = Layout(tensor=2, pipeline=2, data=2)
TOKENS = 4 * 1024


def tr(**kw) -> Training:
    return Training(**{**BASE, **kw})


def test_limit_two_holds_two_micro_batches_gradient_and_input():
    """T1124: 4 micro-batches, limit 2 -> at the loss backward of the 3rd and 4th, the first two are held: each the
    [1024, 4, 50432 / 2] logits' gradient and the [1024, 4, 512] input in bf16: 2 x 4096 x (25216 + 512) x 2."""
    t = tr(deferEmbeddingWgrad=True, wgradDeferralLimit=2)
    assert megatron_deferred_wgrad_bytes(GPT_TEST, t, TP2_PP2, TOKENS) == 2 * 4096 * (25216 + 512) * 2


def test_limit_zero_defers_every_micro_batch_but_the_one_in_its_backward():
    t = tr(deferEmbeddingWgrad=True)   # --wgrad-deferral-limit unset: 0, all of them
    assert megatron_deferred_wgrad_bytes(GPT_TEST, t, TP2_PP2, TOKENS) == 3 * 4096 * (25216 + 512) * 2
    # a limit above the step's micro-batches holds no more than the step has before the last
    big = tr(deferEmbeddingWgrad=True, wgradDeferralLimit=16)
    assert megatron_deferred_wgrad_bytes(GPT_TEST, big, TP2_PP2, TOKENS) == 3 * 4096 * (25216 + 512) * 2


def test_sequence_parallel_keeps_the_sharded_input():
    t = tr(deferEmbeddingWgrad=True, wgradDeferralLimit=1, sequenceParallel=True)
    assert megatron_deferred_wgrad_bytes(GPT_TEST, t, TP2_PP2, TOKENS) == 4096 * (25216 + 256) * 2


def test_nothing_without_the_flag_or_without_pipeline_stages():
    assert megatron_deferred_wgrad_bytes(GPT_TEST, tr(), TP2_PP2, TOKENS) == 0
    assert megatron_deferred_wgrad_bytes(GPT_TEST, tr(deferEmbeddingWgrad=True), Layout(tensor=2, data=4),
                                         TOKENS) == 0


def test_only_the_last_stage_holds_them():
    on, off = tr(deferEmbeddingWgrad=True, wgradDeferralLimit=2), tr()
    held = 2 * 4096 * (25216 + 512) * 2
    last = runtime_activations(GPT_TEST, on, TP2_PP2, "last").kept - runtime_activations(GPT_TEST, off, TP2_PP2,
                                                                                          "last").kept
    assert last == held
    assert runtime_activations(GPT_TEST, on, TP2_PP2, "first") == runtime_activations(GPT_TEST, off, TP2_PP2,
                                                                                       "first")


def test_spec_rules():
    with pytest.raises(ValueError, match="wgradDeferralLimit.*deferEmbeddingWgrad true"):
        tr(wgradDeferralLimit=2)
    with pytest.raises(ValueError, match="deferEmbeddingWgrad is Megatron's --defer-embedding-wgrad-compute"):
        Training(framework="fsdp", method="full", deferEmbeddingWgrad=True)


def test_fp16_leaves_the_fp32_gradient_copy_allocated_after_the_step():
    """T1123: --fp16 keeps the gradient buffer fp16; Float16OptimizerWithFloat16Params' step sets
    `main_param.grad = model_param.main_grad.float()`, freed only by the next step's zero_grad: 4 bytes a parameter of
    the rank, beside the states, in the memory Megatron logs after the step. bf16's fp32 buffer is its own .float()."""
    p, lay = count_params(GPT_TEST), Layout(tensor=2, data=4)
    fp16 = runtime_peak(GPT_TEST, p, tr(gradientAccumulationSteps=1), "fp16", lay, 0)
    # the rank's parameters at TP 2: the embedding's half (50432 / 2 x 512) and 12 layers' halves of qkv, proj, fc1
    # and fc2 (512 x 1536 + 512 x 512 + 2 x 512 x 2048, over 2), and the norms' few thousand
    linears = 50432 // 2 * 512 + 12 * (512 * 1536 + 512 * 512 + 2 * 512 * 2048) // 2
    assert fp16.after_step % 4 == 0 and 0 <= fp16.after_step // 4 - linears < 8192
    bf16 = runtime_peak(GPT_TEST, p, tr(gradientAccumulationSteps=1), "bf16", lay, 0)
    assert bf16.after_step == 0
    # bf16 main gradients (gradReduceInFp32 false) are copied the same way
    bf16_grads = runtime_peak(GPT_TEST, p, tr(gradientAccumulationSteps=1, gradReduceInFp32=False), "bf16", lay, 0)
    assert bf16_grads.after_step == fp16.after_step
    # the distributed optimizer copies only the rank's shard of them
    sharded = runtime_peak(GPT_TEST, p, tr(gradientAccumulationSteps=1, distributedOptimizer=True), "fp16", lay, 0)
    assert sharded.after_step * 4 == pytest.approx(fp16.after_step, abs=16)
    # and none of it is kept in the states the next forward and backward run beside
    assert fp16.states == runtime_peak(GPT_TEST, p, tr(gradientAccumulationSteps=1), "fp16", lay, 0).states
