"""A serving engine's profile forward: its peak (vLLM's profile run; TensorRT-LLM's and the CUDA graphs' forwards count
the same way) and what vLLM's forward leaves beside it, the fused-MoE workspace and the pipeline's receive buffer. The
sampler (sampler.py), the CUDA graph pool (cuda_graphs.py), the multimodal encoder profile (mm_profile.py), memory
outside PyTorch's allocator (non_torch.py) and the model runner (vllm_runner.py) have their own modules.

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
