"""Megatron's native fused cross-entropy (issue 22, `training.crossEntropyFusion`): its backward, compiled by
torch.compile (megatron/core/jit.py jit_fuser), clones the saved fp32 softmax for the functional index_put Inductor
lowers the indexed `-=` to, one fp32 buffer a logit more than the eager in-place path; counts by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import (
    MEGATRON_FUSED_CE_CLONE_BYTES,
    megatron_loss_backward_bytes,
    runtime_activations,
)
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training

# 8 x 1024, vocab 64000 untied: the loss dominates the last stage
GPT = ModelArch(name="gpt", num_layers=8, hidden_size=1024, intermediate_size=4096, num_attention_heads=8,
                num_key_value_heads=8, head_dim=128, vocab_size=64000, tie_word_embeddings=False, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=4,
            sequenceLength=4096, activationCheckpointing="none", sequenceParallel=True)


def tr(**kw) -> Training:
    return Training(**{**BASE, **kw})


def test_backward_bytes_a_logit_unfused_and_native():
    """Unfused: the saved fp32 softmax, the gradient in place, cast to bf16: 4 + 2. Native: and Inductor's clone, 4."""
    assert MEGATRON_FUSED_CE_CLONE_BYTES == 4
    assert megatron_loss_backward_bytes(tr()) == 6
    assert megatron_loss_backward_bytes(tr(crossEntropyFusion="none")) == 6
    assert megatron_loss_backward_bytes(tr(crossEntropyFusion="native")) == 10


def test_native_fusion_adds_one_fp32_buffer_of_the_vocabulary_share_to_the_loss_backward_only():
    """TP 4: 4 x 4096 tokens x 64000 / 4 logits on the rank, 4 bytes each more at the backward; the forward and the
    kept activations are the same."""
    lay = Layout(tensor=4, pipeline=2)
    unfused = runtime_activations(GPT, tr(), lay, "last")
    native = runtime_activations(GPT, tr(crossEntropyFusion="native"), lay, "last")
    logits = 4 * 4096 * 64000 // 4
    assert native.loss_backward - unfused.loss_backward == 4 * logits
    assert native.loss_backward == 10 * logits
    assert native.loss_forward == unfused.loss_forward == 6 * logits
    assert native.kept == unfused.kept


def test_the_last_stage_peak_grows_by_the_clone_and_the_first_stage_not_at_all():
    lay = Layout(tensor=4, pipeline=2)
    p = count_params(GPT)
    logits = 4 * 4096 * 64000 // 4
    last = runtime_peak(GPT, p, tr(), "bf16", lay, 0, stage="last")
    last_native = runtime_peak(GPT, p, tr(crossEntropyFusion="native"), "bf16", lay, 0, stage="last")
    assert last_native.activations - last.activations == 4 * logits
    first = runtime_peak(GPT, p, tr(), "bf16", lay, 0, stage="first")
    first_native = runtime_peak(GPT, p, tr(crossEntropyFusion="native"), "bf16", lay, 0, stage="first")
    assert first_native.activations == first.activations


def test_the_field_is_megatron_s_and_an_enum():
    with pytest.raises(ValidationError, match="crossEntropyFusion is Megatron's --cross-entropy-loss-fusion"):
        Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                 sequenceLength=1024, crossEntropyFusion="native")
    with pytest.raises(ValidationError, match="crossEntropyFusion"):
        tr(crossEntropyFusion="te")
