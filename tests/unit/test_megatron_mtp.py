"""Megatron-Core's multi-token prediction (issue 22, `training.mtpNumLayers`): the MTP layer's parameters and the word
embedding on the last stage, and what its micro-batch keeps there, against counts by hand from Megatron-LM d98e8a6
(multi_token_prediction.py, gpt_model.py)."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import _tokens, megatron_layer_bytes, runtime_activations
from rackfit.estimator.frameworks import megatron_expert_split, stage_params
from rackfit.estimator.megatron_mtp import kept_bytes_per_token, layer_params
from rackfit.estimator.megatron_mtp import stage_params as mtp_stage_params
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training

# 8 x 512, 8 heads, GELU experts of 1024, 8 experts top-2 and one shared expert, vocab 50304 untied
MOE = ModelArch(name="gpt-moe", num_layers=8, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                num_key_value_heads=8, head_dim=64, vocab_size=50304, tie_word_embeddings=False, gated_mlp=False,
                num_experts=8, num_experts_per_token=2, moe_intermediate_size=1024, num_shared_experts=1)
DENSE = ModelArch(name="gpt-dense", num_layers=8, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                  num_key_value_heads=8, head_dim=64, vocab_size=50304, tie_word_embeddings=True, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=2,
            sequenceLength=1024, activationCheckpointing="none")


def tr(**kw) -> Training:
    return Training(**{**BASE, **kw})


def test_one_mtp_layer_is_the_last_decoder_layer_with_its_norms_and_projection():
    """attention 4 x 512^2 = 1,048,576; norms 2 x 512 (layer) + 3 x 512 (enorm, hnorm, final); eh_proj 2 x 512^2 =
    524,288; MoE: router 8 x 512, shared expert 2 x 512 x 1024, routed 8 x 2 x 512 x 1024 = 8,388,608."""
    assert layer_params(MOE) == (1_048_576 + 5 * 512 + 524_288 + 1_048_576 + 8 * 512, 8_388_608)
    # a dense model's MTP layer has the dense MLP, 2 x 512 x 2048
    assert layer_params(DENSE) == (1_048_576 + 5 * 512 + 524_288 + 2_097_152, 0)


def test_the_last_stage_also_builds_the_word_embedding_under_pipeline_parallel():
    dense, experts = layer_params(MOE)
    assert mtp_stage_params(MOE, tr(mtpNumLayers=1), 2) == (dense + 50304 * 512, experts)
    assert mtp_stage_params(MOE, tr(mtpNumLayers=2), 1) == (2 * dense, 2 * experts)   # one stage: already there
    assert mtp_stage_params(MOE, tr(), 2) == (0, 0)
    p = count_params(MOE)
    assert stage_params(MOE, p, tr(mtpNumLayers=1), 2) - stage_params(MOE, p, tr(), 2) == dense + experts + 50304 * 512
    assert stage_params(MOE, p, tr(mtpNumLayers=1), 1) == p.total + dense + experts
    # the routed experts go to the expert split: EP 4, ETP 1 at TP 2 -> 1/4 of the MTP layer's experts more
    lay = Layout(tensor=2, pipeline=2, data=2, expert=4)
    t = tr(mtpNumLayers=1, expertTensorParallel=1)
    base = megatron_expert_split(MOE, p, tr(expertTensorParallel=1), lay)
    mtp = megatron_expert_split(MOE, p, t, lay)
    assert mtp[1] - base[1] == experts // 4
    assert mtp[0] - base[0] in ((dense + 50304 * 512) // 2, (dense + 50304 * 512) // 2 + 1)


def test_the_mtp_micro_batch_and_its_softmax_are_kept_on_the_last_stage_only():
    """Per token at TP 2 with sequence parallel: the layer's own bytes, 6 x 512 x 2 / 2 B of norms and projection input,
    and the fp32 softmax of 50304 / 2 logits; the first stage keeps nothing more."""
    per, _core = megatron_layer_bytes(MOE, tr(sequenceParallel=True), 2, True)
    t = tr(sequenceParallel=True, mtpNumLayers=1)
    expected = per + 6 * 512 * 2 / 2 + 4 * 50304 / 2
    assert kept_bytes_per_token(MOE, t, 2, True, per) == pytest.approx(expected)
    tokens = _tokens(t)
    lay = Layout(tensor=2, pipeline=2)
    last = runtime_activations(MOE, t, lay, "last").kept - runtime_activations(MOE, tr(sequenceParallel=True), lay,
                                                                                 "last").kept
    assert last == int(expected * tokens)
    assert runtime_activations(MOE, t, lay, "first").kept == runtime_activations(MOE, tr(sequenceParallel=True), lay,
                                                                                   "first").kept
    # one stage: added to the kept activations as well
    one = Layout(tensor=2)
    assert runtime_activations(MOE, t, one).kept - runtime_activations(MOE, tr(sequenceParallel=True), one).kept \
        == int(expected * tokens)


def test_full_recompute_keeps_the_checkpointed_inputs_only():
    """_checkpointed_forward: the hidden states and the embedded input, 2 x 512 x 2 B, no sequence parallel."""
    t = tr(activationCheckpointing="full", mtpNumLayers=1)
    assert kept_bytes_per_token(MOE, t, 1, False, 1024.0) == pytest.approx(2 * 512 * 2 + 4 * 50304)


def test_mtp_num_layers_is_a_positive_megatron_flag():
    with pytest.raises(ValueError, match="mtpNumLayers is Megatron's --mtp-num-layers"):
        Training(framework="fsdp", method="full", mtpNumLayers=1)
    with pytest.raises(ValueError):
        tr(mtpNumLayers=0)
    assert kept_bytes_per_token(MOE, tr(), 2, True, 100.0) == 0.0
