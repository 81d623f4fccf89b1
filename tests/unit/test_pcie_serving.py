"""NCCL over PCIe on a serving rank and vLLM's expert-/data-parallel groups (estimator/pcie_serving.py,
estimator/serving_nccl.py): a
communicator's buffers from NCCL's sizes (src/init.cc, src/transport/p2p.cc), flat in the group's size beyond 3 ranks,
and where vLLM's snapshot puts each communicator by release (0.9.0's "ep"/"dp" groups, 0.11.0's snapshot after
init_distributed_environment)."""

from __future__ import annotations

from gpus import H100, L40S

from rackfit.estimator.non_torch import NCCL_PER_PEER, NON_TORCH_BASE
from rackfit.estimator.pcie_serving import (
    LL128_BUFFSIZE,
    LL_BUFFSIZE,
    RECV_CONNECTION,
    channel_bytes,
    pcie_comm_bytes,
)
from rackfit.estimator.result import Layout
from rackfit.estimator.serving_nccl import non_torch_bytes, outside_bytes, side_groups
from rackfit.estimator.startup import NCCL_EP_GROUP_NVLINK
from rackfit.spec import parse_spec
from rackfit.units import GiB, MiB


def inf(version=None, engine="vllm"):
    inference = dict(engine=engine, contextLength=8192)
    if version:
        inference["engineVersion"] = version
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=inference)).inference


def test_buffer_sizes_from_nccl_source():
    assert LL_BUFFSIZE == 512 * 1024                  # 8 lines x 512 threads x 8 steps x 16 B
    assert LL128_BUFFSIZE == 4_915_200                # 120 x 640 x 8 steps x 8 B
    # LL + LL128 + Simple (4 MiB) = 9,633,792 B and the ncclRecvMem header, rounded up to CUDA_IPC_MIN (2 MiB)
    assert RECV_CONNECTION == 10 * MiB
    # two channels, one neighbour at 2 ranks: 2 x (10 + 2) MiB; two neighbours from 3 ranks on, whatever the size
    assert channel_bytes(2) == 24 * MiB
    assert channel_bytes(3) == channel_bytes(8) == 48 * MiB
    assert channel_bytes(1) == 0


def test_pcie_communicator_is_flat_in_the_group_size():
    assert pcie_comm_bytes(2) == NCCL_PER_PEER // 2
    assert pcie_comm_bytes(4) == pcie_comm_bytes(8) == NCCL_PER_PEER // 2 + 24 * MiB
    assert pcie_comm_bytes(1) == 0


def test_tensor_group_over_pcie_by_release():
    t8 = Layout(tensor=8)
    # 0.10.2 (snapshot before NCCL): PyNccl's and torch's communicators, plus the "ep" group (every model then)
    old = non_torch_bytes(inf("0.10.2"), t8, L40S, False)
    assert old == NON_TORCH_BASE + 3 * (NCCL_PER_PEER // 2 + 24 * MiB)
    assert abs(old / GiB - 0.47) < 0.01                          # S261 logged 0.21 GiB, rackfit counted 1.50
    # 0.19.0, dense: PyNccl's communicator is in the baseline, torch's in the budget; no "ep" group from 0.14
    new = non_torch_bytes(inf("0.19.0"), t8, L40S, False)
    assert new == NON_TORCH_BASE + pcie_comm_bytes(8)
    assert outside_bytes(inf("0.19.0"), t8, L40S, False) == pcie_comm_bytes(8)
    assert outside_bytes(inf("0.19.0"), t8, L40S, True) == 2 * pcie_comm_bytes(8)
    assert outside_bytes(inf("0.10.2"), t8, L40S, True) == 0
    # tensor 2 before 0.9.0 (V0 0.7.1, S3's run): the two communicators as NCCL_PER_PEER had them
    two = Layout(tensor=2)
    assert non_torch_bytes(inf("0.7.1"), two, L40S, False) == NON_TORCH_BASE + NCCL_PER_PEER
    # SGLang: both communicators at start-up, counted as before but flat
    assert non_torch_bytes(inf(engine="sglang"), Layout(tensor=4), L40S, False) == \
        NON_TORCH_BASE + 2 * pcie_comm_bytes(4)


def test_expert_and_data_parallel_groups():
    moe = True
    assert side_groups(inf("0.8.5"), Layout(tensor=4), moe) == []          # no "ep" group before 0.9.0
    assert side_groups(inf("0.10.1"), Layout(tensor=4), False) == [4]      # every model through 0.13
    assert side_groups(inf("0.14.0"), Layout(tensor=4), False) == []       # MoE only from 0.14
    # data 8 with expert parallel (S257's -dp 8 --enable-expert-parallel): "ep" over 8 ranks and "dp" over 8
    assert side_groups(inf("0.10.1"), Layout(data=8, expert=8), moe) == [8, 8]
    # data replicas without expert parallelism are separate engines: no shared group
    assert side_groups(inf("0.10.1"), Layout(data=8), moe) == []
    # before 0.11 both count inside the budget, on NVLink one communicator each (startup.NCCL_EP_GROUP_NVLINK), and
    # the data group's torch communicator that the MoE layer's naive dispatch broadcasts over
    one = Layout(data=8, expert=8)
    base = NON_TORCH_BASE
    assert non_torch_bytes(inf("0.10.1"), one, H100, moe) == base + 3 * NCCL_EP_GROUP_NVLINK
    assert non_torch_bytes(inf("0.10.1"), one, H100, False) == base + 2 * NCCL_EP_GROUP_NVLINK
    assert non_torch_bytes(inf("0.11.0"), one, H100, moe) == base   # from 0.11 in the baseline


def test_estimates_move_for_pcie_rows():
    from rackfit.estimator import estimate

    spec = parse_spec(dict(model=dict(preset="llama-3.1-70b"), workload="inference",
                           inference=dict(contextLength=8192, engineVersion="0.10.2")))
    four = estimate(spec, Layout(tensor=4), gpu=L40S).breakdown.non_torch_bytes
    eight = estimate(spec, Layout(tensor=8), gpu=L40S).breakdown.non_torch_bytes
    assert four == eight                                                   # flat beyond 3 ranks
