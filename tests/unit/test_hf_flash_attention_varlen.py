"""transformers' FlashAttention-2 path with padding in the attention_mask (4.49.0 modeling_flash_attention_utils
`_flash_attention_forward`: `_upad_input`, flash_attn_varlen_func, `pad_input`) keeps the unpadded q, k, v and output
that flash-attn saves and the padded output o_proj saves: one query-wide 16-bit tensor a token more than without
padding, where flash_attn_func's output is o_proj's input itself (docs/accuracy.md, "FlashAttention-2's unpad path").
Counts worked out by hand from those lines; the shapes are SmolLM2-1.7B's (bench row T864)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import training_activations
from rackfit.models import resolve
from rackfit.spec import ModelSource, parse_spec

ARCH = {"numLayers": 24, "hiddenSize": 2048, "intermediateSize": 8192, "numAttentionHeads": 32,
        "numKeyValueHeads": 32, "headDim": 64, "vocabSize": 49152, "tieWordEmbeddings": True}


def _spec(**training) -> dict:
    t = {"framework": "transformers", "method": "full", "masterWeights": "none", "optimizer": "adamw8bit",
         "microBatchSize": 1, "sequenceLength": 16384, "activationCheckpointing": "none", "flashAttention": True,
         "transformersVersion": "4.49.0"}
    t.update(training)
    t = {k: v for k, v in t.items() if v is not None}
    return {"model": {"architecture": ARCH}, "workload": "training", "precision": "bf16", "training": t,
            "parallelism": {"data": 1}}


def _layers(**training) -> int:
    a = resolve(ModelSource(architecture=ARCH))
    return training_activations(a, parse_spec(_spec(**training)).training, Layout(), mixed=False).layers


def test_the_unpad_path_keeps_one_padded_output_a_layer_more():
    """16,384 tokens x 2,048 query width x 2 bytes x 24 layers = 1.5 GiB, and nothing else moves."""
    assert _layers(flashAttentionVarlen=True) - _layers() == 16384 * 2048 * 2 * 24
    assert _layers(flashAttentionVarlen=False) == _layers()


def test_full_checkpointing_keeps_it_only_in_the_recomputed_layer():
    a = resolve(ModelSource(architecture=ARCH))
    on = training_activations(a, parse_spec(_spec(flashAttentionVarlen=True, activationCheckpointing="full"))
                              .training, Layout(), mixed=False)
    off = training_activations(a, parse_spec(_spec(activationCheckpointing="full")).training, Layout(), mixed=False)
    assert on.layers == off.layers
    assert on.recompute - off.recompute == 16384 * 2048 * 2


def test_the_estimate_grows_by_the_padded_outputs():
    on, off = estimate(parse_spec(_spec(flashAttentionVarlen=True))), estimate(parse_spec(_spec()))
    assert on.breakdown.activations_bytes - off.breakdown.activations_bytes == 16384 * 2048 * 2 * 24


@pytest.mark.parametrize("training", [
    {"flashAttention": False},                                         # eager attention: no flash-attn call
    {"framework": "fsdp", "fsdpVersion": 2, "transformersVersion": None},   # not transformers' model code
])
def test_the_field_names_itself_outside_transformers_flash_attention(training):
    with pytest.raises(InvalidWorkload, match="flashAttentionVarlen"):
        parse_spec(_spec(flashAttentionVarlen=True, **training))
