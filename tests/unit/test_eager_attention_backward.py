"""Eager attention's backward at a recomputed layer (training.flashAttention false, Hugging Face models): at the
softmax's node the fp32 probabilities the forward saved, their fp32 gradient (`_to_copy`'s backward) and the scores'
gradient (`_softmax_backward_data`, in the input's dtype: fp16 under half_to_float, fp32 after bf16's conversion) are
alive together, and the MLP's saved tensors are freed (activations.eager_backward_bytes; docs/accuracy.md, "Eager
attention's backward transient"). Counts worked out by hand; the shapes are Yi-6B's (bench row T1083)."""

from __future__ import annotations

from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import eager_backward_bytes, training_activations
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, parse_spec

ARCH = {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 11008, "numAttentionHeads": 32,
        "numKeyValueHeads": 4, "headDim": 128, "vocabSize": 64000, "tieWordEmbeddings": False}
SEQ = 4096
MLP_SAVED = 2 * 4 * 11008   # gate, up, act, product: 16-bit, a token


def _spec(framework: str = "transformers", precision: str = "fp16", **training) -> dict:
    t = {"framework": framework, "method": "full", "masterWeights": "fp32", "optimizer": "adamw",
         "microBatchSize": 1, "sequenceLength": SEQ, "activationCheckpointing": "full", "flashAttention": False}
    t.update(training)
    t = {k: v for k, v in t.items() if v is not None}
    return {"model": {"architecture": ARCH}, "workload": "training", "precision": precision, "training": t,
            "parallelism": {"data": 1}}


def _tr(**training):
    return parse_spec(_spec(**training)).training


A = resolve(ModelSource(architecture=ARCH))


def test_a_score_more_in_fp16_two_more_in_bf16_over_the_count_of_eight():
    """Current releases save 6 bytes a score (counted as 8): the peak is 6 + 4 in fp16, 6 + 6 in bf16."""
    scores = 32 * SEQ
    assert eager_backward_bytes(A, _tr(), 1, fp16=True) == 2 * scores - MLP_SAVED
    assert eager_backward_bytes(A, _tr(), 1, fp16=False) == 4 * scores - MLP_SAVED
    # 4.28-4.30 also saved the clamp's 16-bit input: 8 + 4 in fp16
    assert eager_backward_bytes(A, _tr(transformersVersion="4.30.0"), 1, fp16=True) == 4 * scores - MLP_SAVED
    assert eager_backward_bytes(A, _tr(transformersVersion="4.31.0"), 1, fp16=True) == 2 * scores - MLP_SAVED
    # split over the tensor degree with the heads
    assert eager_backward_bytes(A, _tr(), 2, fp16=False) == (4 * scores - MLP_SAVED) / 2


def test_nothing_under_flash_attention_and_no_less_than_nothing_at_short_lengths():
    assert eager_backward_bytes(A, _tr(flashAttention=True), 1, fp16=True) == 0.0
    assert eager_backward_bytes(A, _tr(sequenceLength=64), 1, fp16=True) == 0.0   # 2 x 32 x 64 < the MLP's


def test_counted_in_the_recomputed_layer_only():
    tokens = SEQ
    extra = (2 * 32 * SEQ - MLP_SAVED) * tokens
    sdpa = training_activations(A, _tr(flashAttention=True), Layout(), mixed=True, fp16=True)
    eager = training_activations(A, _tr(), Layout(), mixed=True, fp16=True)
    assert eager.attention_backward == extra
    assert eager.recompute - sdpa.recompute == 8 * 32 * SEQ * tokens + extra   # the saved scores and the transient
    assert eager.layers == sdpa.layers
    # without checkpointing no layer is recomputed: not counted there
    none = training_activations(A, _tr(activationCheckpointing="none"), Layout(), mixed=True, fp16=True)
    assert none.attention_backward == 0 and none.recompute == 0
    # DeepSpeed and FSDP (runtime_activations) count it in the recomputed layer too
    ds, ds_sdpa = (runtime_activations(A, _tr(framework="deepspeed", zeroStage=2, flashAttention=f), Layout(),
                                       fp16=True) for f in (False, True))
    assert ds.recompute - ds_sdpa.recompute == 8 * 32 * SEQ * tokens + extra


def test_t1083_shape_now_says_no_fit_at_the_layer_recompute():
    """Yi-6B trained in fp16 at 4,096 tokens, ZeRO-2 with the optimizer offloaded on 2 GPUs: the run died on a 23.65 GiB
    card asking 2.00 GiB, one layer's fp32 scores."""
    spec = _spec(framework="deepspeed", zeroStage=2, offloadOptimizer=True)
    spec["parallelism"] = {"data": 2}
    eager = estimate(parse_spec(spec))
    spec["training"]["flashAttention"] = True
    sdpa = estimate(parse_spec(spec))
    assert eager.peak_phase == "layer recompute"
    assert eager.total_bytes > 23.65 * 2**30 > sdpa.total_bytes
