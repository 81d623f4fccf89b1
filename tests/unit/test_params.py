"""Parameter counts of every preset against docs/reference/memory-model.md §3, architecture overrides and
Hugging Face config.json parsing."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator.params import count_params
from rackfit.models import presets, resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import Architecture, ModelSource


def arch(preset: str, **overrides):
    src = ModelSource(preset=preset, architecture=Architecture(**overrides) if overrides else None)
    return resolve(src)


# (preset, published total, rel tolerance): docs/reference/memory-model.md §3 "Params" column.
TOTALS = [
    ("llama-3.2-1b", 1.236e9, 5e-4),
    ("llama-3.2-3b", 3.213e9, 5e-4),
    ("llama-3.1-8b", 8.030e9, 5e-4),
    ("llama-3.1-70b", 70.554e9, 5e-5),
    ("llama-3.1-405b", 405.853e9, 5e-5),
    ("qwen2.5-7b", 7.616e9, 5e-4),
    ("qwen2.5-14b", 14.770e9, 5e-4),
    ("qwen2.5-32b", 32.764e9, 5e-5),
    ("qwen2.5-72b", 72.706e9, 5e-5),
    ("mistral-7b-v0.3", 7.248e9, 5e-4),
    ("mixtral-8x7b", 46.70e9, 5e-4),
    ("falcon-180b", 178.6e9, 2e-3),
    ("nemotron-4-340b", 341e9, 2e-3),
    ("deepseek-v3", 671e9, 1e-3),
    ("gpt-oss-120b", 116.8e9, 1e-3),
    ("gemma-2-27b", 27.23e9, 5e-4),
    ("llama-4-scout", 109e9, 5e-3),  # Meta's "109B total": 107.77B of text and the 0.83B vision tower
    # published quantized checkpoints: the base shape (tests/unit/test_quantized.py checks their bytes)
    ("llama-3.1-405b-instruct-fp8", 405.853e9, 5e-5),
    ("deepseek-v3-fp8", 671e9, 1e-3),
    ("gpt-oss-120b-mxfp4", 116.8e9, 1e-3),
    ("llama-3-8b-bnb-4bit-fp4", 8.030e9, 5e-4),  # Llama 3 8B: the published count, as llama-3.1-8b
    ("qwen2.5-72b-instruct-awq", 72.958e9, 5e-5),  # (computed) its MLP padded to 29696
    # Qwen3 model cards' "Number of Parameters" (one decimal): 8.2B, 14.8B, 32.8B, 30.5B, 235B
    ("qwen3-8b", 8.2e9, 5e-3),
    ("qwen3-14b", 14.8e9, 5e-3),
    ("qwen3-32b", 32.8e9, 5e-3),
    ("qwen3-30b-a3b", 30.5e9, 5e-3),
    ("qwen3-235b-a22b", 235e9, 5e-3),
    ("qwen3-next-80b-a3b", 79_674_391_296, 1e-5),  # safetensors total (Qwen3-Coder-Next, the same shape)
    # the model card's "35B" total (vision tower included, the MTP layer not); computed: 35,107,115,376
    ("qwen3.6-35b-a3b-nvfp4", 35.1e9, 1e-2),
    ("kimi-k2-thinking", 1.0264e12, 1e-4),  # (computed) Moonshot's "1T total": 384 experts x 60 MoE layers
    ("grok-2", 269.56e9, 5e-4),  # SGLang 0.5.2rc2's "#parameters (actual): 269.56 B" (S1343's log)
]


def test_every_preset_has_a_pinned_count():
    assert {p for p, _, _ in TOTALS} == set(presets())


@pytest.mark.parametrize("preset,expected,rel", TOTALS, ids=[t[0] for t in TOTALS])
def test_preset_parameter_count(preset, expected, rel):
    assert count_params(arch(preset)).total == pytest.approx(expected, rel=rel)


def test_qwen25_32b_exact():
    assert count_params(arch("qwen2.5-32b")).total == 32_763_876_352


def test_llama_8b_exact_and_dense_active_equals_total():
    p = count_params(arch("llama-3.1-8b"))
    assert p.total == 8_030_261_248
    assert p.active == p.total and p.experts == 0


def test_nemotron_embedding_share():
    p = count_params(arch("nemotron-4-340b"))
    assert p.embedding == pytest.approx(4.72e9, rel=1e-3)  # 256000 x 18432; untied: 9.4B with lm_head
    assert p.embedding + p.lm_head == pytest.approx(9.4e9, rel=5e-3)
    assert p.total - p.embedding - p.lm_head == pytest.approx(331.6e9, rel=2e-3)


def test_mixtral_active():
    p = count_params(arch("mixtral-8x7b"))
    assert p.total == pytest.approx(46.70e9, rel=5e-4)
    assert p.active == pytest.approx(12.88e9, rel=5e-4)


def test_deepseek_v3_active():
    p = count_params(arch("deepseek-v3"))
    assert p.active == pytest.approx(37e9, rel=0.02)
    assert p.experts > 0.9 * p.total  # routed experts dominate


def test_gpt_oss_active_excluding_unembedding():
    # OpenAI's model card: 5.13B active per token, counted without the (untied) embedding matrix
    p = count_params(arch("gpt-oss-120b"))
    assert p.active - p.embedding == pytest.approx(5.13e9, rel=0.01)


def test_tied_embeddings_have_no_lm_head():
    for name in ("llama-3.2-1b", "gemma-2-27b", "falcon-180b"):
        p = count_params(arch(name))
        assert p.lm_head == 0 and p.embedding > 0
    p = count_params(arch("llama-3.1-8b"))
    assert p.lm_head == p.embedding == 128256 * 4096


# --- overrides -------------------------------------------------------------------------------------

def test_override_layers_changes_count_by_whole_layers():
    base, deeper = count_params(arch("llama-3.1-8b")), count_params(arch("llama-3.1-8b", num_layers=40))
    per_layer = (base.total - base.embedding - base.lm_head - base.norms) // 32
    assert deeper.total - base.total == 8 * per_layer + 8 * 2 * 4096  # 8 layers + their two norms each


def test_override_keeps_other_preset_fields():
    a = arch("llama-3.1-70b", vocab_size=32000)
    assert (a.num_layers, a.hidden_size, a.num_key_value_heads, a.vocab_size) == (80, 8192, 8, 32000)
    assert count_params(a).total < count_params(arch("llama-3.1-70b")).total


def test_override_tie_embeddings():
    untied, tied = count_params(arch("llama-3.1-8b")), count_params(arch("llama-3.1-8b", tie_word_embeddings=True))
    assert untied.total - tied.total == 128256 * 4096


def test_override_attention_bias_adds_q_k_v_biases():
    a, b = count_params(arch("llama-3.1-8b")), count_params(arch("llama-3.1-8b", attention_bias=True))
    assert b.total - a.total == 32 * (32 * 128 + 2 * 8 * 128)


def test_override_num_experts_on_mixtral():
    a = count_params(arch("mixtral-8x7b", num_experts=16))
    b = count_params(arch("mixtral-8x7b"))
    assert a.experts == 2 * b.experts
    assert a.active_experts == b.active_experts


def test_override_invalid_kv_heads_named():
    with pytest.raises(InvalidWorkload) as e:
        arch("llama-3.1-8b", num_key_value_heads=5)
    assert [p for p, _ in e.value.errors] == ["spec.model.architecture.numKeyValueHeads"]


def test_architecture_alone_needs_dense_core():
    with pytest.raises(InvalidWorkload) as e:
        resolve(ModelSource(architecture=Architecture(num_layers=2, hidden_size=64)))
    paths = {p for p, _ in e.value.errors}
    assert paths == {"spec.model.architecture.intermediateSize", "spec.model.architecture.numAttentionHeads",
                     "spec.model.architecture.vocabSize"}


def test_architecture_alone_defaults():
    a = resolve(ModelSource(architecture=Architecture(num_layers=2, hidden_size=256, intermediate_size=512,
                                                      num_attention_heads=4, vocab_size=1000)))
    assert a.num_key_value_heads == 4 and a.head_dim == 64 and a.name == "custom"


def test_preset_lookup_case_insensitive():
    assert count_params(resolve(ModelSource(preset="Llama-3.1-8B"))).total == 8_030_261_248


# --- Hugging Face config.json ----------------------------------------------------------------------

LLAMA_8B_CONFIG = {
    "_name_or_path": "meta-llama/Llama-3.1-8B", "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    "attention_bias": False, "rope_theta": 500000.0, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
}

MIXTRAL_CONFIG = {
    "model_type": "mixtral", "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000,
    "num_local_experts": 8, "num_experts_per_tok": 2, "tie_word_embeddings": False, "sliding_window": None,
}

DEEPSEEK_V3_CONFIG = {
    "model_type": "deepseek_v3", "hidden_act": "silu", "hidden_size": 7168, "intermediate_size": 18432,
    "moe_intermediate_size": 2048, "num_attention_heads": 128, "num_key_value_heads": 128,
    "num_hidden_layers": 61, "vocab_size": 129280, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_experts_per_tok": 8, "first_k_dense_replace": 3, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "tie_word_embeddings": False,
    "num_nextn_predict_layers": 1,
}


def from_hf(cfg):
    return resolve(ModelSource(hugging_face_config="config.json"), cfg)


def test_hf_llama_matches_preset():
    a = from_hf(LLAMA_8B_CONFIG)
    assert a.name == "meta-llama/Llama-3.1-8B"
    assert a.head_dim == 128 and a.gated_mlp and not a.is_moe
    assert count_params(a) == count_params(arch("llama-3.1-8b"))


def test_hf_mixtral_matches_preset():
    a = from_hf(MIXTRAL_CONFIG)
    assert (a.num_experts, a.num_experts_per_token, a.moe_intermediate_size) == (8, 2, 14336)
    assert a.sliding_window == 0
    assert count_params(a) == count_params(arch("mixtral-8x7b"))


def test_hf_deepseek_matches_preset():
    a = from_hf(DEEPSEEK_V3_CONFIG)
    assert a.is_mla and a.first_dense_layers == 3 and a.num_shared_experts == 1
    assert count_params(a) == count_params(arch("deepseek-v3"))


def test_hf_qwen2_gets_attention_bias():
    cfg = {**LLAMA_8B_CONFIG, "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
           "num_attention_heads": 28, "num_key_value_heads": 4, "num_hidden_layers": 28, "vocab_size": 152064}
    del cfg["attention_bias"]
    a = architecture_from_hf_config(cfg)
    assert a.attention_bias is True
    assert count_params(from_hf(cfg)).total == count_params(arch("qwen2.5-7b")).total


def test_hf_gelu_is_not_gated_and_gpt2_keys():
    a = architecture_from_hf_config({"n_layer": 12, "n_embd": 768, "n_inner": 3072, "n_head": 12,
                                     "vocab_size": 50257, "activation_function": "gelu_new",
                                     "hidden_act": "gelu_new"})
    assert (a.num_layers, a.hidden_size, a.intermediate_size, a.num_attention_heads) == (12, 768, 3072, 12)
    assert a.gated_mlp is False


def test_hf_nested_text_config():
    a = architecture_from_hf_config({"model_type": "llava", "text_config": LLAMA_8B_CONFIG})
    assert a.num_layers == 32 and a.vocab_size == 128256


def test_hf_layer_types_count_sliding_layers():
    cfg = {**LLAMA_8B_CONFIG, "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * 16}
    assert from_hf(cfg).sliding_window_layers == 16


def test_hf_architecture_override_wins():
    a = resolve(ModelSource(hugging_face_config="c", architecture=Architecture(num_layers=2)), LLAMA_8B_CONFIG)
    assert a.num_layers == 2 and a.hidden_size == 4096


def test_hf_bad_values_named():
    with pytest.raises(InvalidWorkload) as e:
        architecture_from_hf_config({**LLAMA_8B_CONFIG, "num_hidden_layers": -1})
    assert e.value.errors[0][0] == "spec.model.huggingFaceConfig"
    with pytest.raises(InvalidWorkload) as e:
        architecture_from_hf_config(["not", "a", "dict"])
    assert e.value.errors[0][0] == "spec.model.huggingFaceConfig"


def test_hf_missing_config_named():
    with pytest.raises(InvalidWorkload) as e:
        resolve(ModelSource(hugging_face_config="config.json"), None)
    assert e.value.errors[0][0] == "spec.model.huggingFaceConfig"


def test_unknown_preset_lists_known():
    with pytest.raises(InvalidWorkload) as e:
        resolve(ModelSource(preset="llama-9"))
    (path, msg), = e.value.errors
    assert path == "spec.model.preset"
    assert "llama-9" in msg and "llama-3.1-8b" in msg and "deepseek-v3" in msg


def test_rough_mode_scales_to_declared_total():
    p = count_params(resolve(ModelSource(parameters=70_000_000_000)))
    assert p.total == pytest.approx(70e9, rel=1e-6)


# meta-llama/Llama-4-Scout-17B-16E-Instruct config.json (text_config), as Hugging Face publishes it
SCOUT_CONFIG = {"model_type": "llama4", "text_config": {
    "model_type": "llama4_text", "num_hidden_layers": 48, "hidden_size": 5120, "intermediate_size": 8192,
    "intermediate_size_mlp": 16384, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 202048, "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
    "max_position_embeddings": 10485760},
    "vision_config": {"hidden_size": 1408, "intermediate_size": 5632, "num_hidden_layers": 34, "hidden_act": "gelu",
                      "patch_size": 14, "num_channels": 3, "vision_output_dim": 4096}}


def test_hf_llama4_gets_its_shared_expert():
    """vLLM's llama4.py builds one shared expert per MoE layer that config.json does not mention."""
    a = from_hf(SCOUT_CONFIG)
    assert (a.num_experts, a.num_shared_experts, a.moe_intermediate_size, a.moe_layers) == (16, 1, 8192, 48)
    assert count_params(a) == count_params(arch("llama-4-scout"))


def test_hf_llama4_maverick_interleaves_dense_layers():
    text = {**SCOUT_CONFIG["text_config"], "num_local_experts": 128, "interleave_moe_layer_step": 2}
    a = from_hf({"model_type": "llama4", "text_config": text})
    assert a.moe_layers == 24 and a.first_dense_layers == 24 and a.intermediate_size == 16384


def test_hf_qwen2_moe_counts_its_shared_expert_in_expert_widths():
    a = from_hf({"model_type": "qwen2_moe", "num_hidden_layers": 24, "hidden_size": 2048, "intermediate_size": 5632,
                 "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_experts": 60,
                 "num_experts_per_tok": 4, "num_attention_heads": 16, "num_key_value_heads": 16,
                 "vocab_size": 151936})
    assert a.num_shared_experts == 4 and a.attention_bias


# Qwen/Qwen2.5-VL-7B-Instruct config.json's vision_config (the text keys as Qwen2-7B's)
QWEN25_VL_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "hidden_act": "silu",
                    "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                    "spatial_merge_size": 2, "temporal_patch_size": 2}


def test_hf_vision_tower_is_counted_from_vision_config():
    """Qwen2.5-VL-7B's vision tower is about 0.67B parameters (32 SwiGLU ViT blocks of width 1280, the merger)."""
    text = {"model_type": "qwen2_5_vl", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}
    a = from_hf({**text, "vision_config": QWEN25_VL_VISION})
    assert 0.64e9 < a.vision_parameters < 0.70e9
    assert count_params(a).total - count_params(from_hf(text)).total == a.vision_parameters
    # Gemma 3's SigLIP (so400m: 27 GELU blocks of width 1152): about 0.41B
    gemma = from_hf({"model_type": "gemma3", "text_config": {"num_hidden_layers": 34, "hidden_size": 2560,
                                                             "intermediate_size": 10240, "num_attention_heads": 8,
                                                             "num_key_value_heads": 4, "head_dim": 256,
                                                             "vocab_size": 262208},
                     "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                       "hidden_act": "gelu_pytorch_tanh", "patch_size": 14}})
    assert 0.40e9 < gemma.vision_parameters < 0.43e9


def test_a_quantized_checkpoint_keeps_its_vision_tower_in_16_bit():
    from rackfit.estimator.result import Layout
    from rackfit.estimator.weights import weight_bytes
    text = {"model_type": "qwen2_5_vl", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}
    with_vision, without = from_hf({**text, "vision_config": QWEN25_VL_VISION}), from_hf(text)
    for layout in (Layout(tensor=1, pipeline=1, data=1), Layout(tensor=2, pipeline=2, data=1)):
        extra = weight_bytes(count_params(with_vision), "nf4", layout, 28, with_vision) - \
            weight_bytes(count_params(without), "nf4", layout, 28, without)
        assert extra == pytest.approx(with_vision.vision_parameters * 2 / layout.tensor, rel=1e-3)
