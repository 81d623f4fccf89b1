"""torchtune's single-device QLoRA under torchao before 0.2 (issue 22, T645/T644/T243: torchtune's README and
tutorials of April 2024, which pinned torchao==0.1). torchao 0.1's to_nf4 compares a whole matrix with the 16 NF4
values at once (torchao/dtypes/nf4tensor.py quantize_tensor_nearest: `(value - nf4).abs()`, two (numel, 16) bf16
tensors), as the model is built and again as the checkpoint is copied in; torchao 0.2.0 does it in chunks of
1024**2 elements. With the base's largest matrix quantized whole the load, not the step, is the job's peak."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_peak
from rackfit.estimator.torchtune import NF4_DIFF_BYTES, NF4_WHOLE_TENSOR_BYTES, nf4_whole_tensor_load
from rackfit.spec import InvalidWorkload, parse_spec

LLAMA2_7B = dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32, numKeyValueHeads=32,
                 headDim=128, vocabSize=32000, tieWordEmbeddings=False)


def _spec(data=1, **t):
    base = dict(framework="fsdp", method="qlora", loraRank=8, loraTargets=["q", "k", "v", "o", "gate", "up", "down"],
                masterWeights="none", optimizer="adamw", microBatchSize=2, sequenceLength=512,
                activationCheckpointing="full", adamwImplementation="foreach")
    return parse_spec(dict(model=dict(architecture=LLAMA2_7B), workload="training", precision="nf4",
                           training={**base, **t}, parallelism=dict(data=data)))


def test_torchao_01_makes_the_load_the_peak_with_the_mlp_matrix_quantized_whole():
    old, new = _spec(torchaoVersion="0.1"), _spec()
    r_old, r_new = training_peak(old), training_peak(new)
    mlp, attn = 4096 * 11008, 4096 * 4096
    # the model as stored (the step's weights less QLoRA's one dequantized bf16 matrix, single_device_gathered), plus
    # the bf16 source, the scaled blocks and the two (numel, 16) bf16 blocks of one MLP matrix
    assert r_old.load == r_old.weights - 2 * mlp + (2 + 2 + 64) * mlp
    # the attention projections' two blocks, quantized first in each layer and too small for the MLP's, stay cached
    assert r_old.load_cached == 64 * attn
    assert r_new.load == r_new.load_cached == 0
    e_old, e_new = estimate(old), estimate(new)
    assert e_old.peak_phase == "load" and e_new.peak_phase != "load"
    assert e_old.total_bytes > e_new.total_bytes + 2 * 2**30


def test_chunked_torchao_and_the_distributed_recipe_add_nothing():
    assert training_peak(_spec(torchaoVersion="0.2.0")).load == 0
    # lora_finetune_distributed shards the base under FSDP2; the whole-matrix load is modelled for one GPU only
    assert training_peak(_spec(data=2, torchaoVersion="0.1")).load == 0


def test_the_cached_blocks_only_where_the_attention_matrix_is_the_smaller():
    spec = _spec(torchaoVersion="0.1")
    tr, layout = spec.training, estimate(spec).layout
    assert nf4_whole_tensor_load(tr, layout, 10, 100, 100) == (10 + NF4_WHOLE_TENSOR_BYTES * 100, 0)
    assert nf4_whole_tensor_load(tr, layout, 10, 100, 40) == (10 + NF4_WHOLE_TENSOR_BYTES * 100, NF4_DIFF_BYTES * 40)


@pytest.mark.parametrize("training", [
    dict(method="lora", torchaoVersion="0.1"),
    dict(fsdpVersion=1, torchaoVersion="0.1"),
    dict(modelCode="transformers", torchaoVersion="0.1"),
])
def test_torchao_version_is_refused_outside_torchtunes_qlora_naming_the_field(training):
    with pytest.raises(InvalidWorkload, match="torchaoVersion"):
        _spec(**training)
