"""torchtune's LoRA and QLoRA under FSDP2 (framework fsdp, masterWeights none): what a frozen, unadapted projection
does not make autograd keep, checked against bytes computed by hand from PyTorch's and torchtune's source."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout
from rackfit.estimator.activations import ACT_BYTES
from rackfit.estimator.framework_activations import frozen_input_bytes, runtime_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA_8B = resolve(ModelSource(preset="llama-3.1-8b"))
MIXTRAL = resolve(ModelSource(preset="mixtral-8x7b"))
H, INTER = 4096, 14336


def lora(targets: list[str] | None, **extra) -> Training:
    return Training(framework="fsdp", method="lora", masterWeights="none", loraRank=8, loraTargets=targets,
                    microBatchSize=2, sequenceLength=2048, **extra)


def test_q_and_v_only_leave_the_mlp_norm_output_and_downs_input_unsaved():
    """torchtune's 8B_lora configs adapt q_proj and v_proj: gate, up and down are frozen nn.Linear, so neither the MLP
    norm's 16-bit output (gate's and up's input) nor SwiGLU's product (down's input) is saved: 2 x (4096 + 14336)
    bytes a token and layer. The attention norm's output stays (lora_a of q and v saves it)."""
    assert frozen_input_bytes(LLAMA_8B, lora(["q", "v"]), 1) == 2 * H + 2 * INTER
    assert ACT_BYTES == 2


def test_every_projection_adapted_keeps_every_input():
    assert frozen_input_bytes(LLAMA_8B, lora(None), 1) == 0
    assert frozen_input_bytes(LLAMA_8B, lora(["q", "k", "v", "o", "gate", "up", "down"]), 1) == 0


def test_mlp_only_adapters_free_the_attention_norm_output():
    """Adapters on the MLP alone: q, k and v are frozen, so the attention norm's output is not saved (o's input, the
    attention output, is SDPA's own saved output either way)."""
    assert frozen_input_bytes(LLAMA_8B, lora(["gate", "up", "down"]), 1) == 2 * H
    assert frozen_input_bytes(LLAMA_8B, lora(["o", "gate", "up", "down"]), 1) == 2 * H


def test_down_alone_frozen_and_the_tensor_split():
    """down's input (the product) is split over tensor ranks like the MLP's other saved tensors."""
    assert frozen_input_bytes(LLAMA_8B, lora(["q", "k", "v", "o", "gate", "up"]), 1) == 2 * INTER
    assert frozen_input_bytes(LLAMA_8B, lora(["q", "k", "v", "o", "gate", "up"]), 2) == INTER


def test_moe_experts_are_not_adapted_linears():
    """Mixtral's experts: nothing of the MLP is taken off (its routed experts are no adapted nn.Linear)."""
    assert frozen_input_bytes(MIXTRAL, lora(["q", "v"]), 1) == 0


def test_without_checkpointing_every_layer_keeps_less():
    """No checkpointing (8B_lora.yaml's default in torchtune's distributed configs): each of the 32 layers keeps
    2 x (4096 + 14336) bytes a token less than with every projection adapted; the loss is unchanged."""
    layout = Layout(data=2)
    qv = runtime_activations(LLAMA_8B, lora(["q", "v"], activationCheckpointing="none"), layout)
    all7 = runtime_activations(LLAMA_8B, lora(None, activationCheckpointing="none"), layout)
    tokens = 2 * 2048
    assert all7.kept - qv.kept == pytest.approx(32 * tokens * (2 * H + 2 * INTER), abs=64)
    assert (qv.loss_forward, qv.loss_backward) == (all7.loss_forward, all7.loss_backward)


def test_lora_dropout_leaves_the_adapted_inputs_unsaved():
    """torchtune's lora_llama2_7b defaults lora_dropout to 0.05 (torchtune/models/llama2/_model_builders.py at
    fef3ed10d): lora_a saves the dropout's copy (3 bytes an element with its mask, lora_dropout_bytes) and the frozen
    base and the dropout save nothing of the input, so q and v no longer keep the attention norm's output: both norms'
    outputs and down's input go, as with no adapter at all."""
    assert frozen_input_bytes(LLAMA_8B, lora(["q", "v"], loraDropout=0.05), 1) == 2 * H + 2 * H + 2 * INTER
    assert frozen_input_bytes(LLAMA_8B, lora(None, loraDropout=0.05), 1) == 4 * H + 2 * INTER
    assert frozen_input_bytes(LLAMA_8B, lora(None), 1) == 0
    layout = Layout(data=2)
    none = runtime_activations(LLAMA_8B, lora(["q", "v"], activationCheckpointing="none"), layout)
    drop = runtime_activations(LLAMA_8B, lora(["q", "v"], activationCheckpointing="none", loraDropout=0.05), layout)
    # per token and layer: two dropout copies and masks (2 x 3 x 4096) in, the attention norm's output (2 x 4096) out
    assert drop.kept - none.kept == pytest.approx(32 * 2 * 2048 * (6 * H - 2 * H), abs=64)


def test_qlora_with_dropout_keeps_the_adapted_inputs():
    """bitsandbytes before 0.45 saves its 4-bit matmul's input (MatMul4Bit.forward, `ctx.tensors = (A, B)` at
    0.43.0), and the spec cannot tell it from torchao's NF4: under qlora the dropout takes nothing off."""
    qlora = lora(["q", "v"], loraDropout=0.1).model_copy(update={"method": "qlora"})
    assert frozen_input_bytes(LLAMA_8B, qlora, 1) == 2 * H + 2 * INTER


def test_peft_adapters_and_full_fine_tunes_do_not_move():
    """Only torchtune's 16-bit adapters under FSDP2 take the path: peft's fp32 adapters (masterWeights fp32) keep the
    calibrated count, and a full fine-tune saves every input for its weight gradients."""
    layout = Layout(data=2)
    peft_qv = Training(framework="fsdp", method="lora", loraTargets=["q", "v"], microBatchSize=2, sequenceLength=2048,
                       activationCheckpointing="none")
    peft_all = peft_qv.model_copy(update={"lora_targets": None})
    a, b = runtime_activations(LLAMA_8B, peft_qv, layout), runtime_activations(LLAMA_8B, peft_all, layout)
    assert a.kept < b.kept  # only the fp32 input copies of the fewer adapted projections differ
    full = Training(framework="fsdp", microBatchSize=2, sequenceLength=2048, activationCheckpointing="none")
    assert runtime_activations(LLAMA_8B, full, layout).kept == \
        runtime_activations(LLAMA_8B, lora(None, activationCheckpointing="none"), layout).kept


def _lora_peak(preset: str, precision: str = "bf16", method: str = "lora", data: int = 8):
    """(peak, params, what lora_finetune_distributed holds gathered beside the root at that peak): at the loss's
    backward the copy-in stream's root + one stored layer, at a layer's backward one stored layer more and QLoRA's
    dequantized matrix (torchtune.distributed_gathered; tests/unit/test_fsdp2_lora_gathers.py)."""
    from rackfit.estimator.frameworks import frozen_layer_bytes, largest_matrix, runtime_peak
    from rackfit.estimator.params import count_params
    from rackfit.estimator.weights import weight_bytes
    arch = resolve(ModelSource(preset=preset))
    p = count_params(arch)
    layout = Layout(data=data)
    frozen = weight_bytes(p, precision, layout, arch.num_layers, arch)
    tr = Training(framework="fsdp", method=method, masterWeights="none", loraRank=16, microBatchSize=2,
                  sequenceLength=2048, activationCheckpointing="full")
    r = runtime_peak(arch, p, tr, precision, layout, frozen)
    dequantized = largest_matrix(arch) * 2 if method == "qlora" else 0
    root = (p.embedding + p.lm_head) * 2
    stored = frozen_layer_bytes(arch, p, frozen, 1)
    beside = root + stored if r.phase == "loss backward" else root + 2 * stored + dequantized
    return r, p, beside


def test_torchtunes_fsdp2_root_keeps_embeddings_and_output_gathered():
    """torchtune's shard_model applies fully_shard to the whole model last, and the root is not resharded after the
    forward (torch _fsdp_state._lazy_init; torchtune sets reshard_after_forward=False for it): the 16-bit embeddings
    and output of an untied model (Llama 3.1 70B: 2 x 128256 x 8192 x 2 bytes) stay gathered beside the layers and
    the copy-in pool, whatever `data` is; a tied model (Llama 3.2 3B) holds its one matrix once."""
    r, p, beside = _lora_peak("llama-3.1-70b")
    assert r.reused == 2 * 128256 * 8192 * 2 + beside
    r3, p3, beside3 = _lora_peak("llama-3.2-3b")
    assert p3.lm_head == 0 and r3.reused == 128256 * 3072 * 2 + beside3
    rq, _, beside_q = _lora_peak("llama-3.1-70b", "nf4", "qlora")
    assert rq.reused == 2 * 128256 * 8192 * 2 + beside_q
