"""The torchtitan Hopper rows' per-token slope against the source's floors (docs/accuracy.md, "The torchtitan Hopper
rows' slope and constant, by source", issue 22). T110 (Qwen3-32B, FSDP 8, full AC, eager) logs +7.86 GiB from local
batch 1 to 2; the count adds the kept block inputs and the loss's backward buffers, and neither can be smaller by the
source: full AC (torch.utils.checkpoint, non-reentrant) keeps each block's 16-bit input, and the eager loss's backward
(torchtitan components/loss.py `cross_entropy(pred.flatten(0, 1).float(), ...)`, `del pred` in train.py since
e29b6b4d4) holds the saved fp32 log-softmax, nll_loss_backward's fp32 grad_input and _log_softmax_backward_data's fp32
output at once: 12 bytes a logit. The compiled loss keeps the 16-bit logits and writes the 16-bit gradient: 4. These
tests pin the count at those floors, so a later change cannot bring the slope to the log by going under them.
Expected bytes computed by hand."""

from __future__ import annotations

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

QWEN = resolve(ModelSource(preset="qwen3-32b"))
GiB = 1 << 30


def _t110(batch: int, compile_: bool = False) -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=batch,
                    sequenceLength=4096, activationCheckpointing="full", compile=compile_, expandableSegments=True,
                    adamwImplementation="fused", torchtitanVersion="0.2")


def test_qwen3_32b_shapes():
    assert (QWEN.num_layers, QWEN.hidden_size, QWEN.vocab_size) == (64, 5120, 151936)


def test_full_ac_keeps_one_16bit_block_input_a_layer():
    for b in (1, 2):
        act = runtime_activations(QWEN, _t110(b), Layout(data=8))
        assert act.kept == 64 * b * 4096 * 5120 * 2            # 2.50 GiB a sample


def test_eager_loss_backward_is_twelve_bytes_a_logit_plus_the_final_norm_output():
    for b in (1, 2):
        tokens = b * 4096
        act = runtime_activations(QWEN, _t110(b), Layout(data=8))
        # saved log-softmax + nll's grad_input + log-softmax's grad_input, fp32; the output projection's saved input
        assert act.loss_backward == tokens * 151936 * (4 + 4 + 4) + tokens * 5120 * 2


def test_slope_from_batch_1_to_2_is_at_the_floor():
    one = runtime_activations(QWEN, _t110(1), Layout(data=8))
    two = runtime_activations(QWEN, _t110(2), Layout(data=8))
    grow = (two.kept + two.loss_backward) - (one.kept + one.loss_backward)
    floor = 64 * 4096 * 5120 * 2 + 4096 * 151936 * 12
    assert grow - 4096 * 5120 * 2 == floor
    # 9.46 GiB a sample before any slack, 1.6 GiB above the logged 7.86: no per-token over-count closes it
    assert round(floor / GiB, 2) == 9.46 and floor / GiB - 7.86 > 1.5


def test_compiled_loss_keeps_the_16bit_logits_and_writes_the_16bit_gradient():
    act = runtime_activations(QWEN, _t110(2, compile_=True), Layout(data=8))
    tokens = 2 * 4096
    assert act.loss_backward == tokens * 151936 * (2 + 2) + tokens * 5120 * 2
