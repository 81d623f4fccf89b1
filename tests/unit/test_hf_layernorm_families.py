"""transformers' LayerNorm families under DeepSpeed (issue 22; T391, T620, T621 BLOOM, T1116-T1119, T1142, T1143,
T1603, T68, T73 OPT): each family's decoder layer norms with nn.LayerNorm, whose native_layer_norm saves its input and
the per-token mean and rstd (no fp32 upcast copy as transformers' eager RMSNorm makes), so it keeps its 16-bit input
where no autocast runs, and the next linear its output. GPT-2, GPTBigCode, BLOOM and OPT run two sequential norms (two
inputs), GPT-NeoX's parallel residual two norms on the layer's one input, GPT-J one norm whose output the attention and
the MLP share (estimator/activations.py HF_LAYERNORM_LAYERS). OPT runs fc1 -> relu -> fc2, where relu's backward reads
its result, the tensor fc2 saves, so fc1's output is not kept (HF_RELU_MLP_MODEL_TYPES)."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.estimator.activations import (
    HF_LAYERNORM_LAYERS,
    NORM_BYTES_PER_H,
    gelu_new_bytes,
    hf_16bit_layernorm,
    layernorm_bytes_per_h,
    training_activations,
)
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import parse_spec

ARCH = dict(numLayers=24, hiddenSize=2048, intermediateSize=8192, numAttentionHeads=32, numKeyValueHeads=32,
            headDim=64, vocabSize=50272, tieWordEmbeddings=True, gatedMlp=False)
TRAIN = dict(framework="deepspeed", zeroStage=0, method="full", masterWeights="fp32", optimizer="adamw",
             microBatchSize=8, sequenceLength=512, activationCheckpointing="none", flashAttention=False)


def _spec(model_type=None, **training):
    training = {**TRAIN, **training}
    if training["framework"] != "deepspeed":
        training.pop("zeroStage")
    arch = dict(ARCH, **({"modelType": model_type} if model_type else {}))
    return parse_spec(dict(model=dict(architecture=arch), workload="training", precision="fp16",
                           training=training, parallelism=dict(data=1)))


@pytest.mark.parametrize(("model_type", "per_h"), [
    ("opt", 8), ("gpt2", 8), ("gpt_bigcode", 8), ("bloom", 8), ("gpt_neox", 6), ("gptj", 4)])
def test_each_family_keeps_its_norms_inputs_and_outputs(model_type, per_h):
    spec = _spec(model_type)
    a = resolve(spec.model)
    assert layernorm_bytes_per_h(a) == per_h
    assert hf_16bit_layernorm(a, spec.training, mixed=False)
    assert not hf_16bit_layernorm(a, spec.training, mixed=True)   # autocast: not this count


def test_falcon_is_not_listed():
    # Falcon's norms follow its config (new_decoder_architecture, parallel_attn), not its model_type
    assert "falcon" not in HF_LAYERNORM_LAYERS
    falcon = _spec("falcon")
    assert not hf_16bit_layernorm(resolve(falcon.model), falcon.training, mixed=False)


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_bigcode", "bloom", "gpt_neox", "gptj"])
def test_the_kept_activations_drop_by_the_norms_difference_alone(model_type):
    # GELU MLPs keep fc1's output (the activation's input) and the activation's output, as before: only the norms move
    fam, bare = _spec(model_type), _spec()
    layout = Layout()
    kept = training_activations(resolve(fam.model), fam.training, layout, mixed=False, fp16=True).layers
    kept_bare = training_activations(resolve(bare.model), bare.training, layout, mixed=False, fp16=True).layers
    tokens, h, layers = 8 * 512, 2048, 24
    per_h = layernorm_bytes_per_h(resolve(fam.model))
    # GPT-2's and GPT-J's gelu_new keeps three intermediate-wide 16-bit tensors more (gelu_new_bytes)
    gelu_new = gelu_new_bytes(resolve(fam.model), fam.training, 2)
    assert gelu_new == (3 * 2 * resolve(fam.model).intermediate_size if model_type in ("gpt2", "gptj") else 0)
    assert kept_bare - kept == tokens * layers * ((NORM_BYTES_PER_H - per_h) * h - gelu_new)


def test_not_under_the_trainer_or_fsdp_nor_without_a_model_type():
    for framework in ("transformers", "fsdp"):
        spec = _spec("bloom", framework=framework)
        assert not hf_16bit_layernorm(resolve(spec.model), spec.training, mixed=False)
    bare = _spec()
    assert not hf_16bit_layernorm(resolve(bare.model), bare.training, mixed=False)


def test_opt_keeps_8_bytes_of_norms_and_one_mlp_tensor_less_a_token_and_layer():
    opt, bare = _spec("opt"), _spec()
    layout = Layout()
    kept_opt = training_activations(resolve(opt.model), opt.training, layout, mixed=False, fp16=True).layers
    kept_bare = training_activations(resolve(bare.model), bare.training, layout, mixed=False, fp16=True).layers
    tokens, h, inter, layers = 8 * 512, 2048, 8192, 24
    # two norms: 16 -> 8 bytes a hidden unit; the MLP: fc1's 16-bit output no longer kept
    assert kept_bare - kept_opt == tokens * layers * ((NORM_BYTES_PER_H - 8) * h + 2 * inter)


def test_the_whole_estimate_drops_under_deepspeed():
    # no checkpointing: the peak is in the backward, where every layer's kept activations are still alive (T1603)
    bloom, opt, bare = _spec("bloom"), _spec("opt"), _spec()
    tokens, h, inter, layers = 8 * 512, 2048, 8192, 24
    base = estimate(bare).breakdown.activations_bytes
    assert base - estimate(bloom).breakdown.activations_bytes == tokens * layers * (NORM_BYTES_PER_H - 8) * h
    assert base - estimate(opt).breakdown.activations_bytes == tokens * layers * (
        (NORM_BYTES_PER_H - 8) * h + 2 * inter)
