"""TensorRT-LLM's TRT-engine backend: what createBuffers and createDecoder allocate before the KV cache
(trtllm.engine_runtime_buffer_bytes, trtllm.engine_decoder_total_bytes, trtllm.engine_sampling_workspace_bytes), the
bytes computed by hand from the source's shapes and checked against the two public logs that print both lines."""

from rackfit.estimator import trtllm

GiB = 1 << 30
MiB = 1 << 20


def test_sampling_workspace_top_k_formula():
    # getTopKWorkspaceSize<float>(slots, 1, TOP_K_MAX=1024, vocabPadded) (samplingTopKKernels.h): the logits copy
    # [slots, vocab] and the stage-1 candidates [slots, 1024 x 8] as int32 ids and float values, 256-byte aligned
    slots, vocab = 4096, 32000
    logits = 4 * slots * vocab                 # 524,288,000 (a multiple of 256)
    ids = 4 * slots * 1024 * 8                 # 134,217,728
    vals = 4 * slots * 1024 * 8
    assert trtllm.engine_sampling_workspace_bytes(vocab, 1, slots) == logits + ids + vals == 792_723_456


def test_sampling_workspace_pads_vocab_and_aligns():
    # vocab 151,936 at tensor 3 pads to 151,938; 7 slots: 4 x 7 x 151,938 = 4,254,264 -> 4,254,464 (256-aligned)
    assert trtllm.engine_sampling_workspace_bytes(151_936, 3, 7) == 4_254_464 + 2 * 4 * 7 * 1024 * 8


def test_runtime_buffers_by_hand():
    # logits [slots, vocab] float32; TransformerBuffers' and DecoderBuffers' two cache indirections [slots, 1, window]
    # int32; DecoderBuffers' logProbs and the slots' outputIds and logProbs [slots, 1, seq]
    slots, vocab, seq = 2048, 128_256, 8192
    assert trtllm.engine_runtime_buffer_bytes(vocab, 1, slots, seq) == slots * vocab * 4 + slots * 6 * seq * 4
    # a capped attention window sizes only the three cache indirections
    assert trtllm.engine_runtime_buffer_bytes(vocab, 1, slots, seq, attention_window=4096) == (
        slots * vocab * 4 + slots * (3 * 4096 + 3 * seq) * 4)
    # beam 4: every slot tensor x 4
    assert trtllm.engine_runtime_buffer_bytes(vocab, 1, slots, seq, beam=4) == (
        slots * 4 * vocab * 4 + slots * 4 * 6 * seq * 4)


def test_decoder_total_by_hand():
    slots, vocab, seq = 2048, 128_256, 8192
    state = slots * seq * 16                   # ids, parentIds, logProbs [slots, 1, seq]; logProbsTiled [seq, slots, 1]
    vocab_terms = slots * vocab * 4 * 3        # embedding bias, runtime logits, penalty workspace
    sampling = slots * vocab * 4 + 2 * 4 * slots * 1024 * 8
    assert trtllm.engine_decoder_total_bytes(vocab, 1, slots, seq) == state + vocab_terms + sampling
    # mid-2024's unconditional draft logits [slots, 1, vocab] float32
    assert trtllm.engine_decoder_total_bytes(vocab, 1, slots, seq, draft_logits=True) == (
        state + vocab_terms + sampling + slots * vocab * 4)
    # beam search: no sampling layer (DecodingMode::BeamSearch)
    beam = 4
    assert trtllm.engine_decoder_total_bytes(vocab, 1, slots, seq, beam) == (
        slots * beam * seq * 16 + slots * vocab * 4 * (1 + beam) + slots * beam * vocab * 4)


def test_trtllm_bench_readme_log_reproduced():
    # benchmarks/cpp README (trtllm-bench, 0.12.0.dev2024073000, H100): maxNumSequences 4,096, maxSequenceLen 4,098,
    # "Allocated 1.14 GB GPU memory for runtime buffers", "Allocated 4.35 GB GPU memory for decoder" (GB = GiB in
    # MemoryCounters::bytesToString). The cache, 62.99 GiB for 294,848 tokens, is 229,376 bytes a token: GPT-J-6B's
    # 28 layers x 2 x 4,096 in fp8, whose vocabulary is 50,400 (the text names Llama-2-7B: 262,144 bytes a token).
    runtime = trtllm.engine_runtime_buffer_bytes(50_400, 1, 4096, 4098)
    decoder = trtllm.engine_decoder_total_bytes(50_400, 1, 4096, 4098, draft_logits=True)  # 0.12: draft logits
    assert runtime == 1_228_603_392 and decoder == 4_665_769_984
    # the per-slot scalars (lengths, flags, curand states, a few hundred bytes a slot) are not counted: below 1 MiB
    assert 1.135 * GiB <= runtime < 1.145 * GiB and 4.345 * GiB <= decoder < 4.355 * GiB


def test_memory_documentation_log_reproduced():
    # docs/source/reference/memory.md FAQ (Llama-2-7B fp8, 32 KV pages of 64 tokens: maxSequenceLen 2,048; "43.29 MB GPU
    # memory for runtime buffers", "180.30 MB GPU memory for decoder") at trtllm-build's then-default 256 slots
    runtime = trtllm.engine_runtime_buffer_bytes(32_000, 1, 256, 2048)
    decoder = trtllm.engine_decoder_total_bytes(32_000, 1, 256, 2048, draft_logits=True)
    assert runtime == 45_350_912 and decoder == 189_005_824      # 43.25 and 180.25 MiB
    assert 43.29 * MiB - runtime < 64 * 1024 and 180.30 * MiB - decoder < 64 * 1024


def test_issue_1188_log_reproduced():
    # NVIDIA/TensorRT-LLM issue 1188, comment of 2024-11-21: Qwen2.5-Coder-0.5B-Instruct (vocabulary 151,936) built
    # with trtllm-build's defaults (2,048 slots, max_seq_len = its 32,768 positions): "Allocated 2.66 GB GPU memory
    # for runtime buffers", "Allocated 5.76 GB GPU memory for decoder"; no draft logits in that release
    runtime = trtllm.engine_runtime_buffer_bytes(151_936, 1, 2048, 32_768)
    decoder = trtllm.engine_decoder_total_bytes(151_936, 1, 2048, 32_768)
    assert runtime == 2048 * 151_936 * 4 + 2048 * 6 * 32_768 * 4
    assert decoder == 2048 * 32_768 * 16 + 4 * 2048 * 151_936 * 4 + 2 * 4 * 2048 * 1024 * 8
    assert 2.655 * GiB <= runtime < 2.665 * GiB and 5.755 * GiB <= decoder < 5.765 * GiB
    # with the mid-2024 draft logits it would print 6.92 GB: not that release
    assert trtllm.engine_decoder_total_bytes(151_936, 1, 2048, 32_768, draft_logits=True) > 6.9 * GiB
