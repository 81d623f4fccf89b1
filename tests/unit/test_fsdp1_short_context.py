"""FSDP1 LoRA/QLoRA after the wrap (estimator/fsdp.py, fsdp1_reserved_union): the wrap's cached blocks belong to
the default stream's pool, the step's all-gathers allocate in FSDP1's unshard stream (torch/distributed/fsdp/
_runtime_utils.py `_unshard`), and the caching allocator reuses a freed block only on the stream that allocated it,
so the reading is max(wrap, step less its gathers) plus the gathers."""

from __future__ import annotations

from training_specs import llama2_7b_fsdp

from rackfit.estimator import CUDA_CONTEXT_BYTES, estimate, training_peak
from rackfit.estimator.comms import training_nccl_bytes
from rackfit.estimator.fsdp import fsdp1_reserved_union
from rackfit.estimator.megatron_buffers import torch_workspace_bytes

GiB = 1 << 30


def test_union_adds_the_unshard_pool_to_the_larger_default_stream_part():
    # wrap 8 GiB, step 9 GiB of which 1.5 GiB gathered: default stream max(8, 7.5) = 8, plus 1.5
    assert fsdp1_reserved_union(8 * GiB, 9 * GiB, GiB * 3 // 2) == 9 * GiB + GiB // 2
    # the step's default-stream part above the wrap: the step alone
    assert fsdp1_reserved_union(5 * GiB, 9 * GiB, GiB) == 9 * GiB
    # no unshard pool (full fine-tune): the larger of the two, as before
    assert fsdp1_reserved_union(8 * GiB, 7 * GiB, 0) == 8 * GiB


def test_lora_unshard_pool_is_root_and_two_layers_in_16_bit():
    r = training_peak(llama2_7b_fsdp(512))
    root = 2 * 32000 * 4096 * 2                                   # embeddings + output, bf16, kept gathered
    layer = (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) * 2   # one decoder layer's base, bf16
    assert abs(r.load_unshard_pool - (root + 2 * layer)) < 16 << 20  # within the units' padding/adapters
    assert r.load_unshard_pool > 0


def test_lora_short_context_reads_wrap_plus_gathers_long_context_unchanged():
    for seq in (512, 2048):
        s = llama2_7b_fsdp(seq)
        r = training_peak(s)
        est = estimate(s)
        wrap = r.load + r.load_cached
        # what max_memory_reserved measures (bench/public_training.py comparable)
        got = (est.total_bytes - CUDA_CONTEXT_BYTES - training_nccl_bytes(s.training, est.layout)
               - est.breakdown.non_torch_bytes - torch_workspace_bytes(s.training))
        if seq == 512:
            # the wrap (about 8.1 GiB) is above the step less its 1.24 GiB of gathers: wrap + gathers
            assert got == wrap + r.load_unshard_pool
            assert 9.2 * GiB < got < 9.6 * GiB
        else:
            assert got - r.load_unshard_pool >= wrap  # the step dominates: the count as before
            assert est.peak_phase != "load"


def test_full_finetune_has_no_unshard_pool_term():
    assert training_peak(llama2_7b_fsdp(512, method="full")).load_unshard_pool == 0
