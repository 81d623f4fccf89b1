"""A pure fp32 full fine-tune under framework transformers (precision fp32 without autocast: the HF Trainer's fp16 and
bf16 False over a model loaded without torch_dtype) saves every activation in fp32, 4 bytes an element, and each of a
layer's two RMSNorms keeps its input, its normalized tensor and its output in fp32 (estimator/activations.py
pure_fp32_activations, FP32_ACT_BYTES, FP32_NORM_BYTES_PER_H). T1861: Llama-2-7B fully fine-tuned in fp32 at 4 x 1,024
with eager attention on an MI300X, rocm-smi 75% (144.72 GiB), beside T1860's LoRA run of the same job at 43%. Eager
fp32 scores keep the softmax output alone from 4.31 (no clamp), and LoRA on an fp32 base keeps what the frozen layers'
ops and peft's fp32 adapters need (_fp32_lora_layer_bytes). GPT-2's and GPT-J's gelu_new (NewGELUActivation) keeps
three intermediate-wide tensors beyond a GELU's (gelu_new_bytes)."""

from __future__ import annotations

from rackfit.estimator.activations import pure_fp32_activations, training_activations
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import parse_spec

LLAMA_2_7B = dict(architecture=dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32,
                                    numKeyValueHeads=32, headDim=128, vocabSize=32000, tieWordEmbeddings=False,
                                    maxPositionEmbeddings=4096))


def _spec(precision="fp32", **t):
    base = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw",
                adamwImplementation="fused", microBatchSize=4, sequenceLength=1024, activationCheckpointing="none",
                flashAttention=False, transformersVersion="4.31.0")
    return parse_spec(dict(model=LLAMA_2_7B, workload="training", precision=precision, training={**base, **t}))


def _layers(spec, fp32):
    return training_activations(resolve(spec.model), spec.training, Layout(), mixed=False, fp32=fp32).layers


def test_a_pure_fp32_full_fine_tune_saves_fp32_activations():
    spec = _spec()
    assert pure_fp32_activations(spec.training, spec.precision)
    tokens, layers, h, inter = 4 * 1024, 32, 4096, 11008
    # q, k, v and the attention output, the MLP's gate, up, activation and product at 4 bytes, two norms' 3 x 4 bytes
    # a token; the eager scores: 4.31.0 has no clamp, so the fp32 softmax output alone (4 bytes a score, where the
    # 16-bit count keeps 8)
    added = (2 * 4 * h) + (2 * 4 * inter) + (24 - 16) * h - (8 - 4) * 32 * 1024
    assert _layers(spec, True) - _layers(spec, False) == tokens * layers * added


def test_pure_fp32_eager_scores_keep_the_clamp_input_before_4_31():
    # 4.30's `torch.max(attn_weights, finfo.min)` saves its fp32 input beside the softmax output: 8 bytes a score
    new, old = _spec(), _spec(transformersVersion="4.30.0")
    assert _layers(old, True) - _layers(new, True) == 4 * 1024 * 32 * (8 - 4) * 32 * 1024


def test_only_full_and_lora_fine_tunes_in_pure_fp32_under_transformers():
    assert not pure_fp32_activations(_spec("bf16").training, "bf16")                  # 16-bit activations
    assert not pure_fp32_activations(_spec(masterWeights="fp32").training, "fp32")    # autocast's own count
    lora = _spec(method="lora", loraRank=8, loraTargets=["q", "v"])
    assert pure_fp32_activations(lora.training, "fp32")                               # an fp32 base under peft
    lora16 = _spec("bf16", method="lora", loraRank=8, loraTargets=["q", "v"])
    assert not pure_fp32_activations(lora16.training, "bf16")                         # peft's fp32 cast of x
    fsdp = _spec(framework="fsdp", fsdpVersion=1)
    assert not pure_fp32_activations(fsdp.training, "fp32")


def test_checkpointed_layer_inputs_are_fp32():
    spec = _spec(activationCheckpointing="full")
    # each kept layer input: the fp32 residual, 4 bytes an element where a 16-bit run keeps 2
    assert _layers(spec, True) == 2 * _layers(spec, False)


def test_lora_on_an_fp32_base_saves_fp32_tensors_the_frozen_base_needs():
    # T1860's job: Llama-2-7B LoRA r8 on q and v, lora_dropout 0.1, eager attention, transformers 4.31.0, peft 0.9.0
    spec = _spec(method="lora", loraRank=8, loraTargets=["q", "v"], loraDropout=0.1)
    assert pure_fp32_activations(spec.training, spec.precision)
    h, inter, heads, s = 4096, 11008, 32, 1024
    per = (4 * (h + 2 * h)              # q and k after rotary, v (the matmuls'); no attention output (o_proj frozen)
           + 4 * heads * s              # the fp32 softmax output, 4.31.0: no clamp
           + 4 * 2 * h                  # each RMSNorm's fp32 input; no normalized copy (frozen weight)
           + 4 * 3 * inter              # gate, SiLU's output, up; not the product (down_proj frozen)
           + (4 + 1) * 2 * h            # q's and v's dropout output and mask
           + 4 * 8 * 2)                 # lora_A's rank-wide outputs
    assert _layers(spec, True) == 4 * 1024 * 32 * per


def test_lora_on_an_fp32_base_without_dropout_keeps_each_adapted_input_once():
    spec = _spec(method="lora", loraRank=8, loraTargets=["q", "k", "v", "o"], loraDropout=0.0,
                 flashAttention=True)
    h = 4096
    with_o = _layers(spec, True)
    qkv = _layers(_spec(method="lora", loraRank=8, loraTargets=["q", "k", "v"], loraDropout=0.0, flashAttention=True),
                  True)
    # o's input is SDPA's output, which the count already keeps: only o's rank-wide lora_A output is added
    assert with_o - qkv == 4 * 1024 * 32 * 4 * 8
    # q, k and v share the first norm's output: saved once, 4 bytes a hidden unit
    none = _layers(_spec(method="lora", loraRank=8, loraTargets=["q"], loraDropout=0.0, flashAttention=True), True)
    assert qkv - none == 4 * 1024 * 32 * 4 * 8 * 2
    assert none > 4 * 1024 * 32 * 4 * h


GPT2 = dict(architecture=dict(numLayers=12, hiddenSize=768, intermediateSize=3072, numAttentionHeads=12,
                              numKeyValueHeads=12, headDim=64, vocabSize=50257, tieWordEmbeddings=True,
                              maxPositionEmbeddings=1024, gatedMlp=False, modelType="gpt2"))


def _gpt2(precision="fp32", model_type="gpt2", **t):
    model = {"architecture": {**GPT2["architecture"], "modelType": model_type}}
    base = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw",
                adamwImplementation="fused", microBatchSize=8, sequenceLength=1024, activationCheckpointing="none",
                flashAttention=False, transformersVersion="4.3.3")
    return parse_spec(dict(model=model, workload="training", precision=precision, training={**base, **t}))


def test_gelu_new_keeps_three_intermediate_wide_tensors_more():
    # NewGELUActivation: tanh's result, `0.5 * input` and `1.0 + tanh(...)` beside pow's saved input
    tokens, layers, inter = 8 * 1024, 12, 3072
    fp32 = _layers(_gpt2(), True) - _layers(_gpt2(model_type="gpt_neox"), True)
    # gpt_neox's two norms read one input (HF_LAYERNORM_LAYERS), GPT-2's two: one hidden-wide fp32 tensor apart
    assert fp32 == tokens * layers * (3 * 4 * inter + 4 * 768)
    sixteen = _gpt2("bf16")
    arch = resolve(sixteen.model)
    gpt2 = training_activations(arch, sixteen.training, Layout(), mixed=False).layers
    other = training_activations(resolve(_gpt2("bf16", "gptj").model), sixteen.training, Layout(), mixed=False).layers
    assert gpt2 == other                                                        # both gelu_new
    opt_spec = _gpt2("bf16", model_type="bloom")
    bloom = training_activations(resolve(opt_spec.model), opt_spec.training, Layout(), mixed=False).layers
    # BLOOM's two norms read two inputs, like GPT-2's; its GELU saves its input alone
    assert gpt2 - bloom == tokens * layers * 3 * 2 * inter
