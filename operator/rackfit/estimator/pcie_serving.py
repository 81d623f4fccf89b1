"""NCCL's device memory on a serving rank over PCIe, and vLLM's expert- and data-parallel groups: which communicators a
rank holds, what each holds on a PCIe board, and whether vLLM's memory snapshot sees it (inside the KV cache's budget)
or not (outside, with the CUDA context).

Over PCIe NCCL finds few channels and each rank of a ring or of the intra-node tree (a chain) connects to its two
neighbours only, so a communicator's buffers do not grow with the group's size beyond 3 ranks (rows S261, S72 logged
far less than a per-peer count). Pure: no I/O.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.engine_profile import NCCL_PER_PEER, NON_TORCH_BASE, VLLM_TENSOR_COMMUNICATORS
from rackfit.estimator.result import Layout
from rackfit.estimator.startup import EP_GROUP_MOE_ONLY, NCCL_BEFORE_SNAPSHOT, NCCL_EP_GROUP_NVLINK
from rackfit.spec import Inference
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
# One communicator of a tensor group of 2 over PCIe, as engine_profile.NCCL_PER_PEER (row S3: vLLM 0.7.1's two
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


def _group_comm_bytes(size: int, gpu: GPU | None) -> int:
    if size < 2:
        return 0
    if gpu is not None and not gpu.nvlink:
        return pcie_comm_bytes(size)
    return NCCL_EP_GROUP_NVLINK  # one more communicator on an NVLink node (startup.NCCL_EP_GROUP_NVLINK)


def side_groups(inf: Inference, layout: Layout, moe: bool) -> list[int]:
    """The sizes of vLLM's expert- and data-parallel groups a rank opens at start-up beside its tensor group (one PyNccl
    communicator each): the "ep" group over data x tensor ranks (every model from EP_GROUP_FROM, MoE models only from
    startup.EP_GROUP_MOE_ONLY), the "dp" group over the data ranks. The data ranks join one world only under
    data-parallel serving with expert parallelism (`--data-parallel-size` with `--enable-expert-parallel`; rackfit's
    `parallelism.data` is otherwise separate replicas)."""
    if inf.engine != "vllm" or inf.vllm_before(EP_GROUP_FROM):
        return []
    data = layout.data if layout.expert > 1 else 1
    sizes = []
    if moe or inf.vllm_before(EP_GROUP_MOE_ONLY):
        sizes.append(data * layout.tensor)
    if data > 1:
        sizes.append(data)
    return [s for s in sizes if s > 1]


def serving_non_torch_bytes(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool, base: int) -> int:
    """What vLLM's profile counts outside torch (`base`: engine_profile.non_torch_bytes) with the PCIe tensor group
    priced by communicator, not by peer, and the side groups' communicators where the snapshot predates them:
    - over PCIe a tensor group holds two communicators (PyNccl's, and torch's process group's, made at the profile
      run's first collective on the device group: the logits' gather), each pcie_comm_bytes; from
      startup.NCCL_BEFORE_SNAPSHOT PyNccl's is in the baseline (pcie_outside_bytes) and only torch's is counted;
    - before NCCL_BEFORE_SNAPSHOT the side groups' communicators (side_groups) count too, on either interconnect, and
      the data group's torch communicator that the MoE layer's naive dispatch opens."""
    pcie = gpu is not None and not gpu.nvlink
    nt = base
    if pcie and layout.tensor > 1:
        before = inf.engine != "vllm" or inf.vllm_before(NCCL_BEFORE_SNAPSHOT)
        nt += ((VLLM_TENSOR_COMMUNICATORS if before else 1) * pcie_comm_bytes(layout.tensor)
               - NCCL_PER_PEER * (layout.tensor - 1))
    if inf.vllm_before(NCCL_BEFORE_SNAPSHOT):
        nt += sum(_group_comm_bytes(s, gpu) for s in side_groups(inf, layout, moe))
        if moe and layout.data > 1 and layout.expert > 1 and not inf.vllm_before(EP_GROUP_FROM):
            # the MoE layer's naive dispatch (the default all2all before 0.11) broadcasts over the data group's torch
            # process group (device_communicators/all2all.py NaiveAll2AllManager.naive_multicast ->
            # GroupCoordinator.broadcast -> torch.distributed.broadcast, read in 0.10.1): torch's communicator for
            # that group is made in the profile run, inside the budget
            nt += _group_comm_bytes(layout.data, gpu)
    return max(nt, NON_TORCH_BASE)


def pcie_outside_bytes(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool) -> int:
    """From startup.NCCL_BEFORE_SNAPSHOT, what a PCIe rank's NCCL holds before vLLM's snapshot (outside the budget,
    beside startup.outside_budget_bytes's NVLink counts): the tensor group's PyNccl communicator and the side
    groups'."""
    if inf.engine != "vllm" or inf.vllm_before(NCCL_BEFORE_SNAPSHOT) or gpu is None or gpu.nvlink:
        return 0
    return pcie_comm_bytes(layout.tensor) + sum(pcie_comm_bytes(s) for s in side_groups(inf, layout, moe))
