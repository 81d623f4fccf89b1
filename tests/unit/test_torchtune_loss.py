"""torchtune's chunked cross-entropy as its config names it (training.torchtuneLoss): CEWithChunkedOutputLoss (every
release to 0.6.1) gets every chunk's 16-bit logits from the model at once, LinearCrossEntropyLoss (main from April
2025) projects one chunk at a time; eager, both keep every chunk's fp32 log-softmax for the one backward, compiled
neither keeps an fp32 buffer. Under framework transformers the field tells torchtune's single-device recipe from the
generic chunked loss that stands for axolotl's Cut Cross Entropy."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout
from rackfit.estimator.activations import training_activations
from rackfit.estimator.framework_activations import runtime_activations, torchtune_eager_chunked_loss
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
BASE = dict(method="lora", loraRank=8, microBatchSize=2, sequenceLength=8192, activationCheckpointing="full",
            lossChunks=8)
LOGITS = 2 * 8192 * LLAMA.vocab_size


def single(**training) -> tuple[int, int]:
    act = training_activations(LLAMA, Training(framework="transformers", **{**BASE, **training}), Layout(), True)
    return act.loss_forward, act.loss_backward


def test_single_device_eager_chunked_output_keeps_every_chunk():
    """torchtune 0.4.0, compile false: the model's list of 16-bit chunks (2 a logit) and every chunk's saved fp32
    log-softmax (4) beside the last chunk's upcast (4 / 8) at the forward; the saved log-softmax and one chunk's
    nll and log-softmax gradients at the backward (the 16-bit list is deleted before it)."""
    fwd, bwd = single(torchtuneLoss="chunkedOutput")
    assert fwd == pytest.approx(LOGITS * (2 + 4 + 4 / 8), abs=2)
    assert bwd == pytest.approx(LOGITS * (4 + 8 / 8), abs=2)
    linear_fwd, linear_bwd = single(torchtuneLoss="linear")  # one chunk's 16-bit logits at a time
    assert linear_fwd == pytest.approx(LOGITS * (4 + 6 / 8), abs=2)
    assert linear_bwd == bwd


def test_single_device_compiled_keeps_16bit_logits_only():
    """compile true: the recipe compiles compute_cross_entropy, which saves each chunk's 16-bit logits and no fp32
    buffer; the release does not matter."""
    for loss in ("chunkedOutput", "linear"):
        fwd, bwd = single(torchtuneLoss=loss, compile=True)
        assert fwd == pytest.approx(LOGITS * 2, abs=2)
        assert bwd == pytest.approx(LOGITS * 2 * (1 + 1 / 8), abs=2)


def test_unset_under_transformers_is_the_generic_chunked_loss():
    """Without torchtuneLoss, lossChunks under transformers stays the loss axolotl's Cut Cross Entropy rows are
    stated with: the 16-bit logits whole and one chunk's fp32 buffers, less than torchtune's eager loss keeps."""
    fwd, bwd = single()
    assert fwd == pytest.approx(LOGITS * (2 + 8 / 8), abs=2)
    assert bwd == pytest.approx(LOGITS * (2 + 12 / 8), abs=2)
    assert fwd < single(torchtuneLoss="chunkedOutput")[0]


def test_fsdp_eager_chunked_output_adds_the_other_chunks_at_the_forward():
    """FSDP2 (lora_finetune_distributed), compile false: CEWithChunkedOutputLoss holds the other 7 chunks' 16-bit
    logits beside LinearCrossEntropyLoss's buffers through the forward; the backward is the same."""
    tr = dict(framework="fsdp", **BASE)
    linear = runtime_activations(LLAMA, Training(**tr), Layout(data=2))
    output = runtime_activations(LLAMA, Training(**tr, torchtuneLoss="chunkedOutput"), Layout(data=2))
    assert output.loss_forward - linear.loss_forward == pytest.approx(LOGITS * 2 * 7 / 8, abs=4)
    assert output.loss_backward == linear.loss_backward
    assert runtime_activations(LLAMA, Training(**tr, torchtuneLoss="linear"), Layout(data=2)) == linear


def test_tensor_parallel_compile_skip_is_linear_cross_entropy_s():
    """PR 2782's skip of compile under tensor parallel is LinearCrossEntropyLoss.apply_compile_strategy's; the older
    class is compiled with the recipe's compile."""
    tr = dict(framework="fsdp", compile=True, **BASE)
    assert torchtune_eager_chunked_loss(Training(**tr), 2)
    assert torchtune_eager_chunked_loss(Training(**tr, torchtuneLoss="linear"), 2)
    assert not torchtune_eager_chunked_loss(Training(**tr, torchtuneLoss="chunkedOutput"), 2)
    assert torchtune_eager_chunked_loss(Training(**{**tr, "compile": False}, torchtuneLoss="chunkedOutput"), 2)


@pytest.mark.parametrize("training", [
    dict(framework="transformers", torchtuneLoss="chunkedOutput"),                   # no lossChunks
    dict(framework="transformers", torchtuneLoss="linear", lossChunks=1),
    dict(framework="deepspeed", torchtuneLoss="chunkedOutput", lossChunks=8),
    dict(framework="fsdp", fsdpVersion=1, torchtuneLoss="chunkedOutput", lossChunks=8),
    dict(framework="fsdp", modelCode="transformers", torchtuneLoss="chunkedOutput", lossChunks=8),
    dict(framework="fsdp", torchtuneLoss="linear", lossChunks=8, lossChunkBackward=True),  # torchtitan's loss
])
def test_torchtune_loss_is_refused_outside_torchtune(training):
    with pytest.raises(InvalidWorkload, match="training.torchtuneLoss"):
        parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16", training=training))
