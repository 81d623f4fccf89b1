"""training.torchVersion (issue 22, T339): DistributedDataParallel's constructor broadcasts every parameter and buffer
in flattened 250 MiB buckets (torch/distributed/utils.py _sync_module_states, torch/csrc/distributed/c10d/comm.cpp
broadcast_coalesced); before torch 2.8 ProcessGroupNCCL recorded each flat copy on its stream, so the allocator kept
every bucket the GPU had not sent yet: counted at its bound, a second copy of the module on every rank at wrap time
(estimator/training.py ddp_wrap_copies)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import CUDA_CONTEXT_BYTES, estimate, training_states
from rackfit.estimator.comms import training_nccl_bytes
from rackfit.estimator.megatron_buffers import torch_workspace_bytes_outside_megatron
from rackfit.estimator.result import Layout
from rackfit.estimator.training import ddp_wrap_copies
from rackfit.spec import parse_spec

LORA = dict(framework="transformers", method="lora", loraRank=8, loraDropout=0.05, optimizer="adamw",
            microBatchSize=1, sequenceLength=128, activationCheckpointing="full", gradientAccumulationSteps=8)


def _spec(data: int = 2, **training):
    return parse_spec(dict(model=dict(preset="qwen2.5-7b"), workload="training", precision="bf16",
                           training={**LORA, **training}, parallelism=dict(data=data)))


def _reserved(spec) -> int:
    est = estimate(spec)
    return est.total_bytes - CUDA_CONTEXT_BYTES - training_nccl_bytes(spec.training, est.layout)


def test_lora_under_ddp_before_2_8_reserves_a_second_copy_at_wrap_time():
    old = _spec(torchVersion="2.5.1")
    est = estimate(old)
    module = training_states(old).weights   # the frozen 16-bit base and the fp32 adapters
    assert est.peak_phase == "load"
    assert any(n.startswith("peak at load") and "training.torchVersion" in n for n in est.notes)
    assert est.breakdown.weights_bytes == module
    assert _reserved(old) == 2 * module + torch_workspace_bytes_outside_megatron(old.training)
    # about 28.5 GiB for Qwen2.5-7B (T339 logged 27.5), where the step alone is near 15
    assert 28.4 < _reserved(old) / 2**30 < 28.7
    assert _reserved(_spec()) / 2**30 < 15.5


@pytest.mark.parametrize("version", [None, "2.8.0", "2.9"])
def test_stashed_collectives_from_2_8_leave_the_step_peak(version):
    est = estimate(_spec(torchVersion=version))
    assert est.peak_phase != "load"
    assert not any(n.startswith("peak at load") for n in est.notes)
    assert est.total_bytes == estimate(_spec()).total_bytes


def test_only_ddp_holds_the_copies():
    # one GPU: no DDP; ZeRO under the HF Trainer: DeepSpeed broadcasts in place (no flat buckets)
    assert estimate(_spec(data=1, torchVersion="2.5.1")).total_bytes == estimate(_spec(data=1)).total_bytes
    zero = dict(zeroStage=2)
    assert estimate(_spec(torchVersion="2.5.1", **zero)).total_bytes == estimate(_spec(**zero)).total_bytes
    tr = _spec(torchVersion="2.5.1").training
    assert ddp_wrap_copies(tr, Layout(data=1), 10) == 0
    assert ddp_wrap_copies(tr, Layout(data=2), 10) == 10


def test_a_full_fine_tune_peaks_in_its_step_not_at_the_wrap():
    full = dict(method="full", masterWeights="none", loraRank=None, loraDropout=None)
    assert estimate(_spec(torchVersion="2.5.1", **full)).total_bytes == estimate(_spec(**full)).total_bytes


@pytest.mark.parametrize("framework", ["fsdp", "deepspeed"])
def test_torch_version_is_modelled_for_transformers_only(framework):
    with pytest.raises(InvalidWorkload, match="torchVersion"):
        _spec(torchVersion="2.5.1", framework=framework)
