"""NCCL on a serving rank in one place (estimator/serving_nccl.py, issue 22): which communicators a rank holds per
engine, release and interconnect, inside or outside vLLM's budget, and one price per communicator. The two fixes:
the TRT engine's one communicator over PCIe priced by NCCL's buffers (pcie_comm_bytes), and vLLM's expert- and
data-parallel groups in the baseline from 0.11.0 on NVLink sized as over PCIe (data x tensor ranks, data ranks)."""

from __future__ import annotations

from gpus import H100, L40S

from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.estimator.result import Layout
from rackfit.estimator.serving_nccl import comm_bytes, communicators, non_torch_bytes, outside_bytes
from rackfit.spec import parse_spec

GiB = 1 << 30
MiB = 1 << 20
# the constants as their rows set them, by hand: non_torch.NCCL_PER_PEER GiB // 5 (S3), NCCL_NVLINK_GROUP
# int(1.82 GiB) (S15), startup.NCCL_INIT_NVLINK int(1.02 GiB) (S15's snapshot), NCCL_EP_GROUP_NVLINK int(0.48 GiB) (S22)
PER_PEER = GiB // 5
NVLINK_GROUP = int(1.82 * GiB)
INIT_NVLINK = int(1.02 * GiB)
EP_NVLINK = int(0.48 * GiB)
# one PCIe communicator (NCCL src/init.cc computeBuffSizes, src/transport/p2p.cc): S3's half at 2 ranks; from 3 ranks
# the second neighbour's 2 channels x (receive: 512 KiB LL + 4,915,200 B LL128 + 4 MiB Simple + 4 KiB header, rounded
# up to 2 MiB = 10 MiB; send: its header rounded up, 2 MiB)
PCIE_2 = PER_PEER // 2
PCIE_3_UP = PER_PEER // 2 + 2 * (10 + 2) * MiB


def inf(version=None, engine="vllm", backend=None, preset="llama-3.1-8b"):
    inference = dict(engine=engine, contextLength=8192)
    if version:
        inference["engineVersion"] = version
    if backend:
        inference["tensorrtLlmBackend"] = backend
    return parse_spec(dict(model=dict(preset=preset), workload="inference", inference=inference)).inference


def held(i, layout, gpu, moe=False):
    return sorted((c.group, c.owner, c.size, c.inside) for c in communicators(i, layout, gpu, moe))


def test_which_communicators_by_engine_and_release():
    t2 = Layout(tensor=2)
    # vLLM 0.10.2: the snapshot predates NCCL, so PyNccl's, torch's and the "ep" group's (every model through 0.13)
    assert held(inf("0.10.2"), t2, H100) == [("ep", "pynccl", 2, True), ("tensor", "pynccl", 2, True),
                                             ("tensor", "torch", 2, True)]
    # 0.11.0 (init_device: init_worker_distributed_environment, then MemorySnapshot()): PyNccl's in the baseline
    assert held(inf("0.11.0"), t2, H100) == [("ep", "pynccl", 2, False), ("tensor", "pynccl", 2, False),
                                             ("tensor", "torch", 2, True)]
    # 0.19.0 on NVLink: the graph capture's profile in the window (S15's measurement); dense: no "ep" from 0.14
    assert held(inf("0.19.0"), t2, H100) == [("tensor", "graph capture", 2, True), ("tensor", "pynccl", 2, False),
                                             ("tensor", "torch", 2, True)]
    assert held(inf("0.19.0"), t2, L40S) == [("tensor", "pynccl", 2, False), ("tensor", "torch", 2, True)]
    # SGLang and TensorRT-LLM's PyTorch backend: two, both counted; the TRT engine: getComm's one
    assert held(inf(engine="sglang"), t2, L40S) == [("tensor", "pynccl", 2, True), ("tensor", "torch", 2, True)]
    assert held(inf(engine="tensorrt-llm", backend="trt"), Layout(tensor=8), L40S) == [("tensor", "engine", 8, True)]
    assert held(inf("0.19.0"), Layout(), H100) == []


def test_one_price_per_communicator():
    # over PCIe by size: the same communicator costs the same for every engine
    for engine, backend in (("vllm", None), ("sglang", None), ("tensorrt-llm", "trt")):
        for c in communicators(inf(engine=engine, backend=backend), Layout(tensor=8), L40S, False):
            assert comm_bytes(c, L40S) == PCIE_3_UP
    for c in communicators(inf(engine="sglang"), Layout(tensor=2), L40S, False):
        assert comm_bytes(c, L40S) == PCIE_2
    # over NVLink the tensor group's two share S15's 1.82 GiB; the TRT engine holds one of them
    assert non_torch_bytes(inf(engine="sglang"), Layout(tensor=8), H100, False) == NON_TORCH_BASE + NVLINK_GROUP
    assert non_torch_bytes(inf(engine="tensorrt-llm", backend="trt"), Layout(tensor=8), H100, False) == \
        NON_TORCH_BASE + NVLINK_GROUP // 2


def test_trt_engine_over_pcie_is_one_nccl_communicator():
    """Fix (1): the TRT engine over PCIe was half the old per-peer count, 7 x 0.2 / 2 = 0.70 GiB at tensor 8 on L40S;
    getComm's one communicator is priced as vLLM's and SGLang's are, 0.12 GiB."""
    trt = inf(engine="tensorrt-llm", backend="trt")
    eight = non_torch_bytes(trt, Layout(tensor=8), L40S, False)
    assert eight == 107_374_182 + 132_540_006 == NON_TORCH_BASE + PCIE_3_UP
    assert abs((eight - NON_TORCH_BASE) / GiB - 0.12) < 0.005
    assert non_torch_bytes(trt, Layout(tensor=4), L40S, False) == eight                  # flat beyond 3 ranks
    assert non_torch_bytes(trt, Layout(tensor=2), L40S, False) == NON_TORCH_BASE + PER_PEER // 2   # as before
    # a pipeline stage's peer: one two-rank communicator (0.1 GiB), as before
    assert non_torch_bytes(trt, Layout(pipeline=2), L40S, False) == NON_TORCH_BASE + PER_PEER // 2


def test_side_groups_in_the_baseline_on_nvlink_as_over_pcie():
    """Fix (2): from 0.11.0 initialize_model_parallel's "ep" (data x tensor ranks) and "dp" (data ranks) groups are
    made before the snapshot whatever the tensor degree; on NVLink they were counted only at tensor > 1, as one."""
    moe = True
    dp8 = Layout(data=8, expert=8)
    # tensor 1: "ep" over 8 and "dp" over 8, one PyNccl communicator each (was nothing on NVLink)
    assert outside_bytes(inf("0.19.0"), dp8, H100, moe) == 2 * EP_NVLINK
    assert outside_bytes(inf("0.19.0"), dp8, L40S, moe) == 2 * PCIE_3_UP
    # a dense model from 0.14: the "dp" group alone
    assert outside_bytes(inf("0.19.0"), dp8, H100, False) == EP_NVLINK
    # tensor 2 x data 4: the tensor group's baseline (S15's 1.02 GiB), "ep" over 8 and "dp" over 4 (was one EP)
    mixed = Layout(tensor=2, data=4, expert=8)
    assert outside_bytes(inf("0.19.0"), mixed, H100, moe) == INIT_NVLINK + 2 * EP_NVLINK
    assert outside_bytes(inf("0.19.0"), mixed, L40S, moe) == PCIE_2 + PCIE_3_UP + PCIE_3_UP
    # unchanged: tensor 2 alone (one "ep" group), pipeline alone, before 0.11 (all inside), one GPU
    assert outside_bytes(inf("0.19.0"), Layout(tensor=2), H100, moe) == INIT_NVLINK + EP_NVLINK
    assert outside_bytes(inf("0.19.0"), Layout(pipeline=2), H100, moe) == INIT_NVLINK
    assert outside_bytes(inf("0.10.2"), dp8, H100, moe) == 0
    assert outside_bytes(inf("0.19.0"), Layout(), H100, moe) == 0
    # inside before 0.11: the same two groups and the naive dispatch's torch communicator of the data group
    assert non_torch_bytes(inf("0.10.1"), dp8, H100, moe) == NON_TORCH_BASE + 3 * EP_NVLINK


def test_communicators_do_not_depend_on_the_interconnect():
    """The list is the engine's and release's; the interconnect sets the price (and, on NVLink only, the two entries
    that carry a measurement with no PCIe counterpart: the 0.18.0+ capture window, the pipeline's baseline)."""
    for version in ("0.8.5", "0.10.1", "0.11.0", "0.14.0"):
        for layout in (Layout(tensor=2), Layout(tensor=4, data=2, expert=8), Layout(data=8, expert=8)):
            assert held(inf(version), layout, H100, True) == held(inf(version), layout, L40S, True)


def test_estimate_moves_only_where_the_baseline_is_read():
    """0.34.0's extensible cache subtracts the baseline: data 8 x expert 8 on H100 now loses two side groups."""
    from rackfit.estimator import estimate
    spec = parse_spec(dict(model=dict(preset="mixtral-8x7b"), workload="inference",
                           parallelism=dict(data=8, expert=8),
                           inference=dict(engine="vllm", contextLength=8192, engineVersion="0.34.0")))
    e = estimate(spec, gpu=H100)
    assert e.engine_starts
    from rackfit.estimator.engines import outside_snapshot_bytes
    assert outside_snapshot_bytes(spec.inference, Layout(data=8, expert=8), H100, 0, True) == 2 * EP_NVLINK
