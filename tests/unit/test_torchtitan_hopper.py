"""FSDP2's all-gather copy-in stream pool (estimator/fsdp.py, fsdp2_copy_in_pool): each group's all-gather
output is allocated in the copy-in stream (torch `_fsdp_collectives.py` foreach_all_gather), two consecutive
groups' outputs are alive at once in the forward (`_fsdp_param_group.py` wait_for_unshard defers the free), and the
blocks stay reserved for that stream. Its largest pair is a vocabulary matrix's group (torchtitan's tok_embeddings
or [norm, output]) with a decoder block. Expected bytes computed by hand from Llama 3.1 8B's shapes."""

from __future__ import annotations

from rackfit.estimator import training_peak
from rackfit.estimator.fsdp import fsdp2_copy_in_pool
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import parse_spec

GiB = 1 << 30
# Llama 3.1 8B by hand: vocabulary matrix 128,256 x 4,096; a decoder block wq 4096^2, wk and wv 4096 x 1024, wo 4096^2,
# w1/w2/w3 3 x 4096 x 14336, two norms of 4096
VOCAB = 128_256 * 4_096
BLOCK = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096


def _spec(data: int = 8, tensor: int = 1, **training):
    tr = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=2,
              sequenceLength=8192, activationCheckpointing="selective")
    tr.update(training)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16", training=tr,
                           parallelism=dict(data=data, tensor=tensor)))


def _peak(s):
    arch = resolve(s.model)
    return arch, count_params(arch), s.parallelism, training_peak(s)


def test_pool_is_a_vocabulary_matrix_and_a_block_in_16_bit():
    arch, p, layout, _ = _peak(_spec())
    pool = fsdp2_copy_in_pool(arch, p, layout, 2)
    # the final norm's 4,096 parameters spread over the 32 blocks by the per-block count: 128 more
    assert abs(pool - (VOCAB + BLOCK) * 2) <= 2 * 128
    assert 1.35 * GiB < pool < 1.4 * GiB


def test_pool_is_split_over_tensor_parallel():
    s = _spec(data=4, tensor=2)
    arch, p, layout, _ = _peak(s)
    assert abs(fsdp2_copy_in_pool(arch, p, layout, 2) - (VOCAB + BLOCK) // 2 * 2) <= 2 * 128


def test_resharded_blocks_add_the_vocabulary_matrix_beyond_two_blocks():
    # reshard after forward: the default stream's block in use and the output, the pool's vocabulary group and block;
    # the second block in flight counted before is the pool's, so the pool adds one vocabulary matrix
    arch, p, layout, r = _peak(_spec())
    n = p.total
    masters = n * 4 // 8
    layer = (n - 2 * p.embedding) // arch.num_layers
    assert r.weights == masters + (2 * layer + p.embedding) * 2 + fsdp2_copy_in_pool(arch, p, layout, 2) - layer * 2
    assert abs(r.weights - masters - (BLOCK + VOCAB + VOCAB + BLOCK) * 2) <= 4 * 128


def test_reshard_never_adds_the_whole_pool():
    arch, p, layout, r = _peak(_spec(reshardAfterForward=False))
    n = p.total
    layer = (n - 2 * p.embedding) // arch.num_layers
    expected = n * 4 // 8 + (arch.num_layers * layer + p.embedding) * 2 + (p.embedding + layer) * 2
    assert r.weights == expected


def test_no_pool_without_sharding():
    # one data rank: torchtitan applies no FSDP (dp_shard 1), autograd and the default stream only
    arch, p, layout, r = _peak(_spec(data=1))
    layer = (p.total - 2 * p.embedding) // arch.num_layers
    assert r.weights == p.total * 4 + (2 * layer + p.embedding) * 2


def test_pool_is_reserved_not_slack():
    # the pool is part of the gathered parameters, on which the allocator strands no slack (fsdp_gathered_reuse)
    _, _, _, r = _peak(_spec())
    assert r.reused == r.weights - _peak(_spec())[1].total * 4 // 8
