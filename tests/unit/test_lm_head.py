"""A training job that runs the bare decoder (training.lmHead false: transformers' AutoModel, e.g. LlamaModel, "the bare
... Model outputting raw hidden-states without any specific head on top", under a small task head over a few pooled
tokens) makes no vocabulary-wide logits and no cross-entropy over them, and loads no lm_head weight where the model's
head is untied (estimator/__init__.py _run_params and _trainer_step). T1760: a Llama-3.2-1B fp32 classifier with LoRA
r16 at 16 x 256 on an A10, peak allocated 20.57 GiB."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, trainer_allocated_peak
from rackfit.spec import parse_spec
from rackfit.units import GiB

LLAMA_32_1B = dict(preset="llama-3.2-1b")
UNTIED = dict(architecture=dict(numLayers=16, hiddenSize=2048, intermediateSize=8192, numAttentionHeads=32,
                                numKeyValueHeads=8, headDim=64, vocabSize=128256, tieWordEmbeddings=False))


def _spec(model=LLAMA_32_1B, **t):
    base = dict(framework="transformers", method="lora", loraRank=16, loraDropout=0.1, masterWeights="none",
                optimizer="adamw", adamwImplementation="foreach", microBatchSize=16, sequenceLength=256,
                activationCheckpointing="none")
    return parse_spec(dict(model=model, workload="training", precision="fp32", training={**base, **t}))


def test_the_bare_decoder_makes_no_logits_and_no_loss():
    with_head, bare = _spec(), _spec(lmHead=False)
    # the loss's backward at its peak: the fp32 log-softmax, its gradient and the logits' gradient, 12 bytes a logit
    logits = 16 * 256 * 128256
    assert trainer_allocated_peak(with_head) - trainer_allocated_peak(bare) == pytest.approx(12 * logits, rel=0.01)
    # a tied model keeps its embedding: the weights are the same
    assert estimate(bare).breakdown.weights_bytes == estimate(with_head).breakdown.weights_bytes
    # T1760's reading: 20.57 GiB allocated at its peak (-6.3% since LoRA on an fp32 base has its own fp32 count,
    # estimator/activations.py _fp32_lora_layer_bytes)
    assert trainer_allocated_peak(bare) / GiB == pytest.approx(20.57, rel=0.07)


def test_an_untied_head_is_not_loaded():
    with_head, bare = _spec(UNTIED), _spec(UNTIED, lmHead=False)
    head = 128256 * 2048 * 4  # the fp32 lm_head weight
    assert estimate(with_head).breakdown.weights_bytes - estimate(bare).breakdown.weights_bytes == head


def test_lm_head_true_is_the_default():
    assert estimate(_spec(lmHead=True)).total_bytes == estimate(_spec()).total_bytes


def test_lm_head_only_with_framework_transformers():
    with pytest.raises(InvalidWorkload, match="lmHead"):
        parse_spec(dict(model=LLAMA_32_1B, workload="training", precision="bf16",
                        training=dict(framework="fsdp", method="full", lmHead=False)))
