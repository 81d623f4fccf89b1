"""A pure fp32 full fine-tune under framework transformers (precision fp32 without autocast: the HF Trainer's fp16 and
bf16 False over a model loaded without torch_dtype) saves every activation in fp32, 4 bytes an element, and each of a
layer's two RMSNorms keeps its input, its normalized tensor and its output in fp32 (estimator/activations.py
pure_fp32_activations, FP32_ACT_BYTES, FP32_NORM_BYTES_PER_H). T1861: Llama-2-7B fully fine-tuned in fp32 at 4 x 1,024
with eager attention on an MI300X, rocm-smi 75% (144.72 GiB), beside T1860's LoRA run of the same job at 43%."""

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
    # a token; the eager scores (clamp input and fp32 softmax output, 8 bytes a score) are the same in both counts
    added = (2 * 4 * h) + (2 * 4 * inter) + (24 - 16) * h
    assert _layers(spec, True) - _layers(spec, False) == tokens * layers * added


def test_only_full_fine_tunes_in_pure_fp32_under_transformers():
    assert not pure_fp32_activations(_spec("bf16").training, "bf16")                  # 16-bit activations
    assert not pure_fp32_activations(_spec(masterWeights="fp32").training, "fp32")    # autocast's own count
    lora = _spec(method="lora", loraRank=8, loraTargets=["q", "v"])
    assert not pure_fp32_activations(lora.training, "fp32")                           # peft's own count
    fsdp = _spec(framework="fsdp", fsdpVersion=1)
    assert not pure_fp32_activations(fsdp.training, "fp32")


def test_checkpointed_layer_inputs_are_fp32():
    spec = _spec(activationCheckpointing="full")
    # each kept layer input: the fp32 residual, 4 bytes an element where a 16-bit run keeps 2
    assert _layers(spec, True) == 2 * _layers(spec, False)
