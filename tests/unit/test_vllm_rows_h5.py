"""vLLM 0.14.0-0.16.x under pipeline parallel (engines.py PP_WHOLE_MODEL_CHECK): the one-request check of
kv_cache_utils.get_kv_cache_configs compares the whole model's KV cache for max_model_len (every stage's layers merged)
with the smallest stage's available memory; 0.13.0 and 0.17.0 check each stage's own layers. S123 (GLM-4.7-FP8 at
pipeline 8 on A100) logged "71.16 GiB KV cache is needed ... available KV cache memory (28.57 GiB)"."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engines import pipeline_check_refusal
from rackfit.models import resolve
from rackfit.spec import parse_spec
from rackfit.units import GiB

A100 = GPU(model="A100", product="A100", memoryGB=81920 / 954, memoryMiB=81920, architecture="ampere")
GLM = dict(numLayers=92, hiddenSize=5120, intermediateSize=12288, numAttentionHeads=96, numKeyValueHeads=8,
           headDim=128, vocabSize=151552, attentionBias=True, numExperts=160, numExpertsPerToken=8,
           moeIntermediateSize=1536, numSharedExperts=1, firstDenseLayers=3, maxPositionEmbeddings=202752)
CONTEXT = 202752
# the whole model's cache for one request: 92 layers x (K, V) x 8 KV heads x 128 x bf16 x 202,752 tokens
WHOLE = 92 * 2 * 8 * 128 * 2 * CONTEXT


def glm(version: str | None, pipeline: int = 8, context: int = CONTEXT):
    inference = dict(contextLength=context, gpuMemoryUtilization=0.925, maxNumSeqs=128)
    if version:
        inference["engineVersion"] = version
    return parse_spec(dict(model=dict(architecture=GLM), workload="inference", precision="fp8",
                           parallelism=dict(pipeline=pipeline), inference=inference))


def test_whole_model_cache_is_what_the_log_names():
    """The refusal's number is the log's 71.16 GiB (format_gib rounds to 2 places)."""
    assert round(WHOLE / GiB, 2) == 71.16
    spec = glm("0.15.0")
    reason = pipeline_check_refusal(spec.inference, resolve(spec.model), spec.parallelism, 28 * GiB, 8192, True)
    assert reason is not None and "71.16 GiB" in reason and "28.00 GiB" in reason


def test_refusal_only_in_0_14_through_0_16_and_only_under_pipeline():
    spec = glm("0.15.0")
    a, layout = resolve(spec.model), spec.parallelism
    # a stage holding the whole model's cache plus one byte passes; one byte short refuses
    assert pipeline_check_refusal(spec.inference, a, layout, WHOLE, 8192, True) is None
    assert pipeline_check_refusal(spec.inference, a, layout, WHOLE - 1, 8192, True) is not None
    for version in ("0.13.0", "0.17.0", None):  # per-stage checks before 0.14.0 and from 0.17.0; None: current
        s = glm(version)
        assert pipeline_check_refusal(s.inference, a, s.parallelism, 28 * GiB, 8192, True) is None
    flat = glm("0.15.0", pipeline=1)
    assert pipeline_check_refusal(flat.inference, a, flat.parallelism, 28 * GiB, 8192, True) is None


def test_s123_refuses_at_0_15_and_starts_at_0_17():
    """The stage's own layers (12 of 92: 9.28 GiB) fit its ~26.7 GiB cache, so 0.17.0 starts; 0.15.0 refuses, as
    S123 logged. The cache itself is sized the same way in both releases' plan."""
    refused, fixed = estimate(glm("0.15.0"), gpu=A100), estimate(glm("0.17.0"), gpu=A100)
    assert refused.engine_starts is False and fixed.engine_starts is True
    assert any("whole model's KV cache (71.16 GiB" in n for n in refused.notes)
    stage = -(-92 // 8) * 2 * 8 * 128 * 2 * CONTEXT
    assert refused.breakdown.kv_cache_bytes == stage
    # a context whose whole-model cache fits the stage starts in 0.15.0 too
    short = estimate(glm("0.15.0", context=65536), gpu=A100)
    assert 92 * 2 * 8 * 128 * 2 * 65536 < 26 * GiB and short.engine_starts is True
