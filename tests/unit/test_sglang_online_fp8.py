"""SGLang's --quantization fp8 on a 16-bit checkpoint (inference.onlineQuantization,
sglang.online_quantization_refusal): the default loader creates every layer's weights at 16 bits (fp8.py
create_weights: params_dtype unless the checkpoint is fp8-serialized) and quantizes them only after all are loaded
(loader.py load_weights_and_postprocess), read in the 0.4.9 and 0.5.16 wheels. S1533: medgemma-27b-text-it on an L40S
ran out of memory in create_weights ("GPU 0 has a total capacity of 44.53 GiB"); its own doc says the same command
fits an 80 GB H100."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.spec import parse_spec

L40S = GPU(model="L40S", product="L40S", memoryGB=48, memoryMiB=46068, architecture="ada")
H100 = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")

GEMMA3_27B_TEXT = dict(numLayers=62, hiddenSize=5376, intermediateSize=21504, numAttentionHeads=32,
                       numKeyValueHeads=16, headDim=128, vocabSize=262208, tieWordEmbeddings=True, qkNorm=True,
                       slidingWindow=1024, slidingWindowLayers=52, maxPositionEmbeddings=131072, modelType="gemma3",
                       ropeScaling=dict(type="linear", factor=8.0))


def _spec(online: bool | None, engine: str = "sglang", precision: str = "fp8", **parallelism):
    inference = dict(engine=engine, contextLength=65536, gpuMemoryUtilization=0.85, kvCachePrecision="fp8")
    if engine == "sglang":
        inference["engineVersion"] = "0.5.16"
    if online is not None:
        inference["onlineQuantization"] = online
    doc = dict(model=dict(architecture=GEMMA3_27B_TEXT), workload="inference", precision=precision,
               inference=inference)
    if parallelism:
        doc["parallelism"] = parallelism
    return parse_spec(doc)


def test_s1533_refused_on_an_l40s_and_not_on_an_h100():
    e = estimate(_spec(True), gpu=L40S)
    assert e.engine_starts is False
    assert "16 bits" in e.refused and "50.3 GiB" in e.refused
    h100 = estimate(_spec(True), gpu=H100)
    assert h100.engine_starts and h100.refused is None


def test_only_when_stated():
    # a checkpoint stored in fp8 loads in fp8: the L40S starts
    assert estimate(_spec(None), gpu=L40S).engine_starts
    assert estimate(_spec(False), gpu=L40S).engine_starts


@pytest.mark.parametrize("kw, message", [
    (dict(engine="vllm"), "only with engine sglang"),      # vLLM's loader is not read
    (dict(precision="bf16"), "only with precision fp8"),   # the field names an fp8 quantization at load
])
def test_refused_outside_sglang_fp8_naming_the_field(kw, message):
    with pytest.raises(InvalidWorkload, match=message) as e:
        _spec(True, **kw)
    assert "onlineQuantization" in str(e.value)


def test_tensor_parallel_splits_the_16bit_weights():
    two = estimate(_spec(True, tensor=2), gpu=L40S)
    assert two.refused is None and two.engine_starts



def test_the_load_refusal_comes_before_the_pools():
    # at fraction 0.99 the request-to-token table outgrows the reserve, which SGLang finds only once the model is
    # loaded; a 16-bit load that does not fit fails before that, so it is the refusal named
    def spec(online):
        s = _spec(online)
        return s.model_copy(update=dict(inference=s.inference.model_copy(update=dict(
            gpu_memory_utilization=0.99, context_length=131072))))
    assert "request-to-token table" in estimate(spec(None), gpu=L40S).refused
    assert "16 bits" in estimate(spec(True), gpu=L40S).refused
