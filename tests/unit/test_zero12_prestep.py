"""ZeRO-1/2's pre-step copies of the largest gradient (issue 22, T620/T621: BELLE issue 402's BLOOM runs). Before the
step proper, deepspeed/runtime/zero/stage_1_and_2.py `step` checks each gradient for overflow (`_has_inf_or_nan`: an
fp32 copy before 0.13.3; an fp32 copy, three boolean masks and a second fp32 tensor at once from 0.13.3; under every
dtype before 0.11.2, fp16 only from then) and takes each one's norm over an fp64 copy (`get_grad_norm_direct`). The
rank whose partition holds the embedding keeps those blocks reserved where the step's own cannot reuse them."""

from __future__ import annotations

import pytest

from rackfit.estimator import training_peak
from rackfit.estimator.zero import allocator_new_segments, zero12_prestep
from rackfit.spec import InvalidWorkload, parse_spec

BLOOM_560M = dict(numLayers=24, hiddenSize=1024, intermediateSize=4096, numAttentionHeads=16, numKeyValueHeads=16,
                  headDim=64, vocabSize=250880, tieWordEmbeddings=True, gatedMlp=False, attentionBias=True)
M = 1 << 20


def _spec(precision="fp16", **t):
    base = dict(framework="deepspeed", zeroStage=2, method="full", masterWeights="fp32", optimizer="adamw",
                adamwImplementation="foreach", microBatchSize=1, sequenceLength=512, activationCheckpointing="full",
                flashAttention=False, overlapComm=True, reduceBucketSize=1048576)
    return parse_spec(dict(model=dict(architecture=BLOOM_560M), workload="training", precision=precision,
                           training={**base, **t}, parallelism=dict(data=2)))


def test_a_tensor_the_step_blocks_fit_in_adds_only_what_they_cannot_reuse():
    # a 100 MiB-element gradient, a 200 MiB-element partition, fp16, a 400 MiB temporary
    largest, part = 100 * M, 200 * M
    peak, extra = zero12_prestep(largest, part, 2, 400 * M, True, False, [])
    assert peak == largest * 8   # the fp64 copy is the larger of the two, each freed before the next
    step = [("alloc", 0, part * 2), ("alloc", 1, part * 4), ("free", 0, 0), ("alloc", 2, 400 * M),
            ("free", 2, 0), ("free", 1, 0)]
    alone = allocator_new_segments([], step)
    # the step alone: the flat copy (400 MiB) and the fp32 gradients (800 MiB); the temporary reuses the flat copy's
    # freed block. With the pre-step copies first, the flat copy takes the fp32 copy's block (400 MiB) and the fp32
    # gradients the fp64 copy's (800 MiB): nothing more is reserved than the step's own blocks
    assert extra == 0 and alone == (400 + 800) * M


def test_the_device_check_holds_eleven_bytes_an_element_at_once():
    largest, part = 100 * M, 1000 * M
    old_peak, _ = zero12_prestep(largest, part, 2, 0, True, False, [])
    new_peak, new_extra = zero12_prestep(largest, part, 2, 0, True, True, [])
    assert old_peak == 8 * largest and new_peak == 11 * largest
    # blocks far smaller than the step's stay reserved beside them: 11 + 8 bytes an element
    assert new_extra == 19 * largest
    # without the overflow check (bf16 from 0.11.2) only the fp64 copy
    assert zero12_prestep(largest, part, 2, 0, False, True, [])[1] == 8 * largest


def test_bloom_rank_holding_the_embedding_reserves_more_at_the_step():
    # fp16 at 0.9.0: the embedding's fp32 copy then its fp64 copy; at a current release the device check's 11 bytes
    # an element and the fp64 copy; bf16 from 0.11.2: the fp64 copy alone
    r_old, r_new = training_peak(_spec(deepspeedVersion="0.9.0")), training_peak(_spec())
    r_bf16 = training_peak(_spec(precision="bf16", deepspeedVersion="0.11.2"))
    assert r_new.step_transient > r_old.step_transient > r_bf16.step_transient
    # 0.9.0: 0.96 + 1.92 GiB of new segments (257M elements), of which the step's flat copy (0.52) and fp32
    # gradients (1.04) reuse 1.56: about 1.32 GiB more than the step's own blocks, reserved, not allocated
    largest, part = 250880 * 1024, 279_000_000
    _, extra = zero12_prestep(largest, part, 2, part * 4, True, False, [])
    assert extra == largest * 12 - part * 6
    assert 1.2 * 2**30 < extra < 1.4 * 2**30
    assert r_old.step_cached > r_bf16.step_cached


def test_max_allocated_counts_only_the_larger_moment():
    r = training_peak(_spec(deepspeedVersion="0.9.0"))
    largest = 250880 * 1024
    # allocated beyond the states at the step: the step's moment or the fp64 copy, not both
    assert r.step_transient - r.step_cached >= largest * 8
    assert r.step_transient - r.step_cached < largest * 8 + 280_000_000 * 4 * 2


def test_only_deepspeed_takes_a_deepspeed_version():
    with pytest.raises(InvalidWorkload, match="deepspeedVersion"):
        parse_spec(dict(model=dict(architecture=BLOOM_560M), workload="training", precision="bf16",
                        training=dict(framework="fsdp", method="full", microBatchSize=1, sequenceLength=512,
                                      deepspeedVersion="0.9.0"), parallelism=dict(data=2)))
