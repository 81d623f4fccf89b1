"""torchtune's LoRA/QLoRA recipes: lora_finetune_single_device on one GPU does not shard, so it holds no FSDP2
gathered copies, no root group and no copy-in pool beside the stored weights; QLoRA keeps one dequantized 16-bit
matrix at a time (estimator/torchtune.py; docs/accuracy.md, "torchtune's LoRA and QLoRA on one GPU: no FSDP").
Expected bytes computed by hand from Llama 3.1 8B's shapes."""

from __future__ import annotations

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.torchtune import single_device_gathered, single_device_recipe
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA8 = resolve(ModelSource(preset="llama-3.1-8b"))
P8 = count_params(LLAMA8)
H, INTER, V, L = 4096, 14336, 128256, 32
# one decoder layer: q, o (4096 x 4096), k, v (4096 x 1024), gate, up, down (4096 x 14336), two norms
LAYER = 2 * H * H + 2 * H * 1024 + 3 * H * INTER + 2 * H
EMB = V * H   # tok_embeddings; the output projection is as large (untied)
FROZEN = P8.total * 2   # the 16-bit base as stored


def tr(**kw) -> Training:
    base = dict(framework="fsdp", method="lora", loraRank=8, loraTargets=["q", "v"], masterWeights="none",
                optimizer="adamw", microBatchSize=2, sequenceLength=2048, activationCheckpointing="full")
    base.update(kw)
    return Training(**base)


def test_the_single_device_recipe_is_lora_or_qlora_under_fsdp2_on_one_gpu():
    assert single_device_recipe(tr(), Layout(data=1))
    assert single_device_recipe(tr(method="qlora"), Layout(data=1))
    assert not single_device_recipe(tr(), Layout(data=2))             # lora_finetune_distributed: FSDP2
    assert not single_device_recipe(tr(fsdpVersion=1), Layout(data=1))  # accelerate's FSDP1 plugin
    assert not single_device_recipe(tr(modelCode="transformers"), Layout(data=1))  # accelerate's FSDP2
    full = Training(framework="fsdp", method="full", masterWeights="fp32", microBatchSize=2, sequenceLength=2048)
    assert not single_device_recipe(full, Layout(data=1))


def test_lora_on_one_gpu_holds_no_gathered_copy():
    """FSDP2 on one rank counted two 16-bit layers (each with its 1/32 of the final norm) and the root (embeddings and
    output): 2 x 218,112,128 x 2 + 2 x 525,336,576 x 2 = 2,973,794,816 bytes (2.77 GiB). The single-device recipe
    computes with the stored weights."""
    assert LAYER == 218_112_000 and EMB == 525_336_576
    one = runtime_peak(LLAMA8, P8, tr(), "bf16", Layout(data=1), FROZEN)
    assert one.reused == 0
    accelerate = runtime_peak(LLAMA8, P8, tr(modelCode="transformers"), "bf16", Layout(data=1), FROZEN)
    assert accelerate.reused == 2 * (LAYER + H // L) * 2 + 2 * EMB * 2 == 2_973_794_816
    assert accelerate.weights - one.weights == 2_973_794_816


def test_qlora_on_one_gpu_holds_one_dequantized_matrix():
    """torchao LinearNF4: `weight.to(input.dtype)`, the largest matrix (4096 x 14336, gate/up/down) in 16 bits."""
    assert single_device_gathered(tr(method="qlora"), H * INTER, 2) == 117_440_512
    assert single_device_gathered(tr(), H * INTER, 2) == 0
    r = runtime_peak(LLAMA8, P8, tr(method="qlora", loraTargets=None), "nf4", Layout(data=1), FROZEN // 4)
    assert r.reused == 117_440_512


def test_two_gpus_keep_fsdp2s_gathered_layers_and_root():
    """lora_finetune_distributed (FSDP2, data 2): at the loss's backward (this row's peak) the root unsharded and the
    copy-in stream's root + one 16-bit layer (torchtune.distributed_gathered, tests/unit/test_fsdp2_lora_gathers.py)."""
    r = runtime_peak(LLAMA8, P8, tr(), "bf16", Layout(data=2), FROZEN)
    assert r.phase == "loss backward"
    assert r.reused == (FROZEN - 2 * EMB * 2) // L + 2 * (2 * EMB * 2)
