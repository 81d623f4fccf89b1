"""training.loraDropout: peft's and torchtune's lora_dropout keeps a dropped copy of each adapted input and its mask."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.estimator.activations import lora_input_width
from rackfit.models import resolve
from rackfit.spec import LORA_TARGETS, parse_spec


def _spec(dropout: float | None, **training):
    t = {**dict(framework="transformers", method="lora", microBatchSize=2, sequenceLength=2048), **training}
    if dropout is not None:
        t["loraDropout"] = dropout
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", training=t))


def test_default_is_peft_s_zero_dropout():
    assert estimate(_spec(None)).total_bytes == estimate(_spec(0.0)).total_bytes


@pytest.mark.parametrize("training, adapter_bytes, unsaved", [
    (dict(), 4, False),                                            # peft's fp32 adapters: an fp32 copy
    (dict(framework="fsdp", masterWeights="none"), 2, True),       # torchtune's 16-bit adapters: a 16-bit copy
])
def test_dropout_keeps_a_copy_and_a_mask_per_adapted_input(training, adapter_bytes, unsaved):
    """With 16-bit adapters lora_a saves the dropout's copy in place of the projection's input, which nothing else
    saves then (framework_activations.frozen_input_bytes): both norms' 16-bit outputs and down's input go."""
    spec = _spec(0.1, **training)
    a = resolve(spec.model)
    extra = estimate(spec).breakdown.activations_bytes - estimate(_spec(0.0, **training)).breakdown.activations_bytes
    per_token_layer = (adapter_bytes + 1) * lora_input_width(a, spec.training)
    if unsaved:
        per_token_layer -= 2 * 2 * a.hidden_size + 2 * a.intermediate_size
    assert extra == pytest.approx(per_token_layer * a.num_layers * 2 * 2048, rel=1e-6)


def test_full_checkpointing_keeps_at_most_one_layer_s_copies():
    full = estimate(_spec(0.1, activationCheckpointing="full")).total_bytes - \
        estimate(_spec(0.0, activationCheckpointing="full")).total_bytes
    none = estimate(_spec(0.1)).total_bytes - estimate(_spec(0.0)).total_bytes
    assert 0 <= full < none / 10 and none > 0


@pytest.mark.parametrize("training, message", [
    (dict(method="full", loraDropout=0.1), "training.loraDropout is only allowed with method lora or qlora"),
    (dict(method="lora", loraDropout=1.0), "loraDropout"),
    (dict(method="full", loraTargets=["q"]), "training.loraTargets is only allowed with method lora or qlora"),
    (dict(method="lora", loraTargets=["qkv"]), "loraTargets"),
])
def test_invalid_dropout_names_the_field(training, message):
    with pytest.raises(InvalidWorkload, match=message):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", training=training))


def test_targets_set_the_adapters_and_the_copies():
    """peft's default for Llama-style models is q and v: fewer adapters, fewer fp32 input copies, fewer dropouts."""
    qv, every = _spec(0.1, loraTargets=["q", "v"]), _spec(0.1)
    a = resolve(qv.model)
    assert lora_input_width(a, qv.training) == 2 * a.hidden_size
    assert lora_input_width(a, every.training) == 5 * a.hidden_size + a.num_attention_heads * a.head_dim \
        + a.intermediate_size
    assert estimate(qv).breakdown.activations_bytes < estimate(every).breakdown.activations_bytes
    assert estimate(qv).breakdown.optimizer_states_bytes < estimate(every).breakdown.optimizer_states_bytes
    assert estimate(_spec(None, loraTargets=list(reversed(LORA_TARGETS)))).total_bytes == \
        estimate(_spec(None)).total_bytes
