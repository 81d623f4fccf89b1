"""Each engine's own longest context for a model: vLLM's _get_and_verify_max_len and SGLang's get_context_length
scale config.json's max_position_embeddings differently (Gemma 3's linear factor, yarn with its original length)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, model_maximum
from rackfit.models import resolve
from rackfit.models.hf_config import (
    max_context_from_hf_config,
    sglang_context_from_hf_config,
    trtllm_context_from_hf_config,
)
from rackfit.spec import ModelSource, parse_spec

# google/gemma-3-4b-it's config.json, the language model nested in text_config as published
GEMMA3_4B = dict(model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"], text_config=dict(
    model_type="gemma3_text", num_hidden_layers=34, hidden_size=2560, intermediate_size=10240, num_attention_heads=8,
    num_key_value_heads=4, head_dim=256, vocab_size=262208, sliding_window=1024, max_position_embeddings=131072,
    rope_scaling=dict(factor=8.0, rope_type="linear")))
SHAPE = dict(num_hidden_layers=28, hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
             num_key_value_heads=4, vocab_size=152064)
QWEN25 = dict(SHAPE, model_type="qwen2", max_position_embeddings=32768, rope_scaling=None)
# Qwen2.5's README: add this rope_scaling for inputs beyond 32,768 tokens
QWEN25_YARN = dict(QWEN25, rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=32768))
DEEPSEEK_V3_YARN = dict(SHAPE, model_type="deepseek_v3", max_position_embeddings=163840,
                        rope_scaling=dict(type="yarn", factor=40, original_max_position_embeddings=4096))
LLAMA31 = dict(SHAPE, model_type="llama", max_position_embeddings=131072,
               rope_scaling=dict(rope_type="llama3", factor=8.0, original_max_position_embeddings=8192))
DEEPSEEK_CODER_LINEAR = dict(SHAPE, model_type="llama", max_position_embeddings=16384,
                             rope_scaling=dict(type="linear", factor=4.0))


@pytest.mark.parametrize(("config", "vllm", "sglang"), [
    (GEMMA3_4B, 131072, 1048576),  # vLLM skips a gemma3 model's factor; SGLang applies the linear 8
    (QWEN25, 32768, 32768),  # no rope scaling: the same for both
    (QWEN25_YARN, 131072, 32768),  # vLLM: original x factor; SGLang: no factor where original is named
    (DEEPSEEK_V3_YARN, 163840, 163840),  # vLLM 4,096 x 40; SGLang max_position_embeddings as it stands
    (LLAMA31, 131072, 131072),  # llama3: neither scales
    (DEEPSEEK_CODER_LINEAR, 65536, 65536),  # linear without an original length: both scale
])
def test_each_engine_derives_its_own_maximum(config, vllm, sglang):
    merged = {**config.get("text_config", {}), **config}
    assert max_context_from_hf_config(merged) == vllm
    assert sglang_context_from_hf_config(config) == sglang
    arch = resolve(ModelSource(hugging_face_config="config.json"), config)
    assert arch.max_position_embeddings == vllm and arch.sglang_max_context == sglang


def test_sglang_takes_the_first_length_key_where_vllm_takes_the_smallest():
    config = dict(QWEN25, max_position_embeddings=32768, seq_length=8192, model_max_length=4096)
    assert sglang_context_from_hf_config(config) == 8192 and max_context_from_hf_config(config) == 4096


def spec(context: int, engine: str, version: str, **model) -> dict:
    return dict(model=model, workload="inference",
                inference=dict(engine=engine, engineVersion=version, contextLength=context))


@pytest.mark.parametrize("source", ["config", "architecture"])
def test_gemma3_under_sglang_and_vllm(source):
    """SGLang's default Gemma 3 context is 1,048,576 tokens (S854) and 0.5.1 refuses more; vLLM refuses more than
    131,072. The architecture block with modelType and ropeScaling says the same as config.json."""
    if source == "config":
        model, hf = dict(huggingFaceConfig="config.json"), GEMMA3_4B
    else:
        model = dict(architecture=dict(numLayers=34, hiddenSize=2560, intermediateSize=10240, numAttentionHeads=8,
                                       numKeyValueHeads=4, headDim=256, vocabSize=262208, slidingWindow=1024,
                                       maxPositionEmbeddings=131072, modelType="gemma3",
                                       ropeScaling=dict(type="linear", factor=8.0)))
        hf = None
    sglang = parse_spec(spec(1048576, "sglang", "0.5.1", **model))
    assert model_maximum(sglang.inference, resolve(sglang.model, hf)) == 1048576
    assert estimate(sglang, hf_config=hf).total_bytes > 0
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(spec(1048577, "sglang", "0.5.1", **model)), hf_config=hf)
    (field, message), = e.value.errors
    assert field == "spec.inference.contextLength" and "1048576" in message and "sglang" in message
    assert "get_context_length" in message
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(spec(1048576, "vllm", "0.8.5", **model)), hf_config=hf)
    (field, message), = e.value.errors
    assert field == "spec.inference.contextLength" and "131072" in message and "vllm" in message
    assert estimate(parse_spec(spec(131072, "vllm", "0.8.5", **model)), hf_config=hf).total_bytes > 0


def test_a_yarn_context_vllm_admits_is_refused_by_sglang():
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(spec(131072, "sglang", "0.5.3", huggingFaceConfig="config.json")), hf_config=QWEN25_YARN)
    assert "32768" in e.value.errors[0][1]
    assert estimate(parse_spec(spec(131072, "vllm", "0.10.0", huggingFaceConfig="config.json")),
                    hf_config=QWEN25_YARN).total_bytes > 0


def test_sglang_before_0_5_1_serves_a_longer_context():
    """SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN defaulted to true before 0.5.1: a warning, no refusal; the note's
    largest context is then capped by the pool, not by the 32,768 SGLang derives."""
    a100 = GPU(model="A100", product="A100-SXM4-40GB", memoryGB=40, memoryMiB=40960, architecture="ampere")
    model = dict(huggingFaceConfig="config.json")
    est = estimate(parse_spec(spec(400000, "sglang", "0.4.10", **model)), gpu=a100, hf_config=QWEN25_YARN)
    note, = [n for n in est.notes if "reject requests longer than about" in n]
    largest = int(note.split("longer than about ")[1].split()[0])
    assert 131072 < largest == est.kv_cache_tokens < 400000
    with pytest.raises(InvalidWorkload):
        estimate(parse_spec(spec(400000, "sglang", "0.5.1", **model)), gpu=a100, hf_config=QWEN25_YARN)


def test_a_stated_maximum_holds_for_every_engine():
    """maxPositionEmbeddings without ropeScaling overrides what config.json derives, for SGLang too."""
    model = ModelSource(huggingFaceConfig="config.json", architecture=dict(maxPositionEmbeddings=200000))
    arch = resolve(model, GEMMA3_4B)
    assert arch.max_position_embeddings == 200000 and arch.sglang_max_context == 0
    sglang = parse_spec(spec(200000, "sglang", "0.5.3", huggingFaceConfig="config.json"))
    assert model_maximum(sglang.inference, arch) == 200000


def test_rope_scaling_over_a_config_json_needs_its_length():
    with pytest.raises(InvalidWorkload) as e:
        resolve(ModelSource(huggingFaceConfig="config.json", architecture=dict(ropeScaling=dict(type="linear",
                                                                                              factor=2.0))),
                GEMMA3_4B)
    assert e.value.errors[0][0] == "spec.model.architecture.ropeScaling"
    bare = dict(numLayers=2, hiddenSize=256, intermediateSize=512, numAttentionHeads=4, vocabSize=1000,
                ropeScaling=dict(type="linear", factor=2.0))
    with pytest.raises(InvalidWorkload) as e:
        resolve(ModelSource(architecture=bare))
    assert e.value.errors[0][0] == "spec.model.architecture.ropeScaling"
    assert resolve(ModelSource(architecture=dict(bare, maxPositionEmbeddings=2048))).max_position_embeddings == 4096


def test_an_architecture_with_rope_scaling_resolves_as_its_config_json():
    """modelType and ropeScaling written out give what config.json gives: both maxima and Gemma 3's two rotary
    caches (131,072 x (8 + 1) positions), which the block without them leaves at one."""
    block = dict(numLayers=34, hiddenSize=2560, intermediateSize=10240, numAttentionHeads=8, numKeyValueHeads=4,
                 headDim=256, vocabSize=262208, slidingWindow=1024, slidingWindowLayers=29, qkNorm=True,
                 maxPositionEmbeddings=131072)
    written = resolve(ModelSource(architecture=dict(block, modelType="gemma3",
                                                    ropeScaling=dict(type="linear", factor=8.0))))
    config = resolve(ModelSource(hugging_face_config="config.json"), GEMMA3_4B)
    fields = ("max_position_embeddings", "sglang_max_context", "rope_cache_positions", "model_type")
    assert [getattr(written, f) for f in fields] == [getattr(config, f) for f in fields] \
        == [131072, 1048576, 131072 * 9, "gemma3"]
    bare = resolve(ModelSource(architecture=block))
    assert (bare.max_position_embeddings, bare.sglang_max_context, bare.rope_cache_positions) == (131072, 0, 0)


# microsoft/Phi-3-mini-128k-instruct's config.json: longrope states the scaled length already
PHI3_LONGROPE = dict(SHAPE, model_type="phi3", max_position_embeddings=131072,
                     rope_scaling=dict(type="longrope", long_factor=[1.0], short_factor=[1.0]))


@pytest.mark.parametrize(("config", "trtllm"), [
    (GEMMA3_4B, 1048576),  # linear x 8 on text_config's 131,072, as SGLang (vLLM skips a gemma3 factor)
    (QWEN25_YARN, 32768),  # yarn: no factor (vLLM 131,072: original x factor)
    (DEEPSEEK_V3_YARN, 163840),  # yarn: max_position_embeddings as it stands
    (LLAMA31, 131072),  # llama3: no factor
    (DEEPSEEK_CODER_LINEAR, 65536),  # linear: x 4
    (PHI3_LONGROPE, 131072),  # longrope: no factor
    (dict(QWEN25, rope_scaling=dict(type="dynamic", factor=2.5)), 81920),  # dynamic: x 2.5
    (QWEN25, 32768),
])
def test_trtllm_pytorch_backend_derives_its_own_maximum(config, trtllm):
    """TensorRT-LLM's infer_max_seq_len (_torch/models/modeling_utils.py; model_engine.py
    _infer_max_seq_len_from_config): x factor unless su, longrope, llama3 or yarn."""
    assert trtllm_context_from_hf_config(config) == trtllm
    arch = resolve(ModelSource(hugging_face_config="config.json"), config)
    assert arch.trtllm_max_context == trtllm
    trt = parse_spec(dict(model=dict(huggingFaceConfig="config.json"), workload="inference",
                          inference=dict(engine="tensorrt-llm", contextLength=2048)))
    assert model_maximum(trt.inference, arch) == trtllm


def trt_spec(context: int, backend: str | None = None, **model) -> dict:
    inf = dict(engine="tensorrt-llm", contextLength=context)
    if backend:
        inf["tensorrtLlmBackend"] = backend
    return dict(model=model, workload="inference", inference=inf)


def test_trtllm_pytorch_backend_holds_a_yarn_model_to_its_unscaled_length():
    """Qwen2.5 with its README's yarn x 4: vLLM serves 131,072; TensorRT-LLM's PyTorch backend lowers max_seq_len to
    32,768, so a longer contextLength is refused, naming the number and the rule."""
    model = dict(huggingFaceConfig="config.json")
    assert estimate(parse_spec(trt_spec(32768, **model)), hf_config=QWEN25_YARN).total_bytes > 0
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(trt_spec(32769, **model)), hf_config=QWEN25_YARN)
    (field, message), = e.value.errors
    assert field == "spec.inference.contextLength" and "32769" in message and "32768" in message
    assert "infer_max_seq_len" in message and "yarn" in message and "lowers max_seq_len to 32768" in message


def test_trtllm_pytorch_backend_serves_gemma3_beyond_vllms_maximum():
    model = dict(huggingFaceConfig="config.json")
    assert estimate(parse_spec(trt_spec(1048576, **model)), hf_config=GEMMA3_4B).total_bytes > 0
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(trt_spec(1048577, **model)), hf_config=GEMMA3_4B)
    assert "1048576" in e.value.errors[0][1]


def test_llama31_preset_under_trtllm():
    """A preset states the maximum every engine derives (Llama 3.1's llama3 scaling: 131,072)."""
    assert estimate(parse_spec(trt_spec(131072, preset="llama-3.1-8b"))).total_bytes > 0
    with pytest.raises(InvalidWorkload) as e:
        estimate(parse_spec(trt_spec(131073, preset="llama-3.1-8b")))
    message = e.value.errors[0][1]
    assert "131072" in message and "preset llama-3.1-8b" in message and "no request runs past it" in message


def test_trt_engine_builds_a_longer_max_seq_len_with_a_warning():
    """trtllm-build warns ("the model accuracy might be affected") and builds the longer engine: 200,000 tokens, above
    vLLM's 131,072 and the PyTorch backend's 32,768, is estimated, and the note's largest context is the pool's."""
    l4 = GPU(model="L4", product="NVIDIA-L4", memoryGB=24, memoryMiB=23034, architecture="ada")
    raw = trt_spec(200000, "trt", huggingFaceConfig="config.json")
    raw["inference"].update(maxNumBatchedTokens=8192, maxNumSeqs=8)
    est = estimate(parse_spec(raw), gpu=l4, hf_config=QWEN25_YARN)
    assert est.max_concurrency < 1
    note, = [n for n in est.notes if "reject requests longer than about" in n]
    largest = int(note.split("longer than about ")[1].split()[0])
    assert 32768 < largest == est.kv_cache_tokens < 200000
    raw["inference"].pop("tensorrtLlmBackend")
    with pytest.raises(InvalidWorkload):
        estimate(parse_spec(raw), gpu=l4, hf_config=QWEN25_YARN)
