"""transformers' per-attention-layer rotary cos/sin tables (estimator/hf_rotary.py), keyed by the release the spec's
training.transformersVersion names and the model family (config.json model_type, a preset's modelType). Expected
bytes by hand: layers x 2 tables x max_position_embeddings x head_dim x element bytes."""

from __future__ import annotations

import pytest

from rackfit.estimator import training_peak, training_states
from rackfit.estimator.hf_rotary import hf_rotary_table_bytes
from rackfit.models import ModelArch, resolve
from rackfit.spec import ModelSource, parse_spec

# Qwen/Qwen1.5-4B-Chat's config.json (T1051)
QWEN15_4B = {"numLayers": 40, "hiddenSize": 2560, "intermediateSize": 6912, "numAttentionHeads": 20,
             "numKeyValueHeads": 20, "headDim": 128, "vocabSize": 151936, "tieWordEmbeddings": False,
             "attentionBias": True, "maxPositionEmbeddings": 32768}
QWEN15_4B_TABLES = 40 * 2 * 32768 * 128 * 2   # fp16, whole on each GPU: 0.625 GiB


def _deepspeed(version: str | None, data: int = 2):
    training = {"framework": "deepspeed", "zeroStage": 3, "method": "lora", "loraRank": 8, "loraTargets": ["q", "v"],
                "optimizer": "adamw", "microBatchSize": 4, "sequenceLength": 1024, "activationCheckpointing": "full",
                "reduceBucketSize": 6553600}
    if version is not None:
        training["transformersVersion"] = version
    return parse_spec({"model": {"architecture": QWEN15_4B}, "workload": "training", "precision": "fp16",
                       "training": training, "parallelism": {"data": data}})


@pytest.mark.parametrize("data", [2, 8])
def test_zero3_keeps_every_layers_tables_whole(data):
    # buffers are not ZeRO-3 parameters: the tables do not shrink with the data-parallel degree
    grown = training_peak(_deepspeed("4.39.1", data)).states - training_peak(_deepspeed(None, data)).states
    assert grown == QWEN15_4B_TABLES


def test_current_releases_keep_none():
    # from 4.45 Qwen2 builds one model-level rotary embedding computing cos and sin per forward
    assert training_peak(_deepspeed("4.48.1")).states == training_peak(_deepspeed(None)).states


def test_hf_trainer_amp_keeps_fp32_tables():
    # the Trainer's AMP keeps an fp32 model: get_default_dtype() is fp32 when the tables are built
    def spec(version):
        training = {"framework": "transformers", "method": "full", "masterWeights": "fp32", "optimizer": "adamw",
                    "microBatchSize": 1, "sequenceLength": 512, "activationCheckpointing": "full"}
        if version:
            training["transformersVersion"] = version
        return parse_spec({"model": {"architecture": QWEN15_4B}, "workload": "training", "precision": "bf16",
                           "training": training})
    assert training_states(spec("4.40.0")).weights - training_states(spec(None)).weights == QWEN15_4B_TABLES * 2


def _arch(model_type: str, positions: int = 4096):
    return ModelArch(name="t", num_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                     num_key_value_heads=32, head_dim=128, vocab_size=32000, max_position_embeddings=positions,
                     model_type=model_type)


def _training(version: str | None):
    return _deepspeed(version).training


@pytest.mark.parametrize(("model_type", "version", "held"), [
    ("llama", "4.31.0", True), ("llama", "4.37.2", True),
    ("llama", "4.38.0", False), ("llama", "4.38.1", False),   # computed per forward, no table
    ("llama", "4.38.2", True), ("llama", "4.40.0", True),     # "For BC" _cos_cached / _sin_cached
    ("llama", "4.41.0", False),
    ("mistral", "4.41.1", True), ("mistral", "4.42.0", False),
    ("qwen2", "4.44.2", True), ("qwen2", "4.45.0", False),
    ("mixtral", "4.47.1", True), ("mixtral", "4.48.0", False),
    ("gemma", "4.40.0", False), ("phi3", "4.41.0", False),
    ("", "4.47.1", True), ("", "4.48.0", False),               # family unsaid: counted until the last family drops them
    ("falcon", "4.40.0", True),                                # a model_type not read: as unsaid
])
def test_releases_by_family(model_type, version, held):
    expected = 32 * 2 * 4096 * 128 * 2 if held else 0
    assert hf_rotary_table_bytes(_arch(model_type), _training(version), "fp16") == expected


def test_unset_release_or_length_counts_none():
    assert hf_rotary_table_bytes(_arch("qwen2"), _training(None), "fp16") == 0
    assert hf_rotary_table_bytes(_arch("qwen2", positions=0), _training("4.39.1"), "fp16") == 0


def test_pipeline_stage_holds_its_layers_tables():
    assert hf_rotary_table_bytes(_arch("llama"), _training("4.36.2"), "fp16", pipeline=3) == 11 * 2 * 4096 * 128 * 2


def test_family_from_preset_and_config():
    assert resolve(ModelSource(preset="llama-3.1-8b")).model_type == "llama"
    assert resolve(ModelSource(preset="qwen2.5-72b-instruct-awq")).model_type == "qwen2"
    assert resolve(ModelSource(preset="qwen3-8b")).model_type == ""
    config = {"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
              "max_position_embeddings": 32768}
    assert resolve(ModelSource(huggingFaceConfig="mistralai/Mistral-7B-v0.1"), config).model_type == "mistral"
