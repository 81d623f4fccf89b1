"""Float8 training (`training.float8`, `float8AllGather`; issue 22): torchao's Float8Linear under FSDP2 (the 16-bit
inputs saved, the gathered linear weights in fp8 with enable_fsdp_float8_all_gather) and Transformer Engine under
Megatron (inputs saved in fp8, the cached fp8 weight and transpose). Expected bytes are computed by hand from the
sources' allocations (operator/rackfit/estimator/float8.py cites them)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rackfit.estimator import Layout, float8
from rackfit.estimator.framework_activations import megatron_layer_bytes
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
# Llama 3.1 8B block: q 4096x4096, k and v 4096x1024 each, o 4096x4096, gate and up 4096x14336, down 14336x4096
BLOCK_LINEAR = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336


def fsdp(**training):
    base = dict(framework="fsdp", method="full", masterWeights="fp32", microBatchSize=2, sequenceLength=8192,
                activationCheckpointing="selective", compile=True)
    return Training(**{**base, **training})


def megatron(**training):
    base = dict(framework="megatron", method="full", masterWeights="fp32", microBatchSize=1, sequenceLength=4096,
                activationCheckpointing="none", sequenceParallel=True)
    return Training(**{**base, **training})


def live(r) -> int:
    return r.weights + r.gradients + r.optimizer + r.activations


def test_block_linear_params():
    assert float8.block_linear_params(LLAMA) == BLOCK_LINEAR == 218_103_808


def test_unset_and_none_change_nothing():
    for fw in (fsdp, megatron):
        layout = Layout(data=8) if fw is fsdp else Layout(tensor=2, data=4)
        base = runtime_peak(LLAMA, P, fw(), "bf16", layout, 0)
        assert runtime_peak(LLAMA, P, fw(float8="none"), "bf16", layout, 0) == base


def test_torchao_without_fp8_all_gather_moves_nothing():
    """matmul_with_hp_or_float8_args saves input_hp and weight_hp_t: the activations and the gathered 16-bit blocks
    are bf16 training's; torchtitan's logs agree (Llama 3 8B on 8 H100: 30.89 GiB bf16, 30.91 tensorwise, 30.99
    rowwise, torchao docs pretraining.rst)."""
    base = runtime_peak(LLAMA, P, fsdp(), "bf16", Layout(data=8), 0)
    for recipe in ("tensorwise", "rowwise", "mxfp8"):
        assert runtime_peak(LLAMA, P, fsdp(float8=recipe), "bf16", Layout(data=8), 0) == base


def test_fp8_all_gather_halves_gathered_block_linears():
    """FSDP 8 (reshard after forward): two blocks in flight, the second one in the copy-in pool; each block's linear
    weights gathered at 1 byte instead of 2 (fsdp_pre_all_gather hands FSDP2 float8 `_data`)."""
    assert float8.fsdp2_gathered_saving(LLAMA, fsdp(float8="tensorwise", float8AllGather=True), 1, 2, 2) == \
        2 * BLOCK_LINEAR
    assert float8.fsdp2_gathered_saving(LLAMA, fsdp(float8="tensorwise"), 1, 2, 2) == 0
    assert float8.fsdp2_block_weight(LLAMA, fsdp(float8="tensorwise", float8AllGather=True), 2, 1000, 2) == \
        2000 - BLOCK_LINEAR // 2
    base = runtime_peak(LLAMA, P, fsdp(), "bf16", Layout(data=8), 0)
    fp8 = runtime_peak(LLAMA, P, fsdp(float8="tensorwise", float8AllGather=True), "bf16", Layout(data=8), 0)
    assert 0 < live(base) - live(fp8) <= 2 * BLOCK_LINEAR


def test_fp8_all_gather_needs_tensorwise_under_fsdp():
    with pytest.raises(ValidationError, match="tensorwise scaling only"):
        fsdp(float8="rowwise", float8AllGather=True)
    with pytest.raises(ValidationError, match="float8AllGather needs"):
        fsdp(float8AllGather=True)
    megatron(float8="mxfp8", float8AllGather=True)   # --fp8-param-gather with MXFP8


def test_float8_frameworks_and_recipes():
    with pytest.raises(ValidationError, match="only with method full and framework fsdp"):
        Training(framework="deepspeed", zeroStage=3, float8="tensorwise")
    with pytest.raises(ValidationError, match="only with method full and framework fsdp"):
        Training(framework="fsdp", method="lora", float8="tensorwise")
    with pytest.raises(ValidationError, match="only with method full and framework fsdp"):
        Training(framework="fsdp", fsdpVersion=1, float8="tensorwise")
    with pytest.raises(ValidationError, match="Transformer Engine under megatron"):
        megatron(float8="rowwise")
    Training(framework="deepspeed", float8="none")


def test_te_saves_linear_inputs_in_fp8():
    """TE's _Linear keeps the quantized input (columnwise only): QKV and fc1 inputs (h each) and fc2's (14336) at 1
    byte instead of 2; the projection's fp8 input (q = 4096) is a copy beside flash attention's 16-bit output."""
    base, core = megatron_layer_bytes(LLAMA, megatron(), 2, True)
    fp8, core8 = megatron_layer_bytes(LLAMA, megatron(float8="tensorwise"), 2, True)
    assert core8 == core
    assert fp8 - base == pytest.approx((-2 * 4096) / 2 + (4096 - 14336) / 2)
    mx, _ = megatron_layer_bytes(LLAMA, megatron(float8="mxfp8"), 2, True)
    assert mx - base == pytest.approx((2 * 4096 * (1 / 32 - 1)) / 2 + (4096 * 33 / 32 + 14336 * (1 / 32 - 1)) / 2)


def test_te_weight_workspace_and_fp8_params():
    """_fp8_workspaces['weight']: fp8 data and transpose, 2 bytes a linear parameter of the stage's layers over tensor;
    with --fp8-param-gather the fp8 parameters (1 byte + transpose) replace the 16-bit buffer: nothing more."""
    layers = 32
    assert float8.te_weight_bytes(LLAMA, megatron(float8="tensorwise"), layers, 2, 2) == layers * BLOCK_LINEAR // 2 * 2
    assert float8.te_weight_bytes(LLAMA, megatron(float8="tensorwise", float8AllGather=True), layers, 2, 2) == 0
    assert float8.te_weight_bytes(LLAMA, megatron(float8="mxfp8", float8AllGather=True), layers, 2, 2) == \
        int(layers * BLOCK_LINEAR // 2 * (2 / 32))
    layout = Layout(tensor=2, data=4)
    base = runtime_peak(LLAMA, P, megatron(activationCheckpointing="full"), "bf16", layout, 0)
    fp8 = runtime_peak(LLAMA, P, megatron(activationCheckpointing="full", float8="tensorwise"), "bf16", layout, 0)
    assert fp8.states - base.states == layers * BLOCK_LINEAR // 2 * 2


def test_te_caches_moe_mlp_weights_under_megatron():
    """Megatron MoE under Transformer Engine float8: TEGroupedLinear passes is_first_microbatch, so GroupedLinear keeps
    each local expert's fp8 weight and transpose in _fp8_workspaces (2 bytes a parameter), as the shared expert's and
    a dense first layer's TE linears do; block_linear_params (torchao's rule) counts the attention only. A 4-layer MoE,
    one dense first layer (MLP 3 x 1024 x 4096) then 8 routed SwiGLU experts of 512 and one shared of 512, at TP 2,
    EP 4 (ETP 1), PP 2: the heaviest stage's share (2 of 4 layers, megatron_expert_split's rule) of the routed experts
    over EP x ETP, and of the shared experts and the dense MLP over TP."""
    from rackfit.spec import ModelSource as MS
    moe = resolve(MS(architecture=dict(numLayers=4, hiddenSize=1024, intermediateSize=4096, numAttentionHeads=8,
                                       numKeyValueHeads=8, headDim=128, vocabSize=32768, tieWordEmbeddings=False,
                                       numExperts=8, numExpertsPerToken=2, moeIntermediateSize=512,
                                       numSharedExperts=1, firstDenseLayers=1)))
    p = count_params(moe)
    layout = Layout(tensor=2, pipeline=2, data=4, expert=4)
    tr = dict(activationCheckpointing="full", expertTensorParallel=1, gradientAccumulationSteps=2)
    base = runtime_peak(moe, p, megatron(**tr), "bf16", layout, 0)
    fp8 = runtime_peak(moe, p, megatron(float8="tensorwise", **tr), "bf16", layout, 0)
    expert = 3 * 1024 * 512
    assert p.experts == 3 * 8 * expert
    routed = p.experts * 2 // 4 // (4 * 1)                # the stage's half of the layers, over EP 4 x ETP 1
    other = (p.shared + p.dense_mlp) * 2 // 4 // 2        # the stage's half of the layers, over TP 2
    attention = 2 * float8.block_linear_params(moe) // 2
    assert fp8.states - base.states == 2 * (attention + routed + other)
    assert p.dense_mlp == 3 * 1024 * 4096 and p.shared >= 3 * 3 * 1024 * 512
    # with --fp8-param-gather (tensorwise) the fp8 parameters replace the 16-bit ones: nothing more, experts included
    gathered = runtime_peak(moe, p, megatron(float8="tensorwise", float8AllGather=True, **tr), "bf16", layout, 0)
    assert gathered.states == base.states
