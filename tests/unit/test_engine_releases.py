"""Older vLLM releases planned memory differently (inference.engineVersion): V0's own chunked prefill above 32K
tokens and its sampler, MLA cached as full K/V before v0.7.1, and V1's batch defaults by release."""

from __future__ import annotations

from gpus import H100

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import V0_CHUNK_TOKENS, V0_LONG_CONTEXT, settings
from rackfit.estimator.engines import MLA_LATENT, serve
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


def test_v0_chunks_mla_models_too():
    """0.7.1-0.7.3 turned chunked prefill on above 32K before VllmConfig switched it off again for MLA, leaving
    max_num_batched_tokens at the chunk: DeepSeek's profile run is one chunk, as any other model's."""
    assert estimate(vllm("deepseek-v3", V0_LONG_CONTEXT * 2, "0.7.2", tensor=8)).engine.max_num_batched_tokens \
        == V0_CHUNK_TOKENS


def test_v0_samples_by_sort_on_the_driver_and_holds_the_forwards_hidden_states():
    """V0's Sampler.forward sorts the fp32 logits of its 256 dummy sequences (_apply_top_k_top_p; FlashInfer only with
    VLLM_USE_FLASHINFER_SAMPLER), gathered whole to the driver rank, while execute_model keeps the forward's hidden
    states: 38 bytes a logit and max_num_batched_tokens hidden rows, at tensor 1 as at 2 (S1 and S2 logged 1.26 GiB
    for Llama 3 8B at 8,192 tokens on both)."""
    a = resolve(vllm("llama-3.1-8b", 8192, None).model)
    for tensor in (1, 2):
        plan = serve(vllm("llama-3.1-8b", 8192, "0.6.4", tensor).inference, a, Layout(tensor=tensor), 0, 0, None)
        assert plan.activations == 256 * a.vocab_size * 38 + 8192 * a.hidden_size * 2
        inf = vllm("llama-3.1-8b", 8192, "0.6.4", tensor).inference
        flashinfer = inf.model_copy(update={"flashinfer_sampler": True})
        assert serve(flashinfer, a, Layout(tensor=tensor), 0, 0, None).activations < plan.activations
    assert abs(plan.activations / 2**30 - 1.26) < 0.05


def test_v1_batch_defaults_by_release():
    """_set_default_args_v1: 0.8.0-0.8.3 8192 tokens on devices named H100/H200 and 1024 sequences everywhere; 0.8.4
    those names 8192/1024, the rest 2048/256; 0.8.5 any device of 70 GiB or more; from 0.9.0 not A100."""
    b200 = GPU(model="B200", product="B200", memoryGB=180, memoryMiB=183359, architecture="blackwell")
    gh200 = GPU(model="GH200", product="GH200", memoryGB=96, memoryMiB=97871, architecture="hopper")
    a100 = GPU(model="A100", product="A100-SXM4-80GB", memoryGB=80, memoryMiB=81920, architecture="ampere")
    l40s = GPU(model="L40S", product="L40S", memoryGB=48, memoryMiB=46068, architecture="ada")

    def batch(gpu, version):
        inf = vllm("llama-3.1-8b", 8192, version).inference
        s = settings(inf, gpu, 1, 1)
        return s.max_num_batched_tokens, s.max_num_seqs

    assert [batch(b200, v) for v in ("0.8.3", "0.8.4", "0.8.5", "0.9.0")] \
        == [(2048, 1024), (2048, 256), (8192, 1024), (8192, 1024)]
    assert [batch(gh200, v) for v in ("0.8.3", "0.8.4", "0.8.5", "0.9.0")] == [(8192, 1024)] * 4
    assert [batch(a100, v) for v in ("0.8.4", "0.8.5", "0.9.0", None)] \
        == [(2048, 256), (8192, 1024), (2048, 256), (2048, 256)]
    assert [batch(l40s, v) for v in ("0.8.0", "0.8.4", None)] == [(2048, 1024), (2048, 256), (2048, 256)]


def test_v1_keeps_gb10_on_the_small_batch_defaults_whatever_its_memory():
    """GB10's NVML has no memory query, so get_batch_defaults takes 0 bytes (0.29.0), and 0.33.0 keeps capability 12.1
    small by name: 2048 tokens and 256 sequences where a discrete card of its 119.7 GiB gets 8192 and 1024 (S904's
    log: "max_num_batched_tokens=2048")."""
    gb10 = GPU(model="GB10", product="GB10", memoryGB=128, memoryMiB=123085, architecture="blackwell")
    same_size = gb10.model_copy(update={"model": "RTX PRO 6000"})

    def batch(gpu, version):
        s = settings(vllm("llama-3.1-8b", 8192, version).inference, gpu, 1, 1)
        return s.max_num_batched_tokens, s.max_num_seqs

    assert [batch(gb10, v) for v in ("0.8.3", "0.11.0", "0.29.0", None)] \
        == [(2048, 1024), (2048, 256), (2048, 256), (2048, 256)]
    assert batch(same_size, "0.29.0") == (8192, 1024)


def sglang(gpu: GPU, tensor: int, version: str | None, pipeline: int = 1):
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                          parallelism=dict(tensor=tensor, pipeline=pipeline),
                          inference=dict(engine="sglang", **({"engineVersion": version} if version else {})))).inference
    return settings(inf, gpu, tensor, pipeline)


L4 = GPU(model="L4", product="L4", memoryGB=24, memoryMiB=23034, architecture="ada")
H200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")


def test_sglang_mem_fraction_static_by_tensor_size_before_0_4_6():
    """server_args.py ServerArgs.__post_init__ of 0.4.0-0.4.5: 0.88, 0.87, 0.85, 0.81, 0.79 at 1, 2, 4, 8, 16
    ranks whatever the GPU (at 8: 0.82 in 0.3.6, 0.83 before); S72 (0.4.3.post4, 4 x L4) logged 0.85, S73 (0.4.4,
    H100) 0.88."""
    assert [sglang(H100, t, "0.4.4").gpu_memory_utilization for t in (1, 2, 4, 8, 16)] \
        == [0.88, 0.87, 0.85, 0.81, 0.79]
    assert sglang(H100, 8, "0.3.6").gpu_memory_utilization == 0.82
    assert sglang(H100, 8, "0.3.5").gpu_memory_utilization == 0.83
    assert sglang(L4, 4, "0.4.3").gpu_memory_utilization == 0.85
    assert sglang(H200, 1, "0.4.5").gpu_memory_utilization == 0.88
    # the chunk and graph batch of those releases: 2048 and 8 (80 from tensor 4) below 25,000 MiB, else 8192 and 160
    s = sglang(L4, 4, "0.4.3")
    assert (s.max_num_batched_tokens, s.max_num_seqs) == (2048, 80)
    # the current formula plans less on the same L4s (reserve of chunk and graphs): the release decides
    assert sglang(L4, 4, None).gpu_memory_utilization < 0.85


def test_sglang_mem_fraction_static_from_0_4_6_to_0_5_2():
    """0.4.6: the table up to 81,920 MiB, (memory - 13 GiB) / memory above; 0.4.7: tensor x pipeline, and above 96 GiB
    min(f + 48 GiB (1 - f) / memory, (memory - 18 GiB) / memory); 0.4.8-0.5.2: memory less 9.5 + ranks / 2 GiB below 90
    GiB, 12 + ranks / 2 below 160."""
    assert sglang(H200, 1, "0.4.6").gpu_memory_utilization == (143771 - 13 * 1024) / 143771
    assert sglang(H100, 2, "0.4.7", pipeline=2).gpu_memory_utilization == 0.85  # 4 ranks
    assert sglang(H100, 2, "0.4.6", pipeline=2).gpu_memory_utilization == 0.87  # tensor alone
    h200 = min(0.88 + 48 * 1024 * 0.12 / 143771, (143771 - 18 * 1024) / 143771)
    assert sglang(H200, 1, "0.4.7").gpu_memory_utilization == h200
    assert sglang(H100, 8, "0.4.8").gpu_memory_utilization == round((81559 - 13.5 * 1024) / 81559, 3)
    assert sglang(H200, 1, "0.5.2").gpu_memory_utilization == round((143771 - 12.5 * 1024) / 143771, 3)
    # 0.5.3-0.5.9 share the reserve formula; from 0.5.10 (and unset, the current release) it adds the piecewise CUDA
    # graphs' 8 MiB per captured size (tests/unit/test_sglang_defaults.py)
    assert sglang(H200, 1, "0.5.3").gpu_memory_utilization == sglang(H200, 1, "0.5.9").gpu_memory_utilization
    assert sglang(H200, 1, "0.5.10").gpu_memory_utilization == sglang(H200, 1, None).gpu_memory_utilization


def test_engine_version_of_sglang_leaves_vllm_releases_alone():
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                          inference=dict(engine="sglang", engineVersion="0.4.3"))).inference
    assert not inf.vllm_before((0, 8)) and inf.sglang_before((0, 4, 6))
    assert not vllm("llama-3.1-8b", 8192, "0.4.3").inference.sglang_before((0, 4, 6))


def test_v0_warms_no_sampler_up_after_graph_capture():
    """V0's Worker.compile_or_warm_up_model only captures graphs (worker/worker.py, 0.6.4-0.7.3); V1 before 0.21.0
    warms the sampler up after them: at 0.97 of a 24 GB card the V1 release dies at capture, the V0 one starts."""
    rtx3090 = GPU(model="RTX 3090", product="RTX 3090", memoryGB=24, memoryMiB=24576, architecture="ampere")

    def starts(version):
        spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                               inference=dict(contextLength=8192, engineVersion=version, gpuMemoryUtilization=0.97)))
        return estimate(spec, gpu=rtx3090).engine_starts

    assert starts("0.7.0") and not starts("0.10.1")


def test_v1_0_8_under_pipeline_parallel_is_noted_as_v0():
    """0.8.x falls back to V0 for pipeline parallel without the Ray executor (_is_v1_supported_oracle, 0.8.5);
    0.9.0 admits mp. Noted only: the estimate stays V1's."""
    def spec(version, pipeline, engine="vllm"):
        inference = dict(engine=engine, contextLength=8192, **({"engineVersion": version} if version else {}))
        return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                               parallelism=dict(pipeline=pipeline), inference=inference))

    def noted(s):
        return any("runs its V0 engine under pipeline parallel" in n for n in estimate(s, gpu=H100).notes)
    assert noted(spec("0.8.0", 2)) and noted(spec("0.8.5", 4))
    assert not noted(spec("0.9.0", 2)) and not noted(spec("0.7.3", 2)) and not noted(spec("0.8.5", 1))
    assert not noted(spec(None, 2)) and not noted(spec("0.4.5", 2, engine="sglang"))
