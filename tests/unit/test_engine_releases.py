"""Older vLLM releases planned memory differently (inference.engineVersion): V0's own chunked prefill above 32K
tokens, and MLA cached as full K/V before v0.7.1."""

from __future__ import annotations

from rackfit.estimator import Layout, estimate
from rackfit.estimator.engines import MLA_LATENT, V0_CHUNK_TOKENS, V0_LONG_CONTEXT, serve
from rackfit.models import resolve
from rackfit.spec import parse_spec


def vllm(preset: str, context: int, version: str | None, tensor: int = 1):
    inference = dict(contextLength=context, **({"engineVersion": version} if version else {}))
    return parse_spec(dict(model=dict(preset=preset), workload="inference", parallelism=dict(tensor=tensor),
                           inference=inference))


def test_v0_chunks_its_profile_run_above_32k_tokens():
    long = estimate(vllm("llama-3.1-8b", V0_LONG_CONTEXT * 2, "0.7.0")).engine
    edge = estimate(vllm("llama-3.1-8b", V0_LONG_CONTEXT, "0.6.4")).engine
    assert long.max_num_batched_tokens == V0_CHUNK_TOKENS
    assert edge.max_num_batched_tokens == V0_LONG_CONTEXT  # not above 32K: the whole context, as before
    # a sliding-window model is left unchunked, as _set_default_args_v0 leaves it
    assert estimate(vllm("gpt-oss-120b", V0_LONG_CONTEXT * 2, "0.6.4")).engine.max_num_batched_tokens \
        == V0_LONG_CONTEXT * 2


def test_mla_is_cached_as_full_heads_before_the_release_that_brought_it():
    old_version = ".".join(map(str, (*MLA_LATENT[:2], MLA_LATENT[2] - 1)))
    new_version = ".".join(map(str, MLA_LATENT))
    a = resolve(vllm("deepseek-v3", 4096, None).model)
    for tensor in (1, 8):
        old = vllm("deepseek-v3", 4096, old_version, tensor)
        new = vllm("deepseek-v3", 4096, new_version, tensor)
        lay = Layout(tensor=tensor)
        old_tok = serve(old.inference, a, lay, 0, 0, None).per_token
        new_tok = serve(new.inference, a, lay, 0, 0, None).per_token
        assert new_tok == a.num_layers * (a.kv_lora_rank + a.qk_rope_head_dim) * 2
        heads = a.num_attention_heads // tensor
        assert old_tok == a.num_layers * 2 * heads * (a.qk_nope_head_dim + a.qk_rope_head_dim) * 2
        assert old_tok > new_tok
