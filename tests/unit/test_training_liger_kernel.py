"""training.ligerKernel: Liger's kernels patched into transformers' model code: under FSDP2 (NeMo Automodel's
NeMoAutoModelForCausalLM.from_pretrained, use_liger_kernel True by default) and under the HF Trainer's
use_liger_kernel (framework transformers, deepspeed, FSDP1): LigerRMSNorm keeps the 16-bit input and
the rstd, LigerSiLUMulFunction gate and up, so a layer keeps what torch.compile leaves of the eager code
(estimator/hf_fsdp2.py, liger)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import compile_savings, liger_savings, training_activations
from rackfit.estimator.framework_activations import layer_bytes, runtime_activations
from rackfit.estimator.hf_fsdp2 import final_norm_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

# T1540's job: Llama-3.2-1B, NeMo Automodel's train_ft, pure bf16 under FSDP2 over 8 GPUs
AUTOMODEL = dict(framework="fsdp", method="full", masterWeights="none", optimizer="adamw", microBatchSize=8,
                 sequenceLength=2048, activationCheckpointing="none", adamwImplementation="foreach",
                 modelCode="transformers", loopKeepsOutput=True, transformersVersion="4.55.4")


def _spec(**training):
    t = {k: v for k, v in {**AUTOMODEL, **training}.items() if v is not None}
    return parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16", training=t,
                           parallelism=dict(data=8)))


def test_a_layer_keeps_what_compile_leaves():
    """Llama-3.2-1B: two norms' fp32 upcast and normalised copy (8 bytes a hidden element) and act(gate) (2 bytes an
    intermediate element) less: 8 x 2048 + 2 x 8192 = 32,768 bytes a token and layer."""
    on, off = _spec(ligerKernel=True), _spec()
    arch = resolve(on.model)
    assert compile_savings(arch, on.training, 1) == 8 * 2048 + 2 * 8192
    assert layer_bytes(arch, off.training, 1) - layer_bytes(arch, on.training, 1) == 8 * 2048 + 2 * 8192


def test_the_final_norm_keeps_its_input_and_output():
    on, off = _spec(ligerKernel=True), _spec()
    arch = resolve(on.model)
    assert final_norm_bytes(arch, off.training) == 8 * 2048 * 2048 * 8
    assert final_norm_bytes(arch, on.training) == 8 * 2048 * 2048 * 4


def test_the_loss_is_unchanged_and_the_estimate_drops():
    """The model is called without labels: Liger's forward returns the logits, the loss buffers are transformers'."""
    on, off = _spec(ligerKernel=True), _spec()
    arch = resolve(on.model)
    a_on, a_off = (runtime_activations(arch, s.training, Layout(data=8)) for s in (on, off))
    assert a_off.kept - a_on.kept == 16 * 8 * 2048 * (8 * 2048 + 2 * 8192)
    assert estimate(on).total_bytes < estimate(off).total_bytes
    assert estimate(_spec(ligerKernel=False)).total_bytes == estimate(off).total_bytes


def test_under_compile_it_changes_nothing():
    assert estimate(_spec(compile=True, ligerKernel=True)).total_bytes == estimate(_spec(compile=True)).total_bytes


@pytest.mark.parametrize("training", [
    dict(modelCode=None, loopKeepsOutput=None, transformersVersion=None),        # torchtitan's model code
    dict(framework="megatron", modelCode=None, loopKeepsOutput=None, adamwImplementation=None,
         transformersVersion=None),
])
def test_liger_kernel_is_refused_outside_transformers_model_code(training):
    t = {k: v for k, v in {**AUTOMODEL, **training, "ligerKernel": True}.items() if v is not None}
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16", training=t))
    assert "spec.training.ligerKernel" in [path for path, _ in e.value.errors]


# The HF Trainer's use_liger_kernel (ms-swift's --use_liger_kernel, TRL's use_liger_kernel): T1561's one-GPU run
TRAINER = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw", microBatchSize=1,
               sequenceLength=8192, activationCheckpointing="none", flashAttention=True)


def _trainer(preset="llama-3.2-1b", precision="bf16", parallelism=None, **training):
    t = {k: v for k, v in {**TRAINER, **training}.items() if v is not None}
    return parse_spec(dict(model=dict(preset=preset), workload="training", precision=precision, training=t,
                           parallelism=parallelism or dict(data=1)))


def _kept(spec):
    return training_activations(resolve(spec.model), spec.training, Layout(), False).layers


def test_hf_trainer_full_fine_tune_drops_the_norms_copies_and_act_gate():
    """Llama-3.2-1B, pure bf16: two norms x 4 bytes a hidden element and act(gate), 16 layers, 8,192 tokens."""
    on, off = _trainer(ligerKernel=True), _trainer()
    assert _kept(off) - _kept(on) == 16 * 8192 * (2 * 4 * 2048 + 2 * 8192)
    assert estimate(on).total_bytes < estimate(off).total_bytes


def test_under_lora_the_frozen_norm_saves_no_normalised_copy():
    """LoRA on a 16-bit residual: the fp32 upcast (4) against Liger's 16-bit input (2), a norm; act(gate) as before."""
    on, off = _trainer(method="lora", ligerKernel=True), _trainer(method="lora")
    arch = resolve(on.model)
    assert liger_savings(arch, on.training, 1) == 2 * 2 * 2048 + 2 * 8192
    assert _kept(off) - _kept(on) == 16 * 8192 * (2 * 2 * 2048 + 2 * 8192)


def test_qlora_fp32_residual_keeps_the_norms():
    """QLoRA's fp32 norms (prepare_model_for_kbit_training): X is the fp32 upcast itself; only act(gate) goes."""
    on = _trainer(method="qlora", precision="nf4", ligerKernel=True)
    arch = resolve(on.model)
    assert liger_savings(arch, on.training, 1, fp32_residual=True) == 2 * 8192


def test_qk_norms_and_moe_experts_are_left_as_they_are():
    """Qwen3's q_norm / k_norm stay transformers' under the instance patch: the saving is the norms' and act(gate)'s
    alone; an MoE's experts are not counted."""
    spec = _trainer(preset="qwen3-8b", ligerKernel=True)
    arch = resolve(spec.model)
    assert liger_savings(arch, spec.training, 1) == 2 * 4 * arch.hidden_size + 2 * arch.intermediate_size
    assert compile_savings(arch, spec.training, 1) > liger_savings(arch, spec.training, 1)
    moe = _trainer(preset="mixtral-8x7b", ligerKernel=True)
    assert liger_savings(resolve(moe.model), moe.training, 1) == 2 * 4 * resolve(moe.model).hidden_size


@pytest.mark.parametrize("training", [
    dict(framework="deepspeed", zeroStage=3, masterWeights="fp32"),
    dict(framework="fsdp", fsdpVersion=1, masterWeights="fp32"),
])
def test_deepspeed_and_fsdp1_count_the_same_layer(training):
    on, off = _trainer(parallelism=dict(data=4), ligerKernel=True, **training), \
        _trainer(parallelism=dict(data=4), **training)
    a_on, a_off = (runtime_activations(resolve(s.model), s.training, Layout(data=4)) for s in (on, off))
    assert a_off.kept - a_on.kept == 16 * 8192 * (2 * 4 * 2048 + 2 * 8192)


def test_under_full_checkpointing_only_the_recomputed_layer_changes():
    on, off = _trainer(activationCheckpointing="full", ligerKernel=True), _trainer(activationCheckpointing="full")
    a_on, a_off = (training_activations(resolve(s.model), s.training, Layout(), False) for s in (on, off))
    assert a_on.layers == a_off.layers
    assert a_off.recompute - a_on.recompute == 8192 * (2 * 4 * 2048 + 2 * 8192)
