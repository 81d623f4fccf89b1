"""OPT's decoder layer under DeepSpeed (issue 22, T1603; T68, T73): transformers' OPTDecoderLayer norms with
nn.LayerNorm, whose native_layer_norm saves its input and the per-token mean and rstd (no fp32 upcast copy as
transformers' eager RMSNorm makes), and runs fc1 -> relu -> fc2, where relu's backward reads its result, the tensor fc2
saves, so fc1's output is not kept (estimator/activations.py HF_LAYERNORM_MODEL_TYPES, HF_RELU_MLP_MODEL_TYPES)."""

from __future__ import annotations

from rackfit.estimator import estimate
from rackfit.estimator.activations import (
    LAYERNORM_16BIT_BYTES_PER_H,
    NORM_BYTES_PER_H,
    hf_16bit_layernorm,
    training_activations,
)
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch, resolve
from rackfit.spec import parse_spec

OPT_1_3B = dict(numLayers=24, hiddenSize=2048, intermediateSize=8192, numAttentionHeads=32, numKeyValueHeads=32,
                headDim=64, vocabSize=50272, tieWordEmbeddings=True, gatedMlp=False)
TRAIN = dict(framework="deepspeed", zeroStage=0, method="full", masterWeights="fp32", optimizer="adamw",
             microBatchSize=16, sequenceLength=512, activationCheckpointing="none", flashAttention=False)


def _spec(model_type=None, **training):
    training = {**TRAIN, **training}
    if training["framework"] != "deepspeed":
        training.pop("zeroStage")
    arch = dict(OPT_1_3B, **({"modelType": model_type} if model_type else {}))
    return parse_spec(dict(model=dict(architecture=arch), workload="training", precision="fp16",
                           training=training, parallelism=dict(data=1)))


def test_only_opt_under_deepspeed_without_autocast_norms_in_16_bits():
    opt, bare = _spec("opt"), _spec()
    assert LAYERNORM_16BIT_BYTES_PER_H == 8 < NORM_BYTES_PER_H
    assert hf_16bit_layernorm(_arch(opt), opt.training, mixed=False)
    assert not hf_16bit_layernorm(_arch(opt), opt.training, mixed=True)
    assert not hf_16bit_layernorm(_arch(bare), bare.training, mixed=False)
    transformers = _spec("opt", framework="transformers")
    assert not hf_16bit_layernorm(_arch(transformers), transformers.training, mixed=False)


def _arch(spec) -> ModelArch:
    return resolve(spec.model)


def test_opt_keeps_8_bytes_of_norms_and_one_mlp_tensor_less_a_token_and_layer():
    opt, bare = _spec("opt"), _spec()
    layout = Layout()
    a_opt, a_bare = _arch(opt), _arch(bare)
    kept_opt = training_activations(a_opt, opt.training, layout, mixed=False, fp16=True).layers
    kept_bare = training_activations(a_bare, bare.training, layout, mixed=False, fp16=True).layers
    tokens, h, inter, layers = 16 * 512, 2048, 8192, 24
    # two norms: 16 -> 8 bytes a hidden unit; the MLP: fc1's 16-bit output no longer kept
    assert kept_bare - kept_opt == tokens * layers * ((NORM_BYTES_PER_H - LAYERNORM_16BIT_BYTES_PER_H) * h + 2 * inter)


def test_the_whole_estimate_drops_by_the_kept_activations():
    # T1603: DeepSpeed-Chat step 1, OPT-1.3B full on one GPU at b16 x 512 (no checkpointing): the peak is in the
    # backward, where every layer's kept activations are still alive
    opt, bare = _spec("opt"), _spec()
    tokens, h, inter, layers = 16 * 512, 2048, 8192, 24
    drop = tokens * layers * ((NORM_BYTES_PER_H - LAYERNORM_16BIT_BYTES_PER_H) * h + 2 * inter)
    assert estimate(bare).breakdown.activations_bytes - estimate(opt).breakdown.activations_bytes == drop
