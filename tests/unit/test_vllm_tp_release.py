"""vLLM 0.11.0-0.17.x at tensor parallel on an NVLink node: only torch's tensor communicator is inside the budget
(estimator/vllm_tp.py)."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engine_profile import NCCL_NVLINK_GROUP, NON_TORCH_BASE, non_torch_bytes
from rackfit.estimator.result import Layout
from rackfit.estimator.vllm_tp import profile_only_torch_comm, vllm_tp_non_torch_bytes
from rackfit.spec import parse_spec
from rackfit.units import GiB

H100 = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")
L40S = GPU(model="L40S", product="L40S", memoryGB=48, memoryMiB=46068, architecture="ada")


def spec(version, engine="vllm"):
    inference = dict(engine=engine, contextLength=16000, engineVersion=version)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=inference))


def test_release_window_and_interconnect():
    two = Layout(tensor=2)
    assert not profile_only_torch_comm(spec("0.10.2").inference, two, H100)   # snapshot before NCCL: both inside
    assert profile_only_torch_comm(spec("0.11.0").inference, two, H100)
    assert profile_only_torch_comm(spec("0.17.1").inference, two, H100)
    assert not profile_only_torch_comm(spec("0.18.0").inference, two, H100)   # graph profile inside the window
    assert not profile_only_torch_comm(spec("0.11.0").inference, Layout(tensor=1), H100)
    assert not profile_only_torch_comm(spec("0.11.0").inference, two, L40S)   # PCIe: pcie_serving's rule
    assert not profile_only_torch_comm(spec("0.11.0", "sglang").inference, two, H100)


def test_one_of_two_communicators_inside():
    nt = non_torch_bytes(Layout(tensor=2), H100)
    assert nt == NON_TORCH_BASE + NCCL_NVLINK_GROUP
    got = vllm_tp_non_torch_bytes(spec("0.11.0").inference, Layout(tensor=2), H100, nt)
    assert got == NON_TORCH_BASE + int(1.82 * GiB) - int(1.82 * GiB) // 2      # 0.10 + 0.91 GiB: torch's only
    assert vllm_tp_non_torch_bytes(spec("0.19.0").inference, Layout(tensor=2), H100, nt) == nt


def test_estimate_moves_only_in_the_window():
    old = estimate(spec("0.11.0"), Layout(tensor=2), gpu=H100).breakdown.non_torch_bytes
    new = estimate(spec("0.19.0"), Layout(tensor=2), gpu=H100).breakdown.non_torch_bytes
    assert new - old == NCCL_NVLINK_GROUP // 2
