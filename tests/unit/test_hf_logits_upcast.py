"""transformers before 4.46 upcasts the logits inside the model's forward (4.45.2 models/llama/modeling_llama.py
`logits = self.lm_head(...).float()`, models/granite/modeling_granite.py `logits = logits / logits_scaling` then
`logits = logits.float()`) and drops the 16-bit tensor; from 4.46 the model hands its 16-bit logits to
self.loss_function, which upcasts inside it while the caller still holds them. The freed 16-bit block stays cached
beside the loss's fp32 buffers, which are twice its size (docs/accuracy.md, "fms-acceleration's PowerLM-3b table").
Each count is worked out by hand here from those lines."""

from __future__ import annotations

from rackfit.estimator import CUDA_CONTEXT_BYTES, Layout, estimate, training_peak
from rackfit.estimator.activations import freed_16bit_logits_bytes, training_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

# ibm/PowerLM-3b's shapes (arXiv 2408.13359 Table 4), vocabulary 49,152, tied embeddings: bench row T600
ARCH = {"numLayers": 40, "hiddenSize": 2304, "intermediateSize": 9216, "numAttentionHeads": 36,
        "numKeyValueHeads": 36, "headDim": 64, "vocabSize": 49152, "tieWordEmbeddings": True}
V = 49152


def _spec(version: str | None, **training) -> dict:
    t = {"framework": "transformers", "method": "lora", "loraRank": 16, "loraTargets": ["q", "k", "v", "o"],
         "optimizer": "adamw", "adamwImplementation": "foreach", "microBatchSize": 8, "sequenceLength": 4096,
         "activationCheckpointing": "full"}
    if version:
        t["transformersVersion"] = version
    t.update(training)
    return {"model": {"architecture": ARCH}, "workload": "training", "precision": "bf16", "training": t,
            "parallelism": {"data": 1}}


def test_releases_before_4_46_drop_the_16_bit_logits_at_the_upcast():
    assert not Training(framework="transformers", transformersVersion="4.45.2").holds_16bit_logits_at_loss
    assert Training(framework="transformers", transformersVersion="4.46.0").holds_16bit_logits_at_loss
    assert Training(framework="transformers").holds_16bit_logits_at_loss   # unset: a current release


def test_loss_forward_is_12_bytes_a_logit_before_4_46_and_14_after():
    """4.45.2: the fp32 upcast, `logits[..., :-1, :].contiguous()` and the log-softmax, 4 bytes each; 4.46-4.48:
    the same three beside the caller's 16-bit logits."""
    a = resolve(ModelSource(architecture=ARCH))
    tokens = 8 * 4096
    old = training_activations(a, parse_spec(_spec("4.45.2")).training, Layout(), mixed=False)
    new = training_activations(a, parse_spec(_spec("4.48.1")).training, Layout(), mixed=False)
    assert old.loss_forward == tokens * V * 12
    assert new.loss_forward == tokens * V * 14
    assert old.loss_backward == new.loss_backward == tokens * V * 12


def test_the_freed_block_is_the_micro_batch_16_bit_logits_and_none_where_they_stay_referenced():
    a = resolve(ModelSource(architecture=ARCH))
    assert freed_16bit_logits_bytes(a, parse_spec(_spec("4.45.2")).training, 1) == 8 * 4096 * V * 2
    assert freed_16bit_logits_bytes(a, parse_spec(_spec("4.48.1")).training, 1) == 0
    assert freed_16bit_logits_bytes(a, parse_spec(_spec("4.45.2", lossChunks=4)).training, 1) == 0


def test_one_gpu_reserves_what_it_did_but_allocates_the_16_bit_logits_less():
    """At the loss's backward the 16-bit block moves from allocated to cached: what nvidia-smi shows is unchanged,
    what max_memory_allocated shows is that block less (the estimate's overhead holds the allocator's cached bytes)."""
    old, new = estimate(parse_spec(_spec("4.45.2"))), estimate(parse_spec(_spec("4.46.0")))
    assert old.peak_phase == new.peak_phase == "loss backward"
    block = 8 * 4096 * V * 2
    assert old.total_bytes == new.total_bytes
    assert (new.total_bytes - new.breakdown.overhead_bytes) - (old.total_bytes - old.breakdown.overhead_bytes) == block


def test_fsdp1_reports_the_cached_block_at_the_loss_backward():
    spec = parse_spec(_spec("4.45.2", framework="fsdp", fsdpVersion=1, microBatchSize=2) |
                      {"parallelism": {"data": 2}})
    spec46 = parse_spec(_spec("4.46.0", framework="fsdp", fsdpVersion=1, microBatchSize=2) |
                        {"parallelism": {"data": 2}})
    r, r46 = training_peak(spec), training_peak(spec46)
    assert r.phase == r46.phase == "loss backward"
    assert r.cached_logits == 2 * 4096 * V * 2 and r46.cached_logits == 0
    # reserved as before: the block is in the backward's bytes, allocated or cached
    assert r.backward_transient == r46.backward_transient
    assert estimate(spec).total_bytes == estimate(spec46).total_bytes


def test_the_step_reserves_no_less_than_the_backward_before_it():
    """A full fine-tune whose foreach AdamW step allocates more than the loss's backward (4.45.2, batch 4): the
    caching allocator releases nothing between them, so the estimate is at least what the loss's backward reserves -
    pure bf16 weights and AdamW's two 16-bit moments (3 x the weights), the checkpointed inputs and the loss's
    buffers with the backward's slack share under recompute (a full fine-tune's, SLACK_STATE_SPLIT more), and the
    cached 16-bit logits - beside the context."""
    from rackfit.estimator import SLACK_RECOMPUTE, SLACK_STATE_SPLIT
    from rackfit.estimator.megatron_buffers import torch_workspace_bytes_outside_megatron

    spec = parse_spec(_spec("4.45.2", method="full", loraRank=None, loraTargets=None, masterWeights="none",
                            microBatchSize=4))
    est = estimate(spec)
    assert est.peak_phase == "optimizer step"
    a = resolve(spec.model)
    act = training_activations(a, spec.training, Layout(), mixed=False)
    live = act.layers + max(act.loss_forward, act.loss_backward)
    cached = freed_16bit_logits_bytes(a, spec.training, 1)
    backward = live + int((SLACK_RECOMPUTE + SLACK_STATE_SPLIT) * (live + cached)) + cached
    assert est.total_bytes >= 3 * est.breakdown.weights_bytes + backward + CUDA_CONTEXT_BYTES + \
        torch_workspace_bytes_outside_megatron(spec.training)
