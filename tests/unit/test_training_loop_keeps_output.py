"""training.loopKeepsOutput: a training loop of the job's own that keeps transformers' model output referenced
through the backward (`outputs = model(**batch); loss = outputs.loss; loss.backward()`, dlrover ATorch's
examples/llama2/fsdp_llama2.py), so the output's logits and, with useCache, every layer's key and value stay
allocated beside the kept activations (estimator/framework_activations.py, loop_output_bytes)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.framework_activations import loop_output_bytes, runtime_activations, training_kv_cache_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

GiB = 1 << 30
# Llama-2-7b as T1502 gives it
LLAMA2 = dict(architecture=dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32,
                                numKeyValueHeads=32, headDim=128, vocabSize=32000, tieWordEmbeddings=False,
                                maxPositionEmbeddings=4096))
ATORCH = dict(framework="fsdp", fsdpVersion=1, method="full", masterWeights="fp32", optimizer="adamw",
              microBatchSize=4, sequenceLength=4096, activationCheckpointing="full", flashAttention=True,
              transformersVersion="4.31.0", useCache=True)


def _spec(data: int = 8, **training):
    t = {k: v for k, v in {**ATORCH, **training}.items() if v is not None}
    return parse_spec(dict(model=LLAMA2, workload="training", precision="bf16", training=t,
                           parallelism=dict(data=data)))


def test_the_output_is_the_fp32_logits_and_the_cache_before_4_46():
    """4 x 4096 tokens x 32,000 logits x 4 bytes (4.31's `logits = logits.float()`, the output's logits) = 1.95 GiB,
    and the cache: 2 x 32 layers x 4 x 4096 x 32 heads x 128 x 2 bytes = 8 GiB."""
    s = _spec(loopKeepsOutput=True)
    arch = resolve(s.model)
    cache = training_kv_cache_bytes(arch, s.training, Layout(data=8))
    assert cache == 8 * GiB
    assert loop_output_bytes(arch, s.training, Layout(data=8), 1) == 4 * 4096 * 32000 * 4 + cache


def test_from_4_46_the_output_holds_the_16bit_logits_and_no_cache_without_use_cache():
    s = _spec(loopKeepsOutput=True, useCache=None, transformersVersion="4.46.0")
    arch = resolve(s.model)
    assert loop_output_bytes(arch, s.training, Layout(data=8), 1) == 4 * 4096 * 32000 * 2


def test_the_output_is_held_with_the_kept_activations_through_the_backward():
    """Added to the kept activations (alive at the loss's forward - the previous step's output - and through the
    whole backward); the loss's own buffers and a layer's recompute unchanged."""
    on, off = _spec(loopKeepsOutput=True), _spec()
    arch = resolve(on.model)
    a_on, a_off = (runtime_activations(arch, s.training, Layout(data=8)) for s in (on, off))
    out = loop_output_bytes(arch, on.training, Layout(data=8), 1)
    assert a_on.kept - a_off.kept == out
    assert (a_on.loss_forward, a_on.loss_backward, a_on.recompute) == \
        (a_off.loss_forward, a_off.loss_backward, a_off.recompute)
    # the estimate's peak gains the whole output; unset and false are the same job
    assert estimate(on).total_bytes > estimate(off).total_bytes + out
    assert estimate(_spec(loopKeepsOutput=False)).total_bytes == estimate(off).total_bytes


@pytest.mark.parametrize("training", [
    dict(framework="transformers", fsdpVersion=None, useCache=None),            # the HF Trainer drops its output
    dict(fsdpVersion=2, modelCode="torchtitan", useCache=None, transformersVersion=None),  # not transformers' code
])
def test_loop_keeps_output_is_refused_outside_transformers_model_code_under_fsdp_or_deepspeed(training):
    t = {k: v for k, v in {**ATORCH, **training, "loopKeepsOutput": True}.items() if v is not None}
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(dict(model=LLAMA2, workload="training", precision="bf16", training=t))
    assert [path for path, _ in e.value.errors] == ["spec.training.loopKeepsOutput"]


def test_deepspeed_takes_it():
    t = dict(framework="deepspeed", zeroStage=3, method="full", microBatchSize=1, sequenceLength=2048,
             activationCheckpointing="full", loopKeepsOutput=True)
    assert parse_spec(dict(model=LLAMA2, workload="training", precision="bf16", training=t,
                           parallelism=dict(data=8))).training.loop_keeps_output
