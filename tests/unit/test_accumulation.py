"""Gradient accumulation (training.gradientAccumulationSteps, estimator/accumulation.py): from the second micro-batch
of a step on, the gradients of the earlier ones are held while it runs. Expected bytes by hand from Llama 3.2 1B's
shapes (16 layers x 2048, MLP 8192, 8 KV heads of 64, 128,256 tied embeddings)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, training_peak, training_states
from rackfit.estimator.accumulation import (
    accumulation_steps,
    no_sync_reuse,
    runtime_accumulated_grads,
    transformers_accumulated_grads,
)
from rackfit.estimator.result import Layout
from rackfit.spec import Training, parse_spec

LLAMA_1B = 262_668_288 + 16 * (2 * 2048 * 2048 + 2 * 2048 * 512) + 16 * 3 * 2048 * 8192 + 16 * 2 * 2048 + 2048


def _spec(framework: str, data: int, steps: int | None, **training):
    tr = {"framework": framework, "method": "full", "masterWeights": "fp32", "optimizer": "adamw",
          "microBatchSize": 1, "sequenceLength": 512, "activationCheckpointing": "full", **training}
    if steps is not None:
        tr["gradientAccumulationSteps"] = steps
    return parse_spec({"model": {"preset": "llama-3.2-1b"}, "workload": "training", "precision": "bf16",
                       "training": tr, "parallelism": {"data": data}})


def test_field_default_and_validation():
    assert accumulation_steps(Training()) == 1
    assert accumulation_steps(Training(gradient_accumulation_steps=8)) == 8
    spec = _spec("transformers", 1, 4)
    assert spec.training.gradient_accumulation_steps == 4
    with pytest.raises((InvalidWorkload, ValueError)):
        _spec("transformers", 1, 0)


@pytest.mark.parametrize("framework,extra,data", [
    ("transformers", {}, 1), ("transformers", {}, 2), ("transformers", {"zeroStage": 2}, 4),
    ("fsdp", {}, 1), ("fsdp", {}, 8), ("fsdp", {"fsdpVersion": 1}, 8), ("deepspeed", {"zeroStage": 1}, 8),
    ("deepspeed", {"zeroStage": 2}, 8), ("deepspeed", {"zeroStage": 3}, 8), ("megatron", {}, 8)])
def test_one_step_is_no_accumulation(framework, extra, data):
    unset, one = estimate(_spec(framework, data, None, **extra)), estimate(_spec(framework, data, 1, **extra))
    assert (unset.total_bytes, unset.peak_phase, unset.breakdown) == (one.total_bytes, one.peak_phase, one.breakdown)


def test_transformers_helper():
    tr = Training(gradient_accumulation_steps=4)
    assert transformers_accumulated_grads(tr, Layout(data=1), 1000) == 1000
    assert transformers_accumulated_grads(tr, Layout(data=2), 1000) == 1000   # DDP no_sync: beside the buckets
    assert transformers_accumulated_grads(Training(gradient_accumulation_steps=4, zero_stage=2), Layout(data=2),
                                          1000) == 0                         # DeepSpeed's buffers, already held
    assert transformers_accumulated_grads(Training(), Layout(data=1), 1000) == 0


def test_one_gpu_holds_every_fp32_gradient_at_the_loss_backward():
    # autocast over fp32 weights: param.grad fp32, 4 bytes a parameter, made by micro-batch 1, zeroed after the step
    est = estimate(_spec("transformers", 1, 4, sequenceLength=8192, microBatchSize=4))
    assert training_states(_spec("transformers", 1, 4)).gradients == LLAMA_1B * 4
    assert est.peak_phase == "loss backward"
    assert est.breakdown.gradients_bytes == LLAMA_1B * 4
    base = estimate(_spec("transformers", 1, None, sequenceLength=8192, microBatchSize=4))
    assert base.peak_phase == "loss backward" and base.breakdown.gradients_bytes == 0


def test_ddp_holds_buckets_and_param_grads():
    est = estimate(_spec("transformers", 2, 8, sequenceLength=8192, microBatchSize=4))
    assert est.peak_phase == "loss backward"
    assert est.breakdown.gradients_bytes == 2 * LLAMA_1B * 4   # the buckets and the no_sync param.grad


def test_fsdp1_no_sync_keeps_unsharded_16bit_gradients():
    one, acc = training_peak(_spec("fsdp", 8, None, fsdpVersion=1)), training_peak(_spec("fsdp", 8, 4, fsdpVersion=1))
    # every unit's unsharded flat gradient in the bf16 param dtype: 2 bytes a parameter on every rank
    assert acc.backward_transient - one.backward_transient == LLAMA_1B * 2
    assert acc.cached_gradients == one.cached_gradients == LLAMA_1B * 4 // 8
    assert acc.states == one.states


def test_fsdp1_no_sync_unsharded_gradients_strand_no_allocator_slack():
    # allocated once in the first micro-batch, held to the sync micro-batch's reduce-scatter: reused, no slack share
    one, acc = training_peak(_spec("fsdp", 8, None, fsdpVersion=1)), training_peak(_spec("fsdp", 8, 4, fsdpVersion=1))
    assert acc.reused - one.reused == LLAMA_1B * 2
    # the estimate grows by the held bytes alone: the allocator's share is the one-step backward's
    est_one, est_acc = estimate(_spec("fsdp", 8, None, fsdpVersion=1)), estimate(_spec("fsdp", 8, 4, fsdpVersion=1))
    assert est_one.peak_phase == est_acc.peak_phase == "loss backward"
    assert est_acc.total_bytes - est_one.total_bytes == LLAMA_1B * 2
    def tr(**kw):
        return Training.model_validate({"framework": "fsdp", **kw})

    tr1, layout = tr(fsdpVersion=1, gradientAccumulationSteps=4), Layout(data=8)
    assert no_sync_reuse(tr1, layout, 1000, 5000) == 1000
    assert no_sync_reuse(tr1, layout, 1000, 600) == 600    # never more than the backward's transient
    assert no_sync_reuse(tr1, layout, 1000, -5) == 0
    assert no_sync_reuse(tr(fsdpVersion=1), layout, 1000, 5000) == 0                  # no accumulation
    assert no_sync_reuse(tr1, Layout(data=1), 1000, 5000) == 0                       # no no_sync on one GPU
    assert no_sync_reuse(tr(fsdpVersion=2, gradientAccumulationSteps=4), layout, 1000, 5000) == 0   # not FSDP1


def test_fsdp1_no_sync_keeps_unsharded_gradients_on_the_gpu_under_cpu_offload():
    # torch 2.0 FSDP1 no_sync: "the gradients will not be offloaded to CPU when inside the context manager"
    off = {"fsdpVersion": 1, "offloadParameters": True}
    one, acc = training_peak(_spec("fsdp", 8, None, **off)), training_peak(_spec("fsdp", 8, 4, **off))
    assert one.host_offload > 0   # the sharded parameters, gradients and optimizer states are on the host
    assert acc.backward_transient - one.backward_transient == LLAMA_1B * 2
    assert acc.host_offload == one.host_offload
    # one GPU (no no_sync), torchtitan's FSDP2 (a reduce-scatter every micro-batch) and LoRA (no full gradient):
    # accumulation adds nothing under offload
    for extra, data in (({"fsdpVersion": 1}, 1), ({}, 8)):
        kw = {**extra, "offloadParameters": True}
        assert training_peak(_spec("fsdp", data, 4, **kw)).backward_transient == \
            training_peak(_spec("fsdp", data, None, **kw)).backward_transient
    lora = {"fsdpVersion": 1, "offloadParameters": True, "method": "lora", "masterWeights": "none"}
    assert training_peak(_spec("fsdp", 8, 4, **lora)).backward_transient == \
        training_peak(_spec("fsdp", 8, None, **lora)).backward_transient


def test_fsdp2_gradients_allocated_not_cached():
    one, acc = training_peak(_spec("fsdp", 8, None)), training_peak(_spec("fsdp", 8, 4))
    assert one.cached_gradients == LLAMA_1B * 4 // 8   # the last step's shards, cached in the reduce-scatter stream
    assert acc.cached_gradients == 0                   # accumulated into: allocated
    assert estimate(_spec("fsdp", 8, 4)).total_bytes == estimate(_spec("fsdp", 8, None)).total_bytes


def test_fsdp_one_gpu_holds_every_gradient():
    long = {"sequenceLength": 8192, "microBatchSize": 4}   # the loss backward above the step in both
    one, acc = training_peak(_spec("fsdp", 1, None, **long)), training_peak(_spec("fsdp", 1, 4, **long))
    assert one.phase == acc.phase == "loss backward"
    output = 128256 * 2048 * 4   # before: only the output projection's fp32 gradient, made by the loss backward
    assert acc.backward_transient - one.backward_transient == LLAMA_1B * 4 - output


def test_runtime_helper_by_framework():
    lay8, acc = Layout(data=8), {"gradient_accumulation_steps": 4}
    assert runtime_accumulated_grads(Training(framework="deepspeed", zero_stage=2, **acc), lay8, 100, 100, 100, 7) \
        == (100, 0)
    assert runtime_accumulated_grads(Training(framework="deepspeed", zero_stage=3, **acc), lay8, 100, 100, 0, 7) \
        == (100, 0)
    assert runtime_accumulated_grads(Training(framework="megatron", **acc), lay8, 100, 100, 0, 7) == (100, 0)
    fsdp1 = Training(framework="fsdp", fsdp_version=1, **acc)
    assert runtime_accumulated_grads(fsdp1, lay8, 100, 100, 100, 7) == (107, 100)
    assert runtime_accumulated_grads(Training(framework="fsdp"), lay8, 100, 100, 100, 7) == (100, 100)


@pytest.mark.parametrize("framework,extra", [("deepspeed", {"zeroStage": 3}), ("megatron", {})])
def test_kept_buffers_unchanged(framework, extra):
    one, acc = estimate(_spec(framework, 8, None, **extra)), estimate(_spec(framework, 8, 16, **extra))
    assert (one.total_bytes, one.breakdown) == (acc.total_bytes, acc.breakdown)


def test_notes_only_with_accumulation_over_data():
    assert not any("accumulation" in n for n in estimate(_spec("fsdp", 8, None)).notes)
    assert not any("accumulation" in n for n in estimate(_spec("transformers", 1, 8)).notes)
    assert any("torchtitan and torchtune" in n for n in estimate(_spec("fsdp", 8, 4)).notes)
    assert any("no_sync" in n for n in estimate(_spec("fsdp", 8, 4, fsdpVersion=1)).notes)
    assert any("no_sync" in n for n in estimate(_spec("transformers", 2, 4)).notes)
    assert not any("accumulation" in n for n in estimate(_spec("deepspeed", 8, 4, zeroStage=2)).notes)
