"""Megatron-Core's persistent buffers outside the model states (framework megatron).

Megatron-Core keeps one process-wide `GlobalMemoryBuffer` (megatron/core/utils.py; created by
parallel_state.initialize_model_parallel -> _set_global_memory_buffer, core_v0.15.0 and d98e8a6 of August 2026):
`get_tensor(shape, dtype, name)` returns a view of `self.buffer[(name, dtype)]`, re-allocated with `torch.empty` only
when a request is larger, and never freed. Every user in the dense training path asks for the name "mpu" in the
activations' dtype, so the buffer is ONE tensor of the largest request, allocated from the first forward to the end of
the run: it is in `torch.cuda.memory_allocated()` between steps (Megatron's "allocated" reading) and under every peak.

Its users (name "mpu"):
- the unfused core attention, `DotProductAttention.forward` (megatron/core/transformer/dot_product_attention.py; the
  legacy CoreAttention of megatron/model/transformer.py likewise): `matmul_input_buffer` of [b x heads / t, sq, sk]
  for `torch.baddbmm(..., beta=0.0)`, the raw scores. The scores are not saved for the backward (baddbmm saves q and
  k, FusedScaleMaskSoftmax its output): beyond Korthikanti's 5 bytes a score that the layer keeps.
- sequence parallel's all-gather, `LinearWithGradAccumulationAndAsyncCommunication.forward` and its backward
  (megatron/core/tensor_parallel/layers.py): the whole sequence's [s, b, h] input of a ColumnParallelLinear, gathered
  into the buffer in the forward (the LOCAL shard is what `ctx.save_for_backward` keeps) and re-gathered into it in the
  backward. Under `--transformer-impl local` every column-parallel linear (QKV, fc1) runs it; under Transformer Engine
  (the default) the layers' linears gather with TE's own fresh tensors, but the GPT model's `output_layer` stays
  Megatron's `tensor_parallel.ColumnParallelLinear` (megatron/core/models/gpt/gpt_model.py) and gathers the final
  norm's output here, on the stage that has the output layer (the last).
- the MoE allgather token dispatcher (the default dispatcher): each MoE layer's tokens gathered over the tensor x
  expert group, [s x b x ep, h].
"""

from __future__ import annotations

from rackfit.estimator.framework_activations import sequence_parallel
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Training


def megatron_local_layers(tr: Training) -> bool:
    """The rank runs Megatron's own layers (`--transformer-impl local`: megatron/core/models/backends.py
    LocalSpecProvider, whose core attention is the unfused DotProductAttention and whose linears are Megatron's
    column- and row-parallel ones), not Transformer Engine's (TESpecProvider, Megatron-LM's default).
    `training.transformerImpl`; unset, local where `flashAttention: false`, as rackfit has read it. Transformer
    Engine with flashAttention false is `--attention-backend unfused`: TE's UnfusedDotProductAttention
    (transformer_engine/pytorch/attention/dot_product_attention/backends.py at 4329ff84) `torch.empty`s its scores
    for each call, outside Megatron's buffer, and TE's layers keep TE's workspaces."""
    if tr.transformer_impl is not None:
        return tr.transformer_impl == "local"
    return tr.flash_attention is False


def megatron_global_buffer_bytes(a: ModelArch, tr: Training, layout: Layout, compute_bytes: int,
                                 stage: str = "max") -> int:
    """Bytes of Megatron-Core's GlobalMemoryBuffer ("mpu", the activations' dtype) on a rank of pipeline stage `stage`
    ("first", "last" or "max", as runtime_activations): the largest of its requests, since they share one tensor.
    Megatron's own (local) layers (megatron_local_layers): the unfused DotProductAttention and Megatron's
    column-parallel linears. 0 for other frameworks."""
    if tr.framework != "megatron":
        return 0
    t = layout.tensor
    b, s, h = tr.micro_batch_size, tr.sequence_length, a.hidden_size
    local = megatron_local_layers(tr)
    requests = [0]
    if local:
        # [b * np, sq, sk], np = the heads of this tensor rank (GQA's keys are repeated to np first)
        requests.append(b * (a.num_attention_heads // t) * s * s)
    if sequence_parallel(tr, t):
        output_stage = layout.pipeline == 1 or stage != "first"
        if local or output_stage:
            requests.append(s * b * h)  # the all-gathered [s, b, h] input of a column-parallel linear
    etp = tr.expert_tensor_parallel or t
    if a.is_moe and (etp > 1 or layout.expert > 1):
        # the allgather token dispatcher (--moe-token-dispatcher-type, default "allgather": TransformerConfig
        # moe_token_dispatcher_type; megatron/core/transformer/moe/token_dispatcher.py MoEAllGatherTokenDispatcher.
        # token_dispatch, `if self.tp_size > 1 or self.ep_size > 1`, tp_size the expert-tensor group's): every MoE
        # layer gathers its [(s / t) b, h] tokens over the expert-tensor x EP group (tp_ep_group) with
        # use_global_buffer=True (tensor_parallel/mappings.py _gather_along_first_dim): [s b ep etp / t, h]
        requests.append(s * b * layout.expert * etp // t * h)
    return max(requests) * compute_bytes


# cuBLAS workspace sizes by the GPU. Transformer Engine and PyTorch choose them from the device's compute capability at
# run time; rackfit takes the GPU's architecture where the estimate has a GPU (estimate(spec, gpu=...), the planner's
# candidates) and the larger, Hopper-and-later sizes where it has none (the safe side). Volta, Turing, Ampere and Ada
# are compute capability 7.x-8.x; Hopper is 9.0, Blackwell 10.x and 12.x.
PRE_HOPPER_ARCHITECTURES = frozenset({"volta", "turing", "ampere", "ada"})


def hopper_or_later(architecture: str | None) -> bool:
    """Compute capability 9 or more: Hopper or Blackwell, or no GPU given (the larger workspaces, the safe side)."""
    return architecture not in PRE_HOPPER_ARCHITECTURES


# Transformer Engine's cuBLAS workspace (transformer_engine/pytorch/module/base.py in v2.9, `get_workspace` /
# `get_cublas_workspace_size_bytes`; cpp_extensions/gemm.py `get_cublas_workspace` later): one `torch.empty` of
# 32 MiB + 1,024 B ("32 MiB for NVFP4 GEMM, plus additional 1024 B for alignment and misc scales") where the compute
# capability's major is 9 or more, else 4 MiB, in every release from v1.0 to v2.18 (the + 1,024 B from v2.8, TE PR
# 2223; counted in all), kept for the process (a module global, or lru_cache'd). Every TE
# linear's GEMM takes it, so it exists from the first forward on, in `memory_allocated` between steps.
TE_CUBLAS_WORKSPACE_HOPPER_BYTES = 32 * 1024 * 1024 + 1024
TE_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES = 4_194_304
# --tp-comm-overlap (training.tpCommOverlap): Megatron-LM's initialize.py `_initialize_tp_communicators` (d98e8a6)
# calls TE's `initialize_ub`, and every GEMM that runs with a userbuffers communicator (`general_gemm(..., ub=...)`:
# the overlapped fprop, dgrad and bulk wgrad GEMMs of module/linear.py, layernorm_linear.py, layernorm_mlp.py) takes
# `get_cublas_workspace(device, ub=True, ...)` (transformer_engine/pytorch/cpp_extensions/gemm.py at 4329ff84, TE
# 2.17.1, the commit Megatron-LM's uv.lock pins; the same since v2.11, PR 2377): an lru_cache'd `torch.empty` of
# `get_cublas_workspace_size_bytes() * _NUM_MAX_UB_STREAMS` (3) bytes, kept for the process beside the plain
# workspace that the GEMMs without userbuffers (the row-parallel layers' wgrad) take. Before v2.11 `initialize_ub`
# replaced the one workspace by `get_workspace().repeat(_NUM_MAX_UB_STREAMS)` (module/base.py): two more, not three;
# counted as the current release. The userbuffers are `cudaMalloc`'d (common/comm_gemm_overlap/userbuffers/
# userbuffers-host.cpp, register_user_buffer_collective), outside PyTorch's allocator and its memory_allocated.
TE_UB_STREAMS = 3


def te_cublas_workspace_size(architecture: str | None) -> int:
    """One Transformer Engine cuBLAS workspace (get_cublas_workspace_size_bytes) on a GPU of `architecture` (None: no
    GPU given, the Hopper size)."""
    return TE_CUBLAS_WORKSPACE_HOPPER_BYTES if hopper_or_later(architecture) else TE_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES


def te_workspace_bytes(tr: Training, architecture: str | None = None) -> int:
    """Transformer Engine's cuBLAS workspace on a Megatron rank whose layers are TE's (the default
    `--transformer-impl transformer_engine`; not under Megatron's own layers, megatron_local_layers, which use
    torch's matmuls and no TE workspace), on a GPU of `architecture` (te_cublas_workspace_size; None: the Hopper
    size). Grouped GEMM's 4 more workspaces (`--moe-grouped-gemm`, one a compute stream of
    transformer_engine/common/util/multi_stream.cpp) are counted by megatron_workspace_bytes with torch's own; with
    `tpCommOverlap` the userbuffers GEMMs' workspace of TE_UB_STREAMS more is added here."""
    if tr.framework != "megatron" or megatron_local_layers(tr):
        return 0
    return te_cublas_workspace_size(architecture) * (1 + (TE_UB_STREAMS if tr.tp_comm_overlap else 0))


# PyTorch's cuBLAS workspace (aten/src/ATen/cuda/CublasHandlePool.cpp, getCurrentCUDABlasHandle /
# cublas_handle_stream_to_workspace): one workspace per (cuBLAS handle, stream), allocated through the CUDA caching
# allocator (getNewWorkspace -> CUDACachingAllocator allocate) and kept for the process, so inside
# `memory_allocated`. Handles are per thread: the forward's thread and autograd's device thread each get one. Every
# Megatron GPT uses torch's matmul on both (the output layer is Megatron's ColumnParallelLinear,
# megatron/core/tensor_parallel/layers.py LinearWithGradAccumulationAndAsyncCommunication, forward and backward;
# the MoE router's gating linear, moe_utils.RouterGatingLinearFunction, takes TE's general_gemm instead where TE is
# installed). Size (parseChosenWorkspaceSize): CUBLAS_WORKSPACE_CONFIG where set (training.cublasWorkspaceConfig;
# Megatron-LM's functional tests set ":4096:8"), else torch's default: ":4096:8" (4,096 KiB x 8 = 32 MiB) on sm 9.0
# and ":4096:2:16:8" (8.125 MiB) on every other GPU from torch 2.0 (PR 91564, "32MiB for Hopper") until PR 175344
# (February 2026) also gave 32 MiB to majors 10 and 12 (Blackwell; 11 added later). Blackwell is counted at 32 MiB:
# the spec does not say the torch release of a non-transformers job, and 32 MiB is the safe side there.
TORCH_CUBLAS_WORKSPACE_HOPPER_BYTES = 4096 * 1024 * 8
TORCH_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8
TORCH_CUBLAS_THREADS = 2
# Transformer Engine's grouped GEMM (--moe-grouped-gemm: TEGroupedMLP's GroupedLinear,
# transformer_engine/pytorch/module/base.py get_multi_stream_cublas_workspace): one more workspace of
# get_cublas_workspace_size_bytes() for each of tex.get_num_cublas_streams() = 4 streams
# (transformer_engine/common/util/multi_stream.cpp), kept for the process.
TE_GROUPED_GEMM_STREAMS = 4


def workspace_config_bytes(config: str) -> int:
    """CUBLAS_WORKSPACE_CONFIG's total (parseChosenWorkspaceSize: the sum of SIZE KiB x COUNT over its ":SIZE:COUNT"
    pairs)."""
    sizes = [int(n) for n in config.split(":")[1:]]
    return sum(size * 1024 * count for size, count in zip(sizes[::2], sizes[1::2], strict=True))


def torch_cublas_workspace_size(architecture: str | None, tr: Training | None = None) -> int:
    """One PyTorch cuBLAS workspace on a GPU of `architecture` (None: no GPU given, the Hopper size):
    `tr.cublas_workspace_config` where the job sets CUBLAS_WORKSPACE_CONFIG, else torch's default."""
    if tr is not None and tr.cublas_workspace_config is not None:
        return workspace_config_bytes(tr.cublas_workspace_config)
    if hopper_or_later(architecture):
        return TORCH_CUBLAS_WORKSPACE_HOPPER_BYTES
    return TORCH_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES


def torch_workspace_bytes(tr: Training, architecture: str | None = None) -> int:
    """PyTorch's own cuBLAS workspaces on a training rank of any framework: one per (handle, stream) pair
    (CublasHandlePool.cpp, cublas_handle_stream_to_workspace), the forward's thread and autograd's device thread
    each holding a handle, so TORCH_CUBLAS_THREADS of torch_cublas_workspace_size on a GPU of `architecture` (None:
    the Hopper size), in `memory_allocated` from the first backward on. The H200 calibration's `environment` row reads
    reserved_after = 33,554,432 B after one bf16 matmul on torch 2.11, one 32 MiB workspace (cuBLASLt's shares it in
    recent releases' default, getCUDABlasLtWorkspace; an older release's separate cuBLASLt workspace is not counted).
    The forward thread's workspace is also inside CUDA_CONTEXT_BYTES (the same row's used_after_cublas_bytes, read
    with it reserved), as it is inside that calibration's measured total (used_after_cublas_bytes + max_reserved)."""
    return TORCH_CUBLAS_THREADS * torch_cublas_workspace_size(architecture, tr)


def torch_workspace_bytes_outside_megatron(tr: Training, architecture: str | None = None) -> int:
    """torch_workspace_bytes for fsdp, deepspeed and transformers training, counted in the estimate's overhead (with
    the CUDA context, beside the allocator's slack); 0 for megatron, whose rank counts them in megatron_workspace_bytes.
    bench/public_training.py's allocated comparables add them back (they are in memory_allocated)."""
    return 0 if tr.framework == "megatron" else torch_workspace_bytes(tr, architecture)


def megatron_workspace_bytes(a: ModelArch, tr: Training, architecture: str | None = None) -> int:
    """Bytes of cuBLAS workspaces a Megatron rank keeps beyond TE's one (te_workspace_bytes): torch's, one for the
    forward's thread and one for autograd's, and with `moeGroupedGemm` on an MoE under Transformer Engine the four
    multi-stream workspaces of TE's grouped GEMM, on a GPU of `architecture` (None: the Hopper sizes)."""
    if tr.framework != "megatron":
        return 0
    n = torch_workspace_bytes(tr, architecture)
    if a.is_moe and tr.moe_grouped_gemm and not megatron_local_layers(tr):
        n += TE_GROUPED_GEMM_STREAMS * te_cublas_workspace_size(architecture)
    return n
