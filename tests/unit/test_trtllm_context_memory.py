"""TensorRT-LLM's TRT-engine backend: the execution context's memory ("[MemUsageChange] Allocated X MiB for execution
context memory", ICudaEngine::getDeviceMemorySizeV2), trtllm.engine_context_bytes: the widest layer's live tensors at
max_num_tokens plus the output projection's 16-bit output for max_batch_size sequences, computed by hand from the
shapes and checked against the public logs that print the line with their build settings."""

from __future__ import annotations

from rackfit.estimator import Layout, trtllm
from rackfit.estimator.engine_profile import forward_peak_bytes
from rackfit.estimator.engines import serve
from rackfit.models import ModelArch, resolve
from rackfit.spec import parse_spec

MiB = 1 << 20
ONE = Layout(tensor=1)


def _qwen2(hidden: int, inter: int, heads: int, kv: int, head_dim: int, layers: int, vocab: int) -> ModelArch:
    return ModelArch(name="qwen2", num_layers=layers, hidden_size=hidden, intermediate_size=inter,
                     num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, vocab_size=vocab)


# Qwen2.5-Coder-0.5B-Instruct (S190), DeepSeek-R1-Distill-Qwen-1.5B and -7B (Qwen2 shapes, config.json)
QWEN_05B = _qwen2(896, 4864, 14, 2, 64, 24, 151_936)
QWEN_15B = _qwen2(1536, 8960, 12, 2, 128, 28, 151_936)
QWEN_7B = _qwen2(3584, 18944, 28, 4, 128, 28, 152_064)


def _logged(mib: float, got: int) -> bool:
    # the line prints two decimals; TensorRT's small tensors (sequence offsets, ids) add a few kilobytes
    return 0 <= mib * MiB - got < 0.02 * MiB


def test_issue_1188_context_line_reproduced():
    # NVIDIA/TensorRT-LLM issue 1188 (2024-11-21, S190): int8 weight-only Qwen2.5-Coder-0.5B, trtllm-build's defaults
    # (2,048 slots, 8,192 tokens): "Allocated 773.51 MiB for execution context memory". Unfused MLP (int8): residual,
    # normed copy, gate and up outputs at 8,192 tokens; plus the lm_head's [2048, 151936] float16 output
    layer = 8192 * (2 * 896 + 2 * 4864) * 2
    head = 2048 * 151_936 * 2
    got = trtllm.engine_context_bytes(QWEN_05B, ONE, 8192, 2048, in_place_mlp=True)
    assert got == layer + head == 811_073_536
    assert _logged(773.51, got)


def test_int4_weight_only_logs_reproduced():
    # a blog's TensorRT-LLM 0.17.0.post1 walkthrough on Windows (sm89): convert_checkpoint.py --use_weight_only
    # --weight_only_precision int4, trtllm-build --gemm_plugin float16 (defaults: 2,048 slots, 8,192 tokens), then
    # benchmarks/python/benchmark.py: "Allocated 921.51 MiB" (DeepSeek-R1-Distill-Qwen-1.5B) and "Allocated 1298.01
    # MiB" (DeepSeek-R1-Distill-Qwen-7B, whose 152,064-token vocabulary adds the half MiB)
    got_15 = trtllm.engine_context_bytes(QWEN_15B, ONE, 8192, 2048, in_place_mlp=True)
    got_7 = trtllm.engine_context_bytes(QWEN_7B, ONE, 8192, 2048, in_place_mlp=True)
    assert got_15 == 8192 * (2 * 1536 + 2 * 8960) * 2 + 2048 * 151_936 * 2
    assert got_7 == 8192 * (2 * 3584 + 2 * 18944) * 2 + 2048 * 152_064 * 2
    assert _logged(921.51, got_15) and _logged(1298.01, got_7)


def test_head_is_added_not_overlaid():
    # the three logs are the layer PLUS the head: the larger of the two alone is hundreds of MiB short
    for arch, mib in ((QWEN_05B, 773.51), (QWEN_15B, 921.51), (QWEN_7B, 1298.01)):
        layer = trtllm.engine_context_bytes(arch, ONE, 8192, 0, in_place_mlp=True)
        head = 2048 * arch.vocab_size * 2
        assert max(layer, head) < mib * MiB - 100 * MiB


def test_fused_mlp_counts_the_swiglu_output():
    # 16-bit and FP8 builds fuse gate and up (fuse_gate_mlp): the SwiGLU step holds the residual, the [T, 2I] fused
    # output and the [T, I] activation, hidden + 3 x intermediate; the attention step is narrower here
    a = QWEN_7B
    assert trtllm.engine_context_bytes(a, ONE, 8192, 1) == 8192 * (3584 + 3 * 18944) * 2 + 152_064 * 2
    # one token of hidden less than engine_profile.forward_peak_bytes's vLLM count (3 x intermediate + 2 x hidden)
    assert forward_peak_bytes(a, ONE, 8192) - trtllm.engine_context_bytes(a, ONE, 8192, 0) == 8192 * 3584 * 2


def test_tensor_parallel_head_and_vocab_padding():
    # tensor 2: the MLP and attention widths halve; the vocabulary pads to a multiple of 2 (151,937 -> 151,938) and
    # the lm_head's local shard [slots, 75,969] lives beside the all-gathered [slots, 151,938]
    a = _qwen2(896, 4864, 14, 2, 64, 24, 151_937)
    two = Layout(tensor=2)
    layer = 8192 * (2 * 896 + 2 * 4864 // 2) * 2
    assert trtllm.engine_context_bytes(a, two, 8192, 16, in_place_mlp=True) == (
        layer + 16 * 151_938 * 2 + 16 * 75_969 * 2)


def test_attention_step_when_wider():
    # a narrow MLP (intermediate = hidden) and many heads: the attention step (q, k/v, attention output, residual and
    # normed copy) is the widest, as forward_peak_bytes counts it
    a = ModelArch(name="t", num_layers=2, hidden_size=1024, intermediate_size=1024, num_attention_heads=32,
                  num_key_value_heads=32, head_dim=128, vocab_size=32_000)
    attention = 2 * 1024 + 4096 + 2 * 4096 + 4096
    assert trtllm.engine_context_bytes(a, ONE, 4096, 0) == 4096 * attention * 2


def test_serve_counts_the_context_for_trt_engines():
    spec = parse_spec(dict(model=dict(architecture=dict(
        numLayers=24, hiddenSize=896, intermediateSize=4864, numAttentionHeads=14, numKeyValueHeads=2, headDim=64,
        vocabSize=151936, attentionBias=True, maxPositionEmbeddings=32768)), workload="inference", precision="int8",
        inference=dict(engine="tensorrt-llm", tensorrtLlmBackend="trt", contextLength=32768,
                       maxNumBatchedTokens=8192, maxNumSeqs=2048)))
    a = resolve(spec.model)
    s = serve(spec.inference, a, ONE, 0, 0, None)
    expected = (trtllm.engine_context_bytes(a, ONE, 8192, 2048)
                + trtllm.engine_runtime_buffer_bytes(151_936, 1, 2048, 32_768)
                + trtllm.engine_decoder_total_bytes(151_936, 1, 2048, 32_768))
    assert s.activations == expected


def test_an_int8_or_int4_engine_is_counted_in_place():
    """The spec's precision reaches the engine model: an int8/int4 TRT build's unfused MLP (in place), any other the
    fused SwiGLU step, intermediate - hidden 16-bit values a token more, at the engine's max_num_tokens."""
    from rackfit.estimator.engines import settings

    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(engine="tensorrt-llm", tensorrtLlmBackend="trt", contextLength=4096)))
    a = resolve(spec.model)
    served = {p: serve(spec.inference, a, ONE, 16 << 30, 0, None, p).activations for p in ("bf16", "int8", "int4")}
    s = settings(spec.inference, None, 1, 1, a)
    fused = trtllm.engine_context_bytes(a, ONE, s.max_num_batched_tokens, s.max_num_seqs)
    in_place = trtllm.engine_context_bytes(a, ONE, s.max_num_batched_tokens, s.max_num_seqs, in_place_mlp=True)
    assert fused - in_place == s.max_num_batched_tokens * (a.intermediate_size - a.hidden_size) * 2  # 16-bit
    assert served["int8"] == served["int4"] == served["bf16"] - (fused - in_place)
