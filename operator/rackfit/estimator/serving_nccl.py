"""NCCL on a serving rank, in one place (issue 22): which communicators a rank holds, per engine, release and
interconnect, whether each is inside the KV cache's budget (the profile's non-torch count) or outside it (the baseline
snapshot, with the CUDA context), and what each costs.

Which communicators (`communicators`):
- the tensor group: vLLM, SGLang and TensorRT-LLM's PyTorch backend hold two, PyNccl's (vLLM
  device_communicators/pynccl.py PyNcclCommunicator.__init__: ncclCommInitRank and a warm-up all-reduce, inside
  init_distributed_environment) and torch's process group's (made lazily at the profile run's first collective on the
  device group, the logits' gather); TensorRT-LLM's TRT engine one: its NCCL plugins take it from getComm(group)
  (cpp/tensorrt_llm/plugins/common/plugin.cpp; cpp/tensorrt_llm/common/opUtils.cpp later), one ncclComm_t per set of
  ranks in a static commMap, and its executor talks to the other ranks over MPI;
- the pipeline group: a stage's send/recv peer (two communicators; the TRT engine's one: SendPlugin::initialize and
  RecvPlugin's (cpp/tensorrt_llm/plugins/ncclPlugin/sendPlugin.cpp) open their own two-rank communicator,
  ncclCommInitRank(&mComm, 2, id, ...), not getComm's; a middle stage holds a send's and a recv's, counted as one);
- vLLM's side groups from EP_GROUP_FROM (parallel_state.py initialize_model_parallel, read in 0.11.0: `_DP` over the
  data ranks, group_name "dp", and `_EP` over data x tensor ranks, group_name "ep"; the "ep" group for every model
  through 0.13, MoE models only from startup.EP_GROUP_MOE_ONLY), one PyNccl communicator each (CudaCommunicator makes
  PyNccl for every group; the custom all-reduce only for "tp": cuda_communicator.py `if "tp" not in unique_name`).

Inside or outside (vLLM's init_device, by release): before startup.NCCL_BEFORE_SNAPSHOT (0.11.0) the snapshot is taken
before init_worker_distributed_environment, so every communicator is inside the budget; from it (gpu_worker.py
init_device, read in 0.11.0: init_worker_distributed_environment, then MemorySnapshot()) the PyNccl communicators of
every group are in the baseline, outside, and only torch's tensor communicator is made in the profile. From
GRAPH_PROFILE_IN_WINDOW (0.18.0) the graph capture's profile runs inside the window on NVLink (vllm_tp.py). SGLang and
TensorRT-LLM take no snapshot before NCCL: their communicators are all counted with the non-torch memory.

What each costs (`comm_bytes`): over PCIe by size from NCCL's buffer sizes (pcie_serving.pcie_comm_bytes); over NVLink
no source gives the channel count, so each role keeps the log that measured it (non_torch.NCCL_NVLINK_GROUP for
the tensor group's two in the profile, startup.NCCL_INIT_NVLINK for the baseline of the tensor or pipeline group,
startup.NCCL_EP_GROUP_NVLINK for a side group's). A pipeline stage's peer is priced as one two-rank PCIe communicator
on either interconnect (non_torch.NCCL_PER_PEER's half, no NVLink row sets it). Pure: no I/O.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rackfit.catalog.types import GPU
from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP, NON_TORCH_BASE
from rackfit.estimator.pcie_serving import EP_GROUP_FROM, pcie_comm_bytes
from rackfit.estimator.result import Layout
from rackfit.estimator.startup import (
    EP_GROUP_MOE_ONLY,
    NCCL_BEFORE_SNAPSHOT,
    NCCL_EP_GROUP_NVLINK,
    NCCL_INIT_NVLINK,
)
from rackfit.spec import Inference

# gpu_worker.py determine_available_memory calls profile_cudagraph_memory() inside memory_profiling from 0.18.0 (read
# in the 0.17.0 and 0.18.0 wheels: absent from 0.17.0); see vllm_tp.py.
GRAPH_PROFILE_IN_WINDOW = (0, 18)

TENSOR, PIPELINE, EP, DP = "tensor", "pipeline", "ep", "dp"
PYNCCL, TORCH, ENGINE, CAPTURE = "pynccl", "torch", "engine", "graph capture"


@dataclass(frozen=True)
class Comm:
    """One NCCL communicator a serving rank holds: its group, who made it (PyNccl, torch's process group, the TRT
    engine's getComm, or what the graph capture's profile adds in 0.18.0's window), its ranks, and whether vLLM's
    budget counts it (inside) or its baseline snapshot holds it (outside)."""

    group: str
    owner: str
    size: int
    inside: bool


def _nvlink(gpu: GPU | None) -> bool:
    return gpu is None or gpu.nvlink  # without a GPU an NVLink one is taken, as ASSUMED_TOTAL takes an H100


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


def communicators(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool) -> tuple[Comm, ...]:
    """The NCCL communicators a serving rank holds and where vLLM's snapshot puts each (module docstring)."""
    t, p = layout.tensor, layout.pipeline
    nvlink = _nvlink(gpu)
    baseline = inf.engine == "vllm" and not inf.vllm_before(NCCL_BEFORE_SNAPSHOT)  # PyNccl's before the snapshot
    comms: list[Comm] = []
    if t > 1:
        if inf.trt_engine:
            comms.append(Comm(TENSOR, ENGINE, t, True))
        else:
            comms += [Comm(TENSOR, PYNCCL, t, not baseline), Comm(TENSOR, TORCH, t, True)]
            if baseline and nvlink and not inf.vllm_before(GRAPH_PROFILE_IN_WINDOW):
                comms.append(Comm(TENSOR, CAPTURE, t, True))
    if p > 1:
        comms += [Comm(PIPELINE, owner, 2, True) for owner in ((ENGINE,) if inf.trt_engine else (PYNCCL, TORCH))]
        if baseline and nvlink and t == 1:
            # the pipeline group's PyNccl in the baseline, priced with the tensor group's (S35/S36 measured it)
            comms.append(Comm(PIPELINE, PYNCCL, p, False))
    comms += [Comm(EP if i == 0 and (moe or inf.vllm_before(EP_GROUP_MOE_ONLY)) else DP, PYNCCL, s, not baseline)
              for i, s in enumerate(side_groups(inf, layout, moe))]
    if (moe and layout.data > 1 and layout.expert > 1 and inf.engine == "vllm" and not inf.vllm_before(EP_GROUP_FROM)
            and inf.vllm_before(NCCL_BEFORE_SNAPSHOT)):
        # the MoE layer's naive dispatch (the default all2all before 0.11) broadcasts over the data group's torch
        # process group (device_communicators/all2all.py NaiveAll2AllManager.naive_multicast ->
        # GroupCoordinator.broadcast -> torch.distributed.broadcast, read in 0.10.1): torch's communicator for
        # that group is made in the profile run, inside the budget
        comms.append(Comm(DP, TORCH, layout.data, True))
    return tuple(comms)


def comm_bytes(c: Comm, gpu: GPU | None) -> int:
    """One communicator's device memory by its size and the interconnect: over PCIe pcie_comm_bytes(size) (NCCL's
    channel buffers, flat beyond 3 ranks); over NVLink as the log of its role measured it (module docstring): the
    tensor group's two in the profile share NCCL_NVLINK_GROUP (S15; PyNccl's or the graph capture's half, torch's the
    rest), the baseline's PyNccl of the tensor or pipeline group NCCL_INIT_NVLINK with the all-reduce buffers made
    beside it (S15, S16, S35, S36), a side group's NCCL_EP_GROUP_NVLINK (S22); a pipeline stage's peer a two-rank PCIe
    communicator, its baseline PyNccl over PCIe nothing (no row measured it)."""
    nvlink = _nvlink(gpu)
    if c.group == PIPELINE:
        if not c.inside:
            return NCCL_INIT_NVLINK if nvlink else 0
        return pcie_comm_bytes(2)
    if not nvlink:
        return pcie_comm_bytes(c.size)
    if c.group == TENSOR:
        if not c.inside:
            return NCCL_INIT_NVLINK
        return NCCL_NVLINK_GROUP - NCCL_NVLINK_GROUP // 2 if c.owner == TORCH else NCCL_NVLINK_GROUP // 2
    return NCCL_EP_GROUP_NVLINK


@functools.lru_cache(maxsize=4096)
def _priced(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool) -> tuple[int, int]:
    """(inside, outside) the budget: the communicators' bytes. Cached: an estimate asks for both, and a planner asks
    for the same layouts on the same GPUs plan after plan."""
    inside = outside = 0
    for c in communicators(inf, layout, gpu, moe):
        if c.inside:
            inside += comm_bytes(c, gpu)
        else:
            outside += comm_bytes(c, gpu)
    return inside, outside


def non_torch_bytes(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool) -> int:
    """What the engine counts outside torch with its non-torch memory: NON_TORCH_BASE (cuBLAS's handles, the
    sampler's workspaces) and the communicators inside the budget (startup.budgeted_non_torch then takes
    NON_TORCH_BASE out from startup.CUBLAS_BEFORE_SNAPSHOT)."""
    return NON_TORCH_BASE + _priced(inf, layout, gpu, moe)[0]


def outside_bytes(inf: Inference, layout: Layout, gpu: GPU | None, moe: bool) -> int:
    """What NCCL holds before vLLM's baseline snapshot (from startup.NCCL_BEFORE_SNAPSHOT), outside the budget: the
    PyNccl communicators of the tensor (or pipeline) group and of the side groups."""
    return _priced(inf, layout, gpu, moe)[1]
