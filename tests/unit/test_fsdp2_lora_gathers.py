"""torchtune's lora_finetune_distributed under FSDP2 over `data` > 1: what is gathered at the loss's backward and
at a decoder layer's backward, read in torch 2.4.1 / 2.5.1's torch/distributed/_composable/fsdp (estimator/
torchtune.py distributed_gathered; docs/accuracy.md, "torchtune's LoRA and QLoRA across GPUs: what FSDP2 gathers,
moment by moment"). Expected bytes computed by hand from Llama 3.1 8B's and 70B's shapes."""

from __future__ import annotations

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.hf_fsdp2 import sharded_lora
from rackfit.estimator.params import count_params
from rackfit.estimator.torchtune import distributed_gathered, distributed_moments, distributed_recipe
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA8 = resolve(ModelSource(preset="llama-3.1-8b"))
P8 = count_params(LLAMA8)
LLAMA70 = resolve(ModelSource(preset="llama-3.1-70b"))
P70 = count_params(LLAMA70)
V = 128256


def tr(**kw) -> Training:
    base = dict(framework="fsdp", method="lora", loraRank=16, loraTargets=["q", "k", "v"], masterWeights="none",
                optimizer="adamw", microBatchSize=2, sequenceLength=2048, activationCheckpointing="full")
    base.update(kw)
    return Training(**base)


def test_the_distributed_recipe_is_lora_or_qlora_under_fsdp2_over_data():
    assert distributed_recipe(tr(), Layout(data=8))
    assert distributed_recipe(tr(method="qlora"), Layout(data=2))
    assert not distributed_recipe(tr(), Layout(data=1))                    # lora_finetune_single_device
    assert not distributed_recipe(tr(fsdpVersion=1), Layout(data=2))       # accelerate's FSDP1 plugin
    assert not distributed_recipe(tr(modelCode="transformers"), Layout(data=2))  # accelerate's FSDP2
    full = Training(framework="fsdp", method="full", masterWeights="fp32", microBatchSize=2, sequenceLength=2048)
    assert not distributed_recipe(full, Layout(data=2))


def test_no_layer_at_the_loss_backward_one_and_its_prefetch_at_a_layer():
    """Root 3 GiB, layer 1 GiB, dequantized matrix 0.1 GiB: the loss's backward holds the root in the default stream
    and the copy-in pool's root + layer; a layer's backward one layer more in the default stream (the prefetched
    one's all-gather output lies inside the pool) and QLoRA's dequantized matrix."""
    g = 1 << 30
    assert distributed_gathered(3 * g, g, 0) == (7 * g, 8 * g)
    assert distributed_gathered(3 * g, g, g // 10) == (7 * g, 8 * g + g // 10)
    m = distributed_moments(kept=5 * g, loss=2 * g, recompute=g, gathered=(7 * g, 8 * g))
    assert [(x.name, x.activations, x.gathered, x.buffers) for x in m] == [
        ("loss backward", 7 * g, 7 * g, 0), ("layer recompute", 6 * g, 8 * g, 0)]
    assert distributed_moments(5 * g, g, 0, (7 * g, 8 * g))[1].name == "layer backward"


def test_llama_70b_lora_on_8_gpus():
    """Llama 3.1 70B (T8's shapes): root = tok_embeddings + output, 2 x 128256 x 8192 x 2 = 4,202,692,608 bytes; a
    layer as stored = q, o (8192 x 8192), k, v (8192 x 1024), gate, up, down (8192 x 28672), two norms, 16-bit:
    855,654,400 x 2 = 1,711,308,800 bytes (plus its 1/80 of the final norm, 204 bytes). At the loss's backward:
    root + (root + layer) = 10,116,694,220; at a layer's: one layer more, 11,828,003,224. The old count (two layers
    and the root everywhere) was 7,625,310,216."""
    root = 2 * V * 8192 * 2
    layer = (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192) * 2
    assert root == 4_202_692_608 and layer == 1_711_308_800
    stored = (P70.total * 2 - (P70.embedding + P70.lm_head) * 2) // 80
    assert stored == layer + 8192 * 2 // 80
    loss_g, layer_g = distributed_gathered(root, stored, 0)
    assert loss_g == 2 * root + stored == 10_116_694_220
    assert layer_g == 2 * root + 2 * stored == 11_828_003_224
    r = runtime_peak(LLAMA70, P70, tr(compile=True, lossChunks=8), "bf16", Layout(data=8), P70.total * 2)
    assert r.reused in (loss_g, layer_g)
    assert r.phase == ("loss backward" if r.reused == loss_g else "layer recompute")


def test_llama_8b_qlora_on_2_gpus_gathers_nf4_layers_and_a_16_bit_matrix():
    """QLoRA: the layers gathered as stored (the frozen NF4 bytes over the layers) and LinearNF4's one 16-bit
    matrix (4096 x 14336 x 2 = 117,440,512 bytes) at a layer's backward; the root stays 16-bit."""
    frozen = P8.total * 2 // 4
    q = tr(method="qlora", loraTargets=None)
    r = runtime_peak(LLAMA8, P8, q, "nf4", Layout(data=2), frozen)
    root = 2 * V * 4096 * 2
    stored = max(frozen - root, 0) // 32
    assert r.reused in (2 * root + stored, 2 * root + 2 * stored + 117_440_512)


def test_accelerate_fsdp2_lora_holds_the_same_groups_as_torchtune():
    """accelerate's fsdp2_prepare_model shards each decoder layer, then the root (embeddings, final norm, lm_head):
    torchtune's groups, so on Llama 3.1 8B LoRA over 2 GPUs the backward holds root + (root + layer) at the loss's
    backward, root 2 x 128256 x 4096 x 2 = 2,101,346,304 bytes, where the count before held the root and two decoder
    layers and no copy-in pool."""
    layout = Layout(data=2)
    hf = tr(modelCode="transformers")
    assert sharded_lora(hf, 2, 1) and sharded_lora(hf.model_copy(update={"method": "qlora"}), 2, 1)
    assert not sharded_lora(hf, 1, 1) and not sharded_lora(hf, 2, 2) and not sharded_lora(tr(), 2, 1)
    assert not sharded_lora(tr(modelCode="transformers", fsdpVersion=1), 2, 1)
    root = 2 * V * 4096 * 2
    assert root == 2_101_346_304
    stored = (P8.total * 2 - (P8.embedding + P8.lm_head) * 2) // 32
    loss_g, layer_g = distributed_gathered(root, stored, 0)
    r = runtime_peak(LLAMA8, P8, hf, "bf16", layout, P8.total * 2)
    assert r.reused in (loss_g, layer_g) and r.reused >= 2 * root + stored
    # the same gathered bytes as torchtune's recipe on the same layout (the model code changes the activations only)
    assert runtime_peak(LLAMA8, P8, tr(), "bf16", layout, P8.total * 2).reused in (loss_g, layer_g)
