"""What a process holds on a GPU before any tensor: the CUDA context and, after the first matmul, cuBLAS's.

Measured once, on an H200 (bench/cases/h200/h200-memory-calibration.jsonl, the `environment` row, PyTorch 2.11 /
CUDA 13): `used_before_bytes` is the bare context (CONTEXT_BEFORE_CUBLAS), `used_after_cublas_bytes` the context with
cuBLAS's handle and torch's workspace (CUDA_CONTEXT_BYTES). Two parts of it are set by the GPU, and are moved from the
H200's to the GPU's here; the rest (the driver's own structures, the kernels loaded, cuBLAS's handle) is kept as
measured:
- the local-memory reservation the driver makes at context creation for the per-thread stack: cudaLimitStackSize
  (1,024 B by default) x the SM's resident threads x the SMs (NVlabs/cuda-oxide PR 699, cms-sw/cmssw PR 51395:
  "`cudaLimitStackSize x maxResidentThreads` bytes per CUDA context"; 216 MiB on a 108-SM A100, arcs-skku/EMDC_llvm
  issue 13): 264 MiB on the H200's 132 SMs, 30 MiB on a 20-SM RTX 3050;
- torch's cuBLAS workspace, allocated at the first matmul through the caching allocator (the H200 row's
  reserved_after, 32 MiB): aten/src/ATen/cuda/CublasHandlePool.cpp parseChosenWorkspaceSize, ":4096:8" (32 MiB) on
  Hopper and (from torch's PR 175344) Blackwell, ":4096:2:16:8" (8.125 MiB) before Hopper; cuBLASLt shares it in
  recent releases (TORCH_CUBLASLT_UNIFIED_WORKSPACE on by default); megatron_buffers.torch_cublas_workspace_size
  has the sizes, by the GPU's architecture.
A GPU the catalog has no SM count for (GPU.sm_count None), or none given, keeps the H200's numbers.
"""

from __future__ import annotations

from functools import lru_cache

from rackfit.catalog.types import GPU
from rackfit.estimator.megatron_buffers import torch_cublas_workspace_size

CUDA_CONTEXT_BYTES = 751_632_384
CONTEXT_BEFORE_CUBLAS = 552_402_944
# The GPU those two were measured on (the catalog's SM table gives its SMs and capability).
CALIBRATION_GPU = GPU(model="H200", product="NVIDIA-H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
# cudaLimitStackSize's default (cuCtxGetLimit on a fresh context), bytes a resident thread.
DEFAULT_STACK_BYTES = 1024


def stack_reservation_bytes(gpu: GPU) -> int:
    """The driver's local-memory reservation for the default per-thread stack on `gpu` (the module's docstring); 0
    where the catalog has no SM count."""
    if gpu.sm_count is None or gpu.max_threads_per_sm is None:
        return 0
    return DEFAULT_STACK_BYTES * gpu.max_threads_per_sm * gpu.sm_count


def torch_cublas_workspace_bytes(gpu: GPU) -> int:
    """torch's default cuBLAS workspace on `gpu` (parseChosenWorkspaceSize, by its architecture)."""
    return torch_cublas_workspace_size(gpu.architecture)


@lru_cache(maxsize=256)  # a plan asks it for every candidate of every GPU; a GPU is frozen, so hashable
def context_before_cublas(gpu: GPU | None) -> int:
    """The bare CUDA context on `gpu`: the H200's, with the H200's stack reservation swapped for `gpu`'s."""
    if gpu is None or gpu.sm_count is None:
        return CONTEXT_BEFORE_CUBLAS
    return CONTEXT_BEFORE_CUBLAS - stack_reservation_bytes(CALIBRATION_GPU) + stack_reservation_bytes(gpu)


@lru_cache(maxsize=256)
def cuda_context_bytes(gpu: GPU | None) -> int:
    """The context with cuBLAS's handle and torch's workspace on `gpu`: context_before_cublas, plus the H200's cuBLAS
    share with its workspace swapped for `gpu`'s."""
    if gpu is None or gpu.sm_count is None:
        return CUDA_CONTEXT_BYTES
    cublas = CUDA_CONTEXT_BYTES - CONTEXT_BEFORE_CUBLAS - torch_cublas_workspace_bytes(CALIBRATION_GPU)
    return context_before_cublas(gpu) + cublas + torch_cublas_workspace_bytes(gpu)
