"""ZeRO-3 under overlap_comm (docs/accuracy.md, "ZeRO-3's overlap_comm: the reduce stream, counted"): the
reduce_and_partition_stream's flat copy of a bucket (zero.zero3_reduce_copy, reserved in that stream's pool), and
the bound on the gradient blocks still in flight to that stream, which one layer's gradients already cover."""

from archs import qwen

from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.zero import zero3_reduce_copy
from rackfit.spec import Training

MiB = 2**20




def test_bucket_copy_bound():
    # T174: HF "auto" bucket 4096^2 = 16,777,216 elements, full fine-tune of 7.7e9: the cat is at most one bucket,
    # 16,777,216 x 2 bytes = 32 MiB; lm_head 151,936 x 4,096 divides by 4 ranks (reduced in place)
    assert zero3_reduce_copy(16_777_216, 7_700_000_000, 151_936 * 4_096, 4, 2) == 32 * MiB
    # LoRA with fewer trained elements than the bucket: the copy is all of them
    assert zero3_reduce_copy(67_108_864, 1_000_000, 24_576 * 8, 4, 2) == 2_000_000
    # one rank: reduce_scatter_coalesced still cats a bucket of several gradients (zero3_one_gpu's tests)
    assert zero3_reduce_copy(16_777_216, 7_700_000_000, 151_936 * 4_096, 1, 2) == 32 * MiB


def test_lone_tensor_padded_when_it_does_not_divide():
    # T69's shape over 7 ranks: lm_head 152,064 x 5,120 = 778,567,680 elements, over the 5e8 default bucket and not a
    # multiple of 7: chunk ceil(778,567,680 / 7) = 111,223,955, padded flat 111,223,955 x 7 = 778,567,685 elements
    assert zero3_reduce_copy(500_000_000, 30_000_000_000, 778_567_680, 7, 2) == 778_567_685 * 2
    # the same over 8 ranks divides: the default bucket bounds it
    assert zero3_reduce_copy(500_000_000, 30_000_000_000, 778_567_680, 8, 2) == 500_000_000 * 2


def _peak(overlap, bucket=16_777_216):
    a = qwen(32, 4096, 11008, 151936)   # T174's Qwen-7B
    p = count_params(a)
    tr = Training(framework="deepspeed", zero_stage=3, method="full", activation_checkpointing="full",
                  sequence_length=2048, reduce_bucket_size=bucket, overlap_comm=overlap)
    return runtime_peak(a, p, tr, "bf16", Layout(data=4), p.total * 2)


def test_runtime_peak_counts_the_copy_as_cached_under_overlap_only():
    on, off = _peak(True), _peak(False)
    # reserved, not allocated, at the loss's backward: the gradients side and the cached blocks both 32 MiB more
    assert on.gradients - off.gradients == 32 * MiB
    assert on.cached_gradients - off.cached_gradients == 32 * MiB
    assert on.states == off.states


def test_in_flight_gradients_within_one_layer():
    """The gradient blocks the default stream freed to the reduce stream (`param.grad.record_stream` in
    __add_grad_to_ipg_bucket and partition_grads) are not reused until that stream passes them. The CPU waits on the
    oldest reduction once more than max_param_reduce_events (2) are queued, so at most 3 lone tensors plus one bucket
    of copied originals are in flight; the epilogue synchronizes the stream before the step. With HF's hidden^2
    bucket that is under one layer's 16-bit gradients, which runtime_peak already counts beside the backward."""
    # T174, Qwen-7B: c_attn 4,096 x 12,288 = 50,331,648 (lone), attn c_proj 16,777,216 (the bucket), w1, w2 and mlp
    # c_proj 11,008 x 4,096 = 45,088,768 each, c_attn's bias 12,288, two norms of 4,096
    layer = 50_331_648 + 12_288 + 16_777_216 + 3 * 45_088_768 + 2 * 4_096
    in_flight = 3 * 50_331_648 + 16_777_216
    assert in_flight < layer
    # T250, Qwen-14B: c_attn 5,120 x 15,360 = 78,643,200, c_proj 26,214,400, w1/w2/c_proj 13,696 x 5,120 = 70,123,520
    layer = 78_643_200 + 15_360 + 26_214_400 + 3 * 70_123_520 + 2 * 5_120
    assert 3 * 78_643_200 + 26_214_400 < layer
