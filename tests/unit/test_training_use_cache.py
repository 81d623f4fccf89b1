"""training.useCache: transformers' model code (before 4.36) returning every layer's key and value in training under
an external checkpoint wrapper, alive at the end of the forward (estimator/framework_activations.py,
training_kv_cache_bytes)."""

from __future__ import annotations

import re

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.framework_activations import runtime_activations, training_kv_cache_bytes
from rackfit.models import resolve
from rackfit.spec import RULES, ModelSource, Training, parse_spec
from rackfit.spec.base import older
from rackfit.spec.releases import HF_CACHE_OBJECT

GiB = 1 << 30
# Llama-2-7b (32 layers, 32 key-value heads of 128) as T325 gives it
LLAMA2 = dict(architecture=dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32,
                                numKeyValueHeads=32, headDim=128, vocabSize=32000, tieWordEmbeddings=False))
FSDP1 = dict(framework="fsdp", fsdpVersion=1, method="lora", loraRank=8, loraTargets=["q", "v"], masterWeights="none",
             microBatchSize=4, sequenceLength=2048, activationCheckpointing="full", transformersVersion="4.31.0")


def _spec(model: dict = LLAMA2, data: int = 4, **training):
    return parse_spec(dict(model=model, workload="training", precision="bf16", training={**FSDP1, **training},
                           parallelism=dict(data=data)))


def test_the_cache_is_every_layers_key_and_value_at_the_kv_heads():
    """2 (key, value) x 32 layers x 4 x 2048 tokens x 32 heads x 128 x 2 bytes: the ~4 GB llama-recipes PR 165 saved
    on Llama-2-7b; a GQA model's cache is at its key-value heads, split over tensor parallel."""
    s = _spec(useCache=True)
    arch = resolve(s.model)
    assert training_kv_cache_bytes(arch, s.training, Layout(data=4)) == 4 * GiB
    llama3 = resolve(ModelSource(preset="llama-3.1-8b"))   # 8 key-value heads of 128, 32 layers
    tr = Training(**{**FSDP1, "useCache": True})
    assert training_kv_cache_bytes(llama3, tr, Layout()) == 1 * GiB
    assert training_kv_cache_bytes(llama3, tr, Layout(tensor=2)) == GiB // 2


def test_the_cache_is_alive_at_the_loss_forward_only():
    """Added to the end of the forward (beside the loss's forward buffers), not to the backward or the kept
    activations: the output holding it is dropped before loss.backward()."""
    s_on, s_off = _spec(useCache=True), _spec()
    arch = resolve(s_on.model)
    on, off = (runtime_activations(arch, s.training, Layout(data=4)) for s in (s_on, s_off))
    assert on.loss_forward - off.loss_forward == 4 * GiB
    assert (on.loss_backward, on.kept, on.recompute) == (off.loss_backward, off.kept, off.recompute)


def test_the_estimate_holds_the_cache_where_the_forward_end_is_the_peak():
    """With the cache the forward's end is the peak: the kept inputs, the loss's forward buffers and the cache, beside
    the 16-bit logits' block 4.31's in-forward upcast left cached (activations.freed_16bit_logits_bytes)."""
    from rackfit.estimator.activations import freed_16bit_logits_bytes

    s_on, s_off = _spec(useCache=True), _spec()
    on, off = estimate(s_on), estimate(s_off)
    arch = resolve(s_on.model)
    act = runtime_activations(arch, s_off.training, Layout(data=4))
    assert on.peak_phase == "loss backward"
    assert on.breakdown.activations_bytes == act.kept + act.loss_forward + 4 * GiB + \
        freed_16bit_logits_bytes(arch, s_on.training, 1)
    assert estimate(_spec(useCache=False)).total_bytes == off.total_bytes


@pytest.mark.parametrize("training", [
    dict(transformersVersion="4.36.2"),                       # DynamicCache: the recompute fails
    dict(transformersVersion=None),                          # unset: a current release
    dict(activationCheckpointing="none"),                    # no external wrapper: nothing modelled
    dict(fsdpVersion=2, modelCode="torchtitan", transformersVersion=None),   # not transformers' model code
])
def test_use_cache_is_refused_where_no_cache_outlives_a_training_forward(training):
    t = {k: v for k, v in {**FSDP1, **training, "useCache": True}.items() if v is not None}
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(dict(model=LLAMA2, workload="training", precision="bf16", training=t))
    assert [path for path, _ in e.value.errors] == ["spec.training.useCache"]


def test_use_cache_is_refused_with_transformers_own_checkpointing():
    """HF Trainer's gradient_checkpointing: LlamaModel.forward sets use_cache False itself."""
    with pytest.raises(InvalidWorkload) as e:
        parse_spec(dict(model=LLAMA2, workload="training", precision="bf16",
                        training=dict(framework="transformers", activationCheckpointing="full",
                                      transformersVersion="4.31.0", useCache=True)))
    assert [path for path, _ in e.value.errors] == ["spec.training.useCache"]


@pytest.mark.parametrize("version", ["4.31.0", "4.35.2", "4.35", "4.3", "4.0.1", "3.5.0", "04.035.1", "4.36", "4.36.0",
                                     "4.40.0", "4.360", "5.0.0", "10.0", "14.1"])
def test_the_cel_version_rule_agrees_with_the_validator(version):
    pattern = re.search(r"matches\('(.*)'\)", RULES["Training"]["use_cache_version"].cel).group(1)
    assert bool(re.search(pattern, version)) == older(version, HF_CACHE_OBJECT)
