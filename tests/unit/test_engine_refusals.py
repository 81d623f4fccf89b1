"""Where a serving engine would not start although its KV cache was sized: a block-scaled fp8 checkpoint split
into shards that are not whole blocks (vLLM/SGLang fp8.py), and, before vLLM 0.21.0, CUDA graphs captured after the
cache in what gpuMemoryUtilization leaves (engines.py `fp8_block_refusal`, `graph_capture_refusal`)."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engines import V0_CHUNK_TOKENS, V0_CHUNK_TOKENS_BEFORE, V0_LONG_CONTEXT
from rackfit.spec import parse_spec

# Qwen/Qwen3-30B-A3B-FP8's config.json, the parts rackfit reads: 128 experts of width 768, fp8 per 128x128 block
QWEN3_30B_FP8 = {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "intermediate_size": 6144,
                 "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
                 "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768,
                 "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                 "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                         "weight_block_size": [128, 128]}}
H100 = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")
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
    # 0.98 of a 24 GB card leaves ~0.47 GiB: less than the CUDA context, the graph pool and the sampler's warm-up
    old = llama_on_3090("0.10.1", 0.98)
    assert old.max_concurrency == 0 and any("would die at CUDA graph capture" in n for n in old.notes)
    assert llama_on_3090("0.10.1", 0.90).max_concurrency > 1          # the default 0.9 leaves room
    assert llama_on_3090("0.10.1", 0.98, graphs=False).max_concurrency > 1  # --enforce-eager captures none
    # before 0.9.1 the context was inside the budget (engines.py V1_CONTEXT_IN_BUDGET_UNTIL): at 0.96 it leaves room
    # for the graph pool (0.9 GiB as vLLM 0.19.0 logged it, GRAPH_PRIVATE_BYTES) on 0.8.5, not on 0.10.1
    assert llama_on_3090("0.8.5", 0.96).max_concurrency > 1
    assert llama_on_3090("0.10.1", 0.96).max_concurrency == 0
    assert llama_on_3090("0.8.5", 0.98).max_concurrency == 0
    assert llama_on_3090(None, 0.98).max_concurrency > 1              # current releases count graphs in the budget
    assert llama_on_3090("0.21.0", 0.98).max_concurrency > 1


def test_v0_chunk_was_512_tokens_before_0_6_5():
    def chunk(version):
        spec = parse_spec(dict(model={"preset": "llama-3.1-8b"}, workload="inference",
                               inference=dict(contextLength=V0_LONG_CONTEXT + 2000, engineVersion=version)))
        return estimate(spec).engine.max_num_batched_tokens
    assert chunk("0.6.4") == V0_CHUNK_TOKENS_BEFORE == 512
    assert chunk("0.6.5") == chunk("0.7.3") == V0_CHUNK_TOKENS == 2048
