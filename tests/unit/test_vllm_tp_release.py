"""vLLM 0.11.0-0.17.x at tensor parallel on an NVLink node: only torch's tensor communicator is inside the budget
(estimator/vllm_tp.py)."""

from __future__ import annotations

from gpus import H100, L40S

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP, NON_TORCH_BASE
from rackfit.estimator.result import Layout
from rackfit.estimator.serving_nccl import communicators, non_torch_bytes
from rackfit.spec import parse_spec
from rackfit.units import GiB


def spec(version, engine="vllm"):
    inference = dict(engine=engine, contextLength=16000, engineVersion=version)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=inference))


def profile_only_torch_comm(inf, layout, gpu):
    """Only torch's tensor communicator is inside the budget (serving_nccl.communicators)."""
    inside = [(c.group, c.owner) for c in communicators(inf, layout, gpu, False) if c.inside and c.group == "tensor"]
    return inside == [("tensor", "torch")]


def test_release_window_and_interconnect():
    two = Layout(tensor=2)
    assert not profile_only_torch_comm(spec("0.10.2").inference, two, H100)   # snapshot before NCCL: both inside
    assert profile_only_torch_comm(spec("0.11.0").inference, two, H100)
    assert profile_only_torch_comm(spec("0.17.1").inference, two, H100)
    assert not profile_only_torch_comm(spec("0.18.0").inference, two, H100)   # graph profile inside the window
    assert not profile_only_torch_comm(spec("0.11.0").inference, Layout(tensor=1), H100)
    assert profile_only_torch_comm(spec("0.11.0").inference, two, L40S)   # PCIe: the same communicator, its own price
    assert not profile_only_torch_comm(spec("0.10.2").inference, two, L40S)
    assert not profile_only_torch_comm(spec("0.11.0", "sglang").inference, two, H100)


def test_one_of_two_communicators_inside():
    nt = non_torch_bytes(spec("0.19.0").inference, Layout(tensor=2), H100, False)
    assert nt == NON_TORCH_BASE + NCCL_NVLINK_GROUP
    got = non_torch_bytes(spec("0.11.0").inference, Layout(tensor=2), H100, False)
    assert got == NON_TORCH_BASE + int(1.82 * GiB) - int(1.82 * GiB) // 2      # 0.10 + 0.91 GiB: torch's only
    # 0.10.2: both of the tensor group's communicators and the "ep" group's (every model then) inside
    from rackfit.estimator.startup import NCCL_EP_GROUP_NVLINK
    assert non_torch_bytes(spec("0.10.2").inference, Layout(tensor=2), H100, False) == nt + NCCL_EP_GROUP_NVLINK


def test_estimate_moves_only_in_the_window():
    old = estimate(spec("0.11.0"), Layout(tensor=2), gpu=H100).breakdown.non_torch_bytes
    new = estimate(spec("0.19.0"), Layout(tensor=2), gpu=H100).breakdown.non_torch_bytes
    assert new - old == NCCL_NVLINK_GROUP // 2


def qwen3_vl_spec(version, context=65536):
    arch = dict(maxPositionEmbeddings=262144, visionParameters=535523328, visionHiddenSize=1152,
                visionIntermediateSize=4304, visionOutputWidth=8192, visionPatchesPerItem=65536,
                visionTokensPerItem=16384)
    return parse_spec(dict(model=dict(preset="qwen3-30b-a3b", architecture=arch), workload="inference",
                           parallelism=dict(tensor=4),
                           inference=dict(contextLength=context, engineVersion=version, gpuMemoryUtilization=0.9)))


def test_qwen3_vl_pixel_values_held_through_the_profile():
    from rackfit.estimator.engines import settings
    from rackfit.estimator.vllm_tp import mm_inputs_held_bytes
    from rackfit.models import resolve

    rtx3090 = GPU(model="RTX 3090", product="RTX 3090", memoryGB=24, memoryMiB=24576, architecture="ampere")
    for version, patches in (("0.11.0", 49152), ("0.13.0", 65536)):
        sp = qwen3_vl_spec(version)
        a = resolve(sp.model)
        s = settings(sp.inference, rtx3090, 4, 1, a)
        # S262's 0.11.0 profile: one video of 12,288 soft tokens x 4 patches; 0.13.0: one 4096 x 4096 image
        # (65,536 patches); a row of 3 x 2 x 16 x 16 bf16 values
        assert mm_inputs_held_bytes(sp.inference, a, s) == patches * 1536 * 2
    sp = qwen3_vl_spec("0.34.0")
    a = resolve(sp.model)
    assert mm_inputs_held_bytes(sp.inference, a, settings(sp.inference, rtx3090, 4, 1, a)) == 0
    text = spec("0.11.0")
    a = resolve(text.model)
    assert mm_inputs_held_bytes(text.inference, a, settings(text.inference, rtx3090, 1, 1, a)) == 0
