"""The CUDA graph pool a serving engine captures: vLLM's capture sizes by release, GPU and settings, the piecewise
graphs' private memory, FlashInfer's workspace in vLLM's graph estimate, and TensorRT-LLM's decode graphs.

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.engine_profile import ACT_BYTES, forward_peak_bytes, gpt_oss
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.estimator.vllm_runner import v2_runner
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Inference

# vLLM's CUDA graph capture sizes go up to 512 tokens (vllm/config/compilation.py,
# max_cudagraph_capture_size); the graphs share one memory pool sized by the largest capture, and each
# of the ~67 sizes x (layers + 1) piecewise graphs keeps private memory of its own. 288 KiB a piece: set by row S14
# (vLLM 0.19.0, Llama 3.1 8B on one H100: "Graph capturing finished in 3 secs, took 0.91 GiB", less the 512-token
# forward and FlashAttention 3's split buffers (fa3_split_bytes, 0.25 GiB there), over 67 x 33 pieces; it was 64 KiB,
# an estimate, 0.18 GiB where the log says 0.91, then 408 KiB with the split buffers counted in the pieces). The other
# 0.19.0 logs read took 0.76 and 0.67 GiB at tensor 2 and 4 (rackfit 0.76 and 0.69; 0.89 and 0.88 while the pieces
# held the split buffers). It counts inside the KV cache's budget from GRAPHS_IN_BUDGET (vLLM's own estimate there,
# "Estimated CUDA graph memory", is 0.6-1.8 GiB on S14-S34's models) and in the start-up verdict (startup.py) before it.
GRAPH_MAX_TOKENS = 512
GRAPH_SIZES = 67
GRAPH_PRIVATE_BYTES = 288 << 10
# The sizes vLLM captures (vllm/config/vllm.py VllmConfig._set_cudagraph_sizes): 1, 2, 4, then every 8 up to the largest
# (min(2 x max_num_seqs, 512)) through 0.11.0; from 0.11.1 every 8 below 256 and every 16 from 256 on (51 sizes at 512,
# where S14 logged "PIECEWISE=51 (largest=512)"), filtered by max_num_batched_tokens. gpt-oss raises the largest
# (vllm/model_executor/models/config.py GptOssForCausalLMConfig.verify_and_update_config, unless the user set capture
# sizes): to 992 in 0.10.1-0.11.0 ("from 67 to 81" graphs) and 1024 from 0.11.1 ("from 67 to 83"; S37 logged
# "PIECEWISE=83 (largest=1024), FULL=83"). GRAPH_SIZES and GRAPH_PRIVATE_BYTES stay what S14's default gives; a larger
# capture scales the pieces by the release's count of sizes over its default count (83 / 51 for gpt-oss from 0.11.1).
GRAPH_SIZES_STEP16 = (0, 11, 1)
# The capture list follows max_num_seqs: V1's largest size is min(2 x max_num_seqs, 512) from 0.10.0 (SchedulerConfig
# cuda_graph_sizes, "default set to [min(max_num_seqs * 2, 512)]"; 0.8.5-0.9.2 capture up to 512 whatever max_num_seqs,
# V1_CAPTURE_BY_SEQS), each list filtered by max_num_batched_tokens, so a --max-num-seqs under 256 captures fewer
# sizes; V0 (vllm/worker/model_runner.py capture_model, read in 0.5.3 and 0.6.4) captures one
# whole-model decode graph for each of _BATCH_SIZES_TO_CAPTURE (1, 2, 4, then every 8 up to V0_GRAPH_MAX_BATCH) up to
# _get_graph_batch_size(max_num_seqs), a batch of that many one-token sequences. Either count scales the pieces
# against its release's default count, so the default settings give what S14 set. Under pipeline parallel V0 captures
# that list once per virtual engine (`for virtual_engine in range(pipeline_parallel_size)`, each set of graphs over its
# own KV cache, one shared pool; read in 0.5.1, 0.5.5, 0.6.3 and 0.7.3): pipeline x the pieces, the forward once.
V0_GRAPH_MAX_BATCH = 256
V1_CAPTURE_BY_SEQS = (0, 10)
# From 0.28.0 the default largest capture is min(2 x max_num_seqs, 1024) on data-center Blackwell
# (VllmConfig._set_cudagraph_sizes: `1024 if current_platform.is_device_capability_family(100) else 512`; read in the
# 0.28.0-0.34.0 wheels, absent from 0.20.0-0.27.0): B200, GB200, B300 and GB300 (SM100/SM103), not the RTX Pro 6000
# (SM120). 83 sizes where the 512 ceiling has 51, scaled as gpt-oss's are.
GRAPH_SM100_FROM = (0, 28)
GRAPH_MAX_TOKENS_SM100 = 1024
SM100_MODELS = ("B200", "GB200", "B300", "GB300")
GPT_OSS_CAPTURE_TOKENS = 1024
GPT_OSS_CAPTURE_TOKENS_BEFORE = 992
# A largest size the user sets (inference.maxCudaGraphCaptureSize: --max-cudagraph-capture-size, 0.11.1 on; before,
# --cuda-graph-sizes N) replaces the default: VllmConfig._set_cudagraph_sizes (config/vllm.py, read in 0.21.0 and
# 0.24.0) takes compilation_config.max_cudagraph_capture_size when set, min(it, max_num_batched_tokens), and builds the
# same 1, 2, 4, every-8, every-16-from-256 list up to it; GptOssForCausalLMConfig.verify_and_update_config
# (model_executor/models/config.py) raises the largest to 1024 "only when the user has not set either of
# cudagraph_capture_sizes or max_cudagraph_capture_size"; the SM100 ceiling is the default's only. The user's list
# steps as the release's default list does (gpt-oss's own every-16 list of 0.10.1-0.11.0 is not used).
# TensorRT-LLM's PyTorch backend captures one whole-forward decode graph per batch size of its CudaGraphConfig
# (tensorrt_llm/llmapi/llm_args.py CudaGraphConfig: max_batch_size 0 -> 128; sizes 1-31, 32, 64, 128, or with
# enable_padding 1, 2, 4 and every 8), every graph in one shared pool
# (tensorrt_llm/_torch/pyexecutor/cuda_graph_runner.py CUDAGraphRunner.capture: torch.cuda.graph(graph,
# pool=self.memory_pool), outputs kept as weak refs): the pool is the largest capture's forward and logits. vLLM's
# piecewise pieces (GRAPH_PRIVATE_BYTES per layer and size) do not apply.
TRTLLM_GRAPH_MAX_BATCH = 128
# The new runner's profile_cudagraph_memory returns 0 through 0.28.x ("It is TBD whether we keep this API or not", read
# in 0.22.0-0.28.0; no "Estimated CUDA graph memory" line in its logs) and estimates the graphs from 0.29.0
# (_profile_cudagraph_memory, as the old runner does from engines.GRAPHS_IN_BUDGET): before it the graph pool is left
# out of the KV cache's budget and captured afterwards in the 1 - util share, as before 0.20.0.
V2_GRAPH_ESTIMATE = (0, 29)


# FlashAttention 3's split-KV buffers in the graph pool (read in the 0.11.0, 0.19.0, 0.27.1 and 0.28.0 wheels). From
# 0.11.0 V1's default cudagraph_mode is FULL_AND_PIECEWISE (config/__init__.py; 0.10.2: PIECEWISE), and
# FlashAttentionMetadataBuilder (v1/attention/backends/flash_attn.py), with FA3 (`aot_schedule`: get_flash_attn_version
# 3, Hopper) and full graphs on, sets max_num_splits to VLLM_FLASH_ATTN_MAX_NUM_SPLITS_FOR_CUDA_GRAPH /
# attention_config.flash_attn_max_num_splits_for_cuda_graph, 32, for every batch up to max_cudagraph_capture_size "so
# that large enough intermediate buffers are pre-allocated during capture". FA3's mha_fwd (vllm-project/flash-attention
# hopper/flash_api.cpp: `params.num_splits = num_splits <= 0 ? get_num_splits(params) : num_splits`) then allocates
# out_accum [num_splits, num_heads, total_q, head_size_v] and softmax_lse_accum [num_splits, num_heads, total_q], fp32,
# on every attention call. The FULL decode graphs (sizes up to max_num_seqs x the decode query length: the old runner's
# cudagraph_dispatcher.py initialize_cudagraph_keys, the new runner's cudagraph_utils.py _init_candidates) capture it
# in the shared pool, the largest first, each later capture reusing the block; the eager warm-up's copy before each
# capture is cached outside the pool, and torch.cuda.graph's own empty_cache on entering the capture returns it (vLLM
# patches that empty_cache out only for the second and later piecewise pieces of a forward). The old runner's
# piecewise captures run no attention (no metadata without force_attention); the new runner's run it eagerly between
# the pieces, in the same default pool the next forward's first piece empties. So one buffer at the largest FULL size
# stays: S14-S16's logs fall by 0.15 and 0.09 GiB from tensor 1 to 2 to 4 (the buffer 0.25, 0.13, 0.06 GiB), S29-S30's
# by 0.13 (0.13). Not with MLA (its own backends), fp32 (no FlashAttention), or FlashAttention 2 off Hopper (no
# AOT schedule, max_num_splits 0).
FA3_SPLITS_FROM = (0, 11)
FA3_MAX_SPLITS = 32
FA3_MAX_HEAD_DIM = 256


def graph_capture_sizes(largest: int, step16: bool) -> int:
    """How many batch sizes vLLM captures up to `largest` (VllmConfig._set_cudagraph_sizes): 1, 2, 4, then every 8,
    from 0.11.1 (`step16`) every 16 from 256 on."""
    if largest < 8:
        return sum(1 for n in (1, 2, 4) if n <= largest)
    if not step16 or largest < 256:
        return 3 + len(range(8, largest + 1, 8))
    return 3 + len(range(8, 256, 8)) + len(range(256, largest + 1, 16))


def graph_ceiling(inf: Inference | None, gpu: GPU | None) -> int:
    """vLLM's default largest capture before max_num_seqs: 1024 tokens on SM100 GPUs from GRAPH_SM100_FROM, else 512."""
    sm100 = gpu is not None and gpu.model.upper() in SM100_MODELS
    if sm100 and inf is not None and inf.engine == "vllm" and not inf.vllm_before(GRAPH_SM100_FROM):
        return GRAPH_MAX_TOKENS_SM100
    return GRAPH_MAX_TOKENS


def v1_largest_capture(a: ModelArch, s: EngineSettings, inf: Inference, gpu: GPU | None) -> int:
    """The largest batch vLLM V1 captures before max_num_batched_tokens filters the list: min(graph_ceiling,
    2 x max_num_seqs) from V1_CAPTURE_BY_SEQS (GRAPH_MAX_TOKENS before), raised for gpt-oss by its own list
    (GptOssForCausalLMConfig.verify_and_update_config: GPT_OSS_CAPTURE_TOKENS); the user's
    maxCudaGraphCaptureSize where set."""
    if inf.max_cuda_graph_capture_size is not None:  # the user's, as stated (filtered by max_num_batched_tokens)
        return inf.max_cuda_graph_capture_size
    default = min(graph_ceiling(inf, gpu), 2 * s.max_num_seqs)
    if gpt_oss(a):
        return max(GPT_OSS_CAPTURE_TOKENS if not inf.vllm_before(GRAPH_SIZES_STEP16) else GPT_OSS_CAPTURE_TOKENS_BEFORE,
                   default)
    return GRAPH_MAX_TOKENS if inf.vllm_before(V1_CAPTURE_BY_SEQS) else default


def cuda_graph_bytes(a: ModelArch, layout: Layout, s: EngineSettings, inf: Inference | None = None,
                     gpu: GPU | None = None, lora_cases: int = 1, draft_pieces: int = 0) -> int:
    """The graph pool: one forward of the largest captured batch, and GRAPH_PRIVATE_BYTES for each captured piece
    (GRAPH_SIZES sizes x (layers + 1) at vLLM's default largest size, scaled by the sizes a larger or smaller capture
    has: gpt-oss's, SM100's ceiling (graph_ceiling), a max_num_seqs under 256, V0's list of decode batches, once per
    virtual engine under pipeline parallel), each
    captured `lora_cases` times (lora_serving.lora_graph_cases: with and without LoRA), and a speculative drafter's
    `draft_pieces` per size (speculative.draft_graph_pieces)."""
    tokens, sizes = min(graph_ceiling(inf, gpu), 2 * s.max_num_seqs), GRAPH_SIZES
    vllm = inf is not None and inf.engine == "vllm"
    step16 = vllm and not inf.vllm_before(GRAPH_SIZES_STEP16)
    full = graph_capture_sizes(GRAPH_MAX_TOKENS, step16)  # the default's count, which GRAPH_SIZES stands for
    if vllm and inf.vllm_v0:
        # V0: the padded max_num_seqs, capped at V0_GRAPH_MAX_BATCH, is the largest batch (one token a sequence)
        tokens = min(V0_GRAPH_MAX_BATCH, s.max_num_seqs if s.max_num_seqs <= 4 else -(-s.max_num_seqs // 8) * 8)
        sizes = (GRAPH_SIZES * graph_capture_sizes(tokens, False) / graph_capture_sizes(V0_GRAPH_MAX_BATCH, False)
                 * layout.pipeline)  # once per virtual engine
    elif vllm:
        # the sizes are filtered by max_num_batched_tokens; before 0.11.1 gpt-oss's own list already stepped by 16
        # from 256 (81 sizes against the default's 67)
        tokens = min(v1_largest_capture(a, s, inf, gpu), s.max_num_batched_tokens)
        own_list = gpt_oss(a) and inf.max_cuda_graph_capture_size is None
        sizes = GRAPH_SIZES * graph_capture_sizes(tokens, step16 or own_list) / full
    stage_layers = heaviest_stage_layers(a.num_layers, layout.pipeline)
    return forward_peak_bytes(a, layout, tokens) + int(lora_cases * sizes * (stage_layers + 1 + draft_pieces)
                                                       * GRAPH_PRIVATE_BYTES)


def fa3_split_bytes(a: ModelArch, layout: Layout, s: EngineSettings, inf: Inference, gpu: GPU | None,
                    precision: str) -> int:
    """FlashAttention 3's split-KV buffers (out_accum and softmax_lse_accum, fp32, FA3_MAX_SPLITS splits) for the
    largest FULL decode graph vLLM captures on Hopper from FA3_SPLITS_FROM (the comment above), or 0."""
    if (inf.engine != "vllm" or inf.vllm_v0 or inf.vllm_before(FA3_SPLITS_FROM) or not inf.cuda_graphs
            or gpu is None or gpu.architecture != "hopper" or a.is_mla or precision == "fp32"
            or not a.num_attention_heads or a.head_dim > FA3_MAX_HEAD_DIM):
        return 0
    decode = s.max_num_seqs * (1 + ((inf.speculative_tokens or 0) if inf.speculative_on else 0))
    tokens = min(v1_largest_capture(a, s, inf, gpu), s.max_num_batched_tokens, decode)
    heads = -(-a.num_attention_heads // layout.tensor)
    return FA3_MAX_SPLITS * heads * tokens * (a.head_dim + 1) * 4


def trtllm_graph_bytes(a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """TensorRT-LLM's CUDA graph pool (TRTLLM_GRAPH_MAX_BATCH): the decode forward of the largest captured batch, one
    token a request, and its logits (the output the shared pool keeps)."""
    batch = min(TRTLLM_GRAPH_MAX_BATCH, s.max_num_seqs)
    return forward_peak_bytes(a, layout, batch) + batch * a.vocab_size * ACT_BYTES


def graphs_unbudgeted(inf: Inference, a: ModelArch) -> bool:
    """The new runner before V2_GRAPH_ESTIMATE: no CUDA graph estimate in the KV cache's budget."""
    return v2_runner(inf, a) and inf.vllm_before(V2_GRAPH_ESTIMATE)


# FlashInfer's workspace in vLLM's CUDA graph estimate (read in 0.24.0 and 0.27.1): FlashInferMetadataBuilder
# (v1/attention/backends/flashinfer.py) allocates its workspace lazily, `_get_workspace_buffer`: torch.zeros of
# VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE = 394 MiB (envs.py), on the first build of attention metadata. The profile run
# builds none (_dummy_run without force_attention), so the first build is in profile_cudagraph_memory
# (gpu_model_runner.py): _warmup_and_capture of the first FULL descriptor forces attention, and mem_get_info's
# difference around it ("first-capture") takes the workspace in; determine_available_memory subtracts that estimate
# from the KV cache's budget (engines.GRAPHS_IN_BUDGET), and the real capture builds it again after the cache. FULL
# descriptors exist under V1's default cudagraph_mode FULL_AND_PIECEWISE (FlashInfer: UNIFORM_SINGLE_TOKEN_DECODE, so
# not with speculative decoding, which falls back to PIECEWISE: no attention is built in the estimate). FlashInfer is
# the backend (platforms/cuda.py _get_backend_priorities) first on SM100, and elsewhere where FLASH_ATTN is refused:
# an fp8 KV cache off Hopper (FlashAttentionBackend.supports_kv_cache_dtype: fp8 only with FA3 on SM90). One builder
# (one full-attention group) is counted; the SM100 TRT-LLM kernels' global workspace of the same size is not.
FLASHINFER_WORKSPACE_BYTES = 394 * 1024 * 1024


def flashinfer_graph_workspace_bytes(inf: Inference, gpu: GPU | None) -> int:
    """The FlashInfer workspace vLLM's CUDA graph estimate takes in (the comment above), or 0."""
    if inf.engine != "vllm" or gpu is None or not inf.cuda_graphs or inf.speculative_on:
        return 0
    sm100 = gpu.model.upper() in SM100_MODELS
    # below compute capability 8.0 V1 takes FlexAttention, not FlashInfer (platforms/cuda.py get_attn_backend_cls,
    # "FlexAttention is the default for older GPUs", read in 0.11.0; V0 before 0.10.2 there: engine_defaults.py)
    fp8_kv = inf.kv_cache_precision == "fp8" and gpu.architecture not in ("hopper", "volta", "turing")
    return FLASHINFER_WORKSPACE_BYTES if sm100 or fp8_kv else 0
