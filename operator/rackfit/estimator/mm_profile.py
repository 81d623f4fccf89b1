"""vLLM's multimodal encoder profile: the items V1's and V0's profile runs encode (Qwen3-VL's video where it outranks
the image), the encoder's forward peak over them and the outputs kept beside the text forward.

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from rackfit.estimator.engine_profile import ACT_BYTES
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.models import ModelArch
from rackfit.models.vision import qwen3_vl_video_item
from rackfit.spec import Inference

# vLLM V1's multimodal profile (vllm/v1/worker/gpu_model_runner.py profile_run, read in 0.8.5, 0.10.1, 0.11.0 and
# 0.19.0): before the text forward, a multimodal model runs its encoder over `items` copies of the largest item of the
# modality with the most tokens (_get_mm_dummy_batch), keeps the outputs in self.encoder_cache through _dummy_run and
# _dummy_sampler_run, and clears it after. The encoder budget is max(max_num_batched_tokens, the largest item's tokens)
# (v1/core/encoder_cache_manager.py compute_encoder_budget / compute_mm_encoder_budget: max_num_encoder_input_tokens
# and encoder_cache_size both default to max_num_batched_tokens), and the items are that budget over the item's
# tokens, rounded up (cdiv) through 0.9.2 and down from 0.10.0 (MM_ITEMS_FLOOR; v1/worker/utils.py
# MultiModalBudget.get_max_items from 0.10.1), at least 1 and at most max_num_seqs x the items a prompt holds
# (limit_mm_per_prompt, 999 for V1: vllm/config/multimodal.py get_limit_per_prompt; from 0.10.0 also at most
# max_model_len // the item's tokens, at least 1). From 0.11.0 through 0.12.0 (MM_OUTPUTS_EXPANDED) each output
# shorter than the budget is copied into a zeroed (budget, hidden) tensor before it is cached (read in 0.11.0-0.12.0;
# not in 0.10.2 or 0.13.0). skip_mm_profiling and --limit-mm-per-prompt image=0 skip it (visionTokensPerItem 0).
MM_ITEMS_FLOOR = (0, 10)
MM_OUTPUTS_EXPANDED = ((0, 11), (0, 13))
MM_LIMIT_PER_PROMPT = 999


def encoder_profiled(inf: Inference, a: ModelArch) -> bool:
    """Whether vLLM V1's profile run encodes images that rackfit can size (the vision encoder's fields set)."""
    return (inf.engine == "vllm" and not inf.vllm_v0
            and bool(a.vision_tokens_per_item and a.vision_patches_per_item and a.vision_hidden_size))


# Qwen3-VL's dummy video in vLLM 0.11.0-0.12.x (QWEN3_VL_VIDEO_PROFILE; models/vision.py qwen3_vl_video_item):
# qwen3_vl.py Qwen3VLProcessingInfo.get_max_video_tokens counts the video's soft tokens x 12.5 (the timestamp text),
# so the video modality's "largest item" (about 151,000-153,600 tokens) beats the image's 16,384 and is the profile's
# item (gpu_model_runner.py profile_run, MultiModalBudget.get_modality_with_max_tokens); the encoder budget becomes
# that count (compute_mm_encoder_budget) and the one output, 12,288 rows at a long max_model_len, is widened to it.
# 0.13.0 dropped the x 12.5: the video (at most ~12,288 tokens) loses to the image again. Recognised by the deepstack
# output row (visionOutputWidth wider than the text: Qwen3-VL's alone among the types rackfit reads).
QWEN3_VL_VIDEO_PROFILE = ((0, 11), (0, 13))


def mm_video_item(inf: Inference, a: ModelArch, s: EngineSettings) -> tuple[int, int, int] | None:
    """Qwen3-VL's profiled video in QWEN3_VL_VIDEO_PROFILE's releases, where it outranks the image: (the item's
    counted tokens, the patches the ViT runs over, the encoder's output rows); None elsewhere."""
    first, until = QWEN3_VL_VIDEO_PROFILE
    if (not encoder_profiled(inf, a) or inf.vllm_before(first) or not inf.vllm_before(until)
            or a.vision_output_width <= a.hidden_size):
        return None
    item = qwen3_vl_video_item(s.max_model_len, a.vision_patches_per_item, a.vision_tokens_per_item)
    return item if item and item[0] > a.vision_tokens_per_item else None


def mm_item(inf: Inference, a: ModelArch, s: EngineSettings) -> tuple[int, int, int]:
    """The profile's item as (counted tokens, the patches the ViT runs over, the encoder's output rows): Qwen3-VL's
    video where it outranks the image (mm_video_item), else one largest image."""
    return mm_video_item(inf, a, s) or (a.vision_tokens_per_item, a.vision_patches_per_item, a.vision_tokens_per_item)


# vLLM V0's multimodal profile (vllm/worker/model_runner.py GPUModelRunnerBase._dummy_run, read in 0.8.0, 0.8.3 and
# 0.10.2): max_num_seqs is lowered to max(1, min(max_num_seqs, max_num_batched_tokens // max_mm_tokens)), max_mm_tokens
# being the sum over modalities of limit_mm_per_prompt (1 a modality) x the largest item's tokens
# (multimodal/registry.py get_max_multimodal_tokens), and every dummy sequence of max_num_batched_tokens //
# max_num_seqs tokens carries one largest item (multimodal/profiling.py get_decoder_dummy_data); the model's forward
# encodes them all (Gemma 3: gemma3_mm.py forward, get_multimodal_embeddings, the SigLIP tower over every image at
# once) and keeps the outputs (vision_embeddings) through the text forward, not the sampler (execute_model samples
# after the forward returns). An item longer than max_num_batched_tokens is dropped from the profile in 0.8.0 (not
# modelled: no items) but kept from 0.8.3 (V0_MM_LONG_ITEM_FROM). Releases before 0.8.0 not read for this.
V0_MM_PROFILE_FROM = (0, 8)
# V0's profile where the largest item outgrows max_num_batched_tokens (read in the 0.8.3 and 0.10.2 wheels): _dummy_run
# runs one sequence (max_num_seqs lowered to max(1, budget // max_mm_tokens) = 1), get_decoder_dummy_data keeps its
# items and, V0 not chunking, lengthens the prompt past the budget to their placeholders (multimodal/profiling.py, "too
# short to hold the multi-modal embeddings"). Qwen2-VL's family (qwen2_vl.py Qwen2VLDummyInputsBuilder) adds a video of
# get_num_frames_with_most_features = max(frames, 1) frames: none fit seq_len - the image's tokens, so one, padded to
# temporal_patch_size 2, grid_t 1: the image's patches and tokens again. qwen2_5_vl.py get_input_embeddings_v0 runs the
# ViT over the image, then over the video with image_embeds and inputs_embeds (the whole prompt at the text width)
# still held, merges both into inputs_embeds and returns it alone; the text forward then runs over the whole prompt.
# Recognised as a ViT merging 2 x 2 patches a token (spatial_merge_size 2) with no deepstack output row.
V0_MM_LONG_ITEM_FROM = (0, 8, 3)
QWEN2_VL_MERGE = 4


def v0_mm_profiled(inf: Inference, a: ModelArch) -> bool:
    """Whether vLLM V0's profile run (V0_MM_PROFILE_FROM) runs images whose encoder rackfit can size."""
    return (inf.engine == "vllm" and inf.vllm_v0 and not inf.vllm_before(V0_MM_PROFILE_FROM)
            and bool(a.vision_tokens_per_item and a.vision_patches_per_item and a.vision_hidden_size))


def v0_mm_sequences(inf: Inference, a: ModelArch, s: EngineSettings) -> int | None:
    """V0's dummy sequences in a multimodal profile (V0_MM_PROFILE_FROM), lowered to one a largest image, each
    encoded; one where the image outgrows max_num_batched_tokens from V0_MM_LONG_ITEM_FROM; None where V0 does not
    profile images rackfit can size, or 0.8.0 drops the long image (not modelled). A second modality (Qwen2-VL's video)
    would lower them further where the image fits: not counted."""
    if not v0_mm_profiled(inf, a):
        return None
    if a.vision_tokens_per_item > s.max_num_batched_tokens:
        return 1 if v0_mm_long_items(inf, a, s) else None
    return max(1, min(s.max_num_seqs, s.max_num_batched_tokens // a.vision_tokens_per_item))


def v0_mm_long_items(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The items V0's one profile sequence encodes, one ViT run each, where the largest image outgrows
    max_num_batched_tokens (V0_MM_LONG_ITEM_FROM): the image and, for Qwen2-VL's family, its one-frame video; 0
    elsewhere."""
    if (not v0_mm_profiled(inf, a) or a.vision_tokens_per_item <= s.max_num_batched_tokens
            or inf.vllm_before(V0_MM_LONG_ITEM_FROM)):
        return 0
    qwen2_vl = (a.vision_patches_per_item == QWEN2_VL_MERGE * a.vision_tokens_per_item
                and a.vision_output_width <= a.hidden_size)
    return 2 if qwen2_vl else 1


def profile_forward_tokens(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The tokens of vLLM's profile forward: max_num_batched_tokens, or V0's one sequence lengthened to its long
    items' placeholders (v0_mm_long_items)."""
    return max(s.max_num_batched_tokens, v0_mm_long_items(inf, a, s) * a.vision_tokens_per_item)


def mm_profile_items(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """How many largest images vLLM's profile run encodes at once (0: no encoder profile): V1's encoder budget, or
    V0's one a dummy sequence (v0_mm_sequences)."""
    if inf.vllm_v0:
        # V0's long items run one at a time and leave no output beside the text forward (encoder_peak_bytes)
        return 0 if v0_mm_long_items(inf, a, s) else v0_mm_sequences(inf, a, s) or 0
    if not encoder_profiled(inf, a):
        return 0
    tokens = mm_item(inf, a, s)[0]
    budget = max(s.max_num_batched_tokens, tokens)
    per_prompt = MM_LIMIT_PER_PROMPT
    if inf.vllm_before(MM_ITEMS_FLOOR):
        by_budget = -(-budget // tokens)
    else:
        by_budget = budget // tokens
        per_prompt = max(1, min(per_prompt, s.max_model_len // tokens))
    return max(1, min(by_budget, s.max_num_seqs * per_prompt))


def encoder_cache_bytes(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The encoder outputs vLLM V1's profile run keeps in self.encoder_cache during the text forward and the
    sampler (V0's forward holds them through the text forward only): `items` outputs of the item's tokens at the
    language model's width (16-bit), each widened to the encoder budget in MM_OUTPUTS_EXPANDED's releases."""
    items = mm_profile_items(inf, a, s)
    if not items:
        return 0
    rows = mm_item(inf, a, s)[0]
    first, until = MM_OUTPUTS_EXPANDED
    if not inf.vllm_before(first) and inf.vllm_before(until):
        rows = max(s.max_num_batched_tokens, rows)
    return items * rows * encoder_output_width(a) * ACT_BYTES


def encoder_output_width(a: ModelArch) -> int:
    """One encoder output row: the language model's width, or visionOutputWidth where the encoder concatenates more
    (Qwen3-VL: vLLM qwen3_vl.py Qwen3_VisionTransformer.forward cats the deepstack mergers' outputs, "[seq_len,
    hidden_size * (1 + depth_of_deepstack)]", and 0.11.0's expanded copy keeps that width, output.shape[-1])."""
    return a.vision_output_width or a.hidden_size


def encoder_peak_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """The encoder's forward over the profile's items (get_multimodal_embeddings / embed_multimodal: Qwen2-VL and
    Qwen2.5-VL concatenate every image's patches into one ViT sequence, SigLIP and CLIP batch the images), at its
    widest block on one rank: the residual and its normed copy, plus the attention's q/k/v and output or the MLP's
    fc1 (gate/up) output and its activation, split over tensor parallel as vLLM builds qwen2_5_vl.py, siglip.py and
    clip.py (Column/RowParallelLinear); the attention runs flash/SDPA kernels, no scores kept. The outputs already
    written (the encoder cache) sit beside it. Left out: the pixel values and rotary tables (a width of 1176 or less
    a patch against the block's 2 x width + 4 x width) and the Qwen merger's last projection (a quarter of the
    patches). V0's long items (v0_mm_long_items): one item's run, beside the outputs of every item so far and
    inputs_embeds over the whole prompt at the text width."""
    items = mm_profile_items(inf, a, s)
    long_items = v0_mm_long_items(inf, a, s)
    if not items and not long_items:
        return 0
    t, w = layout.tensor, a.vision_hidden_size
    inter = a.vision_intermediate_size or 4 * w
    widest = max(4 * w / t, (3 if a.vision_gated_mlp else 2) * inter / t)
    _, patches, rows = mm_item(inf, a, s)
    # (runs at once, outputs held): V0's long items run one at a time beside inputs_embeds over the whole prompt
    runs, outputs = (1, long_items) if long_items else (items, items)
    held = profile_forward_tokens(inf, a, s) * a.hidden_size * ACT_BYTES if long_items else 0
    return int(runs * patches * (2 * w + widest) * ACT_BYTES) + outputs * rows * encoder_output_width(a) * ACT_BYTES \
        + held
