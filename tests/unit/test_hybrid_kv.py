"""vLLM V1's hybrid KV cache groups (kvcache.vllm_kv_groups) and the sliding-layer counts of HF configs."""

from __future__ import annotations

from gpus import H100

from rackfit.estimator import Layout
from rackfit.estimator.engines import serve
from rackfit.estimator.kvcache import vllm_kv_groups, vllm_paged_layers, vllm_request_bytes
from rackfit.models import ModelArch, resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import parse_spec

# Gemma 3 27B's text model: 62 layers, every 6th global (10 full, 52 sliding of 1024 tokens), 16 KV heads of 128
GEMMA3_27B = dict(numLayers=62, hiddenSize=5376, intermediateSize=21504, numAttentionHeads=32, numKeyValueHeads=16,
                  headDim=128, vocabSize=262208, tieWordEmbeddings=True, slidingWindow=1024, slidingWindowLayers=52,
                  maxPositionEmbeddings=131072)
PER_LAYER = 2 * 16 * 128 * 2  # K and V, 16 heads of 128, bf16: bytes a token a layer


def _arch(**kw) -> ModelArch:
    fields = {"name": "t", "num_layers": 24, "hidden_size": 2880, "intermediate_size": 2880, "num_attention_heads": 64,
              "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 201088, "sliding_window": 128}
    return ModelArch(**{**fields, **kw})


def _spec(version: str, context: int = 8192):
    return parse_spec(dict(model=dict(architecture=GEMMA3_27B), workload="inference",
                           inference=dict(contextLength=context, engineVersion=version, gpuMemoryUtilization=0.95)))


def test_gemma3_groups_pad_to_70_layers():
    a = resolve(_spec("0.19.0").model)
    # _get_kv_cache_groups_uniform_page_size: group size min(10, 52) = 10; 1 full group, cdiv(52, 10) = 6 sliding
    assert vllm_kv_groups(a, 1, hybrid=True, spread=1.5) == (10, 1, 6)
    assert vllm_paged_layers(a, 1, hybrid=True, spread=1.5) == 70
    # the hybrid manager off (before 0.9.1): unify_hybrid_kv_cache_specs makes every layer full attention
    assert vllm_kv_groups(a, 1, hybrid=False) == (62, 1, 0)


def test_group_size_spread_by_release():
    # gpt-oss-20b + a drafter layer: 13 full, 12 sliding. From 0.12.0 (1.25) and 0.18.0 (1.5): 13 + 13 padded;
    # before, the group size is the smaller count: cdiv(13, 12) = 2 full groups + 1 sliding group of 12
    a = _arch(num_layers=25, sliding_window_layers=12)
    assert vllm_kv_groups(a, 1, hybrid=True, spread=1.25) == (13, 1, 1)
    assert vllm_paged_layers(a, 1, hybrid=True, spread=1.5) == 26
    assert vllm_kv_groups(a, 1, hybrid=True, spread=0.0) == (12, 2, 1)
    assert vllm_paged_layers(a, 1, hybrid=True) == 36
    # gpt-oss-20b itself: 12 + 12, no padding
    assert vllm_paged_layers(_arch(sliding_window_layers=12), 1, hybrid=True) == 24
    # every layer sliding (Mistral 7B v0.1): one group of all layers
    assert vllm_kv_groups(_arch(sliding_window_layers=24), 1, hybrid=True) == (24, 0, 1)


def test_request_bytes_as_max_concurrency_counts_them():
    a = resolve(_spec("0.19.0").model)
    page = 16 * PER_LAYER
    # full group: cdiv(8192, 16) = 512 blocks; each sliding group cdiv(min(1023 + 8192, 8192), 16) + 1 = 513
    expect = 10 * page * (512 + 6 * 513)
    assert vllm_request_bytes(a, "bf16", Layout(), 8192, 8192, hybrid=True, spread=1.5) == expect
    # a 2,048-token prefill chunk: cdiv(1023 + 2048, 16) + 1 = 193 blocks a sliding group
    assert vllm_request_bytes(a, "bf16", Layout(), 8192, 2048, hybrid=True) == 10 * page * (512 + 6 * 193)


def test_serve_uses_groups_by_release():
    a = resolve(_spec("0.19.0").model)
    new = serve(_spec("0.19.0").inference, a, Layout(), 0, 0, H100)
    assert new.per_token == 70 * PER_LAYER
    assert new.kv_tokens == new.kv_pool // (16 * 70 * PER_LAYER) * 16
    chunk = new.settings.max_num_batched_tokens
    sliding = -(-min(1023 + chunk, 8192) // 16) + 1
    assert new.per_request == 10 * 16 * PER_LAYER * (512 + 6 * sliding)
    # 0.9.0: no hybrid manager, all 62 layers cache the whole context
    old = serve(_spec("0.9.0").inference, a, Layout(), 0, 0, H100)
    assert old.per_token == 62 * PER_LAYER
    assert old.per_request == 62 * 8192 * PER_LAYER


def test_logged_tokens_from_concurrency_from_0_21():
    # v1/core/kv_cache_utils.py _report_kv_cache_config: up to 0.20.x "GPU KV cache size" is num_blocks // groups x
    # block (a token costs group_size x groups layers); from 0.21.0 it is max_concurrency x max_model_len for every
    # model, so a sliding-window hybrid logs one request's pages / contextLength a token (S1610, gpt-oss-120b)
    a = resolve(_spec("0.21.0").model)
    before = serve(_spec("0.20.0").inference, a, Layout(), 0, 0, H100)
    assert before.per_token == 70 * PER_LAYER
    after = serve(_spec("0.21.0").inference, a, Layout(), 0, 0, H100)
    assert after.per_request == before.per_request
    assert after.per_token == -(-after.per_request // 8192)
    # the logged tokens are the concurrency times the context (to a block), not the pool over 70 layers a token
    assert abs(after.kv_tokens - after.kv_pool / after.per_request * 8192) <= 16
    # at 65,536 tokens the sliding groups hold their window, not the context: more tokens logged than 70 layers allow
    long = serve(_spec("0.21.0", context=65536).inference, a, Layout(), 0, 0, H100)
    assert long.kv_tokens > long.kv_pool // (70 * PER_LAYER) * 1.5
    # a context off the 16-token block: the request's whole pages over the context
    odd = serve(_spec("0.21.0", context=8200).inference, a, Layout(), 0, 0, H100)
    assert odd.per_token == -(-odd.per_request // 8200)


def test_hf_sliding_window_pattern():
    gemma3 = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 62,
                                                       "hidden_size": 5376, "sliding_window": 1024,
                                                       "sliding_window_pattern": 6}}
    assert architecture_from_hf_config(gemma3).sliding_window_layers == 52
    # Gemma 3 4B's 34 layers: globals at 6, 12, 18, 24, 30 (1-based) -> 29 sliding; the default pattern is 6
    assert architecture_from_hf_config({"model_type": "gemma3_text", "num_hidden_layers": 34,
                                        "sliding_window": 1024}).sliding_window_layers == 29
    # Gemma 2 alternates; Cohere2's default pattern is 4
    assert architecture_from_hf_config({"model_type": "gemma2", "num_hidden_layers": 46,
                                        "sliding_window": 4096}).sliding_window_layers == 23
    assert architecture_from_hf_config({"model_type": "cohere2", "num_hidden_layers": 40,
                                        "sliding_window": 4096}).sliding_window_layers == 30
    # layer_types, where given, wins
    assert architecture_from_hf_config({"model_type": "gemma3_text", "num_hidden_layers": 4, "sliding_window": 512,
                                        "layer_types": ["sliding_attention", "full_attention"] * 2,
                                        "sliding_window_pattern": 6}).sliding_window_layers == 2
    # Qwen2 with use_sliding_window: layers from max_window_layers on slide
    assert architecture_from_hf_config({"model_type": "qwen2", "num_hidden_layers": 28, "sliding_window": 4096,
                                        "use_sliding_window": True,
                                        "max_window_layers": 21}).sliding_window_layers == 7


# google/gemma-3-4b-it's config.json (text_config abridged to the keys read here)
GEMMA3_4B_CONFIG = {"model_type": "gemma3", "text_config": {
    "model_type": "gemma3_text", "num_hidden_layers": 34, "hidden_size": 2560, "intermediate_size": 10240,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208,
    "sliding_window": 1024, "sliding_window_pattern": 6, "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "rope_local_base_freq": 10000.0,
    "rope_theta": 1000000.0}}


def test_gemma3_rope_caches_and_max_len():
    from rackfit.estimator.weights import rope_cache_bytes
    from rackfit.models.hf_config import max_context_from_hf_config, rope_cache_positions_from_hf_config

    # vLLM's _get_and_verify_max_len skips rope_scaling for gemma3: 131,072, not 8 x
    assert max_context_from_hf_config({**GEMMA3_4B_CONFIG["text_config"], **GEMMA3_4B_CONFIG}) == 131072
    # the global layers' linear cache (131,072 x 8) and the local layers' default one (131,072)
    assert rope_cache_positions_from_hf_config(GEMMA3_4B_CONFIG) == 131072 * 9
    spec = parse_spec(dict(model=dict(huggingFaceConfig="google/gemma-3-4b-it"), workload="inference"))
    a = resolve(spec.model, hf_config=GEMMA3_4B_CONFIG)
    assert a.sliding_window_layers == 29 and a.max_position_embeddings == 131072
    assert rope_cache_bytes(a, "vllm") == 131072 * 9 * 256 * 2  # 576 MiB, bf16
    # Gemma 3 1B: no scaling, two caches of 32,768
    one_b = {"model_type": "gemma3_text", "max_position_embeddings": 32768, "rope_scaling": None}
    assert rope_cache_positions_from_hf_config(one_b) == 65536
    # other models: one cache, the field unset
    assert rope_cache_positions_from_hf_config({"model_type": "llama", "max_position_embeddings": 131072}) == 0


# Llama 4 Scout: 48 layers, 36 chunked (attention_chunk_size 8192) and 12 global, 8 KV heads of 128
def _scout(version: str | None, context: int, allow: bool | None = None, **inference):
    inf = dict(contextLength=context, gpuMemoryUtilization=0.9, **inference)
    if version:
        inf["engineVersion"] = version
    if allow is not None:
        inf["chunkedLocalAttentionHybrid"] = allow
    return parse_spec(dict(model=dict(preset="llama-4-scout"), workload="inference", parallelism=dict(tensor=8),
                           inference=inf))


def test_chunked_attention_groups_and_request():
    a = resolve(_scout("0.14.0", 8_388_608).model)
    assert (a.attention_chunk_size, a.chunked_attention_layers) == (8192, 36)
    # paged apart: 12 full + 36 chunked layers, groups of 12, 4 groups, no padding
    assert vllm_kv_groups(a, 1, hybrid=True, chunked=True) == (12, 1, 3)
    assert vllm_paged_layers(a, 1, hybrid=True, chunked=True) == 48
    # not paged apart: one group of every layer, each caching the whole context
    assert vllm_kv_groups(a, 1, hybrid=True) == (48, 1, 0)
    per_layer = 2 * 1 * 128 * 2  # one KV head a rank at tensor 8, bf16
    page = 16 * per_layer
    # ChunkedLocalAttentionSpec: cdiv(min(8192 + 8192, 8,388,608), 16) = 1024 blocks a chunked group
    expect = 12 * page * (8_388_608 // 16 + 3 * 1024)
    assert vllm_request_bytes(a, "bf16", Layout(tensor=8), 8_388_608, 8192, hybrid=True, chunked=True) == expect
    # a context under chunk + batched tokens: the chunked groups need the whole context, as a full layer does
    assert vllm_request_bytes(a, "bf16", Layout(tensor=8), 8192, 8192, hybrid=True, chunked=True) == \
        vllm_request_bytes(a, "bf16", Layout(tensor=8), 8192, 8192, hybrid=True)


def test_chunked_hybrid_by_release_and_setting():
    from rackfit.estimator.kvcache import vllm_chunked_hybrid
    on = [v for v in ("0.10.0", "0.10.1", "0.12.0", "0.13.0", "0.14.0", "0.19.0", None)
          if vllm_chunked_hybrid(_scout(v, 8192).inference)]
    # the release's default: on in 0.10.0 and from 0.14.0 (a spec without a release is a current one)
    assert on == ["0.10.0", "0.14.0", "0.19.0", None]
    assert vllm_chunked_hybrid(_scout("0.12.0", 8192, allow=True).inference)
    assert not vllm_chunked_hybrid(_scout("0.19.0", 8192, allow=False).inference)
    # before 0.10.0 ChunkedLocalAttentionSpec did not exist, whatever the variable; an EAGLE drafter turns it off
    assert not vllm_chunked_hybrid(_scout("0.9.2", 8192, allow=True).inference)
    assert not vllm_chunked_hybrid(_scout("0.19.0", 8192, speculativeMethod="eagle3").inference)


def test_chunked_attention_decides_a_long_context_start():
    # S773: 8 x H200 at 8,388,608 tokens: the 48 layers in full need more than the pool; 12 full layers do not
    from rackfit.catalog.types import GPU
    from rackfit.estimator import estimate
    h200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")
    on = estimate(_scout("0.12.0", 8_388_608, allow=True), gpu=h200)
    off = estimate(_scout("0.12.0", 8_388_608), gpu=h200)
    assert on.engine_starts and not off.engine_starts
    assert on.kv_cache_tokens == off.kv_cache_tokens  # the same 48 layers' worth a logged token
    assert 1.8 < on.max_concurrency < 1.9  # the log's 1.86x


def test_hf_chunked_layers_from_no_rope_layers():
    cfg = {"model_type": "llama4", "text_config": {"model_type": "llama4_text", "num_hidden_layers": 8,
                                                   "hidden_size": 512, "intermediate_size": 1024,
                                                   "num_attention_heads": 8, "num_key_value_heads": 2,
                                                   "vocab_size": 1000, "attention_chunk_size": 8192,
                                                   "no_rope_layers": [1, 1, 1, 0, 1, 1, 1, 0]}}
    arch = architecture_from_hf_config(cfg)
    assert (arch.attention_chunk_size, arch.chunked_attention_layers) == (8192, 6)


def test_chunked_attention_errors_name_the_field():
    import pytest

    from rackfit.errors import InvalidWorkload
    base = dict(GEMMA3_27B, slidingWindow=None, slidingWindowLayers=None)
    for extra, field in ((dict(attentionChunkSize=8192, chunkedAttentionLayers=63), "chunkedAttentionLayers"),
                         (dict(attentionChunkSize=8192, slidingWindow=1024), "attentionChunkSize")):
        arch = {k: v for k, v in {**base, **extra}.items() if v is not None}
        spec = parse_spec(dict(model=dict(architecture=arch), workload="inference",
                               inference=dict(contextLength=8192)))
        with pytest.raises(InvalidWorkload) as err:
            resolve(spec.model)
        assert err.value.errors[0][0] == f"spec.model.architecture.{field}"
