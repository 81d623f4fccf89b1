"""Memory a serving engine holds outside PyTorch's allocator: the handles and workspaces on one GPU, and NCCL's
communicators (per peer over PCIe, one flat size over NVLink), priced by vLLM's logged non-torch memory.

Pure: no I/O. Every constant names the engine source or row it comes from.
"""

from __future__ import annotations

from rackfit.units import GiB

# Memory outside PyTorch's allocator on one GPU (cuBLAS/cuDNN handles, the sampler's workspaces):
# vLLM logs non_torch_memory 0.10 GiB on one A100 (row S4).
NON_TORCH_BASE = GiB // 10
# NCCL communicators per peer in the tensor-parallel group over PCIe: 0.30 GiB at tensor 2 on L40S (row S3)
# = base + 0.2.
NCCL_PER_PEER = GiB // 5
# ...and over NVLink (GPU.nvlink: SXM boards), one flat 1.82 GiB per rank whatever the group's size. NCCL gives each
# channel, for each peer a rank connects to, a receive buffer per protocol (src/init.cc: DEFAULT_BUFFSIZE 4 MiB for
# Simple, DEFAULT_LL128_BUFFSIZE 120 x 640 x 8 x 8 B = 4.69 MiB, DEFAULT_LL_BUFFSIZE 512 KiB), and opens up to
# MAXCHANNELS (32) channels where the links are fast (NVLink) but a few over PCIe; a rank of a ring or tree connects
# to the same neighbours at tensor 2 as at 8, so the total does not grow with the group. vLLM runs NCCL without cuMem
# (env_override.py NCCL_CUMEM_ENABLE=0: no NVLS buffers) and holds two communicators per tensor group (PyNccl and
# the torch process group). Set by row S15 (vLLM 0.19.0, Llama 3.1 8B at tensor 2 on H100: "2.07 GiB for non-torch
# memory" against 0.25 GiB alone, S14); S16 logged 2.13 GiB at tensor 4 (checks it), and S1/S2 (V0, H100) 1.79 GiB
# more at tensor 2.
NCCL_NVLINK_GROUP = int(1.82 * GiB)
# The communicators a vLLM tensor group holds per rank, which NCCL_NVLINK_GROUP and NCCL_PER_PEER price together:
# PyNccl's and the torch process group's (one communicator's share is the price over this count).
VLLM_TENSOR_COMMUNICATORS = 2
