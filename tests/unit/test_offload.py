"""CPU offload in training (estimator/offload.py): DeepSpeed ZeRO-Offload / offload_param and FSDP's CPU offload."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.errorband import runtime_of
from rackfit.estimator.offload import GB, fsdp_offloaded, offload_notes, zero_offloaded
from rackfit.spec import RULES, LLMWorkloadSpec, Training, parse_spec

_ZERO = dict(n=1000, d=4, full=True, compute_bytes=2, weights=2000, grads=500, optimizer=6000, kept_grads=0,
             held=500, cached=500, ipg=0, reduce_copy=0, largest=100)


def test_zero2_offload_keeps_the_16bit_params_and_a_largest_parameter_buffer():
    # stage_1_and_2.py cpu_offload: no grads_in_partition on the GPU, temp_grad_buffer_for_gpu_offload (100 x 2 bytes)
    # kept; before each gradient goes to the host, _has_inf_or_nan over the whole 16-bit gradient (from 0.13.3: fp32
    # copy, isnan, isinf, logical_or, .float() = 11 x 100) is the largest of the transients
    o = zero_offloaded(zero=2, overlap=False, offload_param=False, **_ZERO)
    assert (o.weights, o.grads, o.optimizer, o.step_extra, o.temp) == (2000, 200, 0, 0, 0)
    assert (o.held, o.cached, o.kept_grads, o.buckets_extra) == (200, 0, 200, 1100)
    # host: optimizer states and masters 6000, fp32 gradient partition 250 x 4, 16-bit host buffer 250 x 2
    assert o.host == 6000 + 1000 + 500


def test_zero12_offload_transients_follow_the_release():
    # copy_grads_in_partition (v0.10.0 - v0.19.5): set_norm_for_param_grad_in_gpu's .double() of the partition's
    # slice (8 bytes), the overflow tracker over the whole gradient with no fp16 gate, the slice's fp32 upcast (4)
    old = zero_offloaded(zero=2, overlap=False, offload_param=False, device_overflow_check=False, **_ZERO)
    assert old.buckets_extra == 100 * 8                  # fp64 norm copy over the fp32 copy (400) and upcast (400)
    new = zero_offloaded(zero=2, overlap=False, offload_param=False, device_overflow_check=True, **_ZERO)
    assert new.buckets_extra == 100 * 11
    # a largest tensor split over the partitions: the norm and upcast take the slice, the overflow check the whole
    split = zero_offloaded(zero=2, overlap=False, offload_param=False, device_overflow_check=False,
                           **{**_ZERO, "largest": 400})
    assert split.buckets_extra == max(250 * 8, 400 * 4)
    # fp32 training: .float() returns the gradient itself; no upcast, the masks and their .float() remain
    fp32 = zero_offloaded(zero=2, overlap=False, offload_param=False, device_overflow_check=True,
                          **{**_ZERO, "compute_bytes": 4})
    assert fp32.buckets_extra == max(100 * 8, 100 * 7)
    # ZeRO-3's offload path is unchanged: no such transient
    z3 = zero_offloaded(zero=3, overlap=True, offload_param=False, device_overflow_check=True, **_ZERO)
    assert z3.buckets_extra == 0


def test_zero2_offload_overflow_check_by_release_on_a_model():
    # deepseek-math-7b shapes (T1204) under ZeRO-2 with the optimizer offloaded: 0.13.3 on costs the 11-byte check
    # of the vocabulary matrix's gradient (102400 x 4096) where 0.13.2 costs its 8-byte norm copy
    arch = {"numLayers": 30, "hiddenSize": 4096, "intermediateSize": 11008, "numAttentionHeads": 32,
            "numKeyValueHeads": 32, "headDim": 128, "vocabSize": 102400, "tieWordEmbeddings": False}

    def total(version: str) -> int:
        return estimate(LLMWorkloadSpec.model_validate({
            "workload": "training", "model": {"architecture": arch}, "precision": "bf16",
            "parallelism": {"data": 2},
            "training": {"framework": "deepspeed", "zeroStage": 2, "microBatchSize": 1, "sequenceLength": 512,
                         "activationCheckpointing": "full", "offloadOptimizer": True, "overlapComm": True,
                         "deepspeedVersion": version}})).total_bytes

    assert total("0.13.3") > total("0.13.2")


def test_zero2_offload_under_overlap_keeps_the_reduction_copy():
    o = zero_offloaded(zero=2, overlap=True, offload_param=False, **{**_ZERO, "reduce_copy": 300})
    assert (o.grads, o.held, o.cached) == (200, 500, 300)


def test_zero1_without_overlap_keeps_every_16bit_gradient():
    # stage 1 without overlap_comm reduces after the backward: p.grad of the whole model (grads 2000) is on the GPU
    o = zero_offloaded(zero=1, overlap=False, offload_param=False, **{**_ZERO, "grads": 2000, "held": 2000})
    assert (o.grads, o.held, o.kept_grads) == (2200, 2200, 200)


def test_zero3_offload_keeps_only_the_ipg_bucket_and_with_offload_param_no_partition():
    # stage3.py: grad_partitions_flat_buffer on self.device (cpu); the IPG bucket stays
    args = {**_ZERO, "weights": 500, "grads": 250 * 2 + 64, "ipg": 64}
    o = zero_offloaded(zero=3, overlap=True, offload_param=False, **args)
    assert (o.weights, o.grads, o.held, o.optimizer, o.step_extra, o.temp) == (500, 64, 64, 0, 0, 0)
    assert o.host == 6000 + 250 * 4 + 250 * 2
    p = zero_offloaded(zero=3, overlap=True, offload_param=True, **args)
    assert (p.weights, p.host) == (0, o.host + 500)


def test_fsdp_offload_moves_every_sharded_state():
    o = fsdp_offloaded(weights=10, grads=20, optimizer=30)
    assert (o.weights, o.grads, o.optimizer, o.held, o.temp, o.host) == (0, 0, 0, 0, 0, 60)


def _spec(training: dict, data: int = 8) -> LLMWorkloadSpec:
    return LLMWorkloadSpec.model_validate({"workload": "training", "model": {"preset": "llama-3.1-8b"},
                                           "precision": "bf16", "parallelism": {"data": data}, "training": training})


def test_zero2_offload_on_llama_8b():
    base = estimate(_spec({"framework": "deepspeed", "zeroStage": 2}))
    off = estimate(_spec({"framework": "deepspeed", "zeroStage": 2, "offloadOptimizer": True}))
    assert off.breakdown.optimizer_states_bytes == 0
    assert off.breakdown.weights_bytes == base.breakdown.weights_bytes   # the 16-bit model stays whole on the GPU
    assert off.total_bytes < base.total_bytes
    assert any(n.startswith("offload:") for n in off.notes)


def test_unset_and_false_are_the_same_estimate():
    for tr in ({"framework": "deepspeed", "zeroStage": 3}, {"framework": "fsdp"}):
        key = "offloadParameters"
        assert estimate(_spec({**tr, key: False})).total_bytes == estimate(_spec(tr)).total_bytes


def test_fsdp_offload_on_llama_8b_keeps_the_gathered_blocks():
    off = estimate(_spec({"framework": "fsdp", "offloadParameters": True}))
    assert off.breakdown.gradients_bytes == 0 and off.breakdown.optimizer_states_bytes == 0
    assert off.breakdown.weights_bytes > 0   # each block's 16-bit copy is still gathered on the GPU


def test_rules():
    msgs = RULES["Training"]
    with pytest.raises(ValidationError, match="offloadOptimizer"):
        Training(framework="fsdp", offload_optimizer=True)
    with pytest.raises(ValidationError, match="offloadOptimizer"):
        Training(framework="deepspeed", zero_stage=0, offload_optimizer=True)
    with pytest.raises(ValidationError, match="offloadParameters"):
        Training(framework="deepspeed", zero_stage=2, offload_parameters=True)
    with pytest.raises(ValidationError, match="offloadParameters"):
        Training(framework="megatron", offload_parameters=True)
    assert "zeroStage 3" in msgs["offload_parameters"].message
    Training(framework="deepspeed", zero_stage=3, offload_parameters=True)
    Training(framework="fsdp", fsdp_version=1, offload_parameters=True)


def test_host_memory_note_against_gh200():
    gh200 = GPU(model="GH200", product="NVIDIA-GH200-480GB", memory_gb=96, memory_mib=97871, architecture="hopper",
                host_memory_gb=480)
    tr = Training(framework="fsdp", offload_parameters=True)
    note = offload_notes(tr, 20 * GB, 4, gh200.host_memory_gb)[0]
    assert "about 20.0 GB" in note and "80.0 GB over the job's 4 GPUs" in note and "fits in the 480 GB" in note
    assert "exceeds" in offload_notes(tr, 500 * GB, 4, 480)[0]
    assert offload_notes(Training(framework="fsdp"), 0, 4, 480) == []


def test_estimate_note_names_the_gh200_host_memory():
    gh200 = GPU(model="GH200", product="NVIDIA-GH200-480GB", memory_gb=96, memory_mib=97871, architecture="hopper",
                host_memory_gb=480)
    e = estimate(_spec({"framework": "deepspeed", "zeroStage": 3, "offloadOptimizer": True,
                        "offloadParameters": True}, data=4), gpu=gh200)
    note = next(n for n in e.notes if n.startswith("offload:"))
    # 8.03e9 parameters over 4 GPUs: 12 bytes of masters and AdamW states, 4 of fp32 gradients, 2 of the 16-bit
    # gradient partition and 2 of the 16-bit parameter partition, about 20 bytes a parameter of the partition
    assert "about 40.2 GB" in note and "fits in the 480 GB" in note


def test_offloaded_training_is_its_own_error_regime():
    """Its rows (nvidia-smi readings of ZeRO-3 offload, T230/T233) do not widen the band of DeepSpeed jobs that keep
    their states on the GPU."""
    base = dict(model=dict(preset="llama-3.1-8b"), workload="training")
    plain = parse_spec(dict(base, training=dict(framework="deepspeed", zeroStage=3)))
    off = parse_spec(dict(base, training=dict(framework="deepspeed", zeroStage=3, offloadOptimizer=True)))
    fsdp = parse_spec(dict(base, training=dict(framework="fsdp", offloadParameters=True)))
    assert (runtime_of(plain), runtime_of(off), runtime_of(fsdp)) == ("deepspeed", "deepspeed offload", "fsdp offload")


def test_zero12_offload_reduction_transient_is_not_at_the_loss_moment():
    # stage_1_and_2.py (v0.14.2): a bucket is reduced, and copy_grads_in_partition's norm / overflow-check copies made,
    # only from a gradient hook or the backward's epilogue; the first hook (the output projection's AccumulateGrad) runs
    # after the logits' gradients are freed. Qwen1.5-0.5B (T1381: 151,936-entry vocabulary, tied) at 2,048 tokens, b1:
    # the loss's moment is the peak and holds none of the transient, so the release's 11-byte check (0.13.3 on) and
    # the older 8-byte norm copy give the same backward peak, and it sits below the layer moment with the transient
    from rackfit.estimator import training_peak
    from rackfit.estimator.offload import reduction_after_loss

    arch = {"numLayers": 24, "hiddenSize": 1024, "intermediateSize": 2816, "numAttentionHeads": 16,
            "numKeyValueHeads": 16, "headDim": 64, "vocabSize": 151936, "tieWordEmbeddings": True,
            "attentionBias": True}

    def peak(version: str, seq: int):
        spec = LLMWorkloadSpec.model_validate({
            "workload": "training", "model": {"architecture": arch}, "precision": "fp16",
            "training": {"framework": "deepspeed", "zeroStage": 2, "microBatchSize": 1, "sequenceLength": seq,
                         "activationCheckpointing": "full", "offloadOptimizer": True, "deepspeedVersion": version,
                         "transformersVersion": "4.40.0"}})
        est = estimate(spec)
        return est, training_peak(spec, est.layout)

    new, r_new = peak("0.14.2", 2048)
    old, r_old = peak("0.13.2", 2048)
    assert new.peak_phase == old.peak_phase == "loss backward"
    assert r_new.backward_transient == r_old.backward_transient
    # the vocabulary matrix's 11-byte check: 155.6M x 11 bytes, not in the loss's moment
    assert new.breakdown.gradients_bytes < 151936 * 1024 * 11
    assert reduction_after_loss(100, 1100) == 1200


def test_zero12_offload_reduction_transient_meets_a_layer_moment():
    # a small vocabulary and wide layers: the recomputed layer beside the largest gradient's overflow check (an MLP
    # matrix of 8192 x 28672) outweighs the loss, and the release's check (11 bytes from 0.13.3, else the 8-byte norm
    # copy) shows there
    arch = {"numLayers": 4, "hiddenSize": 8192, "intermediateSize": 28672, "numAttentionHeads": 64,
            "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 8000, "tieWordEmbeddings": False}

    def est(version: str):
        return estimate(LLMWorkloadSpec.model_validate({
            "workload": "training", "model": {"architecture": arch}, "precision": "bf16",
            "training": {"framework": "deepspeed", "zeroStage": 2, "microBatchSize": 1, "sequenceLength": 8192,
                         "activationCheckpointing": "full", "offloadOptimizer": True,
                         "deepspeedVersion": version}}))

    new, old = est("0.14.2"), est("0.13.2")
    assert new.peak_phase in ("layer recompute", "backward end")
    assert new.total_bytes > old.total_bytes
