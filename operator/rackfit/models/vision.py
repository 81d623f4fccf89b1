"""Vision towers from a config.json's `vision_config`: their parameters, and the encoder's shape and one largest
image as vLLM V1's multimodal profile builds it, per model type."""

from __future__ import annotations

import functools
import math
from typing import Any


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
    if kind in INTERNVL_TYPES:
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
# Qwen3-VL's video processor: video_preprocessor_config.json size.longest_edge 25165824 (all frames' pixels together:
# transformers' video_processing_qwen3_vl.py smart_resize scales t x h x w under it, sides multiples of patch x merge,
# at least one such unit), frames padded to temporal_patch_size 2; vLLM qwen3_vl.py _MAX_FRAMES_PER_VIDEO 24576 and
# the x 12.5 of get_max_video_tokens (0.11.0-0.12.x: "<{timestamp} seconds>" text around each token).
QWEN3_VL_VIDEO_MAX_PIXELS = 25165824
QWEN3_VL_MAX_FRAMES = 24576
QWEN3_VL_TEMPORAL_PATCH = 2
QWEN3_VL_TIMESTAMP_FACTOR = 12.5
# Llama 4: Llama4ImageProcessorFast max_patches 16 (preprocessor_config.json); vLLM's mllama4.py
# Mllama4ProcessingInfo.get_image_size_with_most_features takes a 16:1 image of that many tiles, which the processor
# cuts into 16 tiles plus the global one (patches_per_image = 1 + r_h x r_w).
LLAMA4_MAX_TILES = 16
# InternVL: max_dynamic_patch (internvl_chat config.json) or the image processor's max_patches (HF format,
# GotOcr2ImageProcessor: 12) tiles plus the thumbnail (use_thumbnail / crop_to_patches): vLLM's
# processors/internvl.py calculate_internvl_targets and interns1.py get_image_size_with_most_features.
INTERNVL_TYPES = ("internvl_chat", "internvl")
INTERNVL_MAX_TILES = 12
# LLaVA-NeXT / LLaVA-OneVision: anyres grids of image_grid_pinpoints (llava_next.py get_num_image_tokens,
# get_image_size_with_most_features: the pinpoint with the most tokens); OneVision's largest image is fixed at
# 1153 x 944 (llava_onevision.py get_image_size_with_most_features, "found via processor tests").
_ANYRES = ("llava_next", "llava_onevision")
ONEVISION_LARGEST_IMAGE = (944, 1153)  # (height, width)


def vision_encoder_from_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """The vision encoder's shape and its largest image, for vLLM's encoder profile (estimator/mm_profile.py
    mm_profile_items): the ViT's width and MLP as vision_parameters_from_hf_config reads them, and per model_type the
    patches and language-model tokens of one largest image. Qwen2-VL/Qwen2.5-VL: QWEN_VL_MAX_PIXELS over
    patch_size^2, merged spatial_merge_size^2 to a token. Gemma 3 (SigLIP, pan-and-scan off by default): (image_size /
    patch_size)^2 patches pooled to config.json's mm_tokens_per_image (vLLM's gemma3_mm.py). LLaVA-1.5 (CLIP):
    (image_size / patch_size)^2 patches and as many tokens (vision_feature_select_strategy "default" drops the CLS
    token; vLLM's llava.py get_num_image_tokens). Qwen3-VL, Llama 4, InternVL, Mistral 3 and LLaVA-NeXT/OneVision:
    _tiled_vision_encoder. Empty for other model types."""
    v = config.get("vision_config")
    kind = str(config.get("model_type", ""))
    if isinstance(v, dict) and kind in _QWEN3_VL + ("llama4", "mistral3") + INTERNVL_TYPES + _ANYRES:
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
    elif kind in INTERNVL_TYPES:
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


def _qwen3_vl_video_tokens(frames: int, side: int, patch: int, merge: int) -> tuple[int, int]:
    """vLLM qwen3_vl.py Qwen3VLProcessingInfo._get_vision_info for a video of `frames` frames of the largest image
    (side x side) through the video processor (transformers' video smart_resize under QWEN3_VL_VIDEO_MAX_PIXELS):
    (patches, soft tokens)."""
    unit = patch * merge
    t = QWEN3_VL_TEMPORAL_PATCH
    h_bar = round(side / unit) * unit
    t_bar = round(frames / t) * t
    if t_bar * h_bar * h_bar > QWEN3_VL_VIDEO_MAX_PIXELS:
        beta = math.sqrt(frames * side * side / QWEN3_VL_VIDEO_MAX_PIXELS)
        h_bar = max(unit, math.floor(side / beta / unit) * unit)
    grid_t = max((frames + frames % t) // t, 1)
    patches = grid_t * (h_bar // patch) ** 2
    return patches, patches // (merge * merge)


@functools.lru_cache(maxsize=64)
def qwen3_vl_video_item(max_model_len: int, image_patches: int, image_tokens: int) -> tuple[int, int, int] | None:
    """Qwen3-VL's dummy video in vLLM 0.11.0-0.12.x (estimator/mm_profile.py mm_video_item): the frames are
    qwen2_vl.py _get_max_video_frames(max_model_len) from 2 (the first count whose next one's tokens exceed
    max_model_len), at most _MAX_FRAMES_PER_VIDEO (get_num_frames_with_most_features, one video); get_max_video_tokens
    is their soft tokens x 12.5, and get_dummy_mm_data builds that many frames at the video processor's size. Returns
    (counted tokens, patches, soft tokens), from the largest image's patches and tokens (patch side and merge
    recovered from QWEN3_VL_MAX_PIXELS); None when they do not fit that shape."""
    if not image_patches or not image_tokens:
        return None
    patch = math.isqrt(QWEN3_VL_MAX_PIXELS // image_patches)
    merge = math.isqrt(image_patches // image_tokens)
    if patch * patch * image_patches != QWEN3_VL_MAX_PIXELS or merge * merge * image_tokens != image_patches:
        return None
    side = math.isqrt(QWEN3_VL_MAX_PIXELS)
    frames = 2
    while frames < QWEN3_VL_MAX_FRAMES and _qwen3_vl_video_tokens(frames + 1, side, patch, merge)[1] <= max_model_len:
        frames += 1
    patches, tokens = _qwen3_vl_video_tokens(frames, side, patch, merge)
    return int(tokens * QWEN3_VL_TIMESTAMP_FACTOR), patches, tokens
