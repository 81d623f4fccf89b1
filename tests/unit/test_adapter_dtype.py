"""training.adapterDtype under framework transformers: 16-bit LoRA adapters (peft 0.6.0-0.11.x on a 16-bit base,
LitGPT's bf16-true, Olive's QLoRA cast) keep their weights, gradients and AdamW states in 2 bytes and no fp32 copy of
each adapted input; unset keeps peft's fp32 adapters (autocast_adapter_dtype, from 0.12.0)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, training_states
from rackfit.estimator.activations import LORA_INPUT_BYTES, lora_adapter_bytes, lora_input_width
from rackfit.estimator.training import lora_element_bytes, lora_params
from rackfit.models import resolve
from rackfit.spec import parse_spec


def _spec(method: str = "lora", precision: str = "bf16", **training):
    t = dict(method=method, loraRank=16, masterWeights="none", microBatchSize=2, sequenceLength=2048,
             activationCheckpointing="none", **training)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision=precision, training=t))


def test_unset_keeps_peft_fp32_adapters():
    """The default is peft's fp32 adapters, whatever masterWeights says (masterWeights keeps its meaning)."""
    assert lora_element_bytes(_spec().training) == 4
    assert lora_element_bytes(_spec(adapterDtype="fp32").training) == 4
    assert lora_element_bytes(_spec(adapterDtype="16bit").training) == 2


@pytest.mark.parametrize("method, precision", [("lora", "bf16"), ("qlora", "nf4")])
def test_16bit_adapters_halve_their_states(method, precision):
    """Weights, gradients and AdamW's two states of the adapters: 4 bytes an element each -> 2."""
    fp32, half = _spec(method, precision), _spec(method, precision, adapterDtype="16bit")
    a = resolve(fp32.model)
    n = lora_params(a, fp32.training)
    s32, s16 = training_states(fp32), training_states(half)
    assert s32.gradients - s16.gradients == 2 * n
    assert s32.optimizer - s16.optimizer == 2 * 2 * n
    assert s32.weights - s16.weights == 2 * n


def test_16bit_adapters_keep_no_fp32_input_copy():
    """peft's fp32 adapters copy each adapted input to fp32 (LORA_INPUT_BYTES); 16-bit adapters save the 16-bit input
    the layer's count already holds and the rank-wide lora_A output only, as under DeepSpeed."""
    fp32, half = _spec().training, _spec(adapterDtype="16bit").training
    a = resolve(_spec().model)
    assert lora_adapter_bytes(a, fp32) == LORA_INPUT_BYTES * lora_input_width(a, fp32)
    assert lora_adapter_bytes(a, half) == 2 * 16 * 7
    assert estimate(_spec(adapterDtype="16bit")).breakdown.activations_bytes < \
        estimate(_spec()).breakdown.activations_bytes


def test_16bit_dropout_copy():
    """lora_dropout's copy is in the adapters' dtype: 2 bytes plus the 1-byte mask a 16-bit adapter's input."""
    a = resolve(_spec().model)
    with_dropout = _spec(adapterDtype="16bit", loraDropout=0.05).training
    without = _spec(adapterDtype="16bit").training
    assert lora_adapter_bytes(a, with_dropout) - lora_adapter_bytes(a, without) == 3 * lora_input_width(a, without)


@pytest.mark.parametrize("training", [dict(framework="fsdp"), dict(framework="deepspeed"), dict(method="full")])
def test_only_transformers_lora(training):
    """Under fsdp masterWeights says the adapters' dtype; DeepSpeed casts the module itself; full has no adapters."""
    t = dict(method="lora", adapterDtype="16bit")
    t.update(training)
    with pytest.raises(InvalidWorkload, match="adapterDtype"):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", training=t))
