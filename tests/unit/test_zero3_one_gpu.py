"""ZeRO-3 on one GPU (docs/accuracy.md, "ZeRO-3 on one GPU: no gathered copy, the reduce copy still made"): with one
partition `all_gather_coalesced` returns `_no_gather_coalesced`, which points `param.data` at the partition itself
(zero.zero3_gathers), so nothing is gathered; reduce_scatter_coalesced still concatenates a bucket of several
gradients in reduce_and_partition_stream (zero.zero3_reduce_copy, one rank included)."""

from archs import qwen

from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.zero import zero3_gathered_elements, zero3_gathers, zero3_reduce_copy
from rackfit.spec import Training

MiB = 2**20


def test_one_partition_gathers_nothing_unless_offloaded():
    assert not zero3_gathers(1, False)
    # offload_param: the partition is on the host and `.to(device)` copies it to the GPU
    assert zero3_gathers(1, True)
    assert zero3_gathers(2, False)


def test_one_rank_reduce_copy():
    # T1380's Qwen1.5-0.5B (463,987,712 elements) under DeepSpeed's default 5e8 bucket: every gradient waits in the
    # bucket until the epilogue, whose torch.cat is all of them
    assert zero3_reduce_copy(500_000_000, 463_987_712, 151_936 * 1_024, 1, 2) == 463_987_712 * 2
    # one rank never pads a lone tensor: the bucket bounds it
    assert zero3_reduce_copy(4_194_304, 1_840_000_000, 151_936 * 2_048, 1, 2) == 4_194_304 * 2


def _peak(d, ac="full", zero_init=None, offload_parameters=None):
    a = qwen(24, 2048, 5504, 151936)   # T1201's Qwen-1.8B
    p = count_params(a)
    tr = Training(framework="deepspeed", zero_stage=3, method="full", master_weights="fp32",
                  activation_checkpointing=ac, sequence_length=2048, reduce_bucket_size=4_194_304,
                  zero_init=zero_init, offload_parameters=offload_parameters)
    return runtime_peak(a, p, tr, "bf16", Layout(data=d), p.total * 2), p


def test_runtime_peak_on_one_gpu_holds_no_gathered_weights():
    one, p = _peak(1)
    two, _ = _peak(2)
    gathered = zero3_gathered_elements(p.total, 151_936 * 2_048) * 2   # the 1.05e9-element bound, 2.1e9 bytes
    # over two ranks the bound is gathered beside the halved partitions, and in the backward's transient
    assert two.phase == "loss backward"
    assert two.weights == p.total * 2 // 2 + gathered
    # on one, the weights are the partitions alone and the transient lacks exactly the gathered bytes
    assert one.weights == p.total * 2
    assert two.backward_transient - one.backward_transient == gathered


def test_one_gpu_without_zero_init_keeps_no_layer_weights():
    # torch's linear saves `weight.t()`, a view of the flat partition buffer: nothing beyond the partitions
    kept, p = _peak(1, ac="none", zero_init=False)
    assert kept.weights == p.total * 2


def test_one_gpu_offloaded_parameters_are_gathered():
    on, p = _peak(1, offload_parameters=True)
    # the partitions on the host; on the GPU the live-parameter bound, as over several ranks
    assert on.weights == zero3_gathered_elements(p.total, 151_936 * 2_048) * 2
