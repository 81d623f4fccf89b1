"""transformers' model families whose causal-LM forward did not upcast its logits (spec/releases.py
HF_LOGITS_UPCAST_FROM, read in the 4.28.0-4.49.0 wheels): OPTForCausalLM of 4.28.0 computes `logits =
self.lm_head(outputs[0]).contiguous()` and CrossEntropyLoss over `logits[..., :-1, :].contiguous()`, so where no
autocast runs (DeepSpeed's fp16/bf16 engine) the loss is 16-bit: the logits, the shifted copy and the log-softmax at 2
bytes a logit, and their gradients too (estimator/activations.py hf_16bit_cross_entropy). Each count is worked out by
hand from those lines."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import (
    freed_16bit_logits_bytes,
    hf_16bit_cross_entropy,
    hf_forward_upcasts_logits,
)
from rackfit.estimator.framework_activations import loop_output_bytes, runtime_activations
from rackfit.models import resolve
from rackfit.spec import parse_spec

# OPT-1.3B as bench row T73 gives it (DeepSpeed-Chat step 1 on one GPU)
OPT = {"numLayers": 24, "hiddenSize": 2048, "intermediateSize": 8192, "numAttentionHeads": 32,
       "numKeyValueHeads": 32, "headDim": 64, "vocabSize": 50272, "tieWordEmbeddings": True, "gatedMlp": False,
       "modelType": "opt"}
V = 50272
TOKENS = 16 * 512


def _spec(framework: str = "deepspeed", model_type: str | None = "opt", version: str | None = "4.31.0", **training):
    arch = {k: v for k, v in {**OPT, "modelType": model_type}.items() if v is not None}
    t = {"framework": framework, "method": "full", "masterWeights": "fp32", "optimizer": "adamw",
         "microBatchSize": 16, "sequenceLength": 512, "activationCheckpointing": "none", "flashAttention": False}
    if framework == "deepspeed":
        t["zeroStage"] = 0
    if version:
        t["transformersVersion"] = version
    t.update(training)
    return parse_spec({"model": {"architecture": arch}, "workload": "training", "precision": "fp16", "training": t,
                       "parallelism": {"data": 1}})


@pytest.mark.parametrize(("model_type", "version", "upcasts"), [
    ("opt", "4.28.0", False), ("opt", "4.48.0", False), ("opt", "4.49.0", True), ("opt", None, True),
    ("gpt_neox", "4.31.0", False), ("gpt_bigcode", "4.44.2", False), ("gpt2", "4.48.3", False),
    ("bloom", "4.35.0", False), ("falcon", "4.40.0", False), ("gptj", "4.45.2", False),
    ("llama", "4.30.2", False), ("llama", "4.31.0", True),   # 4.31.0: `logits = logits.float()`
    ("mistral", "4.35.0", True), ("qwen2", "4.40.0", True),  # upcast from their first release
    (None, "4.28.0", True),                                  # no model type: read as upcasting
])
def test_which_forwards_upcast_by_model_type_and_release(model_type, version, upcasts):
    s = _spec(model_type=model_type, version=version)
    assert hf_forward_upcasts_logits(resolve(s.model), s.training) is upcasts


def test_only_deepspeed_runs_the_loss_in_16_bits():
    """The HF Trainer autocasts (framework transformers: cross_entropy and log_softmax on autocast's fp32 list), and
    under fsdp the loop decides; DeepSpeed's engine and the Trainer under DeepSpeed run no autocast."""
    for framework, expected in (("deepspeed", True), ("transformers", False)):
        s = _spec(framework=framework)
        assert hf_16bit_cross_entropy(resolve(s.model), s.training) is expected


def test_the_16bit_loss_is_6_bytes_a_logit_forward_and_backward():
    """16-bit logits + 16-bit shifted copy + 16-bit log-softmax forward; the saved log-softmax, nll's gradient and
    log_softmax's gradient backward: 6 bytes each, against 4.31's fp32 counts for an upcasting family (the fp32 upcast,
    its shifted copy and the log-softmax, 12 bytes forward; 12 backward)."""
    opt, llama = _spec(), _spec(model_type="llama")
    a_opt, a_llama = (runtime_activations(resolve(s.model), s.training, Layout(data=1)) for s in (opt, llama))
    n = TOKENS * V
    assert (a_opt.loss_forward, a_opt.loss_backward) == (n * 6, n * 6)
    assert (a_llama.loss_forward, a_llama.loss_backward) == (n * 12, n * 12)
    # the layers' kept tensors differ by OPT's LayerNorm and relu (test_hf_layernorm_families), not the loss


def test_no_16bit_block_is_left_cached_and_a_kept_output_is_16bit():
    """The 16-bit logits are never dropped at an upcast, so no freed block is reserved beside the loss; a loop that
    keeps the output (DeepSpeed-Chat's `outputs = model(**batch, use_cache=False)`) keeps 16-bit logits, 2 bytes."""
    s = _spec(loopKeepsOutput=True)
    arch = resolve(s.model)
    assert freed_16bit_logits_bytes(arch, s.training, 1) == 0
    assert loop_output_bytes(arch, s.training, Layout(data=1), 1) == TOKENS * V * 2
    up = _spec(model_type="llama", loopKeepsOutput=True)
    assert freed_16bit_logits_bytes(resolve(up.model), up.training, 1) == TOKENS * V * 2
    assert loop_output_bytes(resolve(up.model), up.training, Layout(data=1), 1) == TOKENS * V * 4


def test_the_estimate_falls_by_the_loss_difference():
    """From 4.49 OPT calls self.loss_function (ForCausalLMLoss upcasts): the fp32 loss again."""
    old, new = estimate(_spec(version="4.48.0")), estimate(_spec(version="4.49.0"))
    assert new.total_bytes - old.total_bytes >= TOKENS * V * 4
