"""SGLang's Grok 2 builds an fp32 cos/sin cache in every layer (models/grok.py ScalingRotaryEmbedding, S1343)."""

from __future__ import annotations

from rackfit.estimator import estimate
from rackfit.estimator.weights import layer_rope_cache_bytes
from rackfit.models import resolve
from rackfit.models.hf_config import layer_rope_cache_positions_from_hf_config
from rackfit.spec import ModelSource, parse_spec

# xai-org/grok-2 config.json's rope fields
GROK2_CONFIG = {"architectures": ["Grok1ForCausalLM"], "model_type": "git", "max_position_embeddings": 131072,
                "rope_type": "original", "original_max_position_embeddings": 8192, "scaling_factor": 16.0,
                "rope_theta": 208533496}


# the preset's shape without its per-layer caches (an explicit architecture carries none)
SAME_SHAPE = {"architecture": {"numLayers": 64, "hiddenSize": 8192, "intermediateSize": 32768, "numAttentionHeads": 64,
                               "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 131072, "numExperts": 8,
                               "numExpertsPerToken": 2, "moeIntermediateSize": 16384, "numSharedExperts": 2,
                               "maxPositionEmbeddings": 131072}}


def _spec(engine: str, tensor: int = 8, pipeline: int = 1, model: dict | None = None):
    inference = {"engine": engine, "contextLength": 8192}
    if engine == "sglang":
        inference["engineVersion"] = "0.5.2"
    return parse_spec({"model": model or {"preset": "grok-2"}, "workload": "inference", "precision": "fp8",
                       "parallelism": {"tensor": tensor, "pipeline": pipeline}, "inference": inference})


def test_grok2_config_gives_its_scaled_positions_and_other_configs_none():
    assert layer_rope_cache_positions_from_hf_config(GROK2_CONFIG) == 8192 * 16
    assert layer_rope_cache_positions_from_hf_config({**GROK2_CONFIG, "rope_type": None}) == 0  # Grok 1: get_rope
    llama = {"architectures": ["LlamaForCausalLM"], "rope_type": "original",
             "original_max_position_embeddings": 8192, "scaling_factor": 16.0}
    assert layer_rope_cache_positions_from_hf_config(llama) == 0
    assert resolve(ModelSource(preset="grok-2")).layer_rope_cache_positions == 131072


def test_every_layer_holds_64_mib_on_every_rank_under_sglang_only():
    a = resolve(ModelSource(preset="grok-2"))
    assert layer_rope_cache_bytes(a, "sglang", 64) == 64 * 131072 * 128 * 4 == 4 * 2 ** 30
    assert layer_rope_cache_bytes(a, "vllm", 64) == 0 and layer_rope_cache_bytes(None, "sglang", 64) == 0
    plain = a.model_copy(update={"layer_rope_cache_positions": 0})
    assert layer_rope_cache_bytes(plain, "sglang", 64) == 0
    # on every rank whatever the tensor degree; a pipeline stage holds its own layers' (32 of 64)
    for tensor, pipeline, layers in ((8, 1, 64), (4, 1, 64), (4, 2, 32)):
        with_caches = estimate(_spec("sglang", tensor, pipeline)).breakdown.weights_bytes
        without = estimate(_spec("sglang", tensor, pipeline, SAME_SHAPE)).breakdown.weights_bytes
        assert with_caches - without == layers * 64 * 2 ** 20
    vllm = estimate(_spec("vllm")).breakdown.weights_bytes
    assert vllm == estimate(_spec("vllm", 8, 1, SAME_SHAPE)).breakdown.weights_bytes
