"""Issue 22: tensor parallel under FSDP2, the block backward's whole-sequence gradient (estimator/fsdp_tp.py) and the
public row T150 (torchtitan issue 1207). Expected bytes computed by hand from the source's shapes
(docs/accuracy.md, "The tensor-parallel rows against FSDP-only rows of the same runs")."""

from __future__ import annotations

from pathlib import Path

import yaml

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.fsdp import fsdp2_backward_inputs, fsdp2_backward_moments, fsdp2_backward_peak
from rackfit.estimator.fsdp_tp import whole_sequence_gradient_excess
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA70 = resolve(ModelSource(preset="llama-3.1-70b"))
LLAMA8 = resolve(ModelSource(preset="llama-3.1-8b"))
CASES = Path(__file__).resolve().parents[2] / "bench" / "cases" / "public" / "training.yaml"


def t12() -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=16,
                    sequenceLength=8192, activationCheckpointing="full", compile=True, compileLoss=False,
                    expandableSegments=True)


def t150() -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                    sequenceLength=8192, activationCheckpointing="selective", compile=True,
                    expandableSegments=True, adamwImplementation="foreach", torchtitanVersion="0.1")


def test_whole_sequence_gradient_by_hand():
    """RowwiseParallel(output_layouts=Shard(1)): Redistribute.backward makes the Shard(1) gradient Replicate, an
    all-gather: [16, 8192, 8192] bf16 on every TP 8 rank, of which the per-token count has an eighth."""
    assert whole_sequence_gradient_excess(LLAMA70, t12(), 8) == 16 * 8192 * 8192 * 2 * 7 // 8
    assert whole_sequence_gradient_excess(LLAMA70, t12(), 8) == 1_879_048_192   # 1.75 GiB
    # TP 2, Llama 3.1 8B at 1 x 8192: half of the 64 MiB whole tensor
    assert whole_sequence_gradient_excess(LLAMA8, t150(), 2) == 8192 * 4096 * 2 // 2
    # sequence parallel or not: the rowwise output is Partial -> Shard(1) or -> Replicate; its gradient is whole
    nosp = t12().model_copy(update={"sequence_parallel": False})
    assert whole_sequence_gradient_excess(LLAMA70, nosp, 8) == whole_sequence_gradient_excess(LLAMA70, t12(), 8)


def test_no_excess_without_tensor_parallel_or_outside_fsdp():
    assert whole_sequence_gradient_excess(LLAMA70, t12(), 1) == 0
    megatron = Training(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw",
                        microBatchSize=1, sequenceLength=8192, activationCheckpointing="full")
    assert whole_sequence_gradient_excess(LLAMA70, megatron, 8) == 0


def _moments(a, tr, layout):
    p = count_params(a)
    t = layout.tensor
    act = runtime_activations(a, tr, layout)
    layer = (p.total - 2 * p.embedding) // a.num_layers // t
    terms = fsdp2_backward_inputs(a, tr, layout, act, 10 * 2**30, layer, p.embedding // t,
                                  (p.embedding + p.lm_head) // t, 2, 4)
    return terms, fsdp2_backward_moments(**terms)


def test_block_moments_hold_the_gradient_the_loss_moments_do_not():
    """Added to the block's recompute moments only: the loss's backward and the output's run before any block."""
    layout = Layout(data=32, tensor=8)
    terms, with_grad = _moments(LLAMA70, t12(), layout)
    assert terms["block_grad"] == 1_879_048_192
    without = fsdp2_backward_moments(**{**terms, "block_grad": 0})
    diff = {m.name: m.total - w.total for m, w in zip(with_grad, without, strict=True)}
    assert diff == {"loss backward": 0, "output backward": 0, "output reduce-scatter": 0,
                    "layer recompute": 1_879_048_192, "layer reduce-scatter": 0,
                    "next layer recompute": 1_879_048_192, "backward end": 0}
    # T12 still peaks at DTensor's loss-parallel backward (31.3 GiB of buffers), 1.75 GiB or not
    assert fsdp2_backward_peak(with_grad).name == "loss backward"


def test_t150_row_as_published():
    """torchtitan issue 1207: Llama 3 8B, 4 x H100, FSDP 2 x TP 2, per-op SAC, 45.68 GiB max reserved (bf16) and
    45.67 (float8 rowwise, the same report's second run)."""
    cases = {c["id"]: c for c in yaml.safe_load(CASES.read_text())["cases"]}
    row = cases["T150"]
    assert "pytorch/torchtitan/issues/1207" in row["source"]
    assert row["gpu"] == "hopper"
    assert row["spec"]["parallelism"] == {"data": 2, "tensor": 2}
    assert row["measured"] == [
        {"variant": "FSDP 2 x TP 2, bf16, per-op SAC", "quantity": "max_reserved", "gib": 45.68},
        {"variant": "FSDP 2 x TP 2, float8 rowwise, per-op SAC", "training": {"float8": "rowwise"},
         "quantity": "max_reserved", "gib": 45.67}]
    _, moments = _moments(LLAMA8, t150(), Layout(data=2, tensor=2))
    assert fsdp2_backward_peak(moments).name == "loss backward"
