"""Where a serving engine would not start although its KV cache was sized: a block-scaled fp8 checkpoint split
into shards that are not whole blocks (vLLM/SGLang fp8.py), and vLLM's start-up outside the KV cache's budget: the
free-memory check at init_device, CUDA graphs captured after the cache before 0.20.0 and the sampler's warm-up after
them (engines.py `fp8_block_refusal`, `startup_refusal`; startup.py)."""

from __future__ import annotations

from gpus import H100

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_defaults import V0_CHUNK_TOKENS, V0_CHUNK_TOKENS_BEFORE, V0_LONG_CONTEXT
from rackfit.spec import parse_spec

# Qwen/Qwen3-30B-A3B-FP8's config.json, the parts rackfit reads: 128 experts of width 768, fp8 per 128x128 block
QWEN3_30B_FP8 = {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "intermediate_size": 6144,
                 "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
                 "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768,
                 "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                 "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                         "weight_block_size": [128, 128]}}
RTX_3090 = GPU(model="RTX 3090", product="RTX 3090", memoryGB=24, memoryMiB=24576, architecture="ampere")


def served(config, layout, engine="vllm", gpu=H100, **inference):
    spec = parse_spec(dict(model={"huggingFaceConfig": "config.json"}, workload="inference",
                           inference=dict(engine=engine, contextLength=8192, **inference)))
    return estimate(spec, layout, hf_config=config, gpu=gpu)


def test_fp8_blocks_split_into_partial_shards_are_refused():
    # 768 / 4 = 192 columns per GPU, not a multiple of 128: vLLM and SGLang refuse to load it
    for engine in ("vllm", "sglang"):
        e = served(QWEN3_30B_FP8, Layout(tensor=4), engine)
        assert e.max_concurrency == 0
        assert any("192 columns per GPU, not a multiple of 128" in n and "expert parallelism" in n for n in e.notes)
    # 768 / 2 = 384 = 3 x 128 loads, and expert parallelism keeps each expert whole
    assert served(QWEN3_30B_FP8, Layout(tensor=2)).max_concurrency > 1
    assert served(QWEN3_30B_FP8, Layout(tensor=4, expert=4)).max_concurrency > 1


def test_fp8_block_check_leaves_other_checkpoints_alone():
    per_tensor = {**QWEN3_30B_FP8, "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}}
    bf16 = {k: v for k, v in QWEN3_30B_FP8.items() if k != "quantization_config"}
    for config in (per_tensor, bf16):
        assert served(config, Layout(tensor=4)).max_concurrency > 1
    # transformers runs no tensor-parallel shards of this kind: nothing to refuse
    spec = parse_spec(dict(model={"huggingFaceConfig": "config.json"}, workload="inference",
                           inference=dict(engine="transformers", contextLength=8192)))
    assert not any("not a multiple" in n for n in estimate(spec, Layout(tensor=4), hf_config=QWEN3_30B_FP8).notes)


def llama_on_3090(version, util, graphs=True):
    spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                           inference=dict(contextLength=4096, gpuMemoryUtilization=util, cudaGraphs=graphs,
                                          **({"engineVersion": version} if version else {}))))
    return estimate(spec, Layout(), gpu=RTX_3090)


def test_graphs_captured_outside_the_budget_must_fit_in_what_it_leaves():
    # 0.97 of a 24 GB card leaves ~0.7 GiB: with the profile's freed activations, room for the graph pool (0.66 GiB:
    # the 512-token forward and the pieces, GRAPH_PRIVATE_BYTES; no FlashAttention 3 split buffers off Hopper) but not
    # for the sampler's warm-up after it
    old = llama_on_3090("0.10.1", 0.97)
    assert old.max_concurrency == 0 and not old.engine_starts
    assert any("would die warming up the sampler" in n and "the CUDA graphs (0.66 GiB)" in n for n in old.notes)
    assert llama_on_3090("0.10.1", 0.90).engine_starts                  # the default 0.9 leaves room
    assert llama_on_3090("0.10.1", 0.97, graphs=False).engine_starts    # --enforce-eager captures none
    # before 0.9.1 the context was inside the budget (engines.py V1_CONTEXT_IN_BUDGET_UNTIL): at 0.96 it leaves room
    # on 0.8.5, not on 0.10.1
    assert llama_on_3090("0.8.5", 0.96).engine_starts
    assert not llama_on_3090("0.10.1", 0.96).engine_starts
    assert not llama_on_3090("0.8.5", 0.98).engine_starts
    # from 0.20.0 the graphs are inside the budget (GRAPHS_IN_BUDGET): only the sampler's warm-up comes after the cache
    for version in (None, "0.20.0", "0.21.0"):
        assert llama_on_3090(version, 0.97).engine_starts
    assert not llama_on_3090("0.19.1", 0.97).engine_starts


def test_free_memory_at_start_up_must_cover_the_requested_share():
    """vLLM from 0.9.1 refuses to start when util x total exceeds what is free at init_device (request_memory: "Free
    memory on device ... is less than desired GPU memory utilization"): the bare CUDA context on a 3090
    (context.context_before_cublas: 0.38 GiB, its 82 SMs' stack reservation in place of the H200's 132) is more than 1%
    of a 24 GB card, less than 2%; from 0.33.0 (startup.CUBLAS_BEFORE_SNAPSHOT) cuBLAS's handles and torch's 8 MiB
    workspace join it, 0.54 GiB, more than 2%. 0.8.5 has no such check."""
    refused = lambda v, util: any("would refuse to start: at start-up" in n  # noqa: E731
                                  for n in llama_on_3090(v, util, graphs=False).notes)
    for version in ("0.9.2", "0.10.1", "0.19.0", "0.21.0", None):
        e = llama_on_3090(version, 0.99, graphs=False)
        assert not e.engine_starts and any("would refuse to start: at start-up" in n for n in e.notes)
    versions = ("0.9.2", "0.19.0", "0.32.0", "0.33.0", None)
    assert [refused(v, 0.98) for v in versions] == [False, False, False, True, True]
    assert llama_on_3090("0.8.5", 0.99, graphs=False).engine_starts
    assert llama_on_3090("0.19.0", 0.97, graphs=False).engine_starts


def test_nccl_before_the_snapshot_comes_out_of_the_headroom():
    """From 0.11.0 NCCL's communicators are set up before vLLM's baseline snapshot (startup.py NCCL_BEFORE_SNAPSHOT):
    outside the budget, they shrink what the graph capture and the sampler's warm-up have, not the KV cache."""
    from rackfit.estimator.engines import outside_snapshot_bytes as outside_budget_bytes
    from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP
    from rackfit.estimator.startup import NCCL_EP_GROUP_NVLINK, NCCL_INIT_NVLINK
    inf = lambda v: parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",  # noqa: E731
                                    inference=dict(contextLength=8192, engineVersion=v))).inference
    # the expert-parallel group's communicator: every model through 0.13.0, MoE models only from 0.14.0
    assert outside_budget_bytes(inf("0.14.0"), Layout(tensor=2), H100, 7, False) == 7 + NCCL_INIT_NVLINK
    with_ep = 7 + NCCL_INIT_NVLINK + NCCL_EP_GROUP_NVLINK
    assert outside_budget_bytes(inf("0.14.0"), Layout(tensor=2), H100, 7, moe=True) == with_ep
    assert outside_budget_bytes(inf("0.13.0"), Layout(tensor=2), H100, 7, False) == with_ep
    assert outside_budget_bytes(inf("0.14.0"), Layout(pipeline=2), H100, 7, moe=True) == 7 + NCCL_INIT_NVLINK
    assert outside_budget_bytes(inf("0.10.1"), Layout(tensor=2), H100, 7, False) == 7       # snapshot before NCCL
    assert outside_budget_bytes(inf("0.11.0"), Layout(), H100, 7, False) == 7               # one GPU: no communicator
    from rackfit.estimator.pcie_serving import pcie_comm_bytes
    assert outside_budget_bytes(inf("0.14.0"), Layout(tensor=2), RTX_3090, 7, False) == 7 + pcie_comm_bytes(2)  # PCIe

    def llama_70b(version, util):
        spec = parse_spec(dict(model={"preset": "llama-3.1-70b"}, workload="inference", precision="fp8",
                               parallelism={"tensor": 2},
                               inference=dict(contextLength=8192, engineVersion=version, gpuMemoryUtilization=util)))
        return estimate(spec, Layout(tensor=2), gpu=H100)
    # the same cache on 0.10.1 and 0.11.0 but for the "ep" group's communicator (pcie_serving.side_groups: 0.10.1's
    # snapshot predates it, so its budget pays for it), less headroom on 0.11.0; and 0.11.0's profile counts only
    # torch's tensor communicator of the two NCCL_NVLINK_GROUP prices (vllm_tp.py)
    old, new = llama_70b("0.10.1", 0.96), llama_70b("0.11.0", 0.96)
    per_token = 80 * 2 * 4 * 128 * 2  # 80 layers, K and V, 4 of 8 KV heads a rank, 128 wide, bf16
    moved = NCCL_EP_GROUP_NVLINK + NCCL_NVLINK_GROUP // 2
    assert abs((new.kv_cache_tokens - old.kv_cache_tokens) * per_token - moved) < 16 * per_token
    assert llama_70b("0.10.1", 0.96).engine_starts and not llama_70b("0.11.0", 0.96).engine_starts


def test_v0_chunk_was_512_tokens_before_0_6_5():
    def chunk(version):
        spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                               inference=dict(contextLength=V0_LONG_CONTEXT + 2000, engineVersion=version)))
        return estimate(spec).engine.max_num_batched_tokens
    assert chunk("0.6.4") == V0_CHUNK_TOKENS_BEFORE == 512
    assert chunk("0.6.5") == chunk("0.7.3") == V0_CHUNK_TOKENS == 2048
    # chunked prefill by itself above 32K only from 0.5.3 (arg_utils.py use_long_context): 0.5.2 profiles the whole
    # context, so it sizes a smaller cache for the same 34,768 tokens than 0.5.3
    assert chunk("0.5.3") == 512 and chunk("0.5.2") == V0_LONG_CONTEXT + 2000

    def tokens(version):
        spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                               inference=dict(contextLength=V0_LONG_CONTEXT + 2000, engineVersion=version)))
        return estimate(spec, gpu=H100).kv_cache_tokens
    assert tokens("0.5.2") < tokens("0.5.3")


def test_v0_runs_nothing_after_its_graphs_v1_warms_the_sampler_up():
    """V0's _warm_up_model (worker.py, 0.6.4) captures the graphs and stops; V1's compile_or_warm_up_model runs the
    sampler's warm-up after capture_model: with 1 GiB left, 0.8 GiB of graphs fit on V0, not with 0.5 GiB of sampler."""
    from rackfit.estimator.startup import warmup_refusal
    from rackfit.units import GiB
    inf = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                          inference=dict(contextLength=4096, engineVersion="0.6.4"))).inference
    room = dict(util=0.9, total=10 * GiB, budget=9 * GiB, activations=0, graphs=int(0.8 * GiB), sampler=GiB // 2,
                outside=0, graphs_outside=True)
    assert warmup_refusal(inf, v1=False, **room) is None
    reason = warmup_refusal(inf, v1=True, **room)
    assert "would die warming up the sampler" in reason and "need 1.30 GiB, more than the 1.00 GiB left" in reason
    # graphs larger than the room: it dies at capture, before the sampler
    assert "would die at CUDA graph capture" in warmup_refusal(inf, v1=False, **{**room, "graphs": 2 * GiB})
    # graphs inside the budget (from GRAPHS_IN_BUDGET): only the sampler's warm-up has to fit
    assert warmup_refusal(inf, v1=True, **{**room, "graphs_outside": False}) is None


def test_v0_under_pipeline_checks_one_request_against_one_virtual_engines_share():
    """vLLM 0.8.x falls back to V0 under pipeline parallel without Ray, and V0 splits the cache's blocks between
    pipeline_parallel_size virtual engines: 0.8.x's raise_if_cache_size_invalid refuses a request longer than one
    share, though the whole pool would hold it (S930). 0.7.x checks the whole count; 0.9.0 runs V1."""
    qwen = {"model": {"preset": "qwen2.5-7b", "architecture": {"maxPositionEmbeddings": 1 << 20}},
            "workload": "inference", "parallelism": {"pipeline": 2}}

    def run(version: str, context: int):
        spec = parse_spec({**qwen, "inference": dict(contextLength=context, engineVersion=version)})
        return estimate(spec, gpu=RTX_3090)

    whole = run("0.8.5", 8192).kv_cache_tokens
    share = whole // 16 // 2 * 16
    over = share + 16  # past one share, well inside the whole pool
    assert whole >= 2 * over - 32
    refused = run("0.8.5", over)
    assert refused.engine_starts is False
    assert any("virtual engines" in n and f"{share} tokens" in n for n in refused.notes)
    assert run("0.8.5", share).engine_starts is True
    assert run("0.7.3", over).engine_starts is True
    assert run("0.9.0", over).engine_starts is True
