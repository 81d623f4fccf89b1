"""training.preWrapOptimizer (issue 22, T395): HF Trainer 4.30.0-4.31.x built a full fine-tune's optimizer over the
unwrapped model before accelerate wrapped it in FSDP1; the lr scheduler kept that first optimizer, whose param_groups
kept every original parameter that FSDP1 had moved to the GPU and copied into its flat parameters (transformers issue
25580, fixed in 4.32.0 by preparing the model first)."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.spec import InvalidWorkload, parse_spec

LLAMA7B = dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32, numKeyValueHeads=32,
               headDim=128, vocabSize=32001, tieWordEmbeddings=False)


def _fsdp1(**t):
    base = dict(framework="fsdp", fsdpVersion=1, method="full", masterWeights="fp32", optimizer="adamw",
                microBatchSize=4, sequenceLength=512, activationCheckpointing="none", flashAttention=False,
                transformersVersion="4.31.0", gradientAccumulationSteps=8)
    return parse_spec(dict(model=dict(architecture=LLAMA7B), workload="training", precision="bf16",
                           training={**base, **t}, parallelism=dict(data=4)))


def test_the_stale_originals_are_one_unsharded_copy_in_the_loaded_dtype():
    plain, stale = estimate(_fsdp1()), estimate(_fsdp1(preWrapOptimizer=True))
    # every parameter in fp32 (loaded in fp32: the FSDP1 flat parameters' dtype), not divided over the 4 GPUs
    assert stale.breakdown.weights_bytes - plain.breakdown.weights_bytes == stale.parameters * 4
    # held for the whole run, so the whole estimate moves by at least that much
    assert stale.total_bytes - plain.total_bytes >= stale.parameters * 4


def test_pure_16bit_originals_count_two_bytes():
    plain = estimate(_fsdp1(masterWeights="none"))
    stale = estimate(_fsdp1(masterWeights="none", preWrapOptimizer=True))
    assert stale.breakdown.weights_bytes - plain.breakdown.weights_bytes == stale.parameters * 2


@pytest.mark.parametrize("t", [dict(fsdpVersion=2, transformersVersion=None, modelCode="transformers"),
                               dict(method="lora", masterWeights="none"),
                               dict(framework="deepspeed", fsdpVersion=None, transformersVersion=None)])
def test_only_fsdp1_full_fine_tunes_take_it(t):
    with pytest.raises(InvalidWorkload, match="preWrapOptimizer"):
        _fsdp1(preWrapOptimizer=True, **t)
