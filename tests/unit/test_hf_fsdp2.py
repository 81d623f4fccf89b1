"""FSDP2 running Hugging Face transformers' model code (`training.modelCode: transformers`): accelerate's FSDP plugin
with fsdp_version 2, HF Trainer / TRL --fsdp with fsdp_version 2, transformers' tp_plan beside FSDP2. Each test
computes by hand, from transformers' modeling_llama.py and accelerate's fsdp_utils.py, what a rank keeps
(docs/accuracy.md, "FSDP2 with Hugging Face model code")."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import loss_parallel, runtime_activations, sequence_parallel
from rackfit.estimator.frameworks import runtime_notes, runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

LLAMA8 = resolve(ModelSource(preset="llama-3.1-8b"))
H, L, V, INTER = 4096, 32, 128256, 14336
TOKENS = 8192
# transformers' LlamaDecoderLayer a token, 16-bit: SDPA's q, k, v and output (2 x 4096 + 1024 + 1024 wide), the
# SwiGLU's gate, up, act(gate) and product (4 x 14336), two eager LlamaRMSNorms (fp32 upcast 4 + normalised copy 2
# + output 2 bytes a hidden element each)
ATTN = 2 * (2 * 4096 + 2 * 8 * 128)
MLP = 2 * 4 * INTER
HF_NORMS = 2 * (4 + 2 + 2) * H
# torchtitan's fused nn.RMSNorm: the 16-bit input kept, and the 16-bit output the matmuls save, each norm
TT_NORMS = 2 * (2 + 2) * H


def tr(**kw) -> Training:
    base = dict(framework="fsdp", method="full", masterWeights="fp32", microBatchSize=1, sequenceLength=TOKENS,
                activationCheckpointing="none", modelCode="transformers")
    base.update(kw)
    return Training(**base)


def test_eager_llama_rmsnorm_keeps_16_bytes_a_hidden_element_a_layer_where_torchtitan_keeps_8():
    hf = runtime_activations(LLAMA8, tr(), Layout(data=8))
    tt = runtime_activations(LLAMA8, tr(modelCode=None), Layout(data=8))
    assert hf.kept == L * TOKENS * (ATTN + MLP + HF_NORMS)
    assert tt.kept == L * TOKENS * (ATTN + MLP + TT_NORMS)
    assert hf.kept - tt.kept == 8 << 30  # 8 bytes x 4096 x 8192 tokens x 32 layers: 8 GiB


def test_tp_plan_keeps_the_norms_whole_and_splits_the_projections():
    """LlamaConfig.base_model_tp_plan: q/k/v/gate/up colwise, o/down rowwise, no norm and no sequence parallel: the
    heads and the MLP width split over t, the two norms' 16 bytes whole on every rank."""
    act = runtime_activations(LLAMA8, tr(), Layout(data=4, tensor=2))
    assert act.kept == L * TOKENS * ((ATTN + MLP) // 2 + HF_NORMS)
    assert not sequence_parallel(tr(), 2) and not loss_parallel(tr(), 2)
    # a plan that does split them is still said with the existing fields
    assert sequence_parallel(tr(sequenceParallel=True), 2) and loss_parallel(tr(lossParallel=True), 2)


def test_full_checkpointing_keeps_each_layers_whole_input_on_every_tensor_rank():
    """checkpoint_wrapper (accelerate's fsdp_activation_checkpointing) or HF's gradient_checkpointing_enable: each
    decoder layer's 16-bit input hidden_states, whole (Replicate under tp_plan); one layer recomputed."""
    act = runtime_activations(LLAMA8, tr(activationCheckpointing="full"), Layout(data=4, tensor=2))
    assert act.kept == L * TOKENS * 2 * H
    assert act.recompute == TOKENS * ((ATTN + MLP) // 2 + HF_NORMS)


def test_causal_lm_loss_gathers_the_whole_vocabulary_and_keeps_the_final_norm():
    """lm_head colwise_rep: the 16-bit logits whole on every rank; ForCausalLMLoss's fp32 upcast and log-softmax (the
    shifted fp32 copy too before 4.49.0); the final LlamaRMSNorm's 8 bytes a hidden element beside them."""
    final = TOKENS * H * 8
    act = runtime_activations(LLAMA8, tr(), Layout(data=4, tensor=2))
    assert act.loss_forward == TOKENS * V * (2 + 4 + 4) + final
    assert act.loss_backward == TOKENS * V * (4 + 4 + 4) + final
    old = runtime_activations(LLAMA8, tr(transformersVersion="4.48.1"), Layout(data=4, tensor=2))
    assert old.loss_forward == TOKENS * V * (2 + 4 + 4 + 4) + final


def test_accelerate_fsdp2_root_group_holds_embeddings_norm_and_lm_head():
    """fsdp2_prepare_model: fully_shard per decoder layer, then fully_shard(model): one root group, as torchtitan
    before 0.2, so the gathered bytes are those of torchtitanVersion 0.1 (both untied vocabulary matrices more)."""
    assert tr().torchtitan_root_group and not tr(modelCode=None).torchtitan_root_group
    p = count_params(LLAMA8)
    hf = runtime_peak(LLAMA8, p, tr(activationCheckpointing="full"), "bf16", Layout(data=8), 0)
    tt = runtime_peak(LLAMA8, p, tr(modelCode=None, activationCheckpointing="full"), "bf16", Layout(data=8), 0)
    old = runtime_peak(LLAMA8, p, tr(modelCode=None, activationCheckpointing="full", torchtitanVersion="0.1"),
                       "bf16", Layout(data=8), 0)
    assert hf.weights == old.weights
    vocab = V * H * 2
    # gathered at the loss's backward: two vocabulary matrices more than torchtitan 0.2's split groups
    assert hf.weights - tt.weights == 2 * vocab


def test_unset_model_code_keeps_every_existing_estimate():
    p = count_params(LLAMA8)
    for kw in (dict(), dict(sequenceLength=4096, activationCheckpointing="full")):
        for layout in (Layout(data=8), Layout(data=4, tensor=2)):
            assert runtime_peak(LLAMA8, p, tr(modelCode="torchtitan", **kw), "bf16", layout, 0) == \
                runtime_peak(LLAMA8, p, tr(modelCode=None, **kw), "bf16", layout, 0)
        one = dict(fsdpVersion=1, **kw)
        assert runtime_peak(LLAMA8, p, tr(**one), "bf16", Layout(data=8), 0) == \
            runtime_peak(LLAMA8, p, tr(modelCode=None, **one), "bf16", Layout(data=8), 0)


def test_notes_say_the_model_code():
    notes = runtime_notes(tr(), Layout(data=4, tensor=2), "bf16")
    assert any("modelCode transformers" in n and "tp_plan" in n for n in notes)
    selective = runtime_notes(tr(activationCheckpointing="selective"), Layout(data=8), "bf16")
    assert not any("per-op SAC" in n for n in selective)


def _spec(**training):
    return {"model": {"preset": "llama-3.1-8b"}, "workload": "training",
            "training": {"framework": "fsdp", **training}}


@pytest.mark.parametrize("training, field", [
    (dict(modelCode="torchtitan", fsdpVersion=1), "spec.training.modelCode"),
    (dict(framework="deepspeed", modelCode="transformers"), "spec.training.modelCode"),
    (dict(modelCode="transformers", torchtitanVersion="0.2"), "spec.training.torchtitanVersion"),
    (dict(transformersVersion="4.48.1"), "spec.training.transformersVersion"),
])
def test_spec_refuses(training, field):
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(_spec(**training))
    assert field in str(e.value)


def test_spec_accepts_transformers_version_with_hf_model_code():
    s = parse_spec(_spec(modelCode="transformers", transformersVersion="4.48.1"))
    assert s.training.hf_model_code and s.training.copies_shifted_logits
    assert parse_spec(_spec(fsdpVersion=1)).training.hf_model_code
    assert not parse_spec(_spec()).training.hf_model_code


def test_accelerate_reduces_in_16_bits():
    """accelerate's FSDP2 MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16): a block's reduce-scatter input
    is 16-bit where torchtitan's mixed_precision_reduce float32 makes it fp32. At 1 x 128 tokens the peak is the next
    layer's recompute: the sharded fp32 gradients, the last block's 16-bit reduce-scatter input and the next block's
    16-bit gradients, and the root group's output gradient, kept unreduced to the end."""
    from rackfit.estimator.fsdp import largest_layer_params

    p = count_params(LLAMA8)
    r = runtime_peak(LLAMA8, p, tr(activationCheckpointing="full", sequenceLength=128), "bf16", Layout(data=8), 0)
    layer = largest_layer_params(LLAMA8, p)
    assert r.phase == "next layer recompute"
    assert r.gradients == p.total * 4 // 8 + layer * 2 + layer * 2 + p.embedding * 2


def test_gradient_accumulation_under_accelerate_no_sync_holds_every_unsharded_16_bit_gradient():
    """HF Trainer runs every micro-batch but the last under accelerate's no_sync, which under FSDP2 is
    set_requires_gradient_sync(False): each group's post_backward keeps its unsharded gradient (bf16: the reduce
    dtype equals the param dtype), the whole model's 16-bit gradients, as FSDP1 under no_sync."""
    from rackfit.estimator.accumulation import accumulation_notes, runtime_accumulated_grads

    layout = Layout(data=8)
    acc = tr(gradientAccumulationSteps=4)
    assert runtime_accumulated_grads(acc, layout, 100, 10, 5, 1000) == (1010, 5)
    assert runtime_accumulated_grads(tr(modelCode=None, gradientAccumulationSteps=4), layout, 100, 10, 5, 1000) == \
        (100, 0)
    assert any("no_sync" in n for n in accumulation_notes(acc, layout))
    p = count_params(LLAMA8)
    one = runtime_peak(LLAMA8, p, tr(activationCheckpointing="full"), "bf16", layout, 0)
    four = runtime_peak(LLAMA8, p, acc.model_copy(update={"activation_checkpointing": "full"}), "bf16", layout, 0)
    assert four.gradients - one.gradients == p.total * 2


def test_accelerate_1_8_to_1_14_checkpoints_each_child_of_the_layer():
    """fsdp2_apply_ac from accelerate 1.8.0 (d2e6b031) to 1.14.x wraps each module whose parent the policy matches:
    input_layernorm, self_attn, post_attention_layernorm and mlp, each a non-reentrant checkpoint keeping its own
    input - the layer's input, the first norm's output, the residual sum and the second norm's output, 4 x 2 bytes a
    hidden element - and the backward recomputes one child at a time (the MLP with the norms, the larger here).
    Before 1.8.0, from 1.15.0 (PR 4172), unset (a current release) or without fsdpActivationCheckpointing
    (transformers' gradient_checkpointing): the layer's input and the whole layer recomputed."""
    child = tr(activationCheckpointing="full", fsdpActivationCheckpointing=True, accelerateVersion="1.11.0")
    act = runtime_activations(LLAMA8, child, Layout(data=8))
    assert act.kept == L * TOKENS * 4 * 2 * H
    assert act.recompute == TOKENS * max(ATTN, MLP + HF_NORMS) == TOKENS * (MLP + HF_NORMS)
    layer = runtime_activations(LLAMA8, tr(activationCheckpointing="full"), Layout(data=8))
    assert layer.kept == L * TOKENS * 2 * H and layer.recompute == TOKENS * (ATTN + MLP + HF_NORMS)
    for kw in (dict(accelerateVersion="1.7.0"), dict(accelerateVersion="1.15.0"), dict(),
               dict(fsdpActivationCheckpointing=False, accelerateVersion="1.11.0")):
        other = runtime_activations(LLAMA8, tr(activationCheckpointing="full", **kw), Layout(data=8))
        assert (other.kept, other.recompute) == (layer.kept, layer.recompute), kw
    # the children's inputs are whole on every tensor rank: tp_plan replicates the norms and the residual stream
    tp = runtime_activations(LLAMA8, child.model_copy(), Layout(data=4, tensor=2))
    assert tp.kept == L * TOKENS * 4 * 2 * H


def test_fsdp_activation_checkpointing_only_under_accelerates_fsdp2_with_full_checkpointing():
    with pytest.raises(ValueError, match="fsdpActivationCheckpointing"):
        tr(fsdpActivationCheckpointing=True)  # activationCheckpointing none
    with pytest.raises(ValueError, match="fsdpActivationCheckpointing"):
        tr(activationCheckpointing="full", fsdpActivationCheckpointing=True, modelCode=None)
