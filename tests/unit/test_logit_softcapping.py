"""architecture.finalLogitSoftcapping: transformers' Gemma2ForCausalLM.forward (4.42-4.49) computes
`logits / cap`, `torch.tanh`, `* cap` over the whole vocabulary; tanh saves its 16-bit output for the backward, one
logit-sized tensor more from the forward's end through the loss's backward (bench rows T924, T925). Counts by hand."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import training_activations
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import ModelSource, parse_spec

GEMMA2_9B = {"numLayers": 42, "hiddenSize": 3584, "intermediateSize": 14336, "numAttentionHeads": 16,
             "numKeyValueHeads": 8, "headDim": 256, "vocabSize": 256000, "tieWordEmbeddings": True,
             "slidingWindow": 4096, "slidingWindowLayers": 21}
V = 256000
TOKENS = 2 * 4096


def _spec(cap: float | None, **training) -> dict:
    arch = {**GEMMA2_9B, **({"finalLogitSoftcapping": cap} if cap is not None else {})}
    t = {"framework": "transformers", "method": "lora", "loraRank": 8, "optimizer": "adamw", "microBatchSize": 2,
         "sequenceLength": 4096, "activationCheckpointing": "full", "transformersVersion": "4.49.0"}
    t.update(training)
    return {"model": {"architecture": arch}, "workload": "training", "precision": "bf16", "training": t,
            "parallelism": {"data": 1}}


def _act(spec: dict):
    s = parse_spec(spec)
    return training_activations(resolve(s.model), s.training, Layout(), mixed=False)


@pytest.mark.parametrize("training", [{}, {"lossUpcast": False}])
def test_tanh_keeps_one_16_bit_logit_tensor_at_the_loss_forward_and_backward(training):
    capped, plain = _act(_spec(30.0, **training)), _act(_spec(None, **training))
    assert capped.loss_forward - plain.loss_forward == TOKENS * V * 2
    assert capped.loss_backward - plain.loss_backward == TOKENS * V * 2
    assert capped.layers == plain.layers and capped.recompute == plain.recompute
    assert _act(_spec(0.0, **training)) == plain   # 0: no capping


def test_the_estimate_grows_when_the_loss_backward_is_the_peak():
    capped, plain = estimate(parse_spec(_spec(30.0))), estimate(parse_spec(_spec(None)))
    assert capped.peak_phase == plain.peak_phase == "loss backward"
    assert capped.breakdown.activations_bytes - plain.breakdown.activations_bytes == TOKENS * V * 2
    assert capped.breakdown.weights_bytes == plain.breakdown.weights_bytes


def test_read_from_config_json_and_the_gemma_2_preset():
    assert architecture_from_hf_config({"model_type": "gemma2", "final_logit_softcapping": 30.0}
                                       ).final_logit_softcapping == 30.0
    # Gemma 3's config.json writes null: no capping
    assert architecture_from_hf_config({"model_type": "gemma3_text", "final_logit_softcapping": None}
                                       ).final_logit_softcapping is None
    assert resolve(ModelSource(preset="gemma-2-27b")).final_logit_softcapping == 30.0


def test_negative_cap_is_refused_naming_the_field():
    with pytest.raises((InvalidWorkload, ValueError), match="finalLogitSoftcapping|final_logit_softcapping"):
        parse_spec(_spec(-1.0))
