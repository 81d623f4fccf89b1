"""What a serving engine measures or holds beside its KV cache: the profile run's forward peak, its sampler and what
it keeps alive, the fused-MoE workspace, the pipeline's receive buffer, memory outside PyTorch's allocator (NCCL), and
the CUDA graph pool.
Of these, their own modules now hold: memory outside PyTorch's allocator (non_torch.py), the model runner
(vllm_runner.py), the sampler (sampler.py), the CUDA graph pool (cuda_graphs.py).

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.activations import attention_dims
from rackfit.estimator.linear_attention import gated_delta_net, gdn_profile_width
from rackfit.estimator.moe_serving import (
    chunked_tokens,
    dispatched_tokens,
    expert_width,
    fp8_input_bytes,
    fused_experts_bytes,
    gate_up_width,
    moe_layer_extra_bytes,
)
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.models import ModelArch
from rackfit.models.vision import qwen3_vl_video_item
from rackfit.spec import Inference

ACT_BYTES = 2  # bf16/fp16 activations
# From 0.14.0 the fused-MoE layers run as a FusedMoEModularKernel (TritonExperts on Hopper for bf16 and fp8) whose
# workspaces come from the process-wide WorkspaceManager (fused_moe/modular_kernel.py _allocate_buffers,
# v1/worker/workspace.py get_simultaneous): one buffer, grown to the largest request and never freed, so the profile's
# 8,192-token forward leaves it allocated through the sampler run. 0.13.0 still called fused_experts directly, whose
# caches are freed after each layer (unquantized_fused_moe_method.py; read in 0.13.0, 0.14.0, 0.19.0, 0.34.0).
MOE_WORKSPACE_HELD = (0, 14)
# Not for gpt-oss's mxfp4 experts where they bypass the modular kernel: on Hopper (the TRITON backend, SM90-SM10x with
# triton_kernels) Mxfp4MoEMethod.apply calls triton_kernel_moe_forward (fused_moe/gpt_oss_triton_kernels_moe.py, its
# own per-call buffers) in 0.14.0-0.18.0, and from 0.19.0 (through 0.34.0) fused_moe/oracle/mxfp4.py picks
# OAITritonMxfp4ExpertsMonolithic first, which wraps the same call; FusedMoEKernelMonolithicImpl takes nothing from the
# WorkspaceManager (only FusedMoEKernelModularImpl does). From 0.19.0 the monolithic kernel requires dp_size 1
# (_supports_parallel_config); with data parallel the modular OAITritonExperts runs. The Marlin backend (Ampere) calls
# fused_marlin_moe directly (torch.empty caches, freed) in 0.14.0-0.16.x and runs MarlinExperts in a FusedMoEKernel from
# 0.17.0 (process_weights_after_loading), held. Read in 0.14.0, 0.14.1, 0.15.0, 0.15.1, 0.16.0-0.19.0, 0.24.0, 0.34.0.
GPT_OSS_MARLIN_MODULAR = (0, 17)
GPT_OSS_MXFP4_ORACLE = (0, 19)


def forward_peak_bytes(a: ModelArch, layout: Layout, tokens: int, inf: Inference | None = None,
                       fp8: bool = False, gpu: GPU | None = None, workspace: int | None = None,
                       act_bytes: int = ACT_BYTES) -> int:
    """The widest layer's live tensors in an inference forward of `tokens` tokens on one rank: the
    residual and its normed copy, plus the attention's q/k/v and output, or the MLP's fused gate/up
    output and its activation (vllm/model_executor/models/llama.py: qkv_proj, o_proj, gate_up_proj,
    SiluAndMul). MoE layers hold fused_moe's intermediate caches for every top-k copy of each token
    (vllm/model_executor/layers/fused_moe/fused_moe.py: intermediate_cache1..3); given a vLLM `inf`, as vLLM's
    release allocates them (vllm_moe_layer_bytes; `fp8`: fp8 activations), and from MOE_WORKSPACE_HELD the workspace
    under the layers after a MoE layer (moe_workspace_held on `gpu`, moe_held_widths). `workspace`:
    held_moe_workspace_bytes of these tokens, where the caller has it (engines.serve computes it once an estimate).
    `act_bytes`: the model's dtype, which every one of these tensors has (4 under vLLM's --dtype float32: the profile's
    dummy forward runs in model_config.dtype); an fp8 model is never float32, so `fp8` and 4 do not meet."""
    return _forward_peak_bytes(a, layout, tokens, inf, fp8, gpu, workspace) * act_bytes // ACT_BYTES


def _forward_peak_bytes(a: ModelArch, layout: Layout, tokens: int, inf: Inference | None, fp8: bool,
                        gpu: GPU | None, workspace: int | None) -> int:
    """forward_peak_bytes in 16-bit activations."""
    t, h = layout.tensor, a.hidden_size
    q, kv = attention_dims(a)
    widths = [q / t + kv / max(1, min(t, a.num_key_value_heads or t)) + q / t]
    mult = 3 if a.gated_mlp else 2
    if a.num_layers > a.moe_layers:
        widths.append(mult * a.intermediate_size / t)
    # a Gated DeltaNet hybrid's linear layers as the profile runs them: projections only (linear_attention.py
    # gdn_profile_width; the FLA chunk kernels return early without attention metadata)
    gdn = inf is not None and inf.engine == "vllm" and gated_delta_net(a) and not inf.vllm_v0
    if gdn:
        widths.append(gdn_profile_width(a, t))
    if a.is_moe and inf is not None and inf.engine == "vllm":
        dense = int(tokens * (2 * h + max(widths)) * ACT_BYTES)
        if moe_workspace_held(inf, a, layout, gpu):
            # from the first MoE layer on the WorkspaceManager's buffer (MOE_WORKSPACE_HELD, never freed) lies under
            # each later layer's transient (moe_held_widths: attention, Gated DeltaNet, an interleaved dense MLP)
            after = moe_held_widths(a, t, widths, gdn)
            if workspace is None:
                workspace = held_moe_workspace_bytes(inf, a, layout, tokens)
            dense = max(dense, int(tokens * (2 * h + max(after)) * ACT_BYTES) + workspace)
        layer = vllm_moe_layer_bytes(inf, a, layout, tokens, fp8, workspace)
        return max(dense, int(tokens * 2 * h * ACT_BYTES) + layer)
    if a.is_moe:
        width = expert_width(a, t, layout.expert)
        widths.append(a.num_experts_per_token * (mult * width + h)
                      + a.num_shared_experts * mult * a.moe_intermediate_size / t)
    return int(tokens * (2 * h + max(widths)) * ACT_BYTES)


def moe_workspace_held(inf: Inference, a: ModelArch, layout: Layout, gpu: GPU | None = None) -> bool:
    """Whether vLLM's fused-MoE layers leave their workspace in the WorkspaceManager (MOE_WORKSPACE_HELD): every MoE
    model from 0.14.0, except gpt-oss's mxfp4 experts on Hopper (from GPT_OSS_MXFP4_ORACLE: without data parallel)
    and, before GPT_OSS_MARLIN_MODULAR, on the Marlin backend (the note under MOE_WORKSPACE_HELD)."""
    if not a.is_moe or inf.engine != "vllm" or inf.vllm_before(MOE_WORKSPACE_HELD):
        return False
    if not (gpt_oss(a) and a.quantization is not None and a.quantization.method == "mxfp4"):
        return True
    if gpu is not None and gpu.architecture == "hopper":
        return not inf.vllm_before(GPT_OSS_MXFP4_ORACLE) and layout.data > 1
    return not inf.vllm_before(GPT_OSS_MARLIN_MODULAR)


def moe_interleaved(a: ModelArch) -> bool:
    """Dense MLP layers that follow MoE layers: Llama 4's interleave_moe_layer_step (Llama4DecoderLayer, vLLM
    models/llama4.py: layer i is MoE when (i + 1) % step == 0), which hf_config.py gives as first_dense_layers. Other
    models with dense layers have them first (DeepSeek's first_k_dense_replace), before any MoE layer runs."""
    n = a.name.lower().replace("_", "-")
    return a.is_moe and a.num_layers > a.moe_layers and ("llama-4" in n or "llama4" in n)


def moe_held_widths(a: ModelArch, tensor: int, widths: list[float], gdn: bool = False) -> list[float]:
    """The per-token widths (forward_peak_bytes' `widths`: attention first, then a dense MLP's, then a Gated
    DeltaNet layer's, `gdn`) of the layers that run after a MoE layer has left the fused-MoE workspace allocated
    (MOE_WORKSPACE_HELD): every layer's attention (each MoE layer is followed by the next layer's), a Gated DeltaNet
    hybrid's linear layers (every Qwen3-Next/3.5 layer ends in a MoE block), and the dense MLP only where it comes
    after a MoE layer (moe_interleaved); DeepSeek's first dense layers run before the workspace exists."""
    after = [widths[0]]
    if a.num_layers > a.moe_layers and moe_interleaved(a):
        mult = 3 if a.gated_mlp else 2
        after.append(mult * a.intermediate_size / tensor)
    if gdn:
        after.append(widths[-1])
    return after


def vllm_moe_layer_bytes(inf: Inference, a: ModelArch, layout: Layout, tokens: int, fp8: bool = False,
                         workspace: int | None = None) -> int:
    """One vLLM MoE layer's live memory beside the residual while its experts run over a forward of `tokens` tokens
    (estimator/moe_serving.py): the tokens dispatched to it (every data-parallel rank's under expert parallelism),
    chunked by the release's VLLM_FUSED_MOE_CHUNK_SIZE, through fused_experts_impl's caches before
    MOE_WORKSPACE_HELD and the modular kernel's workspaces (moe_workspace_bytes) from it, with fp8 activations'
    input copies, the dispatched inputs, the router's outputs and the shared experts' output. `workspace`: that
    workspace (held_moe_workspace_bytes of these tokens), where the caller has it."""
    dispatched = dispatched_tokens(inf, layout.data, layout.expert, tokens)
    m = chunked_tokens(inf, dispatched)  # as held_moe_workspace_bytes
    if inf.vllm_before(MOE_WORKSPACE_HELD):
        experts = fused_experts_bytes(a, layout.tensor, layout.expert, m)
    else:
        experts = moe_workspace_bytes(a, layout, m) if workspace is None else workspace
    if fp8:
        experts += fp8_input_bytes(a, layout.tensor, layout.expert, m)
    return experts + moe_layer_extra_bytes(a, layout.tensor, tokens, dispatched)


def moe_workspace_bytes(a: ModelArch, layout: Layout, tokens: int) -> int:
    """The fused-MoE workspace a forward of `tokens` tokens leaves in vLLM's WorkspaceManager (MOE_WORKSPACE_HELD):
    TritonExperts.workspace_shapes (fused_moe/fused_moe.py; experts/triton_moe.py in 0.34.0) with M tokens, top-k,
    N the gate/up output width on this rank and K the hidden size: workspace13 (M, top_k, max(activation out, K)),
    also holding the output (M, K), and workspace2 (M, top_k, max(N, K)), in the activations' dtype."""
    if not a.is_moe:
        return 0
    width = expert_width(a, layout.tensor, layout.expert)
    n = gate_up_width(a, layout.tensor, layout.expert)
    h = a.hidden_size
    return int(tokens * a.num_experts_per_token * (max(width, h) + max(n, h)) * ACT_BYTES)


def held_moe_workspace_bytes(inf: Inference, a: ModelArch, layout: Layout, tokens: int) -> int:
    """The workspace a vLLM forward of `tokens` tokens leaves in the WorkspaceManager (MOE_WORKSPACE_HELD): grown to
    the chunk of the tokens dispatched to this rank's MoE layer (moe_serving.dispatched_tokens, chunked_tokens)."""
    return moe_workspace_bytes(a, layout, chunked_tokens(inf, dispatched_tokens(inf, layout.data, layout.expert,
                                                                                tokens)))


def pipeline_buffer_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """vLLM V1 on a pipeline stage after the first: the IntermediateTensors buffer (hidden states and residual of
    max_num_tokens tokens) that _dummy_run allocates and keeps (gpu_model_runner.py, self.intermediate_tensors; read in
    0.8.5, 0.9.2 and 0.19.0). 0.34.0's runner allocates it when loading the model (v1/worker/gpu/model_runner.py), so
    its log counts it with the weights; either way it comes out of the KV cache's budget."""
    if inf.engine != "vllm" or inf.vllm_v0 or layout.pipeline == 1:
        return 0
    return 2 * s.max_num_batched_tokens * a.hidden_size * ACT_BYTES


def gpt_oss(a: ModelArch) -> bool:
    """A gpt-oss checkpoint by its name (preset, config.json's _name_or_path or model_type): vLLM's GptOssForCausalLM,
    which captures larger CUDA graphs. A bare `architecture` has no name and is taken as any other model."""
    return "gpt-oss" in a.name.lower() or "gpt_oss" in a.name.lower()


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
