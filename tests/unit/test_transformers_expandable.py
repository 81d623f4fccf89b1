"""training.expandableSegments under framework transformers (estimator/__init__.py `_slack_share`, `_training`):
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True remaps the pages the backward freed for any request, so the
checkpointed full fine-tune's recompute share and state split, and the step's temporaries in new segments, are gone;
SLACK_TRAINING of the transient bytes stays (docs/accuracy.md, T1940: a study's Mistral-7B pure bf16 with paged 8-bit
AdamW on one RTX 5090, max reserved 27.75 GiB beside 27.61 allocated)."""

from __future__ import annotations

from rackfit.estimator import SLACK_RECOMPUTE, SLACK_TRAINING, estimate
from rackfit.spec import parse_spec

GiB = 1 << 30


def mistral(**training):
    tr = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw8bit",
              pagedOptimizer=True, microBatchSize=1, sequenceLength=512, activationCheckpointing="full")
    return parse_spec(dict(model=dict(preset="mistral-7b-v0.3", architecture=dict(vocabSize=32000)),
                           workload="training", precision="bf16", parallelism=dict(data=1),
                           training={**tr, **training}))


def test_expandable_segments_keep_the_training_share_under_full_checkpointing():
    default, expandable = estimate(mistral()), estimate(mistral(expandableSegments=True))
    # the live bytes are the same moment's; only what the allocator keeps reserved beside them differs
    for field in ("weights_bytes", "gradients_bytes", "activations_bytes", "optimizer_states_bytes"):
        assert getattr(default.breakdown, field) == getattr(expandable.breakdown, field)
    transient = expandable.breakdown.activations_bytes + expandable.breakdown.gradients_bytes
    saved = default.breakdown.overhead_bytes - expandable.breakdown.overhead_bytes
    assert abs(saved - int((SLACK_RECOMPUTE - SLACK_TRAINING) * transient)) < 64 << 20
    # T1940's run that ran on the 31.36 GiB RTX 5090: refused before, fits now
    assert default.total_bytes > 31.36 * GiB > expandable.total_bytes


def test_expandable_segments_change_nothing_without_recompute():
    # without checkpointing the default allocator's share is already SLACK_TRAINING
    assert estimate(mistral(activationCheckpointing="none")).total_bytes == \
        estimate(mistral(activationCheckpointing="none", expandableSegments=True)).total_bytes


def test_expandable_segments_put_no_step_temporary_in_a_new_segment():
    # torch's foreach AdamW on 16-bit states: its state-sized temporary no cached block holds (peft.py
    # unfit_step_temporaries) takes a new segment with the default allocator, none with expandable segments
    kw = dict(optimizer="adamw", pagedOptimizer=False, adamwImplementation="foreach")
    default, expandable = estimate(mistral(**kw)), estimate(mistral(expandableSegments=True, **kw))
    assert expandable.total_bytes < default.total_bytes
    assert expandable.breakdown.overhead_bytes <= int(SLACK_TRAINING * (
        expandable.breakdown.activations_bytes + expandable.breakdown.gradients_bytes)) + 2 * GiB
