"""training.lossUpcast false: a plain PyTorch loop that calls a transformers causal LM without labels and runs its own
nn.CrossEntropyLoss over `logits[:, :-1, :].reshape(-1, vocab)` (ljm565/universal-llm-trainer src/models/llama3.py,
bench rows T920-T929). From transformers 4.46 the model returns the lm_head's 16-bit output, so the loss keeps 16-bit
buffers only: the logits, the shifted copy and the log-softmax at the forward's end, the saved log-softmax and two
16-bit gradients in the backward. Before 4.46 the model's forward upcasts the logits itself. Counts by hand."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import training_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, parse_spec

ARCH = {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
        "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 128256, "tieWordEmbeddings": False}
V = 128256
TOKENS = 2 * 8192


def _spec(version: str | None = "4.49.0", **training) -> dict:
    t = {"framework": "transformers", "method": "lora", "loraRank": 8, "optimizer": "adamw", "microBatchSize": 2,
         "sequenceLength": 8192, "activationCheckpointing": "full"}
    if version:
        t["transformersVersion"] = version
    t.update(training)
    return {"model": {"architecture": ARCH}, "workload": "training", "precision": "bf16", "training": t,
            "parallelism": {"data": 1}}


def _act(spec: dict):
    return training_activations(resolve(ModelSource(architecture=ARCH)), parse_spec(spec).training, Layout(),
                                 mixed=False)


def test_own_loss_keeps_six_16_bit_bytes_a_logit_at_the_forward_end_and_in_the_backward():
    own, hf = _act(_spec(lossUpcast=False)), _act(_spec())
    assert own.loss_forward == TOKENS * V * 6
    assert own.loss_backward == TOKENS * V * 6
    # transformers' loss: the 16-bit logits beside the fp32 upcast and log-softmax; fp32 gradients in the backward
    assert hf.loss_forward == TOKENS * V * 10
    assert hf.loss_backward == TOKENS * V * 12
    assert own.layers == hf.layers and own.recompute == hf.recompute


def test_before_4_46_the_model_upcasts_in_its_forward_so_the_own_loss_changes_nothing():
    assert _act(_spec("4.45.2", lossUpcast=False)) == _act(_spec("4.45.2"))
    assert not parse_spec(_spec("4.45.2", lossUpcast=False)).training.own_16bit_loss
    assert parse_spec(_spec(None, lossUpcast=False)).training.own_16bit_loss   # unset: a current release


def test_the_estimate_drops_by_the_loss_bytes_saved_when_the_loss_backward_is_the_peak():
    own, hf = estimate(parse_spec(_spec(lossUpcast=False))), estimate(parse_spec(_spec()))
    assert hf.breakdown.activations_bytes - own.breakdown.activations_bytes == TOKENS * V * (12 - 6)
    assert own.breakdown.weights_bytes == hf.breakdown.weights_bytes
    assert own.total_bytes < hf.total_bytes


@pytest.mark.parametrize("training", [
    {"method": "qlora"},
    {"lossChunks": 8},
    {"framework": "fsdp"},
])
def test_lossupcast_false_is_refused_where_the_logits_are_not_transformers_16_bit_ones(training):
    spec = _spec(None, lossUpcast=False, **training)
    if training.get("method") == "qlora":
        spec["precision"] = "nf4"
    with pytest.raises(InvalidWorkload, match="lossUpcast"):
        parse_spec(spec)
