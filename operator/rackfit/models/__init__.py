"""Model architectures: built-in presets, Hugging Face config.json parsing, and resolution of a
spec's `model` into one complete `ModelArch` that the estimator reads."""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from rackfit.errors import InvalidWorkload
from rackfit.models.quantization import Quantization, checkpoint_quantization
from rackfit.spec import Architecture, ModelSource


class ModelArch(BaseModel):
    """A complete transformer shape. Zero means absent (no experts, no MLA, no sliding window)."""

    model_config = ConfigDict(frozen=True)

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False  # an RMSNorm/LayerNorm on each head's queries and keys (Qwen3, OLMo 2, Gemma 3)
    gated_mlp: bool = True
    num_experts: int = 0
    num_experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_dense_layers: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    sliding_window_layers: int = 0
    max_position_embeddings: int = 0  # the longest context supported (0: unknown)
    vision_parameters: int = 0  # a multimodal checkpoint's vision tower, 16-bit (0: text only)
    # the vision encoder's shape and one largest image (spec Architecture; 0: no encoder profile, engine_profile.py)
    vision_hidden_size: int = 0
    vision_intermediate_size: int = 0
    vision_gated_mlp: bool = False
    vision_patches_per_item: int = 0
    vision_tokens_per_item: int = 0
    vision_output_width: int = 0  # one encoder output row (0: hidden_size; Qwen3-VL's deepstack concatenates more)
    # positions of all the cos/sin caches vLLM's rotary embeddings hold (0: one of max_position_embeddings;
    # rope_cache_positions_from_hf_config, set from a config.json only)
    rope_cache_positions: int = 0
    # Set when only a parameter count is known: weights come from it, the rest is a rough stand-in.
    declared_parameters: int = 0
    # A pre-quantized checkpoint: what each module stores (models/quantization.py); None = the spec's precision
    quantization: Quantization | None = None

    @property
    def rough(self) -> bool:
        return self.declared_parameters > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.is_moe else 0


@cache
def presets() -> dict[str, dict[str, Any]]:
    text = resources.files("rackfit.models").joinpath("presets.yaml").read_text()
    return {k: v for k, v in yaml.safe_load(text).items() if not k.startswith(".")}  # ".name": YAML anchors


# Preset keys that describe the published checkpoint rather than the shape: its config.json's
# `quantization_config` and `torch_dtype`, as Hugging Face writes them.
_CHECKPOINT_KEYS = ("quantizationConfig", "torchDtype")


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
    if config.get("model_type") in _INTERNVL and "qwen2" in str(nested.get("model_type", "")):
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
    vision = vision_parameters_from_hf_config(config)
    if vision:
        fields["vision_parameters"] = vision
        fields.update(vision_encoder_from_hf_config(config))
    longest = max_context_from_hf_config(config)
    if longest:
        fields["max_position_embeddings"] = longest
    try:
        return Architecture.model_validate(fields)
    except Exception as e:  # pydantic ValidationError -> field-named message
        raise InvalidWorkload([("spec.model.huggingFaceConfig", f"unusable config.json: {e}")]) from None


def _vision_block(v: dict[str, Any]) -> tuple[int, int, bool]:
    """A vision_config's ViT block: (width, MLP width, SwiGLU). The width is `embed_dim` where set (Qwen2-VL, whose
    vision hidden_size is the text model's), else `hidden_size` (or `width`); the MLP's `intermediate_size`, else
    `mlp_ratio` (4) x the width; SwiGLU when hidden_act is silu (Qwen2.5-VL)."""
    width = v.get("embed_dim") or v.get("hidden_size") or v.get("width") or 0
    inter = v.get("intermediate_size") or int(width * (v.get("mlp_ratio") or 4))
    return width, inter, str(v.get("hidden_act", "gelu")) in ("silu", "swiglu")


def vision_parameters_from_hf_config(config: dict[str, Any]) -> int:
    """A multimodal config.json's vision tower from its vision_config: a ViT of `depth`/`num_hidden_layers` (plus
    mllama's `num_global_layers`) blocks of q, k, v, o and an MLP (`_vision_block`), the patch embedding, and a
    projector to the text model's width (Qwen's merger first mixes spatial_merge_size^2 patches: a square matrix of
    that width). Counted from the shapes, as vLLM's qwen2_5_vl.py, siglip.py (Gemma 3), clip.py (LLaVA) and mllama.py
    build them; norms, biases and position embeddings (under 1%) are left out."""
    v = config.get("vision_config")
    if not isinstance(v, dict):
        return 0
    width, inter, gated = _vision_block(v)
    layers = (v.get("depth") or v.get("num_hidden_layers") or v.get("num_layers") or 0) + \
        (v.get("num_global_layers") or 0)
    if not width or not layers:
        return 0
    block = 4 * width * width + (3 if gated else 2) * width * inter
    channels = v.get("in_channels") or v.get("in_chans") or v.get("num_channels") or 3
    patch = channels * _side(v.get("patch_size"), 14) ** 2 * (v.get("temporal_patch_size") or 1) * width
    merged = width * (v.get("spatial_merge_size") or 1) ** 2
    text = (config.get("text_config", {}).get("hidden_size") or config.get("llm_config", {}).get("hidden_size")
            or config.get("hidden_size") or width)
    projector = (v.get("vision_output_dim") or merged) * (v.get("out_hidden_size") or text) + \
        (merged * merged if merged != width else 0)
    projector = _projector_params(config, v, width, text, projector)
    return int(layers * block + patch + projector)


def _side(value: Any, default: int = 0) -> int:
    """An image or patch side from a vision_config: an int, or a [height, width] pair (InternVL's HF format)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return int(value or default)


def _projector_params(config: dict[str, Any], v: dict[str, Any], width: int, text: int, default: int) -> int:
    """The projector of the model types whose shape the generic count misses (vision towers of issue 22):
    Qwen3-VL's merger plus one more per deepstack_visual_indexes (vLLM qwen3_vl.py Qwen3_VisionTransformer
    deepstack_merger_list, each the merger's fc1 and fc2); InternVL's mlp1 (a 1 / downsample_ratio^2 pixel
    shuffle, then vit x 4 -> text and text -> text: internvl.py InternVLChatModel._init_mlp1, interns1.py); Mistral 3's
    patch merger (spatial_merge_size^2 x vit -> vit) then linear_1 and linear_2 (mistral3.py
    Mistral3MultiModalProjector)."""
    kind = str(config.get("model_type", ""))
    if kind in _QWEN3_VL:
        return default * (1 + len(v.get("deepstack_visual_indexes") or ()))
    if kind in _INTERNVL:
        shuffled = int(width / float(config.get("downsample_ratio") or 0.5) ** 2)
        return shuffled * text + text * text
    if kind == "mistral3":
        merge = int(config.get("spatial_merge_size") or 2)
        return merge * merge * width * width + width * text + text * text
    return default


# The largest image a Qwen2-VL / Qwen2.5-VL processor accepts: max_pixels 12845056 (28 x 28 x 16384) in the
# checkpoints' preprocessor_config.json (Qwen/Qwen2-VL-7B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct and their siblings),
# not in config.json. vLLM's qwen2_vl.py Qwen2VLProcessingInfo.get_image_size_with_most_features resizes to it
# (smart_resize: 3584 x 3584), so get_max_image_tokens is 12845056 / 14^2 = 65536 patches, merged 2 x 2 into 16384
# tokens (Qwen2_5_VLProcessingInfo inherits it).
QWEN_VL_MAX_PIXELS = 12845056
# The model types whose largest image rackfit reads (Qwen3-VL, Llama 4, InternVL, Mistral 3 and LLaVA-NeXT/OneVision
# below, _tiled_vision_encoder; others keep no encoder profile).
_QWEN_VL = ("qwen2_vl", "qwen2_5_vl")
_FIXED_IMAGE = ("gemma3", "llava")
# Issue 22's further types (vision_encoder_from_hf_config; mllama is not among them: vLLM ran it on V0 only,
# SupportsV0Only through 0.10.2, and dropped it in 0.11.0, registry.py _PREVIOUSLY_SUPPORTED_MODELS).
# Qwen3-VL: the checkpoints' preprocessor_config.json size.longest_edge 16777216 (4096 x 4096), read by vLLM's
# qwen3_vl.py Qwen3VLProcessingInfo._get_vision_info (0.11.0) and qwen2_vl.py get_image_size_with_most_features
# (0.13.0, 0.19.0): 65,536 patches of 16, merged 2 x 2 into 16,384 tokens.
_QWEN3_VL = ("qwen3_vl", "qwen3_vl_moe")
QWEN3_VL_MAX_PIXELS = 16777216
# Llama 4: Llama4ImageProcessorFast max_patches 16 (preprocessor_config.json); vLLM's mllama4.py
# Mllama4ProcessingInfo.get_image_size_with_most_features takes a 16:1 image of that many tiles, which the processor
# cuts into 16 tiles plus the global one (patches_per_image = 1 + r_h x r_w).
LLAMA4_MAX_TILES = 16
# InternVL: max_dynamic_patch (internvl_chat config.json) or the image processor's max_patches (HF format,
# GotOcr2ImageProcessor: 12) tiles plus the thumbnail (use_thumbnail / crop_to_patches): vLLM's
# processors/internvl.py calculate_internvl_targets and interns1.py get_image_size_with_most_features.
_INTERNVL = ("internvl_chat", "internvl")
INTERNVL_MAX_TILES = 12
# LLaVA-NeXT / LLaVA-OneVision: anyres grids of image_grid_pinpoints (llava_next.py get_num_image_tokens,
# get_image_size_with_most_features: the pinpoint with the most tokens); OneVision's largest image is fixed at
# 1153 x 944 (llava_onevision.py get_image_size_with_most_features, "found via processor tests").
_ANYRES = ("llava_next", "llava_onevision")
ONEVISION_LARGEST_IMAGE = (944, 1153)  # (height, width)


def vision_encoder_from_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """The vision encoder's shape and its largest image, for vLLM's encoder profile (estimator/engine_profile.py
    mm_profile_items): the ViT's width and MLP as vision_parameters_from_hf_config reads them, and per model_type the
    patches and language-model tokens of one largest image. Qwen2-VL/Qwen2.5-VL: QWEN_VL_MAX_PIXELS over
    patch_size^2, merged spatial_merge_size^2 to a token. Gemma 3 (SigLIP, pan-and-scan off by default): (image_size /
    patch_size)^2 patches pooled to config.json's mm_tokens_per_image (vLLM's gemma3_mm.py). LLaVA-1.5 (CLIP):
    (image_size / patch_size)^2 patches and as many tokens (vision_feature_select_strategy "default" drops the CLS
    token; vLLM's llava.py get_num_image_tokens). Qwen3-VL, Llama 4, InternVL, Mistral 3 and LLaVA-NeXT/OneVision:
    _tiled_vision_encoder. Empty for other model types."""
    v = config.get("vision_config")
    kind = str(config.get("model_type", ""))
    if isinstance(v, dict) and kind in _QWEN3_VL + ("llama4", "mistral3") + _INTERNVL + _ANYRES:
        return _tiled_vision_encoder(config, v, kind)
    if not isinstance(v, dict) or kind not in _QWEN_VL + _FIXED_IMAGE:
        return {}
    width, inter, gated = _vision_block(v)
    if not width:
        return {}
    patch = v.get("patch_size") or 14
    if kind in _QWEN_VL:
        patches = QWEN_VL_MAX_PIXELS // (patch * patch)
        tokens = patches // (v.get("spatial_merge_size") or 2) ** 2
    else:
        patches = (int(v.get("image_size") or 0) // patch) ** 2
        tokens = int(config.get("mm_tokens_per_image") or 0) if kind == "gemma3" else patches
    if not patches or not tokens:
        return {}
    return {"vision_hidden_size": width, "vision_intermediate_size": inter, "vision_gated_mlp": gated,
            "vision_patches_per_item": patches, "vision_tokens_per_item": tokens}


def _best_resolution(height: int, width: int, pinpoints: list[Any]) -> tuple[int, int]:
    """transformers' image_processing_utils.select_best_resolution: the [height, width] pinpoint that keeps the most
    of the image's resolution, then wastes the least (get_anyres_image_grid_shape, as vLLM's llava_next.py calls it)."""
    best, most, least = (height, width), 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = w * h - effective
        if effective > most or (effective == most and wasted < least):
            best, most, least = (h, w), effective, wasted
    return best


def _anyres_tokens(config: dict[str, Any], grid: int, base: int, tile: int, height: int, width: int
                   ) -> tuple[int, int]:
    """(tokens, tiles) of one height x width image under vLLM's llava_next.py get_num_image_tokens: the base image's
    features, the grid's unpadded features and a newline a row; llava_onevision.py's _get_num_unpadded_features
    shrinks grids over 9 tiles' worth ("anyres_max_9") by their ratio when it passes 1.1."""
    h, w = _best_resolution(height, width, config.get("image_grid_pinpoints") or [[tile, tile]])
    rows, cols = h // tile, w // tile
    cur_h, cur_w = grid * rows, grid * cols
    if width / height > cur_w / cur_h:
        cur_h -= 2 * ((cur_h - int(round(height * (cur_w / width), 7))) // 2)
    else:
        cur_w -= 2 * ((cur_w - int(round(width * (cur_h / height), 7))) // 2)
    unpadded, newlines = cur_h * cur_w, cur_h
    if str(config.get("model_type")) == "llava_onevision":
        ratio = math.sqrt(cur_h * cur_w / (9 * grid * grid))
        if ratio > 1.1:
            unpadded, newlines = int(cur_h // ratio) * int(cur_w // ratio), int(cur_h // ratio)
    return base + unpadded + newlines, rows * cols + 1


def _tiled_vision_encoder(config: dict[str, Any], v: dict[str, Any], kind: str) -> dict[str, Any]:
    """vision_encoder_from_hf_config for the types whose largest image vLLM builds from the processor's defaults (a
    config alone does not give them; the constants above say which default): the patches the ViT runs over (tiles x
    its sequence, the class token included where the ViT has one: CLIP, InternViT, Llama 4's) and the tokens the
    language model gets (the encoder cache's rows)."""
    width, inter, gated = _vision_block(v)
    side, patch = _side(v.get("image_size")), _side(v.get("patch_size"), 14)
    if not width or (kind not in _QWEN3_VL and not side):
        return {}
    out = {"vision_hidden_size": width, "vision_intermediate_size": inter, "vision_gated_mlp": gated}
    grid = side // patch if side else 0
    if kind in _QWEN3_VL:
        # the output row concatenates the merger's and each deepstack merger's (qwen3_vl.py forward: hidden_size x
        # (1 + depth_of_deepstack)); vLLM caches that row
        patches = QWEN3_VL_MAX_PIXELS // (patch * patch)
        tokens = patches // (v.get("spatial_merge_size") or 2) ** 2
        levels = len(v.get("deepstack_visual_indexes") or ())
        if levels:
            text = config.get("text_config", {}).get("hidden_size") or config.get("hidden_size") or 0
            out["vision_output_width"] = int(v.get("out_hidden_size") or text) * (1 + levels)
    elif kind == "llama4":
        # get_patch_per_chunk: (image_size / patch_size)^2 // round(1 / pixel_shuffle_ratio^2) tokens a tile
        tiles = LLAMA4_MAX_TILES + 1
        shuffle = int(round(1.0 / float(v.get("pixel_shuffle_ratio") or 0.5) ** 2))
        patches, tokens = tiles * (grid * grid + 1), tiles * (grid * grid // shuffle)
    elif kind in _INTERNVL:
        # image_seq_length = (image_size / patch_size)^2 x downsample_ratio^2; one tile when dynamic_image_size is off
        tile = _side(config.get("force_image_size")) or side
        grid = tile // patch
        most = int(config.get("max_dynamic_patch") or INTERNVL_MAX_TILES)
        if config.get("dynamic_image_size") is False:
            most = 1
        tiles = most + (1 if most > 1 and config.get("use_thumbnail", True) else 0)
        per_tile = int(grid * grid * float(config.get("downsample_ratio") or 0.5) ** 2)
        patches, tokens = tiles * (grid * grid + 1), tiles * per_tile
    elif kind == "mistral3":
        # pixtral.py PixtralHFEncoderInfo: an image_size square, spatial_merge_size^2 patches a token (the
        # [IMG_BREAK] row ends are text, not encoder output)
        merge = int(config.get("spatial_merge_size") or 2)
        patches, tokens = grid * grid, (side // (patch * merge)) ** 2
    else:  # llava_next, llava_onevision
        cls = 1 if "clip" in str(v.get("model_type", "clip" if kind == "llava_next" else "siglip")) else 0
        default = config.get("vision_feature_select_strategy", "default") == "default"
        base = grid * grid + cls - (1 if default else 0)
        if kind == "llava_onevision":
            tokens, tiles = _anyres_tokens(config, grid, base, side, *ONEVISION_LARGEST_IMAGE)
        else:
            tokens, tiles = 0, 0
            for h, w in config.get("image_grid_pinpoints") or [[side, side]]:
                more = _anyres_tokens(config, grid, base, side, h, w)
                if more[0] > tokens:
                    tokens, tiles = more
        patches = tiles * (grid * grid + cls)
    if not patches or not tokens:
        return {}
    return {**out, "vision_patches_per_item": patches, "vision_tokens_per_item": tokens}


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


_REQUIRED = ("num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")


def resolve(source: ModelSource, hf_config: dict[str, Any] | None = None) -> ModelArch:
    """The complete architecture for a spec's `model`. `hf_config` is the parsed config.json that
    the caller (CLI or operator) read for `huggingFaceConfig`; this function does no I/O."""
    if source.parameters is not None:
        return _rough_arch(source.parameters)
    fields: dict[str, Any] = {}
    name = "custom"
    quant: tuple[str, dict[str, Any], Any] | None = None  # (field, quantization_config, torch_dtype)
    if source.preset:
        key = source.preset.lower()
        if key not in presets():
            raise InvalidWorkload([("spec.model.preset", f"unknown preset {source.preset!r}; "
                                    f"known: {', '.join(sorted(presets()))}")])
        entry = dict(presets()[key])
        checkpoint = {k: entry.pop(k) for k in _CHECKPOINT_KEYS if k in entry}
        fields.update(Architecture.model_validate(entry).model_dump(exclude_none=True))
        name = key
        if "quantizationConfig" in checkpoint:
            quant = ("spec.model.preset", checkpoint["quantizationConfig"], checkpoint.get("torchDtype"))
    if source.hugging_face_config is not None:
        if hf_config is None:
            raise InvalidWorkload([("spec.model.huggingFaceConfig", "the config.json could not be read")])
        fields.update(architecture_from_hf_config(hf_config).model_dump(exclude_none=True))
        if rope_cache_positions_from_hf_config(hf_config):
            fields["rope_cache_positions"] = rope_cache_positions_from_hf_config(hf_config)
        name = str(hf_config.get("_name_or_path") or hf_config.get("model_type") or "custom")
        qc = hf_config.get("quantization_config") or (hf_config.get("text_config") or {}).get("quantization_config")
        if qc:
            dtype = hf_config.get("torch_dtype") or hf_config.get("dtype") \
                or (hf_config.get("text_config") or {}).get("torch_dtype")
            quant = ("spec.model.huggingFaceConfig", qc, dtype)
    if source.architecture is not None:
        fields.update(source.architecture.model_dump(exclude_none=True))
    missing = [f for f in _REQUIRED if f not in fields]
    if missing:
        from pydantic.alias_generators import to_camel
        raise InvalidWorkload([(f"spec.model.architecture.{to_camel(f)}", "required without a preset")
                               for f in missing])
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    fields.setdefault("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
    if fields.get("num_experts"):
        fields.setdefault("num_experts_per_token", 2)
        fields.setdefault("moe_intermediate_size", fields["intermediate_size"])
    if fields.get("sliding_window") and "sliding_window_layers" not in fields:
        fields["sliding_window_layers"] = fields["num_layers"]
    arch = ModelArch(name=name, **fields)
    _check(arch)
    if quant is not None:
        where, config, dtype = quant
        if not isinstance(config, dict):
            raise InvalidWorkload([(where, "quantization_config: expected a JSON object")])
        try:
            q = checkpoint_quantization(arch, config, dtype)
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as e:
            raise InvalidWorkload([(where, f"quantization_config: {e}")]) from None
        arch = arch.model_copy(update={"quantization": q})
    return arch


def _check(a: ModelArch) -> None:
    errs = []
    base = "spec.model.architecture."
    if a.num_attention_heads % a.num_key_value_heads:
        errs.append((base + "numKeyValueHeads", f"{a.num_key_value_heads} does not divide "
                     f"numAttentionHeads {a.num_attention_heads}"))
    if a.is_moe and a.num_experts_per_token > a.num_experts:
        errs.append((base + "numExpertsPerToken", f"{a.num_experts_per_token} exceeds numExperts {a.num_experts}"))
    if a.first_dense_layers > a.num_layers:
        errs.append((base + "firstDenseLayers", f"exceeds numLayers {a.num_layers}"))
    if a.sliding_window_layers > a.num_layers:
        errs.append((base + "slidingWindowLayers", f"exceeds numLayers {a.num_layers}"))
    if errs:
        raise InvalidWorkload(errs)


def _rough_arch(params: int) -> ModelArch:
    """A Llama-shaped stand-in with about `params` parameters, for the rule-of-thumb estimate:
    hidden size from the Llama family's ratio params ~ 12.5 * L * h^2 with L ~ h / 128."""
    h = max(256, int(round((params * 128 / 12.5) ** (1 / 3) / 128)) * 128)
    layers = max(1, round(params / (12.5 * h * h)))
    heads = max(1, h // 128)
    return ModelArch(name=f"{params / 1e9:g}B parameters", num_layers=layers, hidden_size=h,
                     intermediate_size=int(3.5 * h), num_attention_heads=heads,
                     num_key_value_heads=max(1, min(8, heads)), head_dim=128, vocab_size=128256,
                     declared_parameters=params)
