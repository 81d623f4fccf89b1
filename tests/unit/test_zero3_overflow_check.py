"""ZeRO-3's fp16 overflow check (docs/accuracy.md, "ZeRO-3's overflow check: an abs copy and a mask of the whole
gradient partition"): stage3.py's has_overflow runs `torch.isinf(self.grad_partitions_flat_buffer).any()` and
`torch.isnan(...)` in reduce_and_partition_stream; torch's isinf is `self.abs() == inf`, a copy in the gradient's
dtype and a bool mask, cached in that stream's pool beside the reduce copy's block (zero.zero3_overflow_cached)."""

from archs import qwen

from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.zero import zero3_overflow_cached
from rackfit.spec import Training

N = 463_987_712   # T1380's Qwen1.5-0.5B, one rank: the reduce copy is every gradient (zero.zero3_reduce_copy)


def test_reduce_copy_block_serves_the_abs_copy():
    # the reduce copy's freed 2N-byte block holds the fp16 abs copy; the 1-byte mask takes a segment of its own
    assert zero3_overflow_cached(N, 2, N * 2) == N
    # a block large enough for both: nothing more
    assert zero3_overflow_cached(N, 2, N * 3) == 0
    # a bucket smaller than the abs copy but larger than the mask: the mask reuses it, the copy is new
    assert zero3_overflow_cached(N, 2, N * 3 // 2) == N * 2
    # a small bucket (HF's "auto", hidden^2): both new
    assert zero3_overflow_cached(N, 2, N // 4) == N * 3


def _peak(precision, version=None, offload_optimizer=None, overlap_comm=None):
    a = qwen(24, 2048, 5504, 151936)
    p = count_params(a)
    tr = Training(framework="deepspeed", zero_stage=3, method="full", master_weights="fp32",
                  activation_checkpointing="full", sequence_length=2048, reduce_bucket_size=4_194_304,
                  deepspeed_version=version, offload_optimizer=offload_optimizer, overlap_comm=overlap_comm)
    return runtime_peak(a, p, tr, precision, Layout(data=2), p.total * 2), p


def test_fp16_reserves_the_check_and_bf16_does_not():
    fp16, p = _peak("fp16")
    bf16, _ = _peak("bf16")
    part = -(-p.total // 2)
    # 4,194,304-element bucket (8 MiB) under the mask's size: abs copy and mask both new, cached, not allocated
    assert fp16.cached_gradients - bf16.cached_gradients == part * 3


def test_bf16_checked_before_0_11_2_and_not_before_0_9_4():
    base, p = _peak("bf16", "0.11.2")
    old, _ = _peak("bf16", "0.11.1")
    older, _ = _peak("bf16", "0.9.3")
    assert old.cached_gradients - base.cached_gradients == -(-p.total // 2) * 3
    assert older.cached_gradients == base.cached_gradients


def test_no_check_on_the_gpu_when_offloaded_or_without_overlap():
    on, _ = _peak("fp16", offload_optimizer=True)
    off, _ = _peak("bf16", offload_optimizer=True)
    assert on.cached_gradients == off.cached_gradients
    no_overlap, _ = _peak("fp16", overlap_comm=False)
    no_overlap_bf16, _ = _peak("bf16", overlap_comm=False)
    assert no_overlap.cached_gradients == no_overlap_bf16.cached_gradients
