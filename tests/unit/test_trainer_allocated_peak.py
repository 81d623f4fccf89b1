"""The bench's max_allocated for the transformers Trainer (issue 22, T1181): torch.cuda.max_memory_allocated is the
largest allocation over the whole step, while the estimate reports the moment that reserves the most. Where the
optimizer step's foreach temporaries take new segments (estimator `_unfit_step`) the step reserves more than the
loss's backward, yet the backward allocated more: santacoder (1.1B, vocabulary 49,280) on one GPU at 4 x 2048, pure
bf16, whose logits at the loss outweigh the step's temporaries."""

from __future__ import annotations

from rackfit.estimator import estimate, trainer_allocated_peak
from rackfit.spec import parse_spec

SANTACODER = dict(numLayers=24, hiddenSize=2048, intermediateSize=8192, numAttentionHeads=16, numKeyValueHeads=1,
                  headDim=128, vocabSize=49280, tieWordEmbeddings=True, gatedMlp=False)


def _spec(batch: int):
    return parse_spec(dict(model=dict(architecture=SANTACODER), workload="training", precision="bf16",
                           parallelism={"data": 1},
                           training=dict(framework="transformers", method="full", masterWeights="none",
                                         optimizer="adamw", adamwImplementation="foreach", microBatchSize=batch,
                                         sequenceLength=2048, activationCheckpointing="full",
                                         transformersVersion="4.44.2")))


def test_the_step_reserves_most_but_the_loss_backward_allocates_most():
    spec = _spec(4)
    est = estimate(spec)
    assert est.peak_phase == "optimizer step"
    at_step = est.total_bytes - est.breakdown.overhead_bytes
    peak = trainer_allocated_peak(spec, est.layout)
    # weights 2 bytes, pure-bf16 AdamW states 4 bytes a parameter, and the backward's peak: the checkpointed layer
    # inputs plus the loss's logits (4 x 2047 x 49280 of them) - above the step's gradients and foreach temporaries
    assert peak > at_step
    assert peak - at_step > 2**30


def test_no_change_where_the_estimate_already_reports_the_largest_allocation():
    # at batch 1 the step both reserves and allocates the most; at batch 8 the loss's backward does both
    for batch, phase in ((1, "optimizer step"), (8, "loss backward")):
        spec = _spec(batch)
        est = estimate(spec)
        assert est.peak_phase == phase
        assert trainer_allocated_peak(spec, est.layout) == est.total_bytes - est.breakdown.overhead_bytes
