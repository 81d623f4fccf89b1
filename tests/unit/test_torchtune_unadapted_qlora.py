"""torchtune's QLoRA before 0.3 (issue 22, T1104: pytorch/torchtune issue 1398): its builders quantize only the
adapted projections (torchtune/models/llama3_1/_component_builders.py at 3d7ca3869 `lora_llama3_1_self_attention`:
`LoRALinear(..., quantize_base=...) if "q_proj" in lora_modules else nn.Linear(...)`, and a plain `llama3_mlp` when
apply_lora_to_mlp is False), so a projection outside loraTargets stays 16-bit; PRs 1119 and 1485 (first in v0.3.0)
made those FrozenNF4Linear."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_peak
from rackfit.estimator.weights import BYTES_PER_PARAM
from rackfit.spec import InvalidWorkload, parse_spec

H, INTER, KV, L = 4096, 14336, 1024, 32
LLAMA31_8B = dict(numLayers=L, hiddenSize=H, intermediateSize=INTER, numAttentionHeads=32, numKeyValueHeads=8,
                  headDim=128, vocabSize=128256, tieWordEmbeddings=False)


def _spec(method="qlora", data=1, **t):
    base = dict(framework="fsdp", method=method, masterWeights="none", optimizer="adamw", microBatchSize=2,
                sequenceLength=512, activationCheckpointing="full")
    return parse_spec(dict(model=dict(architecture=LLAMA31_8B), workload="training",
                           precision="nf4" if method == "qlora" else "bf16", training={**base, **t},
                           parallelism=dict(data=data)))


def _weights(spec) -> int:
    return estimate(spec).breakdown.weights_bytes


def test_before_03_the_unadapted_projections_are_16_bit():
    qv = dict(loraTargets=["q", "v"])
    old, new = _spec(torchtuneVersion="0.2.1", **qv), _spec(**qv)
    # k and o of attention, gate, up and down of the MLP: bf16 (2 bytes) instead of NF4 with its scales; the weights
    # at the peak also hold QLoRA's one dequantized bf16 matrix, the query projection's instead of an MLP matrix's
    unadapted = L * (H * KV + H * H + 3 * H * INTER)
    dequant = 2 * H * INTER - 2 * H * H
    assert _weights(old) - _weights(new) == pytest.approx(unadapted * (2 - BYTES_PER_PARAM["nf4"]) - dequant, abs=8)
    # T1104's q, v run: some 8.6 GiB more than NF4 everywhere
    assert _weights(old) - _weights(new) > 8 * 2**30
    # 0.3.0 quantizes them too (FrozenNF4Linear), as the current release does
    assert _weights(_spec(torchtuneVersion="0.3.0", **qv)) == _weights(new)


def test_nothing_moves_when_every_projection_is_adapted_or_under_lora():
    assert _weights(_spec(torchtuneVersion="0.2.1")) == _weights(_spec())
    assert _weights(_spec("lora", torchtuneVersion="0.2.1", loraTargets=["q", "v"])) == \
        _weights(_spec("lora", loraTargets=["q", "v"]))


def test_only_the_nf4_matrices_are_quantized_at_load_under_torchao_01():
    # torchao 0.1's whole-matrix to_nf4 (torchtune.nf4_whole_tensor_load) runs over the NF4 projections only: with q
    # and v adapted under torchtune 0.2.1 the query projection is the largest, and no smaller attention block is left
    # cached beside it; the weights hold its dequantized bf16 copy (2 bytes an element) at the step
    r = training_peak(_spec(torchtuneVersion="0.2.1", torchaoVersion="0.1", loraTargets=["q", "v"]))
    assert r.load == r.weights - 2 * H * H + (2 + 2 + 64) * H * H
    assert r.load_cached == 0
    # every projection NF4 (0.3.0): an MLP matrix, with the attention's blocks cached beside it
    r = training_peak(_spec(torchtuneVersion="0.3.0", torchaoVersion="0.1", loraTargets=["q", "v"]))
    assert r.load == r.weights - 2 * H * INTER + (2 + 2 + 64) * H * INTER
    assert r.load_cached == 64 * H * H


def test_the_distributed_recipe_shards_the_16_bit_projections_too():
    qv = dict(loraTargets=["q", "v"])
    one = _weights(_spec(torchtuneVersion="0.2.1", **qv)) - _weights(_spec(**qv))
    two = _weights(_spec(data=2, torchtuneVersion="0.2.1", **qv)) - _weights(_spec(data=2, **qv))
    # half the 16-bit projections a rank, and a gathered layer's 16-bit k, o and MLP beside them
    assert one / 2 < two < one


@pytest.mark.parametrize("spec", [
    dict(method="full", torchtuneVersion="0.2.1"),
    dict(fsdpVersion=1, torchtuneVersion="0.2.1"),
    dict(modelCode="transformers", torchtuneVersion="0.2.1"),
])
def test_torchtune_version_is_refused_outside_torchtunes_lora_naming_the_field(spec):
    method = spec.pop("method", "qlora")
    with pytest.raises(InvalidWorkload, match="torchtuneVersion"):
        _spec(method, **spec)


def test_torchtune_version_must_be_a_release():
    with pytest.raises(InvalidWorkload, match="torchtuneVersion"):
        _spec(torchtuneVersion="v0.2")
