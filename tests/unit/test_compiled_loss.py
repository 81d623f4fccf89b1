"""torchtitan's compiled model and loss against the source, on the Llama 3 8B rows of T210/T220-T222 (docs/accuracy.md,
"torchtitan's compiled loss and blocks at the peak, by release", issue 22). The compiled loss
(torchtitan components/loss.py, `torch.compile(cross_entropy_loss)` in build_cross_entropy_loss since April 2025)
saves its input, the 16-bit logits that the uncompiled output projection made, and writes a new 16-bit gradient:
AOTAutograd donates a saved tensor to the backward only when it aliases no forward input
(torch/_functorch/_aot_autograd/graph_compile.py, collect_fw_donated_buffer_idxs), so the gradient cannot reuse the
logits' buffer. The eager loss's floor is 12 bytes a logit. So compiling the loss saves at most 8 bytes a logit, 7.83
GiB on these rows, where the logs drop 16.76 GiB from T221 to T220: the rest is not the loss.
The compiled per-op SAC blocks keep wq, wv and w1's outputs, the SDPA output and log-sum-exp and the block input.
Expected bytes computed by hand."""

from __future__ import annotations

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
GiB = 1 << 30
TOKENS = 8192
LOGITS = TOKENS * 128256


def _row(compile_loss: bool, version: str = "0.1") -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                    sequenceLength=TOKENS, activationCheckpointing="selective", compile=True,
                    compileLoss=compile_loss, adamwImplementation="fused", torchtitanVersion=version)


def test_llama_3_8b_shapes():
    assert (LLAMA.num_layers, LLAMA.hidden_size, LLAMA.vocab_size) == (32, 4096, 128256)


def test_compiled_loss_holds_the_16bit_logits_and_a_new_16bit_gradient():
    act = runtime_activations(LLAMA, _row(True), Layout(data=8))
    final_norm = TOKENS * 4096 * 2  # the output projection's saved input (the final norm's output)
    assert act.loss_forward == LOGITS * 2 + final_norm
    assert act.loss_backward == LOGITS * (2 + 2) + final_norm      # 3.91 GiB + 0.06


def test_compiling_the_loss_saves_at_most_eight_bytes_a_logit():
    eager = runtime_activations(LLAMA, _row(False), Layout(data=8))
    compiled = runtime_activations(LLAMA, _row(True), Layout(data=8))
    saved = eager.loss_backward - compiled.loss_backward
    assert saved == LOGITS * (4 + 4 + 4 - 2 - 2)
    assert round(saved / GiB, 2) == 7.83
    # T221 (loss eager) 47.65 GiB, T220 (loss compiled) 30.89: at least 8.9 GiB of the drop is not the loss
    assert (47.65 - 30.89) - saved / GiB > 8.9


def test_compiled_per_op_sac_block_keeps_what_the_backward_reads():
    act = runtime_activations(LLAMA, _row(True), Layout(data=8))
    # wq 4096, wv 1024, w1 14336 (w2 dropped compiled), SDPA output 4096, block input 4096: 16-bit; lse 32 heads fp32
    per_token_layer = (4096 + 1024 + 14336 + 4096 + 4096) * 2 + 32 * 4
    assert act.kept == 32 * TOKENS * per_token_layer               # 13.53 GiB
    assert round(act.kept / GiB, 2) == 13.53
