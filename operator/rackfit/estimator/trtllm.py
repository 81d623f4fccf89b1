"""TensorRT-LLM's PyTorch backend (what `trtllm-serve` runs by default): what its KV cache estimation leaves out of
the cache besides weights, the profiling forward and CUDA graphs (engines.py), and when it starts at all.

Pure: no I/O. Every mechanism names the TensorRT-LLM source it was read in.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.activations import attention_dims
from rackfit.estimator.engine_profile import ACT_BYTES
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.units import MiB

# The custom all-reduce's IPC workspace at tensor parallel above 1 (tensorrt_llm/_torch/distributed/ops.py
# AllReduce.__init__ -> get_allreduce_workspace, once per TP group, for every strategy but UB):
# CustomAllReduceHelper.allocate_allreduce_fusion_workspace (tensorrt_llm/_torch/distributed/allreduce_helper.py;
# tensorrt_llm/plugin/plugin.py before it) cudaMallocs, outside torch, an IPC buffer of size x tp_size, the Lamport
# buffers of 3 x size x tp_size and barriers of 256 x tp_size bytes on every rank. `size` is
# max_workspace_size_auto: 64 MiB in the current allreduce_helper.py ("Default (67,108,864 = 64 MiB) supports models
# up to hidden_size=4096 with max_num_tokens=8192"; TRTLLM_ALLREDUCE_FUSION_WORKSPACE_SIZE overrides it); earlier
# sources (plugin.py, and allreduce_helper.py's first versions) had 16,000,000 bytes at tp_size <= 2 and 8,000,000
# above, a quarter to an eighth of it. The model is built before the KV cache estimation, so the workspace is in its
# "Memory used outside torch" and off the cache.
ALLREDUCE_FUSION_WORKSPACE = 64 * MiB
ALLREDUCE_LAMPORT_BUFFERS = 3
ALLREDUCE_BARRIER_BYTES = 256
# IpcMemory (tensorrt_llm/_ipc_utils.py) allocates only where the TP peers can access each other
# (can_access_peer: cudaDeviceCanAccessPeer, same node); otherwise the pointers are 0 and NCCL does the reduce.
# rackfit takes NVLink for peer access (serving_nccl assumes the same without a GPU).

# The paged cache's block (KvCacheConfig.tokens_per_block, 32 in the PyTorch backend's logs: "Number of tokens per
# block: 32."). KVCacheManager.__init__ (tensorrt_llm/_torch/pyexecutor/resource_manager.py,
# _validate_and_adjust_attention_windows) does not refuse a cache smaller than one max_seq_len request: it warns
# "Attention window size ... exceeds upper bound ... for available blocks" and "Adjusted max_seq_len to N", and the
# server starts capped at N tokens a request (the DGX Spark log of gpt-oss-120b at 131,072: 86,720).
TOKENS_PER_BLOCK = 32


def allreduce_workspace_bytes(layout: Layout, gpu: GPU | None) -> int:
    """Bytes one rank's custom all-reduce workspace holds outside torch (ALLREDUCE_FUSION_WORKSPACE)."""
    t = layout.tensor
    if t == 1 or (gpu is not None and not gpu.nvlink):
        return 0
    return (1 + ALLREDUCE_LAMPORT_BUFFERS) * ALLREDUCE_FUSION_WORKSPACE * t + ALLREDUCE_BARRIER_BYTES * t


def estimation_request_tokens(max_num_tokens: int, max_seq_len: int) -> int:
    """Tokens one dummy request of the KV cache estimation holds in the temporary cache
    (tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator._get_token_num_for_estimation: each request of
    min(max_num_tokens, max_seq_len - 1) tokens plus the generated one, rounded up to whole blocks)."""
    tokens = min(max_num_tokens, max(1, max_seq_len - 1)) + 1
    return -(-tokens // TOKENS_PER_BLOCK) * TOKENS_PER_BLOCK


def estimation_refusal(fraction: float, free_after_load: int, per_token: int, max_num_tokens: int,
                       max_seq_len: int) -> str | None:
    """TensorRT-LLM cannot run its KV cache estimation when the temporary cache it sizes before the estimation run,
    free_gpu_memory_fraction x the memory free after loading (_get_token_num_for_estimation: `free_mem, _ =
    torch.cuda.mem_get_info()`, `max_memory = free_gpu_memory_fraction * free_mem`), holds less than one of its dummy
    requests: the scheduler cannot place it, and the estimation never completes."""
    need = estimation_request_tokens(max_num_tokens, max_seq_len)
    holds = int(fraction * max(free_after_load, 0)) // per_token
    if holds >= need:
        return None
    return (f"tensorrt-llm would not finish its KV cache estimation: its temporary cache "
            f"(free_gpu_memory_fraction {fraction:g} of the memory free after loading) holds about {holds} tokens, "
            f"less than one of its {need}-token dummy requests (min(max_num_tokens, max_seq_len - 1) + 1, in "
            f"{TOKENS_PER_BLOCK}-token blocks); raise gpuMemoryUtilization, lower maxNumBatchedTokens, or use more "
            "GPUs")


# --- The TRT-engine backend (spec.inference.tensorrtLlmBackend: trt): a trtllm-build engine run by the C++ executor
# (cpp/tensorrt_llm/batch_manager/trtGptModelInflightBatching.cpp, TrtGptModelInflightBatching's constructor), in this
# order: the engine is deserialized ("Loaded engine size: X MiB": its weights), the execution context takes the
# engine's device memory (runtime/tllmRuntime.cpp, TllmRuntime: "[MemUsageChange] Allocated X MiB for execution context
# memory", the activation memory TensorRT planned at build time for the largest profile, max_num_tokens tokens),
# createBuffers ("Allocated X GPU memory for runtime buffers": batch_manager/runtimeBuffers.cpp RuntimeBuffers,
# setMaxBufferSizes/reshape: the logits of max_batch_size x beam sequences, [numLogits, vocabSizePadded] in the
# engine's logits dtype, trtllm-build's --logits_dtype float32), createDecoder ("... for decoder"), and only then
# createKvCacheManager: KVCacheManager::calculateFreeMemBytes (kvCacheManager.cpp; calculateMaxNumBlocks before it)
# takes cudaMemGetInfo's free memory plus the memory pool's free bytes ("Memory usage when calculating max tokens in
# paged kv cache: total: X GiB, available: Y GiB") times kv_cache_free_gpu_mem_fraction (KvCacheConfig
# kDefaultGpuMemFraction 0.9), and the cache is that in whole blocks ("Allocated Z GiB for max tokens in paged KV cache
# (N)"). The same formula in the 2024 source (KVCacheManager::calculateMaxNumBlocks: maxTokens = fraction x (free +
# memoryPoolFree()) / bytes a token) and the current one (calculateFreeMemBytes); the closed 0.5-0.7 batch manager
# logged "Using N tokens in paged KV cache" (NVIDIA/TensorRT-LLM issue 224).
# trtllm-build's paged cache block (--tokens_per_block, default 64: "Number of tokens per block: 64.").
ENGINE_TOKENS_PER_BLOCK = 64
# The engine's logits tensor dtype (trtllm-build --logits_dtype / PretrainedConfig.logits_dtype, default float32).
ENGINE_LOGITS_BYTES = 4
# The C++ runtime's custom all-reduce workspace (runtime/ipcUtils.cpp AllReduceBuffers, sized by
# utils::customAllReduceUtils::getMaxRequiredWorkspaceSize: 16,000,000 bytes at tp_size <= 2, 8,000,000 above;
# tensorrt_llm/plugin/plugin.py's CustomAllReduceHelper has the same), an IPC buffer and its Lamport copies per peer.
ENGINE_ALLREDUCE_SMALL_TP = 16_000_000
ENGINE_ALLREDUCE_LARGE_TP = 8_000_000


def engine_logits_bytes(vocab_size: int, tensor: int, max_batch_size: int, beam: int = 1) -> int:
    """The runtime buffers' logits: [max_batch_size x beam, vocabSizePadded] (runtimeBuffers.cpp, setMaxBufferSizes:
    numLogits = maxBatchSize x maxBeamWidth when every request is generating; ModelConfig::getVocabSizePadded pads the
    vocabulary to a multiple of the tensor-parallel size) in ENGINE_LOGITS_BYTES."""
    padded = -(-vocab_size // tensor) * tensor
    return max_batch_size * beam * padded * ENGINE_LOGITS_BYTES


def engine_decoder_bytes(vocab_size: int, tensor: int, max_batch_size: int, max_seq_len: int, beam: int = 1) -> int:
    """What createDecoder allocates before the cache ("Allocated X GPU memory for decoder"), as read in the current
    source: DecoderState::reshapeBuffers (runtime/decoderState.cpp) holds output ids, parent ids and log probs of
    [max_batch_size, beam, max_seq_len] and the tiled log probs of [max_seq_len, max_batch_size, beam], 4 bytes each
    (int32 and float32), and an embedding bias of [max_batch_size, vocabSizePadded]; the DecodingLayerWorkspace
    (runtime/decodingLayerWorkspace.cpp, built by GptDecoder's constructor, runtime/gptDecoder.cpp) holds the runtime
    logits [max_batch_size, 1, beam, vocabSizePadded], both in the logits dtype; the penalty layer
    (layers/penaltyLayer.cpp, PenaltyLayer::allocateWorkspace, with the default decoding mode's occurrence penalties)
    an int32 workspace of [max_batch_size, 1, beam, vocab]. The sampling layers' scratch buffer
    (DynamicDecodeLayer::getWorkspaceSize) is engine_sampling_workspace_bytes, at beam 1 only (beam search runs the
    beam-search layer instead, DecodingMode::BeamSearch); engine_decoder_total_bytes adds it."""
    padded = -(-vocab_size // tensor) * tensor
    per_slot_token = 4 * 4  # ids, parentIds, logProbs, logProbsTiled
    return (max_batch_size * beam * max_seq_len * per_slot_token
            + max_batch_size * padded * ENGINE_LOGITS_BYTES * (1 + beam)
            + max_batch_size * beam * vocab_size * 4)


# The sampling layers' scratch (issue 22): TopKSamplingLayer::allocateBuffer
# (cpp/tensorrt_llm/layers/topKSamplingLayer.cpp, the same in the 2024 IAllocator layers and the current BufferManager
# ones) sizes it with kernels::getTopKWorkspaceSize<T>(maxBatchSize, 1, TOP_K_MAX, vocabSizePadded)
# (samplingTopKKernels.h): a copy of every slot's logits [batch, vocabSizePadded] in T and the stage-1 candidates of
# TOP_K_MAX x 8 blocks a slot (maxBlockPerBeam), int32 ids and T values, each buffer aligned to 256 bytes
# (common::calcAlignedSize). SamplingLayer::getWorkspaceSize takes the largest of its sub-layers'; the top-P layer's is
# smaller at the default AIR top-P (TopPSamplingLayer isAirTopP = true: getAirTopPWorkspaceSizes, histograms of 2^11
# buckets and candidate buffers of vocab/32 a slot). The decoder's T is the logits dtype, float32 by default.
ENGINE_TOP_K_MAX = 1024
ENGINE_TOP_K_BLOCKS_PER_BEAM = 8
ENGINE_WORKSPACE_ALIGN = 256


def _aligned(n: int) -> int:
    return -(-n // ENGINE_WORKSPACE_ALIGN) * ENGINE_WORKSPACE_ALIGN


def engine_sampling_workspace_bytes(vocab_size: int, tensor: int, max_batch_size: int,
                                    logits_bytes: int = ENGINE_LOGITS_BYTES) -> int:
    """The sampling layers' workspace the decoder holds for max_batch_size slots (getTopKWorkspaceSize, above):
    [slots, vocabSizePadded] logits in the logits dtype plus TOP_K_MAX x 8 candidate ids (int32) and values a slot."""
    padded = -(-vocab_size // tensor) * tensor
    candidates = max_batch_size * ENGINE_TOP_K_MAX * ENGINE_TOP_K_BLOCKS_PER_BEAM
    return (_aligned(logits_bytes * max_batch_size * padded) + _aligned(4 * candidates)
            + _aligned(logits_bytes * candidates))


# What the two log lines cover (TrtGptModelInflightBatching's constructor,
# batch_manager/trtGptModelInflightBatching.cpp: createBuffers, then createDecoder, each between two MemoryCounters
# reads; MemoryCounters::bytesToString divides by 1024, so "GB" is GiB). createBuffers ("Allocated X GPU memory for
# runtime buffers") builds RuntimeBuffers (runtimeBuffers.cpp: the logits of engine_logits_bytes; its
# TransformerBuffers' cacheIndirection [slots, beam, maxAttentionWindow] int32), DecoderBuffers (decoderBuffers.cpp:
# cacheIndirectionInput and cacheIndirectionOutput of that shape, logProbs [slots, beam, maxSeqLen] float32) and one
# SlotDecoderBuffers per sequence slot (outputIds [beam, maxSeqLen] int32 and logProbs [beam, maxSeqLen] float32 on the
# GPU). createDecoder ("... for decoder") is engine_decoder_bytes plus the sampling workspace above;
# GptDecoderBatched::setup of mid-2024 (0.12-0.13) also reshaped draft logits [slots, maxTokensPerStep, vocabSizePadded]
# float32 whatever the speculative mode, which the later DecoderState allocates for external draft tokens only
# (draft_logits=True adds them). Checked against three logs (tests/unit/test_trtllm_decoder_buffers.py):
# NVIDIA/TensorRT-LLM issue 1188 (November 2024, Qwen2.5-Coder-0.5B, trtllm-build's defaults of 2,048 slots and
# max_seq_len 32,768: "2.66 GB" and "5.76 GB", without draft logits); the trtllm-bench README's H100 log
# (0.12.0.dev2024073000, 4,096 slots, 4,098: "1.14 GB" and "4.35 GB" with GPT-J-6B's 50,400-token vocabulary and the
# draft logits; its cache, 229,376 bytes a token, is GPT-J's 28 layers x 2 x 4,096 in fp8, not the Llama-2-7B its text
# names); the memory documentation's Llama-2-7B example ("43.29 MB", "180.30 MB", 2,048 tokens) at
# trtllm-build's then-default 256 slots, with them. The per-slot scalars (lengths, flags, curand states, about 200 bytes
# a slot) are not counted.


def engine_runtime_buffer_bytes(vocab_size: int, tensor: int, max_batch_size: int, max_seq_len: int,
                                beam: int = 1, attention_window: int | None = None) -> int:
    """What createBuffers allocates ("Allocated X GPU memory for runtime buffers"): the logits (engine_logits_bytes),
    three int32 cache-indirection tensors of [slots, beam, maxAttentionWindow] (TransformerBuffers, DecoderBuffers'
    input and output), DecoderBuffers' float32 logProbs and every SlotDecoderBuffers' int32 outputIds and float32
    logProbs of [slots, beam, maxSeqLen]. The attention window is max_seq_len unless the engine caps it."""
    window = max_seq_len if attention_window is None else attention_window
    return (engine_logits_bytes(vocab_size, tensor, max_batch_size, beam)
            + max_batch_size * beam * (3 * window + 3 * max_seq_len) * 4)


def engine_decoder_total_bytes(vocab_size: int, tensor: int, max_batch_size: int, max_seq_len: int,
                               beam: int = 1, draft_logits: bool = False) -> int:
    """What createDecoder allocates ("Allocated X GPU memory for decoder"): engine_decoder_bytes and, without beam
    search, the sampling layers' workspace (beam search runs the beam-search layer instead, DecodingMode::BeamSearch);
    with draft_logits the mid-2024 releases' draft logits [slots, 1, vocabSizePadded] float32 too."""
    padded = -(-vocab_size // tensor) * tensor
    draft = max_batch_size * padded * 4 if draft_logits else 0
    sampling = engine_sampling_workspace_bytes(vocab_size, tensor, max_batch_size) if beam == 1 else 0
    return engine_decoder_bytes(vocab_size, tensor, max_batch_size, max_seq_len, beam) + draft + sampling


def engine_allreduce_workspace_bytes(layout: Layout, gpu: GPU | None) -> int:
    """allreduce_workspace_bytes at the C++ runtime's size (ENGINE_ALLREDUCE_SMALL_TP / ENGINE_ALLREDUCE_LARGE_TP)."""
    t = layout.tensor
    if t == 1 or (gpu is not None and not gpu.nvlink):
        return 0
    size = ENGINE_ALLREDUCE_SMALL_TP if t <= 2 else ENGINE_ALLREDUCE_LARGE_TP
    return (1 + ALLREDUCE_LAMPORT_BUFFERS) * size * t + ALLREDUCE_BARRIER_BYTES * t


def engine_cache_bytes(fraction: float, free_before_cache: int, per_token: int) -> int:
    """The TRT-engine backend's KV cache: fraction x the memory free once the engine, its execution context and the
    runtime and decoder buffers are allocated (KVCacheManager::calculateFreeMemBytes), in whole
    ENGINE_TOKENS_PER_BLOCK-token blocks (calculateMaxNumBlocks: freePrimaryMemBytes // the bytes of one block)."""
    budget = int(fraction * max(free_before_cache, 0))
    block = ENGINE_TOKENS_PER_BLOCK * per_token
    return budget // block * block


# The execution context's memory (issue 22): "[MemUsageChange] Allocated X MiB for execution context memory" is
# ICudaEngine::getDeviceMemorySizeV2 (runtime/tllmRuntime.cpp, TllmRuntime's constructor; the Python runtime's
# Session prints engine.device_memory_size_v2 the same way), the activation memory TensorRT planned at build time for
# the optimisation profiles' max shapes: max_num_tokens packed tokens through the layers, and, with
# gather_generation_logits off, only the last token of each of max_batch_size x beam sequences through the output
# projection (tensorrt_llm/models/modeling_utils.py, DecoderModelForCausalLM.forward: gather_last_token_logits, then
# lm_head, then lm_logits.mark_output('logits', logits_dtype)). The lm_head is a 16-bit ColumnLinear (the quantizers
# exclude it by default) with gather_output=True, so its output [slots, vocabSizePadded] is in the activation dtype
# (the engine's float32 'logits' output is a cast of it into the runtime buffers' tensor, engine_logits_bytes); at
# tensor parallel above 1 its local shard [slots, vocabSizePadded / tp] lives beside the all-gathered copy.
# TensorRT reuses memory between the layers (only one layer's live tensors count), but in every public log that
# prints the line with its build settings the head's output is not laid over the layers' memory: the context is the
# widest layer's live set PLUS the head's output (tests/unit/test_trtllm_context_memory.py reproduces 773.51, 921.51
# and 1298.01 MiB to 0.01 MiB). The layer's live set is, at max_num_tokens: the residual and its normed copy and the
# MLP's outputs. How many MLP outputs are live depends on the build: modeling_utils.fuse_gate_mlp (trtllm-build's
# --use_fused_mlp, default enable) fuses gate and up into one GEMM only for unquantized and FP8 linears and skips
# int8/int4 ones (`if layer_quant_algo != QuantAlgo.FP8 and layer_quant_algo is not None: continue`). Unfused
# (GatedMLP: fc and gate, then act(gate) x fc, same shapes) TensorRT computes the elementwise in place, and the peak is
# at the second GEMM: residual, normed input, gate and up outputs, 2 x hidden + 2 x intermediate (the three int4/int8
# logs, exactly). Fused (FusedGatedMLP: fused_fc [tokens, 2 x intermediate], then swiglu to [tokens, intermediate],
# which cannot be written over its twice-as-wide input) the SwiGLU step holds the residual, the fused output and the
# activation: hidden + 3 x intermediate; so did 0.5.0's unfused 16-bit engine (S161's out-of-memory needs more than
# the in-place count). The attention step (q/k/v, the attention output, residual and normed copy) is counted as
# engine_profile.forward_peak_bytes does. The plugins' workspaces (the GEMM plugin's 32 MiB cuBLAS workspace,
# gemmPlugin.cpp getWorkspaceSize -> CUBLAS_WORKSPACE_SIZE; the attention plugin's getWorkspaceSizeForContext) do not
# show in the three logs and are not counted.


def engine_context_bytes(a: ModelArch, layout: Layout, max_num_tokens: int, max_batch_size: int, beam: int = 1,
                         in_place_mlp: bool = False) -> int:
    """TensorRT's activation memory for a trtllm-build engine (the execution context, above): the widest layer's
    live tensors at max_num_tokens plus the output projection's 16-bit output for max_batch_size x beam sequences.
    in_place_mlp: the int8/int4 builds' unfused gated MLP (2 x hidden + 2 x intermediate live); otherwise the fused
    gate-up and its SwiGLU output (hidden + 3 x intermediate), the larger."""
    t, h = layout.tensor, a.hidden_size
    q, kv = attention_dims(a)
    widths = [2 * h + q / t + kv / max(1, min(t, a.num_key_value_heads or t)) + q / t]
    gated = 2 if a.gated_mlp else 1  # the MLP's up-projection outputs (gate and up, or fc alone)
    if a.num_layers > a.moe_layers:
        inter = a.intermediate_size / t
        widths.append(2 * h + gated * inter)  # at the (last) up-projection GEMM
        if not in_place_mlp:
            widths.append(h + (gated + 1) * inter)  # the activation's output beside its input
    if a.is_moe:  # no public log of a TRT-engine MoE: engine_profile.forward_peak_bytes's count
        mult = 3 if a.gated_mlp else 2
        width = a.moe_intermediate_size / (1 if layout.expert > 1 else t)
        widths.append(2 * h + a.num_experts_per_token * (mult * width + h)
                      + a.num_shared_experts * mult * a.moe_intermediate_size / t)
    layer = int(max_num_tokens * max(widths) * ACT_BYTES)
    padded = -(-a.vocab_size // t) * t
    rows = max_batch_size * beam
    head = rows * padded * ACT_BYTES + (rows * (padded // t) * ACT_BYTES if t > 1 else 0)
    return layer + head


# --- The TRT engine's embedding table at tensor parallel (issue 22). The spec's weights split the embedding over the
# tensor ranks (weights.weight_bytes, vocab-parallel as vLLM, SGLang and the PyTorch backend hold it: the latter's
# LlamaModel builds `Embedding(..., tensor_parallel_mode=TensorParallelMode.COLUMN, gather_output=True)`,
# tensorrt_llm/_torch/models/modeling_llama.py). A trtllm-build engine holds what its checkpoint holds:
# examples/<model>/convert_checkpoint.py leaves `--use_parallel_embedding` off ("By default embedding parallelism is
# disabled"), PretrainedConfig's use_parallel_embedding defaults to False (tensorrt_llm/models/modeling_utils.py), the
# converters' split_embedding returns the whole table when it is off, and the engine's Embedding is built with
# `tp_size=mapping.tp_size if use_parallel_embedding else 1` (tensorrt_llm/models/llama/model.py, LLaMAModel): every
# tensor rank of the first stage holds the whole vocabulary x hidden table. The output projection is split either way
# (`lm_head = ColumnLinear(..., tp_size=mapping.tp_size, gather_output=True)`). Engines whose checkpoint was written
# otherwise split it: the LLM API (`trtllm-serve --backend trt` from a Hugging Face model; llmapi/llm_args.py
# TrtLlmArgs.embedding_parallel_mode default 'SHARDING_ALONG_VOCAB', which _setup_embedding_parallel_mode turns into
# use_parallel_embedding True) and examples/quantization/quantize.py (ModelOpt's export,
# modelopt/torch/export/tensorrt_llm_utils.py convert_to_tensorrt_llm_config: "use_parallel_embedding": True). An
# engine file does not say which converter wrote it: rackfit counts convert_checkpoint.py's default, the larger (the
# safe side), unless spec.inference.tensorrtLlmParallelEmbedding says the checkpoint splits the table.
def engine_replicated_embedding_bytes(vocab_size: int, hidden_size: int, embedding_bytes: float, layout: Layout,
                                      lm_head_bytes: float = 0.0) -> int:
    """Bytes a TRT-engine rank holds beyond the vocab-parallel embedding weights.weight_bytes counts: the whole table
    less its 1/tensor share. With pipeline stages the first holds the embedding and the last the (split) lm_head, and
    weight_bytes counted max(embedding, lm_head) / tensor: the engine's heaviest end is max(embedding, lm_head /
    tensor). `lm_head_bytes`, the output projection's bytes (0 at one stage, where it is split as counted)."""
    t = layout.tensor
    if t == 1:
        return 0
    table = vocab_size * hidden_size * embedding_bytes
    if layout.pipeline == 1:
        return int(table - table / t)
    return int(max(table, lm_head_bytes / t) - max(table, lm_head_bytes) / t)


# --- Two engine constants a trtllm-build engine holds beside the checkpoint's layers (issue 22).
# The rotary table: Attention.create_attention_const_params (tensorrt_llm/layers/attention.py; called once by the
# decoder model, e.g. LLaMAModel.__init__, and handed to every layer by fill_attention_params) registers
# `rotary_inv_freq` [rotary_dim / 2] and `embed_positions_for_gpt_attention`, the float32 (cos, sin) pairs of every
# position, from RopeEmbeddingUtils.create_sinusoidal_positions_for_attention_plugin(max_position_embeddings,
# rotary_dim, ...) (tensorrt_llm/functional.py): [1, max_position_embeddings x rotary_dim] float32. Rope scaling
# (rotary_scaling, llama3 type: apply_llama3_scaling; linear: scale) changes the frequencies, not the positions, so the
# table spans the config's max_position_embeddings as it stands (131,072 for Llama 3.1: 64 MiB; 8,192 for Llama 3:
# 4 MiB). The mapping does not split it: every rank's engine, every pipeline stage (each builds the decoder model),
# holds the whole table. The attention plugin reads only these two (the non-plugin `embed_positions` is pruned by
# TensorRT with its unused path). Long-rope (Phi-3) registers a second set and Gemma 3 a local one
# (`rope_local_base_freq`); rackfit counts one set. Seen in S490 (0.10.0, Meta-Llama-3-8B at tensor 2: 8,163 MiB a
# rank against 8,159.5 counted without it) and tensorrtllm_backend issue 577 (Llama 3.1 8B, 8,231 MiB a rank).
ENGINE_ROTARY_TABLE_BYTES = 4


def engine_rotary_table_bytes(a: ModelArch) -> int:
    """The TRT engine's fp32 rotary constants on each rank: max_position_embeddings x rotary_dim (cos, sin pairs)
    plus the rotary_dim / 2 inverse frequencies (0 where the length is unknown)."""
    if a.max_position_embeddings <= 0:
        return 0
    rotary = a.qk_rope_head_dim if a.is_mla else a.head_dim
    return (a.max_position_embeddings * rotary + rotary // 2) * ENGINE_ROTARY_TABLE_BYTES


# A tied checkpoint's lm_head: convert_checkpoint.py's `--use_embedding_sharing` defaults to False ("Try to reduce the
# engine size by sharing the embedding lookup table between two layers. Note: the flag might not take effect when the
# criteria are not met", examples/<model>/convert_checkpoint.py; PretrainedConfig.share_embedding_table False, and
# tensorrt_llm/models/model_weights_loader.py ModelWeightsLoader.check_share_embedding returns at once when it is off;
# on, it shares when the checkpoint has no lm_head.weight or an equal one), and
# sharing also needs the lookup and GEMM plugins (TensorRT-LLM's performance best-practices documentation, "Embedding
# parallelism and sharing"); otherwise the converter writes the embedding into `lm_head` too (a Qwen2.5 checkpoint
# with tie_word_embeddings has no lm_head.weight: the copy is made at conversion) and the engine holds both. S190's
# "Loaded engine size: 875 MiB" (Qwen2.5-Coder-0.5B, int8 weight-only, tied) is its int8 layers plus two 16-bit
# 151,936 x 896 tables (260 MiB each). The lm_head is a ColumnLinear split over the tensor ranks; with pipeline
# stages it sits on the last stage and weights.weight_bytes already counts each end's table.
def engine_tied_lm_head_bytes(a: ModelArch, layout: Layout, lm_head_bytes: float) -> int:
    """The separate lm_head a TRT engine holds for a checkpoint with tied embeddings: vocabulary x hidden x its bytes
    / tensor on a one-stage rank (weights.weight_bytes counted one table for a tied model)."""
    if not a.tie_word_embeddings or layout.pipeline > 1:
        return 0
    return int(a.vocab_size * a.hidden_size * lm_head_bytes / layout.tensor)
