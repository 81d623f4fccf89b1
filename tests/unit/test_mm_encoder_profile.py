"""vLLM V1's multimodal encoder profile (mm_profile.py mm_profile_items, encoder_cache_bytes, encoder_peak_bytes):
the vision encoder's forward over the profile's largest images, and their outputs kept in the encoder cache through
the text forward and the sampler; read from a huggingFaceConfig's vision_config (models/__init__.py
vision_encoder_from_hf_config)."""

from __future__ import annotations

from gpus import H100

from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.mm_profile import (
    encoder_cache_bytes,
    encoder_peak_bytes,
    mm_profile_items,
    profile_forward_tokens,
    v0_mm_long_items,
)
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import parse_spec

# Qwen/Qwen2.5-VL-7B-Instruct config.json (text keys and vision_config)
QWEN25_VL_7B = {"model_type": "qwen2_5_vl", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
                "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "hidden_act": "silu",
                "max_position_embeddings": 128000,
                "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "hidden_act": "silu",
                                  "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                                  "spatial_merge_size": 2, "temporal_patch_size": 2}}
# google/gemma-3-27b-it config.json (vision_config: SigLIP so400m at 896 px)
GEMMA3_27B = {"model_type": "gemma3", "mm_tokens_per_image": 256,
              "text_config": {"num_hidden_layers": 62, "hidden_size": 5376, "intermediate_size": 21504,
                              "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
                              "vocab_size": 262208, "hidden_activation": "gelu_pytorch_tanh",
                              "max_position_embeddings": 131072},
              "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                                "num_hidden_layers": 27, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh"}}


def spec(**inference):
    return parse_spec(dict(model={"huggingFaceConfig": "org/model"}, workload="inference",
                           inference=dict(contextLength=8192, **inference)))


def parts(config, **inference):
    s = spec(**inference)
    a = resolve(s.model, config)
    return s.inference, a, settings(s.inference, H100, 1, 1, a)


def test_vision_encoder_fields_from_config():
    q = architecture_from_hf_config(QWEN25_VL_7B)
    assert (q.vision_hidden_size, q.vision_intermediate_size, q.vision_gated_mlp) == (1280, 3420, True)
    # preprocessor_config.json max_pixels 12845056 over 14^2: 65,536 patches, merged 2 x 2 into 16,384 tokens
    assert (q.vision_patches_per_item, q.vision_tokens_per_item) == (65536, 16384)
    g = architecture_from_hf_config(GEMMA3_27B)
    assert (g.vision_hidden_size, g.vision_patches_per_item, g.vision_tokens_per_item) == (1152, 4096, 256)
    assert g.vision_gated_mlp is False
    # Qwen2-VL's vision hidden_size is the text model's; embed_dim is the ViT's
    q2 = architecture_from_hf_config({**QWEN25_VL_7B, "model_type": "qwen2_vl", "vision_config": {
        "depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4, "hidden_act": "quick_gelu",
        "patch_size": 14, "spatial_merge_size": 2}})
    assert (q2.vision_hidden_size, q2.vision_intermediate_size, q2.vision_gated_mlp) == (1280, 5120, False)
    # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336 px, 576 patches and as many tokens
    llava = architecture_from_hf_config({
        "model_type": "llava", "text_config": {k: v for k, v in QWEN25_VL_7B.items() if k != "vision_config"},
        "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                          "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768}})
    assert (llava.vision_hidden_size, llava.vision_patches_per_item, llava.vision_tokens_per_item) == (1024, 576, 576)
    # a text-only config and an unmodelled multimodal type keep no encoder profile
    text = {k: v for k, v in QWEN25_VL_7B.items() if k != "vision_config"}
    assert architecture_from_hf_config(text).vision_tokens_per_item is None
    assert architecture_from_hf_config({**QWEN25_VL_7B, "model_type": "mllama"}).vision_tokens_per_item is None


def test_profile_items_follow_the_encoder_budget_by_release():
    """compute_mm_encoder_budget: max(max_num_batched_tokens, the item's tokens); cdiv through 0.9.2, floor from
    0.10.0 (MultiModalBudget.get_max_items)."""
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.11.0")
    assert mm_profile_items(inf, a, s) == s.max_num_batched_tokens // 256
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.9.2", maxNumBatchedTokens=1000)
    assert mm_profile_items(inf, a, s) == 4  # cdiv(1000, 256)
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.10.1", maxNumBatchedTokens=1000)
    assert mm_profile_items(inf, a, s) == 3
    inf, a, s = parts(QWEN25_VL_7B, engineVersion="0.19.0")
    assert mm_profile_items(inf, a, s) == 1  # one 16,384-token image: the budget is the item
    inf, a, s = parts(QWEN25_VL_7B, engineVersion="0.7.3")
    assert mm_profile_items(inf, a, s) == 0  # V0 before 0.8.0 is not read for this


def test_encoder_cache_widened_to_the_budget_in_0_11_and_0_12():
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.11.0")
    items = mm_profile_items(inf, a, s)
    assert encoder_cache_bytes(inf, a, s) == items * s.max_num_batched_tokens * 5376 * 2
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.13.0")
    assert encoder_cache_bytes(inf, a, s) == mm_profile_items(inf, a, s) * 256 * 5376 * 2


def test_qwen25_vl_encoder_peak_over_65536_patches():
    """One largest image: 65,536 patches through blocks of width 1280 and a SwiGLU MLP of 3420 (3 x 3420 widest),
    beside its 16,384 output rows of 3584."""
    inf, a, s = parts(QWEN25_VL_7B, engineVersion="0.19.0")
    assert encoder_peak_bytes(inf, a, Layout(), s) == 65536 * (2 * 1280 + 3 * 3420) * 2 + 16384 * 3584 * 2
    half = encoder_peak_bytes(inf, a, Layout(tensor=2), s)
    assert half == 65536 * (2 * 1280 + 3 * 3420 / 2) * 2 + 16384 * 3584 * 2


def test_encoder_profile_shrinks_the_kv_cache_only_for_multimodal_configs():
    """Qwen2.5-VL-7B on one H100 (0.19.0): the encoder's peak over 65,536 patches (~1.8 GiB with its outputs) is
    above the text model's profile, so the KV cache loses what lies between; the text-only config keeps today's."""
    text = {k: v for k, v in QWEN25_VL_7B.items() if k != "vision_config"}
    s = spec(engineVersion="0.19.0")
    vl, plain = (estimate(s, Layout(), gpu=H100, hf_config=c) for c in (QWEN25_VL_7B, text))
    inf, a, es = parts(QWEN25_VL_7B, engineVersion="0.19.0")
    assert vl.kv_cache_tokens < plain.kv_cache_tokens
    per_token = 28 * 2 * 4 * 128 * 2
    vision_weights = a.vision_parameters * 2
    lost = (plain.kv_cache_tokens - vl.kv_cache_tokens) * per_token - vision_weights
    assert lost > 0


def test_profile_peak_is_the_encoder_or_the_text_profile_with_the_cache_held():
    """engines.py serve: the activation peak is max(encoder forward, text forward + cache, sampler + cache); Gemma 3
    27B under 0.11.0 holds 31-32 widened outputs (2.6 GiB) through the text profile, 0.10.1 only their 256 rows."""
    from rackfit.estimator.engine_profile import ACT_BYTES
    from rackfit.estimator.engines import serve
    text = {k: v for k, v in GEMMA3_27B.items() if k != "vision_config"}
    for version in ("0.10.1", "0.11.0", "0.19.0"):
        inf, a, s = parts(GEMMA3_27B, engineVersion=version)
        _, plain_arch, _ = parts(text, engineVersion=version)
        vl = serve(inf, a, Layout(), 0, 0, None).activations
        plain = serve(inf, plain_arch, Layout(), 0, 0, None).activations
        cache = encoder_cache_bytes(inf, a, s)
        assert vl == max(plain + cache, encoder_peak_bytes(inf, a, Layout(), s))
    inf, a, s = parts(GEMMA3_27B, engineVersion="0.11.0")
    assert encoder_cache_bytes(inf, a, s) == 32 * s.max_num_batched_tokens * 5376 * ACT_BYTES


def test_v0_profile_encodes_one_largest_image_a_dummy_sequence():
    """vLLM V0 on 0.8.x under VLLM_USE_V1=0 (mm_profile.v0_mm_sequences, model_runner.py _dummy_run): the profile's
    256 sequences are lowered to max_num_batched_tokens // the image's tokens, each with one image; a multimodal
    model's default max_num_batched_tokens is at least 5120; an image longer than that budget is kept from 0.8.3
    (mm_profile.v0_mm_long_items), dropped by 0.8.0 (not modelled)."""
    from rackfit.estimator.engines import profile_requests, serve

    def v0(config, context, version="0.8.3", **kw):
        s = parse_spec(dict(model={"huggingFaceConfig": "org/model"}, workload="inference",
                            inference=dict(contextLength=context, engineVersion=version, **kw)))
        a = resolve(s.model, config)
        return s.inference, a, settings(s.inference, H100, 1, 1, a)

    inf, a, s = v0(GEMMA3_27B, 8192, vllmUseV1=False)
    assert (s.max_num_batched_tokens, s.max_num_seqs) == (8192, 256)
    assert mm_profile_items(inf, a, s) == profile_requests(inf, s, a) == 32
    assert encoder_cache_bytes(inf, a, s) == 32 * 256 * 5376 * 2
    inf, a, s = v0(GEMMA3_27B, 128, vllmUseV1=False)
    assert s.max_num_batched_tokens == 5120 and mm_profile_items(inf, a, s) == 20
    text = {k: v for k, v in GEMMA3_27B.items() if k != "vision_config"}
    inf_t, a_t, s_t = v0(text, 128, vllmUseV1=False)
    assert s_t.max_num_batched_tokens == 2048 and profile_requests(inf_t, s_t, a_t) == 256
    # the encoder's outputs stay beside the text forward, not the sampler: 20 sequences' logits, not 256
    vl = serve(inf, a, Layout(), 0, 0, None).activations
    assert vl >= encoder_peak_bytes(inf, a, Layout(), s) > 0
    assert vl < serve(inf_t, a_t, Layout(), 0, 0, None).activations
    # Qwen2.5-VL's 16,384-token image outgrows 8,192 batched tokens: from 0.8.3 one sequence of the image and a
    # one-frame video (32,768 tokens), two ViT runs one at a time, nothing of theirs beside the text forward
    inf, a, s = v0(QWEN25_VL_7B, 8192, version="0.8.4", vllmUseV1=False)
    assert profile_requests(inf, s, a) == 1 and mm_profile_items(inf, a, s) == 0
    assert v0_mm_long_items(inf, a, s) == 2 and profile_forward_tokens(inf, a, s) == 32768
    one_run = 65536 * (2 * 1280 + 3 * 3420) * 2
    assert encoder_peak_bytes(inf, a, Layout(), s) == one_run + 2 * 16384 * 3584 * 2 + 32768 * 3584 * 2
    text_q = {k: v for k, v in QWEN25_VL_7B.items() if k != "vision_config"}
    inf_q, a_q, s_q = v0(text_q, 8192, version="0.8.4", vllmUseV1=False)
    assert serve(inf, a, Layout(), 0, 0, None).activations > serve(inf_q, a_q, Layout(), 0, 0, None).activations
    # 0.8.0 drops the long image from its profile (not modelled): the text profile of 256 sequences, as before
    inf, a, s = v0(QWEN25_VL_7B, 8192, version="0.8.0", vllmUseV1=False)
    assert mm_profile_items(inf, a, s) == encoder_peak_bytes(inf, a, Layout(), s) == v0_mm_long_items(inf, a, s) == 0
    assert profile_requests(inf, s, a) == 256 and profile_forward_tokens(inf, a, s) == 8192
    # an image of as many patches as tokens (no 2 x 2 merge: not Qwen2-VL's family) brings no video
    inf, a, s = v0(QWEN25_VL_7B, 8192, version="0.8.4", vllmUseV1=False)
    a = a.model_copy(update={"vision_patches_per_item": 16384})
    assert v0_mm_long_items(inf, a, s) == 1 and profile_forward_tokens(inf, a, s) == 16384
    # 0.7.3's V0 is not read for this: neither the 5120 floor nor the images
    inf, a, s = v0(GEMMA3_27B, 128, version="0.7.3")
    assert s.max_num_batched_tokens == 2048 and mm_profile_items(inf, a, s) == 0
