"""torchtitan's release-dependent memory (`training.torchtitanVersion`, issue 22): before 0.2 (PR 1094, July 2025) one
FSDP2 root group held embeddings, final norm and output (fsdp.fsdp2_root_group_extra); before 0.1 (PR 985,
March 2025) the final RMSNorm was torchtitan's eager one (framework_activations.eager_final_norm_bytes). Expected
bytes computed by hand from the source's layout."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp2_root_group_extra
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
VOCAB = 128256 * 4096          # one vocabulary matrix of Llama 3.1 8B (embeddings and output are untied)
T1 = dict(framework="fsdp", method="full", master_weights="fp32", optimizer="adamw", micro_batch_size=2,
          sequence_length=8192, activation_checkpointing="selective")


def _peak(layout: Layout, a=LLAMA, p=P, **training):
    tr = Training(**training)
    return runtime_peak(a, p, tr, "bf16", layout, 0)


def test_field_allowed_only_with_fsdp2_and_named_in_the_message():
    assert Training(framework="fsdp", torchtitan_version="0.0").torchtitan_version == "0.0"
    assert Training(framework="fsdp", fsdp_version=2, torchtitan_version="0.2.1").torchtitan_version == "0.2.1"
    for bad in (dict(framework="deepspeed", zero_stage=3), dict(framework="fsdp", fsdp_version=1),
                dict(framework="transformers"), dict(framework="megatron")):
        with pytest.raises(ValidationError, match="torchtitanVersion"):
            Training(**bad, torchtitan_version="0.1")
    with pytest.raises(ValidationError):
        Training(framework="fsdp", torchtitan_version="v0.1.0")


@pytest.mark.parametrize("version, root_group, eager_norm", [
    ("0.0", True, True),      # a commit before March 19, 2025 (T1, T2, T11-T13: 9dec370, December 2024)
    ("0.1", True, False),     # v0.1.0, or a commit from PR 985 to PR 1094 (T10: e7c0cae, June 2025)
    ("0.1.0", True, False),
    ("0.2", False, False),    # v0.2.0 and later: split groups, fused norm
    ("0.2.2", False, False),
    (None, False, False),     # unset: the current torchtitan
])
def test_release_helpers(version, root_group, eager_norm):
    tr = Training(framework="fsdp", torchtitan_version=version)
    assert tr.torchtitan_root_group is root_group
    assert tr.torchtitan_eager_final_norm is eager_norm


def test_root_group_extra_is_two_vocabulary_matrices_untied_and_nothing_tied():
    assert fsdp2_root_group_extra(P, Layout(data=8), 2) == 2 * VOCAB * 2 == 2_101_346_304   # 1.96 GiB
    assert fsdp2_root_group_extra(P, Layout(data=32, tensor=8), 2) == 2 * (VOCAB // 8) * 2
    tied = resolve(ModelSource(preset="llama-3.2-1b"))
    pt = count_params(tied)
    assert pt.lm_head == 0
    assert fsdp2_root_group_extra(pt, Layout(data=8), 2) == 0


def test_root_group_moves_the_fsdp_full_peak_by_that_much():
    layout = Layout(data=8)
    new = _peak(layout, **T1)
    old = _peak(layout, **T1, torchtitan_version="0.1")     # fused final norm: only the root group differs
    assert old.backward_transient - new.backward_transient == 2 * VOCAB * 2
    assert old.reused - new.reused == 2 * VOCAB * 2         # gathered parameters, reused as FSDP's are
    assert old.activations == new.activations
    # reshardAfterForward false: the root group adds the same (the pool's pair is the root and block 0)
    never = dict(T1, reshard_after_forward=False)
    assert (_peak(layout, **never, torchtitan_version="0.1").backward_transient
            - _peak(layout, **never).backward_transient) == 2 * VOCAB * 2


@pytest.mark.parametrize("layout", [Layout(data=1), Layout(data=8, tensor=8, pipeline=8)])
def test_root_group_not_counted_without_sharding_or_under_pipeline_stages(layout):
    tr = dict(T1, activation_checkpointing="full")
    assert (_peak(layout, **tr, torchtitan_version="0.1").backward_transient
            == _peak(layout, **tr).backward_transient)


def test_eager_final_norm_keeps_fp32_input_and_16bit_normalised_tensor():
    layout = Layout(data=8)
    tokens = 2 * 8192
    new = runtime_activations(LLAMA, Training(**T1), layout)
    old = runtime_activations(LLAMA, Training(**T1, torchtitan_version="0.0"), layout)
    extra = tokens * 4096 * (4 + 2)                           # 0.375 GiB on T1
    assert old.loss_forward - new.loss_forward == extra == 402_653_184
    assert old.loss_backward - new.loss_backward == extra
    assert old.kept == new.kept
    # release 0.1 has the fused nn.RMSNorm: nothing more
    assert runtime_activations(LLAMA, Training(**T1, torchtitan_version="0.1"), layout) == new


def test_eager_final_norm_split_over_the_sequence_under_tensor_parallel():
    llama70 = resolve(ModelSource(preset="llama-3.1-70b"))
    layout = Layout(data=32, tensor=8)
    t12 = dict(T1, micro_batch_size=16, activation_checkpointing="full", compile=True, compile_loss=False)
    tokens = 16 * 8192
    new = runtime_activations(llama70, Training(**t12), layout)
    old = runtime_activations(llama70, Training(**t12, torchtitan_version="0.0"), layout)
    assert old.loss_backward - new.loss_backward == tokens * 8192 * 6 // 8   # SequenceParallel norm: 0.75 GiB
    whole = dict(t12, sequence_parallel=False)
    assert (runtime_activations(llama70, Training(**whole, torchtitan_version="0.0"), layout).loss_backward
            - runtime_activations(llama70, Training(**whole), layout).loss_backward) == tokens * 8192 * 6


def test_eager_block_norms_without_checkpointing():
    # without checkpointing (and without compile) each block's two norms were eager too before 0.1: 4 + 2 bytes a
    # hidden element each where the fused nn.RMSNorm keeps its 16-bit input (2): 8 bytes a hidden element a layer more
    layout = Layout(data=8)
    tr = dict(T1, activation_checkpointing="none")
    tokens = 2 * 8192
    new = runtime_activations(LLAMA, Training(**tr), layout)
    old = runtime_activations(LLAMA, Training(**tr, torchtitan_version="0.0"), layout)
    assert old.kept - new.kept == pytest.approx(32 * tokens * 4096 * 8, abs=64)
