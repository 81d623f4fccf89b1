"""What a vLLM tensor-parallel rank on an NVLink node counts inside the KV cache's budget as non-torch memory, by
release (issue 22).

vLLM's budget counts as non-torch what the device holds outside torch's allocator at the end of the profile run less
what it held at the baseline snapshot (vllm/utils/__init__.py memory_profiling: non_torch_increase is
after_profile - before_create; read in 0.11.0). From 0.11.0 (startup.NCCL_BEFORE_SNAPSHOT) init_device takes that
snapshot after init_worker_distributed_environment, so the tensor group's PyNccl communicator, the custom all-reduce's
IPC buffers and, from 0.11.0 (VLLM_ALLREDUCE_USE_SYMM_MEM defaults to 1 there, 0 in 0.10.2), the symmetric-memory
all-reduce buffer (device_communicators/symm_mem.py SymmMemCommunicator.__init__, all of them made in
CudaCommunicator.__init__) are in the baseline: startup.NCCL_INIT_NVLINK, outside the budget. What the profile run
still makes is torch's own communicator for the tensor group's device group: the logits' gather
(layers/logits_processor.py _gather_logits -> tensor_model_parallel_all_gather -> base_device_communicator.py
DeviceCommunicatorBase.all_gather, which CudaCommunicator does not override: dist.all_gather_into_tensor on
device_group) is the first torch collective on it, and ProcessGroupNCCL creates its NCCL communicator lazily there.
So through 0.17.x one communicator of the two that non_torch.NCCL_NVLINK_GROUP prices is inside the budget.
From 0.18.0 determine_available_memory runs model_runner.profile_cudagraph_memory() inside memory_profiling
(gpu_worker.py, read in 0.18.0 and 0.19.0; absent from 0.11.0-0.17.x, whatever VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS
says: that variable only gates the subtraction): it captures graphs under graph_capture() at tensor > 1 within the
profile's window, and the 0.19.0 rows that set NCCL_NVLINK_GROUP (S15, S16) measured that window. Over PCIe
only torch's communicator is counted from 0.11.0 too. The communicators themselves: serving_nccl.communicators
(serving_nccl.GRAPH_PROFILE_IN_WINDOW). Pure: no I/O.
"""

from __future__ import annotations

import math

from rackfit.estimator.engine_profile import ACT_BYTES
from rackfit.estimator.mm_profile import encoder_profiled, mm_item, mm_profile_items
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.models import ModelArch
from rackfit.models.vision import QWEN3_VL_MAX_PIXELS, QWEN3_VL_TEMPORAL_PATCH
from rackfit.spec import Inference

# The profile's multimodal inputs stay on the device until profile_run returns: gpu_model_runner.py profile_run binds
# `batched_dummy_mm_inputs = self._get_mm_dummy_batch(...)` (group_mm_kwargs_by_modality(..., device=self.device)) as a
# local and never drops it, so the pixel values live through the encoder, _dummy_run and _dummy_sampler_run (read in
# the 0.8.5, 0.10.1, 0.10.2, 0.11.0, 0.13.0, 0.19.0, 0.22.0-0.33.0 wheels; 0.34.0 builds them in
# mm/encoder_runner.py instead, not read for this). The HF processor's float outputs are cast to the model's dtype first
# (multimodal/processing.py InputProcessingContext._postprocess_output, "mimics transformers.BatchFeature"). Qwen3-VL's
# pixel_values and pixel_values_videos hold one row a patch of in_channels 3 x temporal_patch_size 2 x patch x patch
# values (qwen3_vl.py Qwen3_VisionPatchEmbed.forward: x.view(L, C, T, P, P)): 1,536 at patch 16. Other encoders'
# patch sides are not in rackfit's model fields (a few tens of MiB for Gemma 3's eight 896 x 896 images): left out.
MM_INPUTS_HELD_UNTIL = (0, 34)
PIXEL_CHANNELS = 3


def mm_inputs_held_bytes(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The profile's pixel values, held beside every phase of vLLM V1's profile run (MM_INPUTS_HELD_UNTIL), for
    Qwen3-VL (its deepstack output row wider than the text model's, as mm_profile.mm_video_item recognises it):
    items x patches x 3 x 2 x patch^2 values at 16 bits, the patch side recovered from QWEN3_VL_MAX_PIXELS."""
    if (not encoder_profiled(inf, a) or not inf.vllm_before(MM_INPUTS_HELD_UNTIL)
            or (a.vision_output_width <= a.hidden_size and not qwen3_5_vit(a))):
        return 0
    patch = math.isqrt(QWEN3_VL_MAX_PIXELS // a.vision_patches_per_item)
    if patch * patch * a.vision_patches_per_item != QWEN3_VL_MAX_PIXELS:
        return 0
    items = mm_profile_items(inf, a, s)
    patches = mm_item(inf, a, s)[1]
    return items * patches * PIXEL_CHANNELS * QWEN3_VL_TEMPORAL_PATCH * patch * patch * ACT_BYTES


def qwen3_5_vit(a: ModelArch) -> bool:
    """Qwen3.5/3.6's vision tower: vLLM's Qwen3_5ForConditionalGeneration and Qwen3_5MoeForConditionalGeneration
    (models/qwen3_5.py, read in 0.24.0) build Qwen3-VL's Qwen3_VisionTransformer over the Gated DeltaNet hybrid, with
    no deepstack mergers (its output row is the text model's width, which mm_inputs_held_bytes' deepstack test cannot
    see). Recognised as a linear-attention hybrid with an output gate (the Qwen3-Next family: the only one vLLM pairs
    with a ViT) whose image patches are QWEN3_VL_MAX_PIXELS at a whole patch side."""
    if not (a.linear_attention_layers and a.attention_output_gate and a.vision_patches_per_item):
        return False
    patch = math.isqrt(QWEN3_VL_MAX_PIXELS // a.vision_patches_per_item)
    return patch * patch * a.vision_patches_per_item == QWEN3_VL_MAX_PIXELS


# Qwen3-VL's ViT block from 0.15.0 (models/qwen2_5_vl.py Qwen2_5_VisionAttention.forward, which qwen3_vl.py's
# Qwen3_VisionBlock uses; read in 0.15.0, 0.19.0, 0.22.0, 0.24.0 and 0.33.0): the qkv projection's output (3 x width /
# tp) stays referenced while its q and k halves are rearranged into a contiguous copy (`qk_reshaped.contiguous()`,
# 2 x width / tp) and rotated into another (`apply_rotary_emb`, 2 x width / tp), and the attention's output is
# rearranged into a contiguous (seq, width / tp) copy before `proj`: 3 + 2 + 2 + 1 + 1 = 9 x width / tp at the
# attention, where mm_profile.encoder_peak_bytes counts 4 (q/k/v and the output). The interpolated position
# embeddings (Qwen3_VisionTransformer.fast_pos_embed_interpolate, a (patches, width) tensor, the Triton kernel from
# 0.19.0) stay in `encoder_metadata` / a local through every block: one more width, whole on each rank.
QWEN3_VIT_BLOCK_FROM = (0, 15)
QWEN3_VIT_ATTENTION_WIDTHS = 9


def qwen3_vit_extra_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """What Qwen3-VL's ViT (deepstack, or Qwen3.5/3.6's, qwen3_5_vit) holds at its widest block beyond
    mm_profile.encoder_peak_bytes' count, from QWEN3_VIT_BLOCK_FROM: the attention's copies where they outgrow the
    MLP, and the position embeddings beside them; items x patches at 16 bits."""
    if not encoder_profiled(inf, a) or inf.vllm_before(QWEN3_VIT_BLOCK_FROM):
        return 0
    if not (qwen3_5_vit(a) or (a.vision_output_width > a.hidden_size and mm_inputs_held_bytes(inf, a, s))):
        return 0
    t, w = layout.tensor, a.vision_hidden_size
    inter = a.vision_intermediate_size or 4 * w
    counted = max(4 * w / t, (3 if a.vision_gated_mlp else 2) * inter / t)
    widest = max(counted, QWEN3_VIT_ATTENTION_WIDTHS * w / t)
    _, patches, _ = mm_item(inf, a, s)
    return int(mm_profile_items(inf, a, s) * patches * (widest - counted + w) * ACT_BYTES)
