"""LoRA under DeepSpeed: the engine casts the adapters to the 16-bit dtype, so no fp32 copy of their inputs is kept."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.estimator.activations import LORA_INPUT_BYTES, lora_adapter_bytes, lora_input_width
from rackfit.models import resolve
from rackfit.spec import parse_spec

TOKENS = 2 * 2048


def _spec(framework: str, rank: int, **training):
    t = dict(framework=framework, method="lora", loraRank=rank, microBatchSize=2, sequenceLength=2048,
             activationCheckpointing="none", **training)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", training=t))


@pytest.mark.parametrize("targets, adapted", [(None, 7), (["q", "v"], 2), (["q", "k", "v", "o", "up", "down"], 6)])
def test_each_adapter_keeps_its_rank_wide_16bit_intermediate(targets, adapted):
    """Doubling the rank adds one 16-bit rank-wide tensor per adapted projection, token and layer (lora_B's input)."""
    extra = dict(loraTargets=targets) if targets else {}
    low, high = _spec("deepspeed", 8, **extra), _spec("deepspeed", 16, **extra)
    a = resolve(low.model)
    grown = estimate(high).breakdown.activations_bytes - estimate(low).breakdown.activations_bytes
    assert grown == pytest.approx(2 * 8 * adapted * a.num_layers * TOKENS, rel=1e-6)


def test_no_fp32_input_copies_under_deepspeed():
    """peft's fp32 adapters copy each adapted input (LORA_INPUT_BYTES); DeepSpeed's module.half()/bfloat16() leaves
    none, only the rank-wide intermediates."""
    spec = _spec("deepspeed", 16)
    a, tr = resolve(spec.model), spec.training
    peft = _spec("transformers", 16).training
    assert lora_adapter_bytes(a, tr) == 2 * 16 * 7
    assert lora_adapter_bytes(a, peft) == LORA_INPUT_BYTES * lora_input_width(a, peft)
    assert lora_adapter_bytes(a, tr) < lora_adapter_bytes(a, peft) / 10


def test_adapter_dropout_copy_is_16bit_under_deepspeed():
    """lora_dropout's copy is made in the adapters' dtype: 16-bit under DeepSpeed, beside its 1-byte mask."""
    a = resolve(_spec("deepspeed", 16).model)
    with_dropout = _spec("deepspeed", 16, loraDropout=0.05).training
    without = _spec("deepspeed", 16).training
    assert lora_adapter_bytes(a, with_dropout) - lora_adapter_bytes(a, without) == 3 * lora_input_width(a, without)
