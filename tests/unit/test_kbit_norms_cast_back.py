"""training.kbitNormsFp32 (issue 22, T390): axolotl's load_model casts the norms, embed_tokens and lm_head back to the
16-bit dtype after peft's prepare_model_for_kbit_training (src/axolotl/utils/models.py from 1991946c5, September
2023), so a QLoRA run's checkpointed layer inputs are 16-bit, not the fp32 of TRL's recipe."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.estimator.training import kbit_fp32_residual
from rackfit.spec import InvalidWorkload, Training, parse_spec
from rackfit.units import GiB

MISTRAL = dict(numLayers=32, hiddenSize=4096, intermediateSize=14336, numAttentionHeads=32, numKeyValueHeads=8,
               headDim=128, vocabSize=32000, tieWordEmbeddings=False)


def _qlora(**t):
    base = dict(framework="transformers", method="qlora", loraRank=32, optimizer="adamw8bit", microBatchSize=2,
                sequenceLength=8192, activationCheckpointing="full", flashAttention=True, transformersVersion="4.34.0")
    return parse_spec(dict(model=dict(architecture=MISTRAL), workload="training", precision="nf4",
                           training={**base, **t}))


def test_cast_back_drops_the_fp32_residual_only_when_set_false():
    assert kbit_fp32_residual(Training(framework="transformers", method="qlora"), "nf4")
    assert kbit_fp32_residual(Training(framework="transformers", method="qlora", kbitNormsFp32=True), "nf4")
    assert not kbit_fp32_residual(Training(framework="transformers", method="qlora", kbitNormsFp32=False), "nf4")
    assert not kbit_fp32_residual(Training(framework="transformers", method="lora", kbitNormsFp32=False), "int8")


def test_cast_back_halves_the_checkpointed_layer_inputs_and_the_vocab_upcast():
    fp32, cast = estimate(_qlora()), estimate(_qlora(kbitNormsFp32=False))
    # 32 checkpointed layer inputs of 2 x 8192 tokens x 4096: 4 bytes each against 2
    layer_inputs = 32 * 2 * 8192 * 4096
    assert fp32.breakdown.activations_bytes - cast.breakdown.activations_bytes >= 2 * layer_inputs
    # before transformers 4.36 (TRL without peft_module_casting_to_bf16) the fp32 embeddings and head counted 2 bytes
    # a parameter more; axolotl's cast puts them back in 16 bits: 2 x 32000 x 4096 x 2 bytes plus the norms
    vocab = 2 * 32000 * 4096 * 2
    assert vocab <= fp32.breakdown.weights_bytes - cast.breakdown.weights_bytes < vocab + GiB // 1024
    assert cast.total_bytes < fp32.total_bytes


def test_the_field_belongs_to_adapters_under_transformers():
    with pytest.raises(InvalidWorkload, match="kbitNormsFp32"):
        _qlora(framework="deepspeed", transformersVersion=None, kbitNormsFp32=False)
    with pytest.raises(InvalidWorkload, match="kbitNormsFp32"):
        parse_spec(dict(model=dict(architecture=MISTRAL), workload="training", precision="bf16",
                        training=dict(framework="transformers", method="full", kbitNormsFp32=False)))


def test_a_16_bit_lora_base_has_no_kbit_prepare_to_say_anything_about():
    with pytest.raises(InvalidWorkload, match=r"spec\.training\.kbitNormsFp32: .*4- or 8-bit base"):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                        training=dict(method="lora", kbitNormsFp32=False)))
    assert parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="int8",
                           training=dict(method="lora", kbitNormsFp32=False))).training.kbit_norms_fp32 is False
