"""DeepSpeed ZeRO's overlap_comm and its reduce buckets (issue 22): stage_1_and_2.py's IPG buffers (two under
overlap_comm), the gradient partition and the bucket's flat copy made in the reduction stream, and DeepSpeed's default
by stage (runtime/zero/config.py). Expected bytes are computed by hand from the source's allocations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.zero import (
    zero12_ipg_buffers,
    zero12_partition_held,
    zero12_reduce_copy,
    zero_overlap_comm,
)
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
BUCKET = 500_000_000   # DeepSpeed's default reduce_bucket_size


def peak(layout: Layout, **training):
    base = dict(framework="deepspeed", method="full", masterWeights="fp32", microBatchSize=1, sequenceLength=2048)
    return runtime_peak(LLAMA, P, Training(**{**base, **training}), "bf16", layout, 0)


def test_overlap_comm_default_by_stage():
    """config.py overlap_comm_valid: None becomes `stage == ZeroStageEnum.weights` (3)."""
    assert [zero_overlap_comm(s, None) for s in (1, 2, 3)] == [False, False, True]
    assert zero_overlap_comm(2, True) is True
    assert zero_overlap_comm(3, False) is False


def test_ipg_buffers_one_or_two_whole_buckets():
    """setup_buckets: torch.empty(reduce_bucket_size) in the 16-bit dtype, buf_1 beside it under overlap_comm."""
    assert zero12_ipg_buffers(BUCKET, False, 2) == 1_000_000_000
    assert zero12_ipg_buffers(BUCKET, True, 2) == 2_000_000_000
    assert zero12_ipg_buffers(16_777_216, True, 2) == 4 * 16_777_216


def test_reduce_copy_and_partition_held():
    assert zero12_reduce_copy(BUCKET, 10_000_000_000, 2) == 1_000_000_000
    assert zero12_reduce_copy(BUCKET, 100_000_000, 2) == 200_000_000   # the bucket never holds more than the model
    assert zero12_partition_held(2_000, True, 10_000)       # reduction stream: held whatever the freed block
    assert zero12_partition_held(2_000, False, 1_000)       # larger than the logits' block: a new segment
    assert not zero12_partition_held(2_000, False, 2_000)   # served by the logits' freed block


def test_zero2_overlap_adds_a_bucket_and_the_reduction_streams_copy():
    """Llama 3.1 8B, ZeRO-2 over 8, batch 1 x 2048: the partition (8.03e9 / 8 x 2 bytes, about 2.0 GB) is larger than
    the 16-bit logits (2048 x 128256 x 2, 0.53 GB), so it is held (cached) with or without overlap_comm. overlap_comm
    adds the second IPG buffer (allocated) and the flat copy cached in the reduction stream (5e8 x 2 bytes each)."""
    off = peak(Layout(data=8), zeroStage=2)
    on = peak(Layout(data=8), zeroStage=2, overlapComm=True)
    part = P.total // 8 * 2
    assert off.cached_gradients == part
    assert on.cached_gradients == part + BUCKET * 2
    assert on.gradients - off.gradients == 2 * BUCKET * 2
    assert on.backward_transient - off.backward_transient == 2 * BUCKET * 2
    assert on.step_transient == off.step_transient and on.states == off.states
    assert peak(Layout(data=8), zeroStage=2, overlapComm=False) == off   # DeepSpeed's default for stage 2


def test_zero2_partition_reuses_the_logits_block_without_overlap():
    """Over 64 GPUs at batch 4 x 4096 the partition (251 MB) fits in the 16-bit logits' freed block (4.2 GB): the
    default stream's copy_grads_in_partition reuses it, nothing held at the loss's backward; under overlap_comm it
    is the reduction stream's, held beside that stream's flat copy."""
    kw = dict(zeroStage=2, microBatchSize=4, sequenceLength=4096)
    off = peak(Layout(data=64), **kw)
    on = peak(Layout(data=64), overlapComm=True, **kw)
    assert off.cached_gradients == 0
    assert on.cached_gradients == P.total // 64 * 2 + BUCKET * 2


def test_zero1_overlap_partitions_the_backwards_gradients():
    """Stage 1 under overlap_comm reduces in the hooks and copies only its partition's gradients (reduce_ipg_grads,
    "zero stage 1"): the same memory as stage 2 under overlap_comm; without it every 16-bit gradient is kept."""
    assert peak(Layout(data=8), zeroStage=1, overlapComm=True) == peak(Layout(data=8), zeroStage=2, overlapComm=True)
    z1 = peak(Layout(data=8), zeroStage=1)
    assert z1.cached_gradients == P.total * 2


def test_zero3_overlap_comm_changes_only_the_reduce_stream_copy():
    """stage3.py keeps one IPG bucket whatever overlap_comm; it picks only the reduce-and-partition stream, whose pool
    keeps reduce_scatter_coalesced's flat copy of a bucket (zero.zero3_reduce_copy, test_zero3_overlap.py): the default
    5e8 elements x 2 bytes over 8 ranks (Llama's 128,256 x 4,096 lm_head divides by 8), reserved, not allocated."""
    from dataclasses import replace
    off, on = peak(Layout(data=8), zeroStage=3, overlapComm=False), peak(Layout(data=8), zeroStage=3)
    copy = 500_000_000 * 2
    assert on.gradients - off.gradients == on.cached_gradients - off.cached_gradients == copy
    assert on.transient - off.transient == on.backward_transient - off.backward_transient == copy
    assert replace(on, gradients=off.gradients, cached_gradients=off.cached_gradients, transient=off.transient,
                   backward_transient=off.backward_transient) == off


def test_overlap_comm_only_with_deepspeed():
    with pytest.raises(ValidationError, match="overlapComm"):
        Training(framework="fsdp", method="full", overlapComm=True)
    assert Training(framework="deepspeed", zeroStage=2, method="full", overlapComm=True).overlap_comm is True


def test_ipg_buffers_match_deepspeed_issue_1302s_knob_table():
    """DeepSpeed issue 1302 (January 2023, a 1.8B ViT under ZeRO-2 in fp16; a model rackfit does not describe, so no
    row): memory in MB with contiguous_gradients, overlap_comm and the bucket varied. The differences are the IPG
    buffers alone, to within 3 MiB: overlap_comm off drops one bucket, a smaller bucket shrinks both, no
    contiguous_gradients allocates none."""
    mib = 2 ** 20
    base = 21152                                    # contiguous, overlap, bucket 5e8
    both = zero12_ipg_buffers(BUCKET, True, 2)
    assert abs((base - 20198) - (both - zero12_ipg_buffers(BUCKET, False, 2)) / mib) < 3     # 954 MB
    assert abs((base - 19625) - (both - zero12_ipg_buffers(100_000_000, True, 2)) / mib) < 3  # 1,527 MB
    assert abs((base - 19284) - (both - zero12_ipg_buffers(10_000_000, True, 2)) / mib) < 3   # 1,868 MB
    assert abs((base - 19247) - both / mib) < 3                                              # 1,905 MB
