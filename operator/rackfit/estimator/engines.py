"""Serving engines' own memory plans: vLLM (V1), SGLang and TensorRT-LLM.

These engines do not grow a KV cache per request as `transformers` does: at start-up each measures
what the model needs (weights, a profile forward, buffers) and hands the rest of a fixed budget to
a preallocated KV cache. The question a workload asks is then how many tokens that cache holds,
and how many `contextLength` requests fit at once (vLLM's "Maximum concurrency").

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rackfit.catalog.types import GPU
from rackfit.estimator.activations import _dims
from rackfit.estimator.kvcache import kv_bytes_per_token_layer, kv_cache_bytes
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.estimator.startup import INIT_FREE_CHECK, init_refusal, outside_budget_bytes, warmup_refusal
from rackfit.models import ModelArch
from rackfit.spec import Inference
from rackfit.units import GiB, MiB

ACT_BYTES = 2  # bf16/fp16 activations
# cudaMemGetInfo's total is below the GPU Feature Discovery label (nvidia.com/gpu.memory): the driver
# keeps some. Published pairs (bench/cases/public/public-measurements.md, "What each logged number is"):
# H100 80GB 81,559 MiB label vs 79.22 GiB in vLLM's logs (0.43 GiB less), A100 40GB 40,960 vs 39.38-39.50
# (0.50-0.62), L40S 46,068 vs 44.42 (0.57). The median of the three, 0.5 GiB, is used for every GPU.
DRIVER_RESERVED = GiB // 2
# Memory outside PyTorch's allocator on one GPU (cuBLAS/cuDNN handles, the sampler's workspaces):
# vLLM logs non_torch_memory 0.10 GiB on one A100 (row S4).
NON_TORCH_BASE = GiB // 10
# NCCL communicators per peer in the tensor-parallel group over PCIe: 0.30 GiB at tensor 2 on L40S (row S3)
# = base + 0.2.
NCCL_PER_PEER = GiB // 5
# ...and over NVLink (GPU.nvlink: SXM boards), one flat 1.82 GiB per rank whatever the group's size. NCCL gives each
# channel, for each peer a rank connects to, a receive buffer per protocol (src/init.cc: DEFAULT_BUFFSIZE 4 MiB for
# Simple, DEFAULT_LL128_BUFFSIZE 120 x 640 x 8 x 8 B = 4.69 MiB, DEFAULT_LL_BUFFSIZE 512 KiB), and opens up to
# MAXCHANNELS (32) channels where the links are fast (NVLink) but a few over PCIe; a rank of a ring or tree connects
# to the same neighbours at tensor 2 as at 8, so the total does not grow with the group. vLLM runs NCCL without cuMem
# (env_override.py NCCL_CUMEM_ENABLE=0: no NVLS buffers) and holds two communicators per tensor group (PyNccl and
# the torch process group). Set by row S15 (vLLM 0.19.0, Llama 3.1 8B at tensor 2 on H100: "2.07 GiB for non-torch
# memory" against 0.25 GiB alone, S14); S16 logged 2.13 GiB at tensor 4 (checks it), and S1/S2 (V0, H100) 1.79 GiB
# more at tensor 2.
NCCL_NVLINK_GROUP = int(1.82 * GiB)
# vLLM's block size (vllm/config/cache.py: block_size 16 on CUDA): the cache holds whole blocks.
BLOCK_TOKENS = 16
# vLLM's CUDA graph capture sizes go up to 512 tokens (vllm/config/compilation.py,
# max_cudagraph_capture_size); the graphs share one memory pool sized by the largest capture, and each
# of the ~67 sizes x (layers + 1) piecewise graphs keeps private memory of its own. 408 KiB a piece: set by row S14
# (vLLM 0.19.0, Llama 3.1 8B on one H100: "Graph capturing finished in 3 secs, took 0.91 GiB", less the 512-token
# forward, over 67 x 33 pieces; it was 64 KiB, an estimate, 0.18 GiB where the log says 0.91). The other 0.19.0 logs
# read took 0.76 and 0.67 GiB at tensor 2 and 4 (rackfit 0.87 and 0.86). It counts inside the KV cache's budget from
# GRAPHS_IN_BUDGET (vLLM's own estimate there, "Estimated CUDA graph memory", is 0.6-1.8 GiB on S14-S34's models) and
# in the start-up verdict (startup.py) before it.
GRAPH_MAX_TOKENS = 512
GRAPH_SIZES = 67
GRAPH_PRIVATE_BYTES = 408 << 10
# The sizes vLLM captures (vllm/config/vllm.py VllmConfig._set_cudagraph_sizes): 1, 2, 4, then every 8 up to the largest
# (min(2 x max_num_seqs, 512)) through 0.11.0; from 0.11.1 every 8 below 256 and every 16 from 256 on (51 sizes at 512,
# where S14 logged "PIECEWISE=51 (largest=512)"), filtered by max_num_batched_tokens. gpt-oss raises the largest
# (vllm/model_executor/models/config.py GptOssForCausalLMConfig.verify_and_update_config, unless the user set capture
# sizes): to 992 in 0.10.1-0.11.0 ("from 67 to 81" graphs) and 1024 from 0.11.1 ("from 67 to 83"; S37 logged
# "PIECEWISE=83 (largest=1024), FULL=83"). GRAPH_SIZES and GRAPH_PRIVATE_BYTES stay what S14's default gives; a larger
# capture scales the pieces by the release's count of sizes over its default count (83 / 51 for gpt-oss from 0.11.1).
GRAPH_SIZES_STEP16 = (0, 11, 1)
GPT_OSS_CAPTURE_TOKENS = 1024
GPT_OSS_CAPTURE_TOKENS_BEFORE = 992
# TensorRT-LLM's defaults (tensorrt_llm/llmapi/llm_args.py: KvCacheConfig.free_gpu_memory_fraction 0.9,
# BuildConfig max_num_tokens 8192, max_batch_size 2048).
TRTLLM_FRACTION = 0.9
TRTLLM_MAX_TOKENS = 8192
TRTLLM_MAX_BATCH = 2048
# TensorRT-LLM's PyTorch backend captures one whole-forward decode graph per batch size of its CudaGraphConfig
# (tensorrt_llm/llmapi/llm_args.py CudaGraphConfig: max_batch_size 0 -> 128; sizes 1-31, 32, 64, 128, or with
# enable_padding 1, 2, 4 and every 8), every graph in one shared pool
# (tensorrt_llm/_torch/pyexecutor/cuda_graph_runner.py CUDAGraphRunner.capture: torch.cuda.graph(graph,
# pool=self.memory_pool), outputs kept as weak refs): the pool is the largest capture's forward and logits. vLLM's
# piecewise pieces (GRAPH_PRIVATE_BYTES per layer and size) do not apply.
TRTLLM_GRAPH_MAX_BATCH = 128
# vLLM releases where its memory plan changed: V1 the default engine (VLLM_USE_V1) from 0.8.0; the CUDA
# graph pool counted inside the KV cache's budget from 0.20.0: determine_available_memory subtracts the
# profile_cudagraph_memory estimate (PR 30515, "Account for CUDA graphs during memory profiling", opt-in) when
# VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS is set, and envs.py defaults it to "0" through 0.19.1 and to "1" from 0.20.0
# (read in the 0.19.0, 0.19.1, 0.20.0-0.20.2 and 0.21.0 wheels; 0.20.0's own log line says "default since v0.21.0",
# but its envs.py already turns it on). S14-S39's 0.19.0 logs print the variable False.
V1_DEFAULT = (0, 8)
GRAPHS_IN_BUDGET = (0, 20)
# V1's batch defaults for `vllm serve` by release (vllm/engine/arg_utils.py _set_default_args_v1, read in the
# 0.8.0-0.8.5, 0.9.0, 0.9.2, 0.10.0 and 0.10.1 wheels): 0.8.0-0.8.3 gave 8192 batched tokens to devices whose name
# holds "h100" or "h200" (current_platform.get_device_name(); GH200 included, B200 not) and 2048 to the rest, and 1024
# sequences to all; 0.8.4 the same names 8192 and 1024, the rest 2048 and 256; 0.8.5 by memory
# (get_device_total_memory() of 70 GiB or more: 8192 and 1024, A100 80GB included); from 0.9.0 by memory, not A100.
V1_SEQS_BY_DEVICE = (0, 8, 4)
V1_LARGE_BY_MEMORY = (0, 8, 5)
V1_LARGE_NOT_A100 = (0, 9)
V1_LARGE_DEVICE_NAMES = ("h100", "h200")
# MLA cached as its latent (kv_lora_rank + rope dims, one "head") from v0.7.1, the release that brought MLA to
# vLLM's DeepSeek models; before it, deepseek_v2.py's DeepseekV2Attention cached full K and V per head at
# qk_head_dim (V zero-padded from v_head_dim to qk_nope + qk_rope).
MLA_LATENT = (0, 7, 1)
# V0 turned chunked prefill on by itself above 32K tokens (vllm/engine/arg_utils.py EngineArgs.create_engine_config,
# 0.5.5-0.7.3: max_model_len > 32768, no sliding window, no LoRA or speculative model), with SchedulerConfig's default
# chunk of 2048 tokens (vllm/config.py SchedulerConfig.__post_init__): the profile run is then one chunk, not the
# whole context. MLA models (0.7.1-0.7.3) then had chunked prefill switched off again by VllmConfig.__post_init__
# ("MLA is enabled; forcing chunked prefill and prefix caching to be disabled"), after SchedulerConfig had already
# set max_num_batched_tokens to the chunk, so their profile run is one chunk too (read in the 0.7.0-0.7.3 wheels; from
# 0.8.0 _set_default_args_v0 leaves MLA out, but 0.8 is V1 here).
V0_LONG_CONTEXT = 32768
V0_CHUNK_TOKENS = 2048
# ...512 tokens before v0.6.5: PR 10544 ("Update default max_num_batch_tokens for chunked prefill to 2048", merged
# 2024-11-21, first released in v0.6.5) raised SchedulerConfig's chunked-prefill default from 512.
V0_CHUNK_2048 = (0, 6, 5)
V0_CHUNK_TOKENS_BEFORE = 512
# Without a GPU, the engines' GPU-dependent defaults are taken for an 80 GB one (H100, the common case).
ASSUMED_TOTAL = 80 * GiB
# The profile run's sampler (vllm/v1/worker/gpu_model_runner.py _dummy_sampler_run: top_k and top_p set for every
# dummy request, so both filters run), by the path each release takes on CUDA (v1/sample/ops/topk_topp_sampler.py):
# - FlashInfer (flashinfer_sample, top_k_top_p_sampling_from_logits): the bf16 logits, their fp32 copy, the masked
#   logits and the softmax, 14 bytes a logit.
# - PyTorch's sort (apply_top_k_top_p before 0.17.0, read in 0.8.5-0.13.0): at the scatter back, the bf16 logits (2),
#   the fp32 logits (4), the sorted values (4) and their int64 indices (8), both bool masks (2), the top-p softmax (4)
#   and the scattered logits (4): 28 bytes a logit (NATIVE_SAMPLER_BYTES). The peak is earlier, inside
#   `logits.sort()` itself (NATIVE_SORT_PEAK_BYTES): PyTorch sorts 128 rows or more as one segmented CUB sort
#   (aten/src/ATen/native/cuda/SortStable.cu launch_stable_sort_kernel -> segmented_sort_pairs), which allocates an
#   int64 index per logit to sort beside the keys (reverse_indices, 8), and CUB's DeviceSegmentedRadixSort::SortPairs
#   without a DoubleBuffer (at::cuda::cub::segmented_sort_pairs, aten/src/ATen/cuda/cub.cuh) takes temporary storage
#   for an alternate copy of the keys (fp32, 4) and the values (int64, 8): with the bf16 and fp32 logits and the
#   sort's outputs, 2 + 4 + 4 + 8 + 8 + 4 + 8 = 38 bytes a logit (NATIVE_SORT_TEMP_BYTES the 20 of them that live
#   only during the sort). vLLM 0.11.0's logs (S40, S45, S46: 5.64, 4.76, 7.38 GiB of activation peak, 38.4-38.9
#   bytes a logit with the hidden states held) agree; nothing was fitted to them. Below 128 rows PyTorch takes
#   segmented_sort_pairs_by_full_sort, whose buffers differ; rackfit counts the segmented sort's for every batch.
# - Triton from 0.17.0 (apply_top_k_top_p_triton for batches of 8 or more, read in 0.17.0-0.20.0 and 0.34.0): masks
#   the fp32 logits in place, so the bf16 logits (2, still held by _dummy_sampler_run), the fp32 logits (4),
#   forward_native's softmax (4) and random_sample's exponential draws (4): 14 bytes a logit, plus the kernel's
#   per-program buffer of fp32 logits rows (_TRITON_BUFFER_CACHE: min(next_power_of_2(batch), SMs) x vocab x 4).
# FlashInfer is only an extra of the vllm wheel up to 0.11.0 ("Requires-Dist: flashinfer-python; extra ==
# 'flashinfer'"), a requirement from 0.11.1, and its sampler opt-in (VLLM_USE_FLASHINFER_SAMPLER unset: None) through
# 0.20.0 (read in the 0.8.5-0.20.0 wheels; 0.19.0's log: "FlashInfer top-p/top-k sampling is available but disabled
# by default"); from 0.21.0 envs.py defaults it to True. So `pip install vllm` of a V1 release before 0.21.0 samples
# natively: by sort before 0.17.0, by the Triton kernel from it.
# V0 (before 0.8.0) sorts the same way (vllm/model_executor/layers/sampler.py Sampler.forward: the bf16 logits, still
# held by ModelRunner.execute_model, `logits.to(torch.float)`, then _apply_top_k_top_p's `logits.sort()` over the
# profile's 256 dummy sequences, whose SamplingParams(top_p=0.99, top_k=vocab_size - 1) turn both filters on);
# FlashInfer only with VLLM_USE_FLASHINFER_SAMPLER set (envs.py: None) and flashinfer installed. The logits are
# gathered to the driver rank under tensor parallel (logits_processor.py tensor_model_parallel_gather), which alone
# samples, and execute_model keeps the whole forward's hidden states alive meanwhile (read in the 0.6.4, 0.7.0 and
# 0.7.1 wheels). S1 and S2 (PR 10511: "PyTorch activation peak memory 1.26GiB" for Llama 3 8B at 8,192 tokens, tensor
# 1 and 2) agree: 1.23 GiB with the sort, 0.78 (the forward) without it; sets nothing. V0_SORT_SAMPLER names this note.
FLASHINFER_SAMPLER_BYTES = 14
NATIVE_SAMPLER_BYTES = 28
NATIVE_SORT_TEMP_BYTES = 8 + 4 + 8
NATIVE_SORT_PEAK_BYTES = 2 + 4 + 4 + 8 + NATIVE_SORT_TEMP_BYTES
TRITON_SAMPLER_BYTES = 14
TRITON_SAMPLER_FROM = (0, 17)
TRITON_SAMPLER_MIN_BATCH = 8
FLASHINFER_SAMPLER_DEFAULT = (0, 21)
# Streaming multiprocessors (num_compute_units: the Triton sampler's buffer rows), from NVIDIA's data sheets; other
# GPUs take an H100's, as ASSUMED_TOTAL does.
SM_COUNT = {"A10": 72, "A100": 108, "B200": 148, "GB200": 148, "GH200": 132, "H100": 132, "H200": 132, "L4": 58,
            "L40": 142, "L40S": 142, "RTX 3090": 82, "RTX Pro 6000 Blackwell": 188}
ASSUMED_SMS = 132
# What the profile run holds while the sampler runs (vllm/v1/worker/gpu_model_runner.py profile_run): from 0.9.2
# _dummy_run returns the whole forward's hidden states beside the sampled rows (`return hidden_states,
# hidden_states[logit_indices]`) and profile_run keeps both until `del hidden_states, output` (read in 0.9.2, 0.19.0
# and, in the v2 runner, 0.34.0; 0.8.5-0.9.1 return only the sampled rows); from 0.9.0 _dummy_sampler_run adds its
# torch.rand_like copy of those rows (read in 0.9.0, 0.9.1, 0.9.2 and 0.19.0; not in 0.8.5).
FULL_HIDDEN_HELD = (0, 9, 2)
SAMPLER_RANDOM_ROWS = (0, 9)
# From 0.14.0 the fused-MoE layers run as a FusedMoEModularKernel (TritonExperts on Hopper for bf16 and fp8) whose
# workspaces come from the process-wide WorkspaceManager (fused_moe/modular_kernel.py _allocate_buffers,
# v1/worker/workspace.py get_simultaneous): one buffer, grown to the largest request and never freed, so the profile's
# 8,192-token forward leaves it allocated through the sampler run. 0.13.0 still called fused_experts directly, whose
# caches are freed after each layer (unquantized_fused_moe_method.py; read in 0.13.0, 0.14.0, 0.19.0, 0.34.0).
MOE_WORKSPACE_HELD = (0, 14)
# SGLang's default mem_fraction_static by release (python/sglang/srt/server_args.py ServerArgs.__post_init__, read in
# the 0.2.15, 0.3.0, 0.3.3, 0.3.5, 0.3.6, 0.4.0-0.4.10, 0.5.0rc0, 0.5.1-0.5.6 and 0.5.8 wheels;
# _sglang_fraction_before): by tensor size before 0.4.6 (at 8 ranks 0.83 before 0.3.6, 0.82 in 0.3.6), capped by
# memory from 0.4.6, by tensor x pipeline from 0.4.7, memory less a reserve table from 0.4.8, the reserve formula of
# _sglang_fraction from 0.5.3 (_handle_gpu_memory_settings).
SGLANG_082 = (0, 3, 6)
SGLANG_081 = (0, 4, 0)
SGLANG_BY_MEMORY = (0, 4, 6)
SGLANG_TP_PP = (0, 4, 7)
SGLANG_RESERVE_TABLE = (0, 4, 8)
SGLANG_RESERVE_FORMULA = (0, 5, 3)
# SGLang starts with any pool that holds a few tokens: TpModelWorker.__init__ (python/sglang/srt/managers/tp_worker.py)
# caps each request at max_req_len = min(context_len - 1, max_total_num_tokens - 1) and asserts only that
# max_req_input_len = max_req_len - 5 is positive ("Memory pool size is too small"); longer inputs are rejected per
# request ("Input length ... exceeds the maximum allowed length"). vLLM refuses a max_model_len its cache cannot hold.
SGLANG_MIN_POOL_TOKENS = 7
# The CUDA context alone, before cuBLAS creates its handle and workspace: 552,402,944 B on the H200 that measured
# CUDA_CONTEXT_BYTES (bench/cases/h200/h200-memory-calibration.jsonl, `environment` row: used_before_bytes;
# used_after_cublas_bytes is CUDA_CONTEXT_BYTES). SGLang takes its baseline before cuBLAS exists (below).
CONTEXT_BEFORE_CUBLAS = 552_402_944
# V1 releases before 0.9.1 sized the cache as util x total less torch's allocated peak and everything else the GPU
# holds (vllm/v1/worker/gpu_worker.py determine_available_memory: total_allocated_bytes = mem_get_info()[1] -
# mem_get_info()[0]; non_torch_allocations added to peak_memory): the CUDA context is inside the budget. From 0.9.1
# (memory_profiling against the snapshot taken at init_device, after the context) it is not.
V1_CONTEXT_IN_BUDGET_UNTIL = (0, 9, 1)
# vLLM's default gpu_memory_utilization (vllm/config/cache.py, CacheConfig): 0.9 through 0.19.x, 0.92 from 0.20.0
# (read in the 0.14.1-0.19.0 and 0.20.0-0.33.0 wheels); 1.0 with the extensible KV cache
# (CacheConfig.resolved_gpu_memory_utilization, 0.34.0).
VLLM_UTIL_092 = (0, 20)
# The extensible KV cache (0.34.0, spec.EXTENSIBLE_KV_CACHE) is sized from the memory measured after warmup and
# CUDA graph capture (vllm/v1/worker/extensible_kv_cache.py, measure_kv_cache_bytes): min(requested - what the
# engine holds, free - margin) less the profiled activation peak, the margin max(KV_CACHE_MARGIN_FLOOR_BYTES 1 GiB,
# KV_CACHE_MARGIN_FRACTION 0.75 x that peak).
EXTENSIBLE_MARGIN_FLOOR = GiB
EXTENSIBLE_MARGIN_FRACTION = 0.75


def cuda_total_bytes(gpu: GPU) -> int:
    """Total memory as CUDA reports it on this GPU: what the engines' fractions multiply."""
    return gpu.memory_bytes - DRIVER_RESERVED


def settings(inf: Inference, gpu: GPU | None, tensor: int, pipeline: int, a: ModelArch | None = None
             ) -> EngineSettings:
    """The engine's settings on `gpu`: the spec's, else the engine's defaults for that GPU."""
    total = cuda_total_bytes(gpu) if gpu else None
    if inf.engine == "vllm" and inf.vllm_before(V1_DEFAULT):
        # V0 without chunked prefill (vllm/config.py SchedulerConfig before 0.8): the profile run takes
        # max(max_model_len, 2048) tokens over max_num_seqs 256 sequences; above 32K tokens V0 chunked them
        util, tokens, seqs = 0.9, max(inf.context_length, 2048), 256
        if inf.context_length > V0_LONG_CONTEXT and a is not None and not a.sliding_window:
            tokens = V0_CHUNK_TOKENS_BEFORE if inf.vllm_before(V0_CHUNK_2048) else V0_CHUNK_TOKENS
    elif inf.engine == "vllm":
        util = 1.0 if inf.extensible else 0.9 if inf.vllm_before(VLLM_UTIL_092) else 0.92
        tokens, seqs = _v1_batch_defaults(inf, gpu, total)
    elif inf.engine == "sglang":
        # SGLang sizes its defaults by nvidia-smi's memory.total (utils get_nvgpu_memory_capacity), the label's MiB
        mib = gpu.memory_mib if gpu else (ASSUMED_TOTAL + DRIVER_RESERVED) // MiB
        if inf.sglang_before(SGLANG_RESERVE_FORMULA):
            tokens, seqs = _sglang_defaults_before(inf, mib, tensor)
            util = _sglang_fraction_before(inf, mib, tensor, pipeline)
        else:
            tokens, seqs = _sglang_defaults(mib, tensor)
            # the reserve takes the chunk as set (--chunked-prefill-size), the graph batch as defaulted
            util = _sglang_fraction(mib, inf.max_num_batched_tokens or tokens, seqs, tensor, pipeline)
    else:
        util, tokens, seqs = TRTLLM_FRACTION, TRTLLM_MAX_TOKENS, TRTLLM_MAX_BATCH
    return EngineSettings(engine=inf.engine, gpu_memory_utilization=inf.gpu_memory_utilization or util,
                          max_num_batched_tokens=inf.max_num_batched_tokens or tokens,
                          max_num_seqs=inf.max_num_seqs or seqs, max_model_len=inf.context_length)


def _v1_batch_defaults(inf: Inference, gpu: GPU | None, total: int | None) -> tuple[int, int]:
    """vLLM V1's max_num_batched_tokens and max_num_seqs for `vllm serve` (EngineArgs.get_batch_defaults, before it
    _set_default_args_v1): GPUs of 70 GiB or more other than A100 get 8192 tokens and 1024 sequences, the rest 2048 and
    256; releases before 0.9.0 decided otherwise (V1_SEQS_BY_DEVICE, V1_LARGE_BY_MEMORY, V1_LARGE_NOT_A100). Without
    a GPU the large defaults are assumed."""
    if total is None:
        return 8192, 1024
    if inf.vllm_before(V1_LARGE_BY_MEMORY):
        large = any(name in gpu.model.lower() for name in V1_LARGE_DEVICE_NAMES)
        return (8192, 1024) if large else (2048, 1024 if inf.vllm_before(V1_SEQS_BY_DEVICE) else 256)
    large = total >= 70 * GiB and (inf.vllm_before(V1_LARGE_NOT_A100) or "A100" not in gpu.model)
    return (8192, 1024) if large else (2048, 256)


def _sglang_defaults(mib: float, tensor: int) -> tuple[int, int]:
    """python/sglang/srt/server_args.py, ServerArgs._handle_gpu_memory_settings (SGLang of late 2025, v0.5): by the
    GPU's memory in MiB, chunked_prefill_size 2048 below 35 GiB, 4096 below 60, 8192 below 160, else 16384; and
    cuda_graph_max_bs 8 below 20 GiB, 24 below 35 (80 from tensor 4), 32 below 60 (160), 256 below 160 (512), else 512.
    max_running_requests is bounded by the KV pool rather than a default, so the graph batch stands in for it."""
    gib = mib / 1024
    wide = tensor >= 4
    if gib < 20:
        return 2048, 8
    if gib < 35:
        return 2048, 80 if wide else 24
    if gib < 60:
        return 4096, 160 if wide else 32
    if gib < 160:
        return 8192, 512 if wide else 256
    return 16384, 512


def _sglang_fraction(mib: float, chunk: int, graph_bs: int, tensor: int, pipeline: int) -> float:
    """SGLang's default mem_fraction_static (the same _handle_gpu_memory_settings): what is left after a reserve in MiB
    for metadata (512), prefill activations (1.5 x chunk), CUDA graphs (2 x batch) and large groups (tp x pp / 8 GiB),
    at least 10 GiB on GPUs above 60 GiB. On an L40S (46,068 MiB) that is 0.851, which SGLang logged there
    (sgl-project/sglang PR 13023, 2025-11-11: server_args ... mem_fraction_static=0.851)."""
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + tensor * pipeline / 8 * 1024
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


def _sglang_fraction_before(inf: Inference, mib: float, tensor: int, pipeline: int) -> float:
    """SGLang's default mem_fraction_static before SGLANG_RESERVE_FORMULA (ServerArgs.__post_init__ in
    python/sglang/srt/server_args.py, by the GPU's memory in MiB, get_nvgpu_memory_capacity):
    - before 0.4.6, by tensor size alone: 0.79 from 16 ranks, 0.81 from 8 (0.82 in 0.3.6, 0.83 before it), 0.85 from
      4, 0.87 from 2, 0.88 on one (0.2.15-0.4.5 read, not every post-release); S72-S74 logged 0.85 at tensor 4
      (0.4.3.post4), 0.88 at 1;
    - 0.4.6: that table up to 81,920 MiB, (memory - 13 GiB) / memory above it;
    - 0.4.7: the table by tensor x pipeline up to 81,920 MiB, 0.88 above; then 0.79 above 180,000 MiB, and above 96 GiB
      min(f + 48 GiB x (1 - f) / memory, (memory - 18 GiB) / memory);
    - 0.4.8-0.5.2: memory less a reserve in GiB of 2.8 + tensor x pipeline / 10 below 35 GiB, 9.5 + tp x pp / 2 below
      90, 12 + tp x pp / 2 below 160, else 32 (rounded to 3 places).
    Speculative decoding and DP attention, which reserve more, are not modelled."""
    ranks = tensor * pipeline
    if inf.sglang_before(SGLANG_RESERVE_TABLE):
        eight = 0.83 if inf.sglang_before(SGLANG_082) else 0.82 if inf.sglang_before(SGLANG_081) else 0.81
        by_size = [(16, 0.79), (8, eight), (4, 0.85), (2, 0.87)]
        size = ranks if not inf.sglang_before(SGLANG_TP_PP) else tensor
        frac = next((f for n, f in by_size if size >= n), 0.88)
        if not inf.sglang_before(SGLANG_TP_PP):  # 0.4.7
            frac = frac if mib <= 81920 else 0.88
            if mib > 180_000:
                return 0.79
            if mib > 96 * 1024:
                return min(frac + 48 * 1024 * (1 - frac) / mib, (mib - 18 * 1024) / mib)
            return frac
        if not inf.sglang_before(SGLANG_BY_MEMORY) and mib > 81920:  # 0.4.6
            return (mib - 13 * 1024) / mib
        return frac
    gib = 2.8 + ranks / 10 if mib < 35 * 1024 else 9.5 + ranks / 2 if mib < 90 * 1024 else \
        12 + ranks / 2 if mib < 160 * 1024 else 32
    return round((mib - gib * 1024) / mib, 3)


def _sglang_defaults_before(inf: Inference, mib: float, tensor: int) -> tuple[int, int]:
    """SGLang's chunked_prefill_size and cuda_graph_max_bs before SGLANG_RESERVE_FORMULA (server_args.py): a chunk of
    2048 below 25,000 MiB (below 35 GiB from 0.4.8), else 8192 (16384 above 180,000 MiB in 0.4.7, from 160 GiB from
    0.4.8); graphs up to 8 requests on those small GPUs below tensor 4, 80 from it, else the capture's default 160."""
    small = mib < (35 * 1024 if not inf.sglang_before(SGLANG_RESERVE_TABLE) else 25_000)
    if small:
        return 2048, 8 if tensor < 4 else 80
    large = (mib >= 160 * 1024) if not inf.sglang_before(SGLANG_RESERVE_TABLE) else \
        (mib > 180_000 and not inf.sglang_before(SGLANG_TP_PP))
    return (16384 if large else 8192), 160


def non_torch_bytes(layout: Layout, gpu: GPU | None = None) -> int:
    """NCCL communicators: over PCIe they grow with the tensor-parallel group's peers, over NVLink a tensor group
    costs NCCL_NVLINK_GROUP whatever its size (without a GPU, an NVLink one is assumed, as ASSUMED_TOTAL assumes an
    H100); the pipeline's send/recv peer counts as one PCIe peer."""
    pipe = 1 if layout.pipeline > 1 else 0
    if layout.tensor > 1 and (gpu is None or gpu.nvlink):
        return NON_TORCH_BASE + NCCL_NVLINK_GROUP + NCCL_PER_PEER * pipe
    return NON_TORCH_BASE + NCCL_PER_PEER * (layout.tensor - 1 + pipe)


def forward_peak_bytes(a: ModelArch, layout: Layout, tokens: int) -> int:
    """The widest layer's live tensors in an inference forward of `tokens` tokens on one rank: the
    residual and its normed copy, plus the attention's q/k/v and output, or the MLP's fused gate/up
    output and its activation (vllm/model_executor/models/llama.py: qkv_proj, o_proj, gate_up_proj,
    SiluAndMul). MoE layers hold fused_moe's intermediate caches for every top-k copy of each token
    (vllm/model_executor/layers/fused_moe/fused_moe.py: intermediate_cache1..3)."""
    t, h = layout.tensor, a.hidden_size
    q, kv = _dims(a)
    widths = [q / t + kv / max(1, min(t, a.num_key_value_heads or t)) + q / t]
    mult = 3 if a.gated_mlp else 2
    if a.num_layers > a.moe_layers:
        widths.append(mult * a.intermediate_size / t)
    if a.is_moe:
        width = a.moe_intermediate_size / (1 if layout.expert > 1 else t)
        widths.append(a.num_experts_per_token * (mult * width + h)
                      + a.num_shared_experts * mult * a.moe_intermediate_size / t)
    return int(tokens * (2 * h + max(widths)) * ACT_BYTES)


def sampler_peak_bytes(a: ModelArch, layout: Layout, requests: int, path: str = "flashinfer",
                       gpu: GPU | None = None) -> int:
    """The profile run's sampler: logits of each request's last token (bf16, gathered over tensor
    parallel) and what top-k/top-p sampling keeps beside them (vllm/v1/sample/sampler.py,
    ops/topk_topp_sampler.py), by `path` (sampler_path): FlashInfer's with the bf16 shard still alive at its peak,
    PyTorch's native sort, whose peak (inside the segmented CUB sort) comes after the shard is freed, or the Triton
    kernel's in-place masking and its buffer of min(next_power_of_2(requests), SMs) fp32 rows. Only the last pipeline
    stage samples."""
    if path == "sort":
        # the sort's own buffers (SortStable.cu segmented_sort_pairs, CUB's temporary storage) over the scatter's peak
        return requests * a.vocab_size * max(NATIVE_SAMPLER_BYTES, NATIVE_SORT_PEAK_BYTES)
    if path == "triton":
        sms = SM_COUNT.get(gpu.model, ASSUMED_SMS) if gpu else ASSUMED_SMS
        rows = min(1 << max(0, requests - 1).bit_length(), sms)
        return requests * a.vocab_size * TRITON_SAMPLER_BYTES + rows * a.vocab_size * 4
    shard = a.vocab_size // layout.tensor if layout.tensor > 1 else 0
    return requests * (a.vocab_size * FLASHINFER_SAMPLER_BYTES + shard * 2)


def sampler_path(inf: Inference, requests: int = TRITON_SAMPLER_MIN_BATCH) -> str:
    """How vLLM samples top-k/top-p: through FlashInfer as the spec says (`flashinferSampler`), else by the
    release's default (FLASHINFER_SAMPLER_DEFAULT); natively by sort before TRITON_SAMPLER_FROM or below
    TRITON_SAMPLER_MIN_BATCH requests (apply_top_k_top_p), by the Triton kernel from it. V0 sorts too (V0_SORT_SAMPLER).
    Other engines take FlashInfer's count."""
    if inf.engine != "vllm":
        return "flashinfer"
    flashinfer = (inf.flashinfer_sampler if inf.flashinfer_sampler is not None
                  else not inf.vllm_before(FLASHINFER_SAMPLER_DEFAULT))
    if inf.vllm_before(V1_DEFAULT):
        return "flashinfer" if flashinfer else "sort"
    if flashinfer:
        return "flashinfer"
    return "sort" if inf.vllm_before(TRITON_SAMPLER_FROM) or requests < TRITON_SAMPLER_MIN_BATCH else "triton"


def native_sampler(inf: Inference) -> bool:
    """vLLM V1 sampling top-k/top-p natively (sort or Triton), not through FlashInfer."""
    return sampler_path(inf) != "flashinfer"


def moe_workspace_bytes(a: ModelArch, layout: Layout, tokens: int) -> int:
    """The fused-MoE workspace a forward of `tokens` tokens leaves in vLLM's WorkspaceManager (MOE_WORKSPACE_HELD):
    TritonExperts.workspace_shapes (fused_moe/fused_moe.py; experts/triton_moe.py in 0.34.0) with M tokens, top-k,
    N the gate/up output width on this rank and K the hidden size: workspace13 (M, top_k, max(activation out, K)),
    also holding the output (M, K), and workspace2 (M, top_k, max(N, K)), in the activations' dtype."""
    if not a.is_moe:
        return 0
    width = a.moe_intermediate_size / (1 if layout.expert > 1 else layout.tensor)
    n = (2 if a.gated_mlp else 1) * width
    h = a.hidden_size
    return int(tokens * a.num_experts_per_token * (max(width, h) + max(n, h)) * ACT_BYTES)


def profile_held_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings, requests: int) -> int:
    """What vLLM V1's profile run holds beside the sampler's own tensors on the last pipeline stage: the dummy
    forward's sampled rows, all its hidden states from FULL_HIDDEN_HELD, and _dummy_sampler_run's random copy of the
    sampled rows from SAMPLER_RANDOM_ROWS; the fused-MoE workspace (MOE_WORKSPACE_HELD); on a stage after the first, the
    IntermediateTensors buffer it receives into (gpu_model_runner.py _dummy_run: make_empty_intermediate_tensors of
    max_num_tokens, hidden states and residual: pipeline_buffer_bytes). V0 holds the whole forward's hidden states
    (V0_SORT_SAMPLER); other engines the sampled rows."""
    rows = requests * a.hidden_size * ACT_BYTES
    if inf.engine != "vllm":
        return rows
    if inf.vllm_before(V1_DEFAULT):
        return s.max_num_batched_tokens * a.hidden_size * ACT_BYTES
    tokens = s.max_num_batched_tokens
    held = rows + (0 if inf.vllm_before(SAMPLER_RANDOM_ROWS) else rows)
    held += 0 if inf.vllm_before(FULL_HIDDEN_HELD) else tokens * a.hidden_size * ACT_BYTES
    if not inf.vllm_before(MOE_WORKSPACE_HELD):
        held += moe_workspace_bytes(a, layout, tokens)
    return held + pipeline_buffer_bytes(inf, a, layout, s)


def pipeline_buffer_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """vLLM V1 on a pipeline stage after the first: the IntermediateTensors buffer (hidden states and residual of
    max_num_tokens tokens) that _dummy_run allocates and keeps (gpu_model_runner.py, self.intermediate_tensors; read in
    0.8.5, 0.9.2 and 0.19.0). 0.34.0's runner allocates it when loading the model (v1/worker/gpu/model_runner.py), so
    its log counts it with the weights; either way it comes out of the KV cache's budget."""
    if inf.engine != "vllm" or inf.vllm_before(V1_DEFAULT) or layout.pipeline == 1:
        return 0
    return 2 * s.max_num_batched_tokens * a.hidden_size * ACT_BYTES


def graph_capture_sizes(largest: int, step16: bool) -> int:
    """How many batch sizes vLLM captures up to `largest` (VllmConfig._set_cudagraph_sizes): 1, 2, 4, then every 8,
    from 0.11.1 (`step16`) every 16 from 256 on."""
    if largest < 8:
        return sum(1 for n in (1, 2, 4) if n <= largest)
    if not step16 or largest < 256:
        return 3 + len(range(8, largest + 1, 8))
    return 3 + len(range(8, 256, 8)) + len(range(256, largest + 1, 16))


def gpt_oss(a: ModelArch) -> bool:
    """A gpt-oss checkpoint by its name (preset, config.json's _name_or_path or model_type): vLLM's GptOssForCausalLM,
    which captures larger CUDA graphs. A bare `architecture` has no name and is taken as any other model."""
    return "gpt-oss" in a.name.lower() or "gpt_oss" in a.name.lower()


def cuda_graph_bytes(a: ModelArch, layout: Layout, s: EngineSettings, inf: Inference | None = None) -> int:
    """The graph pool: one forward of the largest captured batch, and GRAPH_PRIVATE_BYTES for each captured piece
    (GRAPH_SIZES sizes x (layers + 1) at vLLM's default largest size, scaled by the sizes a larger capture adds)."""
    default = min(GRAPH_MAX_TOKENS, 2 * s.max_num_seqs)
    tokens, sizes = default, GRAPH_SIZES
    if inf is not None and inf.engine == "vllm" and gpt_oss(a):
        # GptOssForCausalLMConfig.verify_and_update_config; the sizes are then filtered by max_num_batched_tokens
        step16 = not inf.vllm_before(GRAPH_SIZES_STEP16)
        tokens = min(GPT_OSS_CAPTURE_TOKENS if step16 else GPT_OSS_CAPTURE_TOKENS_BEFORE, s.max_num_batched_tokens)
        # (before 0.11.1 gpt-oss's own list already stepped by 16 from 256: 81 sizes against the default's 67)
        sizes = GRAPH_SIZES * graph_capture_sizes(tokens, True) / graph_capture_sizes(default, step16)
    stage_layers = -(-a.num_layers // layout.pipeline)
    return forward_peak_bytes(a, layout, tokens) + int(sizes * (stage_layers + 1) * GRAPH_PRIVATE_BYTES)


def trtllm_graph_bytes(a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """TensorRT-LLM's CUDA graph pool (TRTLLM_GRAPH_MAX_BATCH): the decode forward of the largest captured batch, one
    token a request, and its logits (the output the shared pool keeps)."""
    batch = min(TRTLLM_GRAPH_MAX_BATCH, s.max_num_seqs)
    return forward_peak_bytes(a, layout, batch) + batch * a.vocab_size * ACT_BYTES


def fp8_block_refusal(engine: str, a: ModelArch, layout: Layout) -> str | None:
    """A block-scaled fp8 checkpoint (`weight_block_size`, e.g. 128x128) split over tensor parallel so that a rank's
    share of a quantized MLP is not a whole number of blocks: vLLM refuses to load it (quantization/fp8.py,
    Fp8MoEMethod.create_weights: "The output_size of gate's and up's weight = 192 is not divisible by weight
    quantization block_n = 128"; dense layers: validate_fp8_block_shape, output_partition_size % block_n and, split
    over tensor, input_size_per_partition % block_k), and SGLang's fp8.py the same. Routed experts under expert
    parallelism keep their whole width."""
    q = a.quantization
    t = layout.tensor
    if q is None or q.weight_block is None or t == 1:
        return None
    block_n, block_k = q.weight_block
    widths = []
    if a.is_moe and layout.expert == 1 and any(lb.experts < q.dtype_bytes for lb in q.layers):
        widths.append(("routed experts' gate and up", a.moe_intermediate_size))
    if a.is_moe and a.num_shared_experts and any(lb.shared < q.dtype_bytes for lb in q.layers):
        widths.append(("shared experts' gate and up", a.num_shared_experts * a.moe_intermediate_size))
    if a.num_layers > a.moe_layers and any(lb.mlp < q.dtype_bytes for lb in q.layers):
        widths.append(("dense MLP's gate and up", a.intermediate_size))
    for what, width in widths:
        if width % t or (width // t) % block_n or (width // t) % block_k:
            share = width / t
            fits = [d for d in range(1, 9) if width % d == 0 and (width // d) % block_n == 0
                    and (d == 1 or (width // d) % block_k == 0)]
            return (f"{engine} would refuse to start: the checkpoint's fp8 weights are scaled per {block_n}x{block_k} "
                    f"block, and tensor {t} gives the {what} projections {share:g} columns per GPU, not a multiple of "
                    f"{block_n} (vLLM: \"output_size of gate's and up's weight = {share:g} is not divisible by weight "
                    f"quantization block_n = {block_n}\"); tensor degrees that divide it: "
                    f"{', '.join(map(str, fits)) or 'none'}" + (", or expert parallelism" if "routed" in what else ""))
    return None


def startup_refusal(inf: Inference, s: EngineSettings, layout: Layout, gpu: GPU, total: int, budget: int, act: int,
                    graphs: int, sampler: int, context: int, moe: bool = False) -> str | None:
    """vLLM's start-up outside the KV cache's budget (startup.py): the free-memory check at init_device, then the
    graph pool (before GRAPHS_IN_BUDGET) and V1's sampler warm-up in what the allocated cache leaves. From
    INIT_FREE_CHECK the baseline snapshot holds only the bare CUDA context (CONTEXT_BEFORE_CUBLAS: cuBLAS's workspace
    comes later, inside the non-torch count), and from NCCL_BEFORE_SNAPSHOT NCCL's communicators."""
    if inf.engine != "vllm":
        return None
    v1 = not inf.vllm_before(V1_DEFAULT)
    if v1 and not inf.vllm_before(INIT_FREE_CHECK):
        context = min(context, CONTEXT_BEFORE_CUBLAS)
    outside = outside_budget_bytes(inf, layout, gpu, context, moe)
    return (init_refusal(inf, total, s.gpu_memory_utilization, outside) if v1 else None) or warmup_refusal(
        inf, s.gpu_memory_utilization, total, budget, act, graphs, sampler, outside,
        inf.cuda_graphs and inf.vllm_before(GRAPHS_IN_BUDGET), v1)


@dataclass(frozen=True)
class Served:
    """One engine rank's memory plan. `kv_needed` is the cache `concurrency` full-length requests
    take; `kv_pool` what the engine allocates on `gpu` (None without one)."""

    settings: EngineSettings
    activations: int
    cuda_graphs: int
    non_torch: int
    kv_needed: int
    per_token: int  # KV bytes per token on this rank, all its layers
    per_request: int  # KV bytes of one contextLength request (sliding windows capped)
    budget: int | None = None
    kv_pool: int | None = None
    refused: str | None = None  # why the engine would not start on this layout (then no request fits)

    @property
    def kv_tokens(self) -> int | None:
        if self.kv_pool is None:
            return None
        return self.kv_pool // (BLOCK_TOKENS * self.per_token) * BLOCK_TOKENS

    @property
    def max_concurrency(self) -> float | None:
        if self.kv_pool is None:
            return None
        return 0.0 if self.refused else round(self.kv_pool / self.per_request, 2)

    @property
    def starts(self) -> bool | None:
        """Whether the engine process starts on this GPU (None without one): not when it refuses the layout; vLLM and
        TensorRT-LLM not below one contextLength request; SGLang whenever its pool holds SGLANG_MIN_POOL_TOKENS, capping
        each request at what it holds."""
        if self.kv_pool is None:
            return None
        if self.refused:
            return False
        if self.settings.engine == "sglang":
            return self.kv_pool // self.per_token >= SGLANG_MIN_POOL_TOKENS
        return self.max_concurrency >= 1


def profile_requests(inf: Inference, s: EngineSettings) -> int:
    """The requests whose logits the engine's profile run samples. vLLM V1's _dummy_sampler_run: one per sequence slot
    (max_num_seqs, at most max_num_batched_tokens). TensorRT-LLM's PyTorch backend estimates the KV cache with dummy
    context requests of min(max_num_tokens, max_seq_len - 1) tokens until max_num_tokens are used, each generating one
    token (tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator._create_dummy_context_requests, called with
    net_max_seq_len - 1): at 8,192 tokens and a context of 8,192 that is two requests, not 2,048."""
    if inf.engine == "tensorrt-llm":
        per_request = max(1, min(s.max_num_batched_tokens, s.max_model_len - 1))
        return -(-s.max_num_batched_tokens // per_request)
    return min(s.max_num_batched_tokens, s.max_num_seqs)


def serve(inf: Inference, a: ModelArch, layout: Layout, weights: int, context: int, gpu: GPU | None
          ) -> Served:
    """The engine's plan for this rank (the heaviest stage: the minimum over ranks is what counts)."""
    s = settings(inf, gpu, layout.tensor, layout.pipeline, a)
    latent = not (inf.engine == "vllm" and inf.vllm_before(MLA_LATENT))
    requests = profile_requests(inf, s)
    sampler = (sampler_peak_bytes(a, layout, requests, sampler_path(inf, requests), gpu)
               + profile_held_bytes(inf, a, layout, s, requests))
    act = max(forward_peak_bytes(a, layout, s.max_num_batched_tokens) + pipeline_buffer_bytes(inf, a, layout, s),
              sampler)
    if not inf.cuda_graphs:
        graphs = 0
    elif inf.engine == "tensorrt-llm":
        graphs = trtllm_graph_bytes(a, layout, s)
    else:
        graphs = cuda_graph_bytes(a, layout, s, inf)
    nt = non_torch_bytes(layout, gpu)
    sequences = inf.per_replica(layout.data)
    per_request = kv_cache_bytes(a, inf.kv_cache_precision, layout, inf.context_length, 1, s.max_num_batched_tokens,
                                 mla_latent=latent)
    per_token = (kv_bytes_per_token_layer(a, inf.kv_cache_precision, layout.tensor, mla_latent=latent)
                 * -(-a.num_layers // layout.pipeline))
    plan = Served(s, act, graphs, nt, per_request * sequences, per_token, per_request,
                  refused=fp8_block_refusal(inf.engine, a, layout) if inf.engine in ("vllm", "sglang") else None)
    if gpu is None:
        return plan
    total = cuda_total_bytes(gpu)
    if inf.engine == "vllm":
        # vllm/v1/worker/gpu_worker.py, determine_available_memory: the KV cache gets
        # util x total less weights, the profile run's torch peak, non-torch memory and the CUDA
        # graph pool (counted since v0.20.0; before, the graphs were captured after the cache was
        # sized and came out of the 1 - util). The CUDA context predates the baseline snapshot.
        budget = int(s.gpu_memory_utilization * total)
        # V1 before 0.9.1 counted the CUDA context inside the budget (V1_CONTEXT_IN_BUDGET_UNTIL); then what the cache
        # leaves free for graph capture is total - budget + the freed activations, the context already paid
        in_budget = context if not inf.vllm_before(V1_DEFAULT) and inf.vllm_before(V1_CONTEXT_IN_BUDGET_UNTIL) else 0
        if inf.extensible:
            held = weights + nt + graphs
            margin = max(EXTENSIBLE_MARGIN_FLOOR, int(EXTENSIBLE_MARGIN_FRACTION * act))
            pool = min(budget - held, total - context - held - margin) - act
        else:
            pool = budget - weights - act - nt - in_budget - (0 if inf.vllm_before(GRAPHS_IN_BUDGET) else graphs)
        if plan.refused is None and not inf.extensible:
            plan = replace(plan, refused=startup_refusal(inf, s, layout, gpu, total, budget, act, graphs, sampler,
                                                         context - in_budget, a.is_moe))
    elif inf.engine == "sglang":
        # python/sglang/srt/model_executor/model_runner_kv_cache_mixin.py, profile_max_num_token (v0.5.8): the pool
        # is what is free after loading less (1 - mem_fraction_static) x what was free before it (after the CUDA
        # context and NCCL's buffers, init_torch_distributed): mem_fraction_static x (total - context - NCCL) - weights.
        # ModelRunner.__init__ (model_runner.py, 0.2 through 0.5) calls init_cublas() after init_memory_pool: cuBLAS's
        # handle and workspace and the other non-torch workspaces (NON_TORCH_BASE) come later, out of the
        # 1 - mem_fraction_static reserve, so the baseline holds the bare context and NCCL's communicators only.
        before = min(context, CONTEXT_BEFORE_CUBLAS) + nt - NON_TORCH_BASE
        budget = int(s.gpu_memory_utilization * (total - before))
        pool = budget - weights
    else:
        # tensorrt_llm/_torch/pyexecutor/_util.py, KvCacheCreator.configure_kv_cache_capacity and _cal_max_memory:
        # (total - peak + the estimation run's temporary cache) x free_gpu_memory_fraction, the peak being torch's
        # (weights, the dummy requests' forward of max_num_tokens, that temporary cache) plus everything outside torch
        # once the run is done (CUDA context, NCCL, CUDA graphs): the fraction of what that run leaves free.
        free = total - context - weights - act - nt - graphs
        pool = int(s.gpu_memory_utilization * free)
        budget = weights + act + nt + graphs + max(pool, 0)
    return replace(plan, budget=budget, kv_pool=max(pool, 0))
