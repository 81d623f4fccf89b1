"""Hugging Face config.json parsing: a model's architecture, its query/key normalisation, sliding-window layers, the
longest context vLLM, SGLang and TensorRT-LLM each derive and the rotary caches vLLM builds, as
`spec.model.huggingFaceConfig` hands them over."""

from __future__ import annotations

import math
from typing import Any

from rackfit.errors import InvalidWorkload
from rackfit.models.vision import INTERNVL_TYPES, vision_encoder_from_hf_config, vision_parameters_from_hf_config
from rackfit.spec import Architecture

# Hugging Face config.json keys -> our architecture fields (first match wins).
_HF_KEYS: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner"),
    "num_attention_heads": ("num_attention_heads", "n_head"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "tie_word_embeddings": ("tie_word_embeddings",),
    "attention_bias": ("attention_bias",),
    "num_experts": ("num_local_experts", "n_routed_experts", "num_experts"),
    "num_experts_per_token": ("num_experts_per_tok", "experts_per_token", "moe_topk"),
    "moe_intermediate_size": ("moe_intermediate_size",),
    "num_shared_experts": ("n_shared_experts", "num_shared_experts"),
    "first_dense_layers": ("first_k_dense_replace",),
    "kv_lora_rank": ("kv_lora_rank",),
    "q_lora_rank": ("q_lora_rank",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "v_head_dim": ("v_head_dim",),
    "sliding_window": ("sliding_window",),
    "final_logit_softcapping": ("final_logit_softcapping",),
    "swiglu_limit": ("swiglu_limit",),
    "attention_chunk_size": ("attention_chunk_size",),
    "index_head_dim": ("index_head_dim",),
    "index_num_heads": ("index_n_heads",),
}


# Model types whose transformers attention builds q_norm and k_norm unconditionally: Qwen3Attention
# (models/qwen3/modeling_qwen3.py: Qwen3RMSNorm(head_dim), "unlike olmo, only on the head dim!"), Qwen3MoeAttention,
# Qwen3NextAttention, Qwen3VL's text attention, Olmo2Attention and OlmoeAttention (over the whole q and k projections),
# Gemma3Attention (Gemma3RMSNorm(head_dim)), ChameleonAttention (a LayerNorm per head).
_QK_NORM_TYPES = ("qwen3", "qwen3_moe", "qwen3_next", "qwen3_vl", "qwen3_vl_moe", "qwen3_vl_text", "qwen3_vl_moe_text",
                  "olmo2", "olmo3", "olmoe", "gemma3", "gemma3_text", "chameleon")
_QK_NORM_ARCHITECTURES = ("qwen3", "olmo2", "olmo3", "olmoe", "gemma3", "chameleon")
# Model types that build them when their config says so: Cohere's and GLM-4-MoE's `use_qk_norm`, StableLM's and
# Persimmon's `qk_layernorm`.
_QK_NORM_FLAGS = ("use_qk_norm", "qk_layernorm")


def has_qk_norm(config: dict[str, Any]) -> bool:
    """Whether a config.json's model normalises queries and keys per head: by model_type or architectures, or by a
    flag its config class reads."""
    if any(config.get(flag) is True for flag in _QK_NORM_FLAGS):
        return True
    if str(config.get("model_type", "")).lower() in _QK_NORM_TYPES:
        return True
    archs = config.get("architectures") or []
    return isinstance(archs, list) and any(str(a).lower().startswith(_QK_NORM_ARCHITECTURES) for a in archs)


# transformers' default sliding_window_pattern where a config.json names neither it nor layer_types (Gemma 2's
# configuration_gemma2.py alternates, (i + 1) % 2; configuration_gemma3.py kwargs.get("sliding_window_pattern", 6);
# configuration_cohere2.py kwargs.get("sliding_window_pattern", 4))
_SLIDING_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6, "cohere2": 4}


def architecture_from_hf_config(config: dict[str, Any]) -> Architecture:
    """A config.json dict -> Architecture. Unknown keys are ignored; missing ones stay unset."""
    if not isinstance(config, dict):
        raise InvalidWorkload([("spec.model.huggingFaceConfig", "expected a JSON object (config.json)")])
    config = {**config.get("text_config", {}), **config}  # multimodal configs nest the language model
    if isinstance(config.get("llm_config"), dict):  # InternVL's remote-code internvl_chat names it llm_config
        config = {**config["llm_config"], **config}
    nested = config.get("llm_config") or config.get("text_config") or {}
    if config.get("model_type") in INTERNVL_TYPES and "qwen2" in str(nested.get("model_type", "")):
        config.setdefault("attention_bias", True)  # InternVL2.5/3 on Qwen2.5: q/k/v bias, as Qwen2 below
    fields: dict[str, Any] = {}
    for ours, theirs in _HF_KEYS.items():
        for key in theirs:
            if config.get(key) is not None:
                fields[ours] = config[key]
                break
    if has_qk_norm(config):
        fields["qk_norm"] = True
    if "qwen2" in str(config.get("model_type", "")) and "attention_bias" not in fields:
        fields["attention_bias"] = True  # Qwen2 always has q/k/v bias; its config does not say so
    act = str(config.get("hidden_act", config.get("hidden_activation", "silu")))
    fields.setdefault("gated_mlp", act in ("silu", "swiglu", "gelu_pytorch_tanh", "geglu") or "glu" in act)
    if fields.get("sliding_window"):
        layer_types = config.get("layer_types")
        pattern = config.get("sliding_window_pattern") or _SLIDING_PATTERN.get(str(config.get("model_type", "")))
        if isinstance(layer_types, list):
            fields["sliding_window_layers"] = sum(1 for t in layer_types if "sliding" in str(t))
        elif config.get("use_sliding_window") is False:
            fields.pop("sliding_window")
        elif isinstance(pattern, int) and pattern > 0 and fields.get("num_layers"):
            # transformers' Gemma3TextConfig / Cohere2Config / Gemma2Config default layer_types: layer i slides
            # unless (i + 1) % sliding_window_pattern == 0 (every Nth layer global; Gemma 3 27B: 10 of 62)
            fields["sliding_window_layers"] = fields["num_layers"] - fields["num_layers"] // pattern
        elif config.get("use_sliding_window") and config.get("max_window_layers") is not None:
            # Qwen2Config's layer_types: layer i slides when i >= max_window_layers
            fields["sliding_window_layers"] = max(0, fields.get("num_layers", 0) - int(config["max_window_layers"]))
    if fields.get("attention_chunk_size") and isinstance(config.get("no_rope_layers"), list):
        # vLLM's llama4.py Llama4Attention: a layer is chunked when it has rope (`use_chunked_local_attn = not
        # self.nope and config.attention_chunk_size`, nope where no_rope_layers[i] == 0): Scout 36 of 48
        fields["chunked_attention_layers"] = sum(1 for x in config["no_rope_layers"] if x)
    if str(config.get("model_type", "")).startswith("llama4") and fields.get("num_experts"):
        # vLLM's llama4.py Llama4MoE: one shared expert (n_shared_experts 1, not in config.json) of the expert width;
        # Llama4DecoderLayer: a layer is MoE when (i + 1) % interleave_moe_layer_step == 0, else a dense MLP of
        # intermediate_size_mlp (taken here as first_dense_layers: the counts are right, not their order)
        step = int(config.get("interleave_moe_layer_step") or 1)
        fields.setdefault("num_shared_experts", 1)
        fields["moe_intermediate_size"] = fields.get("intermediate_size", 0)
        if step > 1 and config.get("intermediate_size_mlp"):
            fields["first_dense_layers"] = fields["num_layers"] - fields["num_layers"] // step
            fields["intermediate_size"] = config["intermediate_size_mlp"]
    shared = config.get("shared_expert_intermediate_size")
    if shared and fields.get("moe_intermediate_size") and "num_shared_experts" not in fields:
        # Qwen2-MoE (Qwen1.5-MoE-A2.7B: 5632 of 1408, Qwen2-57B-A14B: 20480 of 2560): one shared expert of that width,
        # vLLM's qwen2_moe.py Qwen2MoeSparseMoeBlock.shared_expert; rackfit counts shared experts in expert widths
        fields["num_shared_experts"] = -(-int(shared) // int(fields["moe_intermediate_size"]))
    if fields.get("num_experts") and "moe_intermediate_size" not in fields and "intermediate_size" in fields:
        fields["moe_intermediate_size"] = fields["intermediate_size"]
    fields.update(linear_attention_from_hf_config(config, fields.get("num_layers", 0), fields.get("hidden_size", 0)))
    vision = vision_parameters_from_hf_config(config)
    if vision:
        fields["vision_parameters"] = vision
        fields.update(vision_encoder_from_hf_config(config))
        layers = (config.get("vision_config") or {}).get("num_hidden_layers")
        if isinstance(layers, int) and layers > 0:
            fields["vision_num_hidden_layers"] = layers
    longest = max_context_from_hf_config(config)
    if longest:
        fields["max_position_embeddings"] = longest
    try:
        return Architecture.model_validate(fields)
    except Exception as e:  # pydantic ValidationError -> field-named message
        raise InvalidWorkload([("spec.model.huggingFaceConfig", f"unusable config.json: {e}")]) from None


# The keys vLLM reads for a model's maximum length, the smallest one winning (vllm/config.py,
# _get_and_verify_max_len; vllm/config/model.py in later releases).
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                 "max_sequence_length", "max_seq_length", "seq_len")


def max_context_from_hf_config(config: dict[str, Any]) -> int | None:
    """The longest max_model_len vLLM accepts for this config.json (None when it names none): the smallest
    of its length keys, then rope_scaling as _get_and_verify_max_len applies it. Types su, longrope and
    llama3 already state the scaled length; yarn scales original_max_position_embeddings by its factor;
    the others (linear, dynamic) scale the length itself."""
    lengths = [config[k] for k in _MAX_LEN_KEYS if isinstance(config.get(k), int) and config[k] > 0]
    if not lengths:
        return None
    longest: float = min(lengths)
    rope = config.get("rope_scaling")
    # _get_and_verify_max_len (vllm/config.py from 0.8.0, config/model.py 0.19.0) skips rope_scaling where "gemma3" is
    # in model_type: Gemma 3's linear factor (8, its global layers' only) does not lengthen max_model_len
    if isinstance(rope, dict) and "gemma3" not in str(config.get("model_type", "")):
        kind = rope.get("rope_type") or rope.get("type") or "default"
        if kind not in ("su", "longrope", "llama3", "default"):
            factor = rope.get("factor") or 1.0
            if kind == "yarn" and rope.get("original_max_position_embeddings"):
                longest = rope["original_max_position_embeddings"]
            longest *= factor
    return int(longest)


# The keys SGLang reads for a model's context, the first one found winning (sglang/srt/hf_transformers_utils.py
# CONTEXT_LENGTH_KEYS, read in 0.4.4.post2 and 0.5.2; utils/hf_transformers_utils.py in 0.5.3; 0.3.0 tried
# max_position_embeddings third).
_SGLANG_LENGTH_KEYS = ("max_sequence_length", "seq_length", "max_seq_len", "model_max_length",
                       "max_position_embeddings")


def sglang_context_from_hf_config(config: dict[str, Any]) -> int | None:
    """The context SGLang derives for this config.json (None when it names no length): get_context_length
    (sglang/srt/hf_transformers_utils.py, read in 0.3.0, 0.4.4.post2 and 0.5.2; utils/ in 0.5.3) on the text
    config: the first of its length keys times rope_scaling's factor, unless the scaling names
    original_max_position_embeddings or is llama3 (0.3.0 to 0.5.3 alike). So Gemma 3's linear factor 8 lengthens
    131,072 to 1,048,576 (vLLM leaves it), and a yarn scaling with its original length (Qwen2.5's 4 x 32,768) keeps
    max_position_embeddings as it stands (vLLM: 131,072)."""
    config = {**config.get("text_config", {}), **config}  # ModelConfig passes hf_text_config
    length = next((config[k] for k in _SGLANG_LENGTH_KEYS if isinstance(config.get(k), int) and config[k] > 0), None)
    if length is None:
        return None
    rope = config.get("rope_scaling")
    factor = 1.0
    # get_context_length reads rope_type for llama3; transformers' LlamaConfig copies a `type` key into it
    if isinstance(rope, dict) and "original_max_position_embeddings" not in rope \
            and "llama3" not in (rope.get("rope_type"), rope.get("type")):
        factor = float(rope.get("factor") or 1)
    return int(factor * length)


def trtllm_context_from_hf_config(config: dict[str, Any]) -> int | None:
    """The max_seq_len TensorRT-LLM's PyTorch backend infers for this config.json (None when it names no
    max_position_embeddings; the engine then takes 2,048): DecoderModelForCausalLM.infer_max_seq_len
    (_torch/models/modeling_utils.py, "Modified from tensorrt_llm/builder.py _init_max_seq_len"), since moved to
    PyTorchModelEngine._infer_max_seq_len_from_config (_torch/pyexecutor/model_engine.py), both read in the code
    index: the text config's max_position_embeddings times rope_scaling's factor, rounded up, unless its `type` (else
    `rope_type`) is su, longrope, llama3 or yarn. So a yarn scaling keeps max_position_embeddings as it stands
    (Qwen2.5 with its README's 4 x 32,768: 32,768, vLLM 131,072), and Gemma 3's linear 8 lengthens 131,072 to
    1,048,576 (vLLM leaves it)."""
    config = {**config.get("text_config", {}), **config}  # VLM wrappers hand their llm's config (post_config)
    length = config.get("max_position_embeddings")
    if not isinstance(length, int) or length <= 0:
        return None
    rope = config.get("rope_scaling")
    factor = 1.0
    if isinstance(rope, dict) and rope.get("type", rope.get("rope_type")) not in ("su", "longrope", "llama3", "yarn"):
        factor = float(rope.get("factor") or 1.0)
    return math.ceil(length * factor)


def context_config(max_position_embeddings: int, rope: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The config.json fields the engines derive a longest context from, rebuilt from a spec's maxPositionEmbeddings,
    ropeScaling (RopeScaling's fields) and modelType."""
    scaling = {"rope_type": rope["type"], "factor": rope.get("factor", 1.0)}
    if rope.get("original_max_position_embeddings"):
        scaling["original_max_position_embeddings"] = rope["original_max_position_embeddings"]
    return {"max_position_embeddings": max_position_embeddings, "model_type": model_type, "rope_scaling": scaling}


def rope_cache_positions_from_hf_config(config: dict[str, Any]) -> int:
    """The positions of every cos/sin cache vLLM builds for this config.json where more than one of
    max_position_embeddings (0 otherwise). Gemma 3 (vLLM gemma3.py Gemma3Attention): the sliding layers get a default
    rope at rope_local_base_freq, the global ones config.json's rope_scaling, so get_rope (rotary_embedding/__init__.py,
    _ROPE_DICT keyed by the rope parameters) builds two; a linear one's cache spans max_position_embeddings x factor
    positions (linear_scaling_rope.py LinearScalingRotaryEmbedding._compute_cos_sin_cache). Gemma 3 4B-27B: 131,072 x
    (8 + 1); 1B (no scaling): 32,768 x 2."""
    config = {**config.get("text_config", {}), **config}
    positions = config.get("max_position_embeddings")
    if "gemma3" not in str(config.get("model_type", "")) or not isinstance(positions, int) or positions <= 0:
        return 0
    rope = config.get("rope_scaling")
    factor = 1.0
    if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type")) in ("linear", "dynamic"):
        factor = float(rope.get("factor") or 1.0)
    return int(positions * factor) + positions


def layer_rope_cache_positions_from_hf_config(config: dict[str, Any]) -> int:
    """The positions of the cos/sin cache SGLang's Grok builds in each layer (0 for any other config.json). SGLang's
    models/grok.py (read in 0.5.2rc2), Grok1Attention: where config.json sets rope_type (Grok 2: "original"),
    get_rope_scaling makes a ScalingRotaryEmbedding of the layer's own, not through get_rope's shared _ROPE_DICT, whose
    _compute_cos_sin_cache spans original_max_position_embeddings x scaling_factor positions."""
    grok = {"Grok1ForCausalLM", "Grok1ModelForCausalLM"}  # grok.py's EntryClass
    if not grok & set(config.get("architectures") or []) or not config.get("rope_type"):
        return 0
    original = config.get("original_max_position_embeddings")
    factor = config.get("scaling_factor")
    if not isinstance(original, int) or original <= 0 or not isinstance(factor, (int, float)) or factor <= 0:
        return 0
    return int(original * factor)


def linear_attention_from_hf_config(config: dict[str, Any], layers: int, hidden: int) -> dict[str, Any]:
    """A hybrid model's linear-attention / state-space layers and their state's shape (estimator/linear_attention.py),
    as vLLM's model files read them: Qwen3-Next and Qwen3.5 (qwen3_next.py Qwen3NextGatedDeltaNet:
    linear_num_key_heads
    ... linear_conv_kernel_dim; layer_types, else layer i is full attention when (i + 1) % full_attention_interval
    == 0, Qwen3NextConfig's default), Granite 4.0-H and Bamba (granitemoehybrid.py, bamba.py: Mamba-2 with
    mamba_n_heads, mamba_d_head, mamba_n_groups, mamba_d_state, mamba_d_conv; layer_types 'mamba' or the layers not in
    attn_layer_indices) and Jamba (jamba.py: Mamba-1 of mamba_expand x hidden_size, attention where
    i % attn_layer_period == attn_layer_offset). Mamba layers map onto the linear fields: groups as key heads, d_state
    as the key width, heads as value heads (Mamba-1: its inner width, value width 1), whose state shapes
    (mamba_utils.py MambaStateShapeCalculator) take the same form. Empty for any other model."""
    out: dict[str, Any] = {}
    types = config.get("layer_types")
    kinds = [str(t) for t in types] if isinstance(types, list) else []
    if config.get("linear_num_value_heads") and config.get("linear_key_head_dim"):  # Gated DeltaNet
        if kinds:
            linear = sum(1 for t in kinds if t == "linear_attention")
        else:
            interval = int(config.get("full_attention_interval") or 4)
            linear = layers - layers // interval
        out.update(linear_attention_layers=linear, linear_num_key_heads=config.get("linear_num_key_heads") or 0,
                   linear_num_value_heads=config["linear_num_value_heads"],
                   linear_key_head_dim=config["linear_key_head_dim"],
                   linear_value_head_dim=config.get("linear_value_head_dim") or config["linear_key_head_dim"],
                   linear_conv_kernel_dim=config.get("linear_conv_kernel_dim") or 4)
        if config.get("attn_output_gate", str(config.get("model_type", "")).startswith("qwen3_next")):
            out["attention_output_gate"] = True  # Qwen3NextAttention: q_proj of 2 x heads x head_dim
        if str(config.get("mamba_ssm_dtype", "")).endswith("float32"):  # Qwen3_5ForConditionalGenerationConfig
            out["linear_state_float32"] = True
        return out
    state = config.get("mamba_d_state") or config.get("ssm_state_size")
    if not state or not layers:
        return out
    if kinds and any(t == "mamba" for t in kinds):
        linear = sum(1 for t in kinds if t == "mamba")
    elif isinstance(config.get("attn_layer_indices"), list):
        linear = layers - len(config["attn_layer_indices"])
    elif config.get("attn_layer_period"):
        period, offset = int(config["attn_layer_period"]), int(config.get("attn_layer_offset") or 0)
        linear = layers - sum(1 for i in range(layers) if i % period == offset)
    else:
        return out
    conv = config.get("mamba_d_conv") or config.get("conv_kernel") or 4
    heads = config.get("mamba_n_heads") or config.get("mamba_num_heads")
    if heads:  # Mamba-2
        head_dim = config.get("mamba_d_head") or config.get("mamba_head_dim") \
            or int(config.get("mamba_expand") or 2) * hidden // heads
        out.update(linear_num_key_heads=config.get("mamba_n_groups") or config.get("n_groups") or 1,
                   linear_num_value_heads=heads, linear_value_head_dim=head_dim)
    else:  # Mamba-1 (Jamba): conv and ssm over the inner width
        out.update(linear_num_key_heads=0, linear_num_value_heads=int(config.get("mamba_expand") or 2) * hidden,
                   linear_value_head_dim=1)
    out.update(linear_attention_layers=linear, linear_key_head_dim=state, linear_conv_kernel_dim=conv)
    return out
