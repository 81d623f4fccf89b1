"""A trainer that casts a bitsandbytes base's fp32 embeddings, head and norms back to 16 bits (training.kbitNormsFp32
false: axolotl's `_configure_embedding_dtypes` upcasts them, peft's prepare upcasts the rest, `should_convert` casts
them back) has all the fp32 copies alive at load: 2 bytes a parameter allocated beyond the 16-bit weights, and the
freed 16-bit blocks (2 bytes) cached, before any gradient or optimizer state exists (estimator/peft.py
kbit_vocab_recast_bytes). The step is served from those blocks, so the load is the peak only where it is larger."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_states
from rackfit.estimator.params import count_params
from rackfit.estimator.peft import kbit_vocab_recast_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

# Qwen3.5-27B's vocabulary and width on four dense layers: the vocabulary dominates the model
SHAPE = dict(numLayers=4, hiddenSize=5120, intermediateSize=17408, numAttentionHeads=24, numKeyValueHeads=4,
             headDim=256, vocabSize=248320, tieWordEmbeddings=False)


def _spec(precision: str = "nf4", **t):
    base = dict(framework="transformers", method="qlora" if precision == "nf4" else "lora", loraRank=16,
                microBatchSize=1, sequenceLength=512, activationCheckpointing="full", flashAttention=True,
                lossChunks=16)
    return parse_spec(dict(model=dict(architecture=SHAPE), workload="training", precision=precision,
                           training={**base, **t}))


@pytest.mark.parametrize("precision", ["nf4", "int8"])
def test_fp32_copies_of_embeddings_head_and_norms_are_held_at_load(precision):
    spec = _spec(precision, kbitNormsFp32=False)
    p = count_params(resolve(spec.model))
    # embed_tokens and lm_head 248,320 x 5,120 each, 2 RMSNorms a layer and the final one of 5,120
    vocab = 2 * 248320 * 5120 + (2 * 4 + 1) * 5120
    assert p.embedding + p.lm_head + p.norms == vocab
    assert kbit_vocab_recast_bytes(p, spec.training, spec.precision) == 4 * vocab
    est = estimate(spec)
    assert est.peak_phase == "load"
    assert any(n.startswith("peak at load") and "kbitNormsFp32 false" in n for n in est.notes)
    assert est.breakdown.weights_bytes == training_states(spec).weights + 2 * vocab
    assert est.breakdown.activations_bytes == est.breakdown.gradients_bytes == 0


def test_no_recast_where_peft_s_fp32_stays_or_the_base_is_16_bit():
    p = count_params(resolve(_spec().model))
    for spec in (_spec(), _spec(kbitNormsFp32=True), _spec("bf16")):
        assert kbit_vocab_recast_bytes(p, spec.training, spec.precision) == 0
        assert estimate(spec).peak_phase != "load"


def test_a_step_larger_than_the_load_is_the_peak():
    # 16 x 8,192 tokens: the step's activations outgrow the fp32 copies' blocks it is served from
    spec = _spec(kbitNormsFp32=False, microBatchSize=16, sequenceLength=8192)
    assert estimate(spec).peak_phase != "load"
