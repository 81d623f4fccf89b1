"""A bitsandbytes 4-bit base's quantization states stay whole on every rank under FSDP (fsdp.bnb_quant_state_bytes):
bitsandbytes keeps each matrix's QuantState on its module, not as a parameter, so FSDP1's FlatParameter and accelerate's
FSDP2 shard and offload the packed 4-bit data only. torchtune's NF4Tensor shards its scales with its data."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, frameworks, training_peak
from rackfit.estimator.fsdp import bnb_quant_state_bytes
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import parse_spec

SHAPE = {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 32000}


def _spec(data: int = 2, precision: str = "nf4", **training):
    fsdp = {"fsdpVersion": 1} if "fsdpVersion" not in training else {}
    return parse_spec({
        "model": {"architecture": SHAPE}, "workload": "training", "precision": precision,
        "training": {"framework": "fsdp", "method": "qlora" if precision == "nf4" else "lora", "loraRank": 16,
                     "microBatchSize": 1, "sequenceLength": 1024, "activationCheckpointing": "full",
                     **fsdp, **training},
        "parallelism": {"data": data}})


def _states(spec) -> int:
    arch = resolve(spec.model)
    return bnb_quant_state_bytes(count_params(arch), spec.training, spec.precision, 1)


def test_states_are_the_nf4_scales_of_the_quantized_matrices():
    spec = _spec()
    p = count_params(resolve(spec.model))
    # double quantization: an 8-bit absmax per 64 elements and an fp32 absmax per 256 of those
    assert _states(spec) == int(p.linear * (1 + 4 / 256) / 64)
    assert _states(spec) > 0


@pytest.mark.parametrize("training", [{"fsdpVersion": 1}, {"fsdpVersion": 2, "modelCode": "transformers"}])
@pytest.mark.parametrize("data", [2, 4])
def test_states_are_whole_on_every_rank(monkeypatch, training, data):
    spec = _spec(data, **training)
    whole = training_peak(spec, estimate(spec).layout).states   # kept between steps
    states = _states(spec)
    # the same job with the states sharded as the packed data is: each rank holds its 1/data share of them
    monkeypatch.setattr(frameworks, "bnb_quant_state_bytes", lambda *args: 0)
    sharded = training_peak(spec, estimate(spec).layout).states
    assert whole - sharded == pytest.approx(states - states / data, abs=64)


def test_cpu_offload_leaves_the_states_on_the_gpu():
    spec = _spec(offloadParameters=True)
    r = training_peak(spec, estimate(spec).layout)
    # the shards, their gradients and AdamW states are on the host; the states kept on the GPU are the quant states
    assert r.states == _states(spec) > 0
    kept = training_peak(_spec(), estimate(_spec()).layout)
    assert r.host_offload == kept.states - _states(spec)


def test_torchtune_int8_and_lora_bases_have_no_unsharded_states():
    assert _states(_spec(fsdpVersion=2)) == 0                    # torchtune's NF4Tensor
    assert _states(_spec(precision="int8")) == 0
    assert _states(_spec(precision="bf16")) == 0
