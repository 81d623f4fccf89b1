"""NCCL's memory outside torch's allocator in multi-GPU training: the communicators a rank holds x what each costs.

Every process group that runs a collective gets its own NCCL communicator (torch's ProcessGroupNCCL creates it at
the group's first collective, or by ncclCommSplit when the default group was bound to a device), with its own
channel buffers: NCCL shares them between communicators only through ncclCommSplit with splitShare set, which torch
does not set by default. Pure: no I/O.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.non_torch import NCCL_PER_PEER
from rackfit.estimator.result import Layout
from rackfit.estimator.startup import NCCL_EP_GROUP_NVLINK
from rackfit.spec import Training
from rackfit.units import MiB

# One communicator over NVLink with its ring and tree channels connected: vLLM's expert-parallel group is exactly one
# more communicator (PyNccl, all channels connected at init since vLLM sets NCCL_CUMEM_ENABLE=0), measured at 0.48 GiB
# (startup.NCCL_EP_GROUP_NVLINK, rows S22/S38). NVIDIA/nccl#964 checks it: torch groups on 4 x A100 NVLink after a
# 4 MB all-reduce, 544 MB a 2-rank group, 688 MB a larger one.
COMM_NVLINK = NCCL_EP_GROUP_NVLINK
# Over PCIe a communicator's buffers grow with its peers: non_torch.NCCL_PER_PEER (row S3, L40S) is vLLM's two
# communicators of a tensor group (PyNccl and torch's), so one communicator costs half of it per peer.
COMM_PCIE_PER_PEER = NCCL_PER_PEER // 2
# NVLink SHARP (NVLS) on NVSwitch nodes (Hopper and Blackwell HGX, GB200): NCCL's default NCCL_NVLS_ENABLE=2 turns it on
# where the device supports multicast, and torch does not set NCCL_CUMEM_ENABLE, so NCCL's cuMem default (on since 2.19)
# holds (vLLM turns it off: no NVLS there). Per communicator, ncclNvlsBufferSetup (src/transport/nvls.cc, NCCL 2.22.3
# onwards; read at v2.30) maps nvlsChannels x 2 x (NCCL_NVLS_CHUNKSIZE 128 KiB x NCCL_STEPS 8) x nHeads bytes of device
# memory, nHeads the communicator's GPUs on the node (search.cc: the intra-node NVLS graph pulls from every GPU), plus
# its credit buffer (64 B per channel and head) rounded up to the 2 MiB allocation granularity. nvlsChannels:
# NVLS_NCHANNELS_SM90 16, NVLS_NCHANNELS_SM100_NVL 24 on one Blackwell node. Empirically NCCL builds no NVLS graph for 2
# GPUs (vllm#9699).
NVLS_STEP = 128 * 1024 * 8
NVLS_CHANNELS = {"hopper": 16, "blackwell": 24}
NVLS_GRANULARITY = 2 * MiB
NODE_GPUS = 8  # an HGX node: the NVLS heads of a group spanning nodes


def communicators(training: Training, layout: Layout, moe: bool = False) -> list[int]:
    """The sizes of the NCCL communicators one rank holds (those that run a collective); `moe`: the model has routed
    experts."""
    n = layout.total_gpus
    if n == 1:
        return []
    dims = [d for d in (layout.data, layout.tensor, layout.pipeline) if d > 1]
    if training.framework == "fsdp":
        # torchtitan: set_determinism broadcasts the seed on the default group (torchtitan/distributed/utils.py); a
        # 1-D mesh over the world reuses that group (torch/distributed/device_mesh.py _init_process_groups), a 2-D
        # mesh makes one group per dimension (FSDP's shard dim, tp, pp) and the flattened loss mesh ("dp_cp", now
        # "loss": parallel_dims.build_mesh) one more for the loss all-reduce over the data ranks.
        if len(dims) < 2:
            return [n]
        return [n, *dims] + ([layout.data] if layout.data > 1 else [])
    if training.framework == "megatron":
        # parallel_state.initialize_model_parallel makes every group eagerly; those that run collectives are dp
        # (gradients, the distributed optimizer's gathers), tp, pp (send/recv) and the default group: start-up
        # barriers, and the distributed optimizer's gradient norm and found-inf (distrib_optimizer.py
        # get_grad_stats_parallel_group returns None, the world; the model-parallel group only without it).
        return [n, *dims] + (megatron_expert_communicators(training, layout) if moe else [])
    if training.framework == "deepspeed" or training.zero_stage:
        # deepspeed/utils/groups.py _get_data_parallel_group: without an mpu, ZeRO's group is _clone_world_group(), a
        # new_group of every rank, beside the default group that barriers use.
        return [n, *dims]
    return [n]  # HF Trainer / accelerate: DDP and FSDP1 on the default group


def megatron_expert_communicators(training: Training, layout: Layout) -> list[int]:
    """The groups beyond world, data, tensor and pipeline on which a Megatron-Core MoE runs collectives whatever its
    token dispatcher (read at core_r0.11.0-core_r0.13.0):
    - the expert-tensor-and-model-parallel group (expert tensor x expert parallel ranks): both the allgather and the
      alltoall dispatcher all-gather over it (transformer/moe/token_dispatcher.py: `gather_from_sequence_parallel_region
      (..., group=self.tp_ep_group)`, the hidden states and routing map under allgather, each rank's tokens per expert
      under alltoall `if self.ep_size > 1 or self.tp_size > 1`);
    - the expert data-parallel group (world / (expert tensor x expert parallel x pipeline) ranks): the experts'
      gradient buffers reduce over it (distributed/distributed_data_parallel.py, `expert_parallel_buffers` built with
      `get_expert_data_parallel_group()`) and the distributed optimizer gathers the experts' parameters over it
      (optimizer/__init__.py, the MoE optimizer's `data_parallel_group`).
    Each is its own torch group (parallel_state.initialize_model_parallel creates every group with its own
    create_group), so its own communicator, even where its ranks are those of another group. A one-rank group has no
    peer and no channel buffer: not counted. Not counted either, as the spec does not say them: the alltoall
    dispatcher's all-to-all over the expert-parallel group (point-to-point buffers, not the ring and tree channels
    COMM_NVLINK measures) and its expert-tensor group's gathers, and the router's auxiliary-loss all-reduce over the
    tensor-and-context group (only with moe_aux_loss_coeff > 0)."""
    if layout.expert == 1:
        return []
    etp = training.expert_tensor_parallel or layout.tensor
    edp = layout.total_gpus // (etp * layout.expert * layout.pipeline)
    return [size for size in (etp * layout.expert, edp) if size > 1]


def _nvls(size: int, gpu: GPU | None) -> int:
    channels = NVLS_CHANNELS.get(gpu.architecture if gpu is not None else "hopper", 0)
    heads = min(size, NODE_GPUS)
    if not channels or heads <= 2 or (gpu is not None and not gpu.nvlink):
        return 0
    buffers = -(-channels * 2 * NVLS_STEP * heads // NVLS_GRANULARITY) * NVLS_GRANULARITY
    return buffers + NVLS_GRANULARITY


def comm_bytes(size: int, gpu: GPU | None) -> int:
    """One communicator of `size` ranks: over NVLink (assumed without a GPU, as sampler.ASSUMED_SMS assumes an H100 SXM
    node) COMM_NVLINK plus NVLS's buffers, over PCIe COMM_PCIE_PER_PEER per peer."""
    if gpu is not None and not gpu.nvlink:
        return COMM_PCIE_PER_PEER * (size - 1)
    return COMM_NVLINK + _nvls(size, gpu)


def training_nccl_bytes(training: Training, layout: Layout, gpu: GPU | None = None, moe: bool = False) -> int:
    """NCCL's device memory on one rank of a training job: its communicators, each at its interconnect's cost."""
    return sum(comm_bytes(size, gpu) for size in communicators(training, layout, moe))
