"""Query/key normalization (ModelArch.qk_norm): the Hugging Face config parsing, the Qwen3 presets, and the activation
bytes each runtime's q_norm / k_norm keep, computed by hand from the sources' formulas (docs/accuracy.md, "Query/key
normalization and the Qwen3 family")."""

from __future__ import annotations

import pytest

from rackfit.estimator.activations import _layer_bytes_per_token, compile_savings, qk_norm_bytes
from rackfit.estimator.framework_activations import (
    compiled_layer_bytes,
    eager_layer_bytes,
    megatron_layer_bytes,
    torchtitan_sac_bytes,
)
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import Architecture, ModelSource, Training

QWEN3 = resolve(ModelSource(preset="qwen3-14b"))
PLAIN = QWEN3.model_copy(update={"qk_norm": False})
# q and k of Qwen3-14B: (40 + 8) heads x 128
QK = (40 + 8) * 128


def test_qwen3_presets_have_qk_norm_and_their_config_shapes():
    a = resolve(ModelSource(preset="qwen3-30b-a3b"))
    assert a.qk_norm and a.num_experts == 128 and a.num_experts_per_token == 8 and a.moe_intermediate_size == 768
    assert a.max_position_embeddings == 40960 and a.num_key_value_heads == 4 and a.head_dim == 128
    assert resolve(ModelSource(preset="qwen3-235b-a22b")).num_layers == 94
    assert QWEN3.qk_norm and QWEN3.num_layers == 40 and QWEN3.intermediate_size == 17408
    assert not resolve(ModelSource(preset="qwen2.5-14b")).qk_norm
    # a user can switch it off over the preset
    off = resolve(ModelSource(preset="qwen3-14b", architecture=Architecture(qkNorm=False)))
    assert not off.qk_norm


@pytest.mark.parametrize("config, expected", [
    ({"model_type": "qwen3"}, True),
    ({"model_type": "qwen3_moe"}, True),
    ({"model_type": "olmo2"}, True),
    ({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}}, True),
    ({"model_type": "gemma3_text"}, True),
    ({"architectures": ["Qwen3ForCausalLM"]}, True),
    ({"model_type": "cohere", "use_qk_norm": True}, True),
    ({"model_type": "cohere", "use_qk_norm": False}, False),
    ({"model_type": "stablelm", "qk_layernorm": True}, True),
    ({"model_type": "qwen2"}, False),
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, False),
    ({"model_type": "gemma2"}, False),
])
def test_hf_config_sets_qk_norm_by_model_type(config, expected):
    base = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
            "vocab_size": 1000}
    assert bool(architecture_from_hf_config({**base, **config}).qk_norm) is expected


def test_norm_weights_are_counted():
    # q_norm and k_norm: head_dim each in every layer
    assert count_params(QWEN3).norms - count_params(PLAIN).norms == 2 * 40 * 128


def test_transformers_eager_qk_norm_keeps_fp32_upcast_normalised_copy_and_rstd():
    tr = Training(framework="deepspeed", method="full", microBatchSize=1, sequenceLength=1024)
    # Qwen3RMSNorm: fp32 upcast (4) + 16-bit normalised copy (2) an element, an fp32 rstd a head
    expected = 6 * QK + 4 * 48
    assert qk_norm_bytes(QWEN3, 1, 6) == expected
    with_norm = _layer_bytes_per_token(QWEN3, tr, 1, mixed=False)[0]
    without = _layer_bytes_per_token(PLAIN, tr, 1, mixed=False)[0]
    assert with_norm - without == expected
    # tensor parallel splits the heads
    assert _layer_bytes_per_token(QWEN3, tr, 2, mixed=False)[0] - _layer_bytes_per_token(PLAIN, tr, 2, False)[0] \
        == expected / 2
    # compiled: the 16-bit input and the rstd stay; the upcast and normalised copy are recomputed
    assert compile_savings(QWEN3, tr, 1) - compile_savings(PLAIN, tr, 1) == 4 * QK


@pytest.mark.parametrize("t", [1, 2])
def test_torchtitan_fused_qk_norm_keeps_its_16bit_input_and_rstd(t):
    tr = Training(framework="fsdp", method="full", microBatchSize=1, sequenceLength=1024)
    expected = (2 * QK + 4 * 48) / t
    assert eager_layer_bytes(QWEN3, tr, t) - eager_layer_bytes(PLAIN, tr, t) == pytest.approx(expected)
    trc = tr.model_copy(update={"compile": True})
    assert compiled_layer_bytes(QWEN3, trc, t) - compiled_layer_bytes(PLAIN, trc, t) == pytest.approx(expected)


def test_torchtitan_per_op_sac_saves_nothing_more():
    # the norms are not in the save list; wq's output (q_norm's input) is already a saved mm
    tr = Training(framework="fsdp", method="full", microBatchSize=1, sequenceLength=1024,
                  activationCheckpointing="selective")
    assert torchtitan_sac_bytes(QWEN3, tr, 1) == torchtitan_sac_bytes(PLAIN, tr, 1)


def test_megatron_qk_layernorm_keeps_te_norm_inputs_outside_core_attention():
    # T53's open-sci-ref 1.7B: 32 heads of 64, no GQA; TENorm saves the 16-bit input and an fp32 rsigma a head
    a = resolve(ModelSource(architecture=Architecture(numLayers=24, hiddenSize=2048, intermediateSize=8192,
                                                      numAttentionHeads=32, numKeyValueHeads=32, headDim=64,
                                                      vocabSize=50304, qkNorm=True)))
    plain = a.model_copy(update={"qk_norm": False})
    tr = Training(framework="megatron", method="full", microBatchSize=4, sequenceLength=4096,
                  activationCheckpointing="selective")
    per, core = megatron_layer_bytes(a, tr, 1, False)
    per0, core0 = megatron_layer_bytes(plain, tr, 1, False)
    assert per - per0 == 2 * 2 * 2048 + 4 * 64 and core == core0
    # 3.1 GiB over 4 x 4096 tokens and 24 layers
    assert (per - per0) * 4 * 4096 * 24 / 2**30 == pytest.approx(3.09, abs=0.01)
    assert megatron_layer_bytes(a, tr, 2, False)[0] - megatron_layer_bytes(plain, tr, 2, False)[0] == \
        pytest.approx((per - per0) / 2)


def test_inference_does_not_move():
    from rackfit.estimator.activations import inference_activation_bytes
    from rackfit.estimator.result import Layout
    assert inference_activation_bytes(QWEN3, Layout(), 8192, 4) == inference_activation_bytes(PLAIN, Layout(), 8192, 4)
