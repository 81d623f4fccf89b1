"""DeepSpeed ZeRO-1/2's optimizer step on the caching allocator (issue 22): the blocks it reserves beside its allocated
peak (zero.zero12_step_cached) and the first micro-batch's gradient partition that gradient accumulation keeps in
`averaged_gradients` to the step (deepspeed/runtime/zero/stage_1_and_2.py, v0.13.5 and edaa722). Expected bytes are
computed by hand from the source's allocations."""

from __future__ import annotations

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.zero import zero12_step, zero12_step_cached
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
PART = 1_930_000_000   # a 7.7B model's partition over 4 ranks


def test_step_union_without_accumulation():
    # partition (3.86e9) + flat copy (3.86e9) + fp32 gradients (7.72e9) + foreach's exp_avg_sq_sqrt (7.72e9) reserved;
    # the larger allocated moment is 15.44e9 (partition, copy, fp32 / fp32, temporary): 7.72e9 beside it
    assert zero12_step_cached(PART, 2, PART * 4, 1) == 7_720_000_000


def test_accumulation_keeps_the_first_partition():
    # averaged_gradients holds micro-batch 1's grads_in_partition beside the last one's: one more partition
    assert zero12_step_cached(PART, 2, PART * 4, 16) == 7_720_000_000 + 3_860_000_000


def test_no_extra_where_the_temporary_fits_a_freed_block():
    # fused AdamW (no temporary) or one no larger than a freed 16-bit partition: the union is the moment
    assert zero12_step_cached(PART, 2, 0, 1) == 0
    assert zero12_step_cached(PART, 2, PART * 2, 1) == 0
    assert zero12_step_cached(PART, 2, 0, 8) == PART * 2   # accumulation still keeps the first partition


def test_fp32_module_unchanged():
    assert zero12_step_cached(PART, 4, PART * 4, 16) == 0


def test_runtime_peak_counts_it_at_the_step_as_cached():
    layout = Layout(data=4)
    base = dict(framework="deepspeed", zeroStage=2, method="full", masterWeights="fp32", optimizer="adamw",
                microBatchSize=1, sequenceLength=512, activationCheckpointing="full", adamwImplementation="foreach")
    one = runtime_peak(LLAMA, P, Training(**base), "bf16", layout, 0)
    acc = runtime_peak(LLAMA, P, Training(**{**base, "gradientAccumulationSteps": 16}), "bf16", layout, 0)
    part = P.total // 4
    # the norm's fp64 copy of the embedding's gradient (zero.zero12_prestep, bf16: no overflow check) is cached
    # before the step; the flat copy fits in it, and the 0.2 GB it leaves is reserved beside the step's own blocks
    norm = 8 * LLAMA.vocab_size * LLAMA.hidden_size - 2 * part
    assert one.phase == acc.phase == "optimizer step"
    assert one.step_cached == part * 4 + norm                # flat copy beside + temporary, less the moment
    assert acc.step_cached == part * 4 + part * 2 + norm     # and micro-batch 1's partition
    assert acc.step_transient - one.step_transient == part * 2
    # what max_memory_allocated sees is zero12_step's moment, unchanged
    extra, temp = zero12_step(part, 2, part * 4)
    assert one.step_transient - one.step_cached == extra + temp
