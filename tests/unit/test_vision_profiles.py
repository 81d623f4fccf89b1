"""vLLM V1's encoder profile for more vision model types (issue 22): Qwen3-VL (deepstack outputs), Llama 4 (tiles and
pixel shuffle), InternVL (dynamic tiles and thumbnail, both config formats), Mistral 3 / Pixtral (merged patches),
LLaVA-NeXT and LLaVA-OneVision (anyres grids); mllama keeps none (vLLM ran it on V0 only). Expected values are worked
by hand from vLLM 0.19.0's processing code (models/qwen3_vl.py, mllama4.py, processors/internvl.py, interns1.py,
pixtral.py, llava_next.py, llava_onevision.py)."""

from __future__ import annotations

from gpus import H100
from vision_configs import QWEN3_TEXT, QWEN3_VL_8B

from rackfit.estimator import Layout
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.mm_profile import encoder_cache_bytes, encoder_peak_bytes, mm_profile_items
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import ModelSource, parse_spec

QWEN25_TEXT = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
               "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 151674, "hidden_act": "silu",
               "max_position_embeddings": 32768}
INTERN_VIT_300M = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "hidden_act": "gelu"}
# OpenGVLab/InternVL3-8B (remote code, llm_config) and OpenGVLab/InternVL3-8B-hf (transformers' format)
INTERNVL3_8B = {"model_type": "internvl_chat", "force_image_size": 448, "downsample_ratio": 0.5,
                "max_dynamic_patch": 12, "min_dynamic_patch": 1, "dynamic_image_size": True, "use_thumbnail": True,
                "llm_config": QWEN25_TEXT,
                "vision_config": {**INTERN_VIT_300M, "image_size": 448, "patch_size": 14}}
INTERNVL3_8B_HF = {"model_type": "internvl", "downsample_ratio": 0.5, "text_config": QWEN25_TEXT,
                   "vision_config": {**INTERN_VIT_300M, "image_size": [448, 448], "patch_size": [14, 14]}}
# mistralai/Mistral-Small-3.1-24B-Instruct-2503 config.json (Pixtral vision at 1540 px)
MISTRAL_SMALL_31 = {"model_type": "mistral3", "spatial_merge_size": 2,
                    "text_config": {"model_type": "mistral", "num_hidden_layers": 40, "hidden_size": 5120,
                                    "intermediate_size": 32768, "num_attention_heads": 32, "num_key_value_heads": 8,
                                    "head_dim": 128, "vocab_size": 131072, "max_position_embeddings": 131072},
                    "vision_config": {"model_type": "pixtral", "hidden_size": 1024, "intermediate_size": 4096,
                                      "num_hidden_layers": 24, "image_size": 1540, "patch_size": 14,
                                      "hidden_act": "silu"}}
MISTRAL_TEXT = {"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32064,
                "max_position_embeddings": 32768}
# llava-hf/llava-v1.6-mistral-7b-hf
LLAVA_NEXT = {"model_type": "llava_next", "vision_feature_select_strategy": "default",
              "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
              "text_config": MISTRAL_TEXT,
              "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
                                "num_hidden_layers": 24, "image_size": 336, "patch_size": 14}}
# llava-hf/llava-onevision-qwen2-7b-ov-hf (pinpoints 384..2304 in both directions)
ONEVISION = {"model_type": "llava_onevision", "vision_feature_select_strategy": "full",
             "vision_aspect_ratio": "anyres_max_9",
             "image_grid_pinpoints": [[h * 384, w * 384] for h in range(1, 7) for w in range(1, 7)],
             "text_config": QWEN25_TEXT,
             "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                               "num_hidden_layers": 26, "image_size": 384, "patch_size": 14}}


def vision(config):
    a = architecture_from_hf_config(config)
    return a.vision_patches_per_item, a.vision_tokens_per_item


def parts(config, **inference):
    s = parse_spec(dict(model={"huggingFaceConfig": "org/model"}, workload="inference",
                        inference=dict(contextLength=8192, **inference)))
    a = resolve(s.model, config)
    return s.inference, a, settings(s.inference, H100, 1, 1, a)


def test_qwen3_vl_largest_image_and_deepstack_rows():
    a = architecture_from_hf_config(QWEN3_VL_8B)
    # size.longest_edge 16777216 = 4096^2: 256 x 256 patches of 16, merged 2 x 2
    assert (a.vision_patches_per_item, a.vision_tokens_per_item) == (65536, 16384)
    assert (a.vision_hidden_size, a.vision_intermediate_size, a.vision_gated_mlp) == (1152, 4304, False)
    # the cached row is the merger's 4096 plus three deepstack mergers' 4096 each
    assert a.vision_output_width == 4 * 4096
    # tower: 27 blocks of 4w^2 + 2 w x 4304, the 3 x 16^2 x 2 x w patch embedding, and four mergers of
    # (4w)^2 + 4w x 4096 (the merger and three deepstack ones)
    w = 1152
    assert a.vision_parameters == 27 * (4 * w * w + 2 * w * 4304) + 3 * 256 * 2 * w + 4 * (
        (4 * w) ** 2 + 4 * w * 4096)
    inf, arch, s = parts(QWEN3_VL_8B, engineVersion="0.19.0", maxNumBatchedTokens=16384)
    assert mm_profile_items(inf, arch, s) == 1
    assert encoder_cache_bytes(inf, arch, s) == 16384 * 16384 * 2  # 0.5 GiB, 4 x a plain 4096-wide row
    # the moe variant reads the same
    assert vision({**QWEN3_VL_8B, "model_type": "qwen3_vl_moe"}) == (65536, 16384)


def test_llama4_tiles_and_preset():
    scout = {"model_type": "llama4",
             "text_config": {"model_type": "llama4_text", "num_hidden_layers": 48, "hidden_size": 5120,
                             "intermediate_size": 8192, "num_attention_heads": 40, "num_key_value_heads": 8,
                             "head_dim": 128, "vocab_size": 202048, "num_local_experts": 16,
                             "num_experts_per_tok": 1, "max_position_embeddings": 10485760},
             "vision_config": {"hidden_size": 1408, "intermediate_size": 5632, "num_hidden_layers": 34,
                               "image_size": 336, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
                               "vision_output_dim": 4096, "hidden_act": "gelu"}}
    # 16 tiles + the global one; (336 / 14)^2 = 576 patches (+ the class token) a tile, 576 // 4 = 144 tokens
    assert vision(scout) == (17 * 577, 17 * 144)
    preset = resolve(ModelSource(preset="llama-4-scout"))
    cfg = architecture_from_hf_config(scout)
    assert (preset.vision_patches_per_item, preset.vision_tokens_per_item, preset.vision_hidden_size,
            preset.vision_intermediate_size) == (cfg.vision_patches_per_item, cfg.vision_tokens_per_item,
                                                 cfg.vision_hidden_size, cfg.vision_intermediate_size)
    assert preset.vision_parameters == cfg.vision_parameters
    # S47's log: 8,192 batched tokens "profiled with 3 image items" (8192 // 2448)
    s = parse_spec(dict(model={"preset": "llama-4-scout"}, workload="inference", parallelism={"tensor": 4},
                        inference=dict(contextLength=8192, engineVersion="0.19.0", maxNumBatchedTokens=8192)))
    a = resolve(s.model)
    st = settings(s.inference, H100, 4, 1, a)
    assert mm_profile_items(s.inference, a, st) == 3
    assert encoder_cache_bytes(s.inference, a, st) == 3 * 2448 * 5120 * 2
    # the encoder's peak at tensor 4: 3 x 9809 patches x (2 x 1408 + max(4 x 1408, 2 x 5632) / 4) x 2 B + outputs
    layout = Layout(tensor=4)
    assert encoder_peak_bytes(s.inference, a, layout, st) == 3 * 9809 * (2816 + 2816) * 2 + 3 * 2448 * 5120 * 2


def test_internvl_tiles_both_formats():
    # max_dynamic_patch 12 + the thumbnail = 13 tiles; (448 / 14)^2 = 1024 patches (+ class token), x 0.25 = 256
    assert vision(INTERNVL3_8B) == (13 * 1025, 13 * 256)
    assert vision(INTERNVL3_8B_HF) == (13 * 1025, 13 * 256)
    a = architecture_from_hf_config(INTERNVL3_8B)
    assert a.hidden_size == 3584 and a.num_layers == 28 and a.attention_bias  # llm_config read, Qwen2 bias
    # mlp1: (4 x 1024) -> 3584 -> 3584 beside 24 blocks of 4w^2 + 2 w x 4w and the 3 x 14^2 x w patch embedding
    w = 1024
    assert a.vision_parameters == 24 * (4 * w * w + 2 * w * 4096) + 3 * 196 * w + 4 * w * 3584 + 3584 * 3584
    assert architecture_from_hf_config(INTERNVL3_8B_HF).vision_parameters == a.vision_parameters
    # dynamic_image_size off: one tile, no thumbnail
    assert vision({**INTERNVL3_8B, "dynamic_image_size": False}) == (1025, 256)


def test_mistral3_pixtral_merged_patches():
    # 1540 // 14 = 110 patches a side; 1540 // 28 = 55 merged tokens a side
    assert vision(MISTRAL_SMALL_31) == (110 * 110, 55 * 55)
    a = architecture_from_hf_config(MISTRAL_SMALL_31)
    assert a.vision_gated_mlp is True
    w, t = 1024, 5120
    assert a.vision_parameters == 24 * (4 * w * w + 3 * w * 4096) + 3 * 196 * w + 4 * w * w + w * t + t * t


def test_llava_next_and_onevision_anyres():
    # LLaVA-NeXT: the 672 x 672 pinpoint, a 2 x 2 grid of 24 x 24: 48 x 48 features + 48 newlines + the base
    # image's 576 (577 CLIP tokens less the CLS, "default"); the ViT runs 4 + 1 tiles of 577
    assert vision(LLAVA_NEXT) == (5 * 577, 48 * 48 + 48 + 576)
    # OneVision: 1153 x 944 fits the 1152 x 1536 pinpoint (3 x 4 tiles of 27 x 27); cur 81 x 108, width unpadded
    # to round(1153 x 81 / 944) = 98 (padding 5 a side); ratio sqrt(81 x 98 / (9 x 729)) = 1.0999 <= 1.1 keeps it
    assert vision(ONEVISION) == (13 * 729, 729 + 81 * 98 + 81)


def test_mllama_and_unknown_types_keep_no_profile():
    mllama = {**MISTRAL_SMALL_31, "model_type": "mllama"}
    assert architecture_from_hf_config(mllama).vision_tokens_per_item is None
    # and text-only configs are untouched
    assert architecture_from_hf_config(QWEN3_TEXT).vision_output_width is None
