"""ZeRO-3's step against the blocks the loss's backward freed (zero.zero3_step_segments, docs/accuracy.md)."""

from rackfit.estimator.zero import allocator_new_segments, loss_freed_blocks, zero3_step_segments

GiB = 2**30
SUB = 1_000_000_000   # sub_group_size


def test_best_fit_split_and_merge():
    # 10 cached: 6 is split off it, 4 left; 5 does not fit the 4 and takes a segment of its own
    assert allocator_new_segments([10], [("alloc", 1, 6), ("alloc", 2, 5)]) == 5
    # freed, the 6 merges back with its free neighbour: 9 fits the whole 10
    assert allocator_new_segments([10], [("alloc", 1, 6), ("free", 1, 0), ("alloc", 2, 9)]) == 0
    # segments never merge: two free 5s do not serve 8
    assert allocator_new_segments([5, 5], [("alloc", 1, 8)]) == 8
    # the smallest block at least as large is taken, leaving the larger for the next request
    assert allocator_new_segments([4, 8], [("alloc", 1, 3), ("alloc", 2, 7)]) == 0


def test_first_sub_group_without_reusable_blocks():
    # T174-like: small logits. flat 16-bit copy 2e9 B and fp32 grads 4e9 B take segments; the copy's block, freed,
    # is too small for foreach AdamW's 4e9 B temporary: three segments, the copy's one more than the allocated moment
    assert zero3_step_segments(SUB, 2, SUB * 4, [65_536_000 * 2]) == SUB * 2 + SUB * 4 + SUB * 4
    # fused AdamW: no temporary
    assert zero3_step_segments(SUB, 2, 0, []) == SUB * 6
    # an fp32 module: `.to(fp32)` is the flat copy itself
    assert zero3_step_segments(SUB, 4, SUB * 4, []) == SUB * 8


def test_loss_blocks_serve_the_step():
    # T172-like: 8192 x 152064 logits; 16-bit logits 2.49e9 B hold the copy, two of the three fp32 buffers
    # (4.98e9 B each) the fp32 grads and the temporary: no new segment
    n = 8192 * 152064
    blocks = loss_freed_blocks(n, n * 12, 2)
    assert blocks == [n * 2, n * 4, n * 4, n * 4]
    assert zero3_step_segments(SUB, 2, SUB * 4, blocks) == 0
    # one fp32 buffer only: the temporary finds none left
    assert zero3_step_segments(SUB, 2, SUB * 4, [n * 2, n * 4]) == SUB * 4
