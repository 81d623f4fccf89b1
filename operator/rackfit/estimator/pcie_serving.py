"""NCCL's device memory on a serving rank over PCIe, and vLLM's expert- and data-parallel groups: which communicators a
rank holds, what each holds on a PCIe board, and whether vLLM's memory snapshot sees it (inside the KV cache's budget)
or not (outside, with the CUDA context).

Over PCIe NCCL finds few channels and each rank of a ring or of the intra-node tree (a chain) connects to its two
neighbours only, so a communicator's buffers do not grow with the group's size beyond 3 ranks (rows S261, S72 logged
far less than a per-peer count). Which communicators a rank holds and where the snapshot puts each: serving_nccl.py.
Pure: no I/O.
"""

from __future__ import annotations

from rackfit.estimator.non_torch import NCCL_PER_PEER, VLLM_TENSOR_COMMUNICATORS
from rackfit.units import MiB

# NCCL's buffers of one connection (src/init.cc computeBuffSizes, src/include/device.h; read at NVIDIA/nccl master,
# June 2026): LL NCCL_LL_LINES_PER_THREAD 8 x NCCL_LL_MAX_NTHREADS 512 x NCCL_STEPS 8 x 16 B = 512 KiB, LL128
# NCCL_LL128_ELEMS_PER_THREAD 120 x NCCL_LL128_MAX_NTHREADS 640 x 8 steps x 8 B = 4,915,200 B, Simple
# DEFAULT_BUFFSIZE 4 MiB (NCCL_BUFFSIZE). src/transport/p2p.cc p2pRecvSetup puts every protocol's buffer in the
# receiver's device memory unless the path reads from the sender (src/graph/paths.cc ncclTopoCheckP2p: read only over
# NVLink between two sm_80 GPUs, never over PCIe), with the ncclRecvMem header (src/include/comm.h: MEM_ALIGN, 4 KiB)
# rounded up to CUDA_IPC_MIN (2 MiB): 10 MiB a receive connection; p2pSendSetup holds only the ncclSendMem header
# there, rounded up to 2 MiB. (src/transport/shm.cc, used where the GPUs lack peer
# access, e.g. GeForce boards, maps the same buffers in host memory: no device memory; counting P2P's is the safe side.)
LL_BUFFSIZE = 8 * 512 * 8 * 16
LL128_BUFFSIZE = 120 * 640 * 8 * 8
SIMPLE_BUFFSIZE = 4 * MiB
CUDA_IPC_MIN = 2 * MiB
RECV_CONNECTION = -(-(LL_BUFFSIZE + LL128_BUFFSIZE + SIMPLE_BUFFSIZE + 4096) // CUDA_IPC_MIN) * CUDA_IPC_MIN
SEND_CONNECTION = CUDA_IPC_MIN
# Channels over PCIe: the ring search (src/graph/search.cc ncclTopoCompute) finds one or two channels at PCIe's
# bandwidth, and ncclTopoDupChannels does not double a graph under 25 GB/s; NCCL's logs on PCIe boards show "Ring 00"
# and "Ring 01" (NVIDIA/nccl-tests issue 307, eight RTX 4090: two rings, trees as chains "1/-1/-1->0->-1").
PCIE_CHANNELS = 2
# One communicator of a tensor group of 2 over PCIe, as non_torch.NCCL_PER_PEER (row S3: vLLM 0.7.1's two
# communicators at tensor 2 on L40S, 0.20 GiB beside NON_TORCH_BASE) sets it: half of it. It holds the channel buffers
# above (24 MiB at 2 ranks) and what NCCL allocates whatever the group (its device-side channel and work structures,
# proxy state).
PCIE_COMM_TWO_RANKS = NCCL_PER_PEER // VLLM_TENSOR_COMMUNICATORS
# vLLM opened the expert-parallel group from 0.9.0 (vllm/distributed/parallel_state.py initialize_model_parallel:
# `_EP = init_model_parallel_group(... group_name="ep")` over data x tensor ranks; absent from 0.8.5), and the
# data-parallel group `_DP` over the data ranks beside it; each GroupCoordinator of more than one rank opens a PyNccl
# communicator at once (device_communicators/pynccl.py PyNcclCommunicator.__init__: ncclCommInitRank and "A small
# all_reduce for warmup"), inside init_distributed_environment.
EP_GROUP_FROM = (0, 9)


def channel_bytes(size: int) -> int:
    """One rank's channel buffers in a communicator of `size` ranks over PCIe: per channel a receive and a send
    connection to each ring/tree neighbour, one neighbour at 2 ranks (the ring's previous rank is the tree's parent
    and child), two from 3 ranks on (a ring receives from its previous rank, the chain-shaped tree also from its
    next), whatever the size."""
    if size < 2:
        return 0
    return PCIE_CHANNELS * (1 if size == 2 else 2) * (RECV_CONNECTION + SEND_CONNECTION)


def pcie_comm_bytes(size: int) -> int:
    """One NCCL communicator of `size` ranks over PCIe: PCIE_COMM_TWO_RANKS at 2 ranks, plus the second neighbour's
    connections from 3 ranks on; flat beyond."""
    if size < 2:
        return 0
    return PCIE_COMM_TWO_RANKS + channel_bytes(size) - channel_bytes(2)
