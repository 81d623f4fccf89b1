"""training.ligerKernel: Liger's kernels patched into transformers' model code under FSDP2 (NeMo Automodel's
NeMoAutoModelForCausalLM.from_pretrained, use_liger_kernel True by default): LigerRMSNorm keeps the 16-bit input and
the rstd, LigerSiLUMulFunction gate and up, so a layer keeps what torch.compile leaves of the eager code
(estimator/hf_fsdp2.py, liger)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import compile_savings
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
    dict(modelCode=None, fsdpVersion=1),                                          # FSDP1
    dict(framework="transformers", modelCode=None, loopKeepsOutput=None, adamwImplementation=None),  # HF Trainer
])
def test_liger_kernel_is_refused_outside_transformers_model_code_under_fsdp2(training):
    t = {k: v for k, v in {**AUTOMODEL, **training, "ligerKernel": True}.items() if v is not None}
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16", training=t))
    assert [path for path, _ in e.value.errors] == ["spec.training.ligerKernel"]
