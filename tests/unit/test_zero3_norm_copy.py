"""ZeRO-3's gradient norm: the fp64 copy of each gradient partition before the step's sub-groups
(zero.zero3_norm_copy, zero.zero3_step_segments' `norm_copy`; docs/accuracy.md)."""

from rackfit.estimator import estimate, training_peak
from rackfit.estimator.zero import zero3_norm_copy, zero3_step_segments
from rackfit.spec import parse_spec


def test_norm_copy_is_a_ranks_partition_in_fp64():
    # every rank holds ceil(numel / world) elements of every parameter (_partition_param)
    assert zero3_norm_copy(10, 4) == 3 * 8
    assert zero3_norm_copy(250_880 * 1024, 2) == 128_450_560 * 8
    assert zero3_norm_copy(7, 1) == 56


def test_norm_block_against_the_sub_group():
    sub = 100
    # no cached block: the 800-byte fp64 copy takes a segment; freed, it holds the 200-byte flat copy and the
    # 400-byte fp32 gradients in its remainder: nothing more
    assert zero3_step_segments(sub, 2, 0, [], 800) == 800
    # a smaller copy (300): the flat copy splits it, the fp32 gradients find no room and take their own segment
    assert zero3_step_segments(sub, 2, 0, [], 300) == 300 + 400
    # without the copy, as before: the flat copy and the fp32 gradients
    assert zero3_step_segments(sub, 2, 0, []) == 200 + 400
    # a loss block large enough serves the copy and then the sub-group: no new segment
    assert zero3_step_segments(sub, 2, 0, [1000], 800) == 0


def _bloom560m(**training):
    return parse_spec({
        "model": {"architecture": {"numLayers": 24, "hiddenSize": 1024, "intermediateSize": 4096,
                                   "numAttentionHeads": 16, "numKeyValueHeads": 16, "headDim": 64,
                                   "vocabSize": 250880, "tieWordEmbeddings": True, "gatedMlp": False,
                                   "attentionBias": True}},
        "workload": "training", "precision": "fp16",
        "training": {"framework": "deepspeed", "zeroStage": 3, "method": "full", "masterWeights": "fp32",
                     "optimizer": "adamw", "adamwImplementation": "fused", "microBatchSize": 1,
                     "sequenceLength": 512, "activationCheckpointing": "full", "flashAttention": False,
                     "overlapComm": True, **training},
        "parallelism": {"data": 2}})


def test_bloom_zero3_step_reserves_the_norm_block():
    # T620's shapes: the tied 250,880 x 1,024 embedding's partition over 2 ranks in fp64 (1.03e9 B) is larger than
    # every block the 512-token loss freed (16-bit logits 2.57e8 B, fp32 ones 5.14e8 B), so it takes a segment; the
    # sub-group's flat 16-bit copy (2 x n/2) fits in it, the fp32 gradients (4 x n/2) do not
    spec = _bloom560m()
    est = estimate(spec)
    r = training_peak(spec, est.layout)
    half = est.parameters // 2
    norm = 128_450_560 * 8
    assert half * 2 < norm < half * 4
    assert abs(r.step_segments - (norm + half * 4)) <= 16
    # the allocated moment is still the sub-group's (fp32 gradients and flat copy), not the norm's copy
    assert r.step_transient >= half * 6 - 16


def test_lora_step_unchanged():
    # LoRA's trained tensors are small: ZeRO-3's step branch is the full fine-tune's; no step segments counted
    spec = _bloom560m(method="lora", loraRank=8)
    r = training_peak(spec, estimate(spec).layout)
    assert r.step_segments == -1
