"""The serving engines' settings on a GPU: the spec's, else each engine's defaults by release and GPU (vLLM V0 and V1,
SGLang, TensorRT-LLM), and the memory CUDA reports, which their fractions multiply.

Pure: no I/O. Every default names the engine source and the releases it was read in.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.result import EngineSettings
from rackfit.estimator.sglang import dp_reserve_mib, nsa_fraction, piecewise_reserve_mib, speculative_reserve_mib
from rackfit.models import ModelArch
from rackfit.spec import Inference
from rackfit.units import GiB, MiB

# cudaMemGetInfo's total is below the GPU Feature Discovery label (nvidia.com/gpu.memory): the driver keeps some, a
# different share on each card (0.44 GiB on a T4, 0.54 on an H100, 0.70 on a GH200 in current logs). Where a public log
# gives a model's total at its label, that total is used (catalog.types._CUDA_TOTAL_GIB); elsewhere the label less
# this median of the first three published pairs (bench/cases/public/public-measurements.md, "What each logged number
# is": H100 80GB 81,559 MiB label vs 79.22 GiB in vLLM's logs, 0.43 GiB less; A100 40GB 40,960 vs 39.38-39.50,
# 0.50-0.62; L40S 46,068 vs 44.42, 0.57).
DRIVER_RESERVED = GiB // 2
# TensorRT-LLM's defaults (tensorrt_llm/llmapi/llm_args.py: KvCacheConfig.free_gpu_memory_fraction 0.9,
# BuildConfig max_num_tokens 8192, max_batch_size 2048).
TRTLLM_FRACTION = 0.9
TRTLLM_MAX_TOKENS = 8192
TRTLLM_MAX_BATCH = 2048
# vLLM's V1 engine is the default (VLLM_USE_V1) from 0.8.0; before it, or under VLLM_USE_V1=0 (inference.vllmUseV1
# false), V0 (vllm/worker/): Inference.vllm_v0.
# ...but V1 0.8.x ran pipeline parallel only under the Ray executor: any other --distributed-executor-backend, the
# unset default included, falls back to V0 (vllm/engine/arg_utils.py _is_v1_supported_oracle, "Pipeline Parallelism
# without Ray distributed executor"; read in 0.8.5); 0.9.0 admits mp and external_launcher too. The spec does not name
# the executor, so the fallback is noted (v0_under_pipeline) and its memory estimated as V1's; V0's split of the cache
# between virtual engines, which its start-up check applies, is modelled (engines.v0_virtual_engine_refusal).
V1_PIPELINE_MP = (0, 9)
# V1's batch defaults for `vllm serve` by release (vllm/engine/arg_utils.py _set_default_args_v1, read in the
# 0.8.0-0.8.5, 0.9.0, 0.9.2, 0.10.0 and 0.10.1 wheels): 0.8.0-0.8.3 gave 8192 batched tokens to devices whose name
# holds "h100" or "h200" (current_platform.get_device_name(); GH200 included, B200 not) and 2048 to the rest, and 1024
# sequences to all; 0.8.4 the same names 8192 and 1024, the rest 2048 and 256; 0.8.5 by memory
# (get_device_total_memory() of 70 GiB or more: 8192 and 1024, A100 80GB included); from 0.9.0 by memory, not A100.
V1_SEQS_BY_DEVICE = (0, 8, 4)
V1_LARGE_BY_MEMORY = (0, 8, 5)
V1_LARGE_NOT_A100 = (0, 9)
V1_LARGE_DEVICE_NAMES = ("h100", "h200")
# From 0.28.0 GPUs of 160 GiB or more (get_device_total_memory: B200, GB200, B300, GB300; not H200's 140) get the
# largest defaults under `vllm serve` too, 16384 batched tokens and 1024 sequences (EngineArgs.get_batch_defaults: "for
# GPUs like B200/B300 with >= 160GB memory, use the largest defaults"; read in the 0.28.0-0.34.0 wheels, absent from
# 0.19.0-0.27.0).
# GB10 (DGX Spark, unified memory) takes the small tier, 2048 batched tokens and 256 sequences, in every V1 release
# whatever its memory: NVML implements no device memory query there (nvidia-smi's "Not Supported"), so
# NvmlCudaPlatform.get_device_total_memory (pynvml.nvmlDeviceGetMemoryInfo) raises and get_batch_defaults takes 0 bytes
# (read in the 0.24.0 and 0.29.0 wheels); 0.33.0 falls back to CUDA's total there but keeps GB10 on the small tier by
# its capability, 12.1 ("has the memory but not the compute of a large discrete GPU"); before 0.8.5 the tier went by
# name (V1_LARGE_DEVICE_NAMES). S904's log (0.11.0) prints "max_num_batched_tokens=2048".
NVML_NO_MEMORY_MODELS = ("GB10",)
V1_LARGEST_BY_MEMORY = (0, 28)
V1_LARGEST_MEMORY = 160 * GiB
V1_LARGEST_TOKENS = 16384
# V0 turned chunked prefill on by itself above 32K tokens (vllm/engine/arg_utils.py EngineArgs.create_engine_config,
# 0.5.3-0.7.3: max_model_len > 32768, no sliding window, no LoRA or speculative model; read in the 0.5.3, 0.5.3.post1,
# 0.5.4 and 0.5.5 wheels, absent from 0.5.0-0.5.2 and 0.4.3, so before V0_AUTO_CHUNK the profile run is the whole
# max(max_model_len, 2048) tokens at any length), with SchedulerConfig's default
# chunk of 2048 tokens (vllm/config.py SchedulerConfig.__post_init__): the profile run is then one chunk, not the
# whole context. MLA models (0.7.1-0.7.3) then had chunked prefill switched off again by VllmConfig.__post_init__
# ("MLA is enabled; forcing chunked prefill and prefix caching to be disabled"), after SchedulerConfig had already
# set max_num_batched_tokens to the chunk, so their profile run is one chunk too (read in the 0.7.0-0.7.3 wheels; from
# 0.8.0 _set_default_args_v0 leaves MLA out, but 0.8 is V1 here).
V0_LONG_CONTEXT = 32768
V0_AUTO_CHUNK = (0, 5, 3)
V0_CHUNK_TOKENS = 2048
# ...512 tokens before v0.6.5: PR 10544 ("Update default max_num_batch_tokens for chunked prefill to 2048", merged
# 2024-11-21, first released in v0.6.5) raised SchedulerConfig's chunked-prefill default from 512.
V0_CHUNK_2048 = (0, 6, 5)
V0_CHUNK_TOKENS_BEFORE = 512
# A multimodal model's default max_num_batched_tokens is at least _MULTIMODAL_MODEL_MAX_NUM_BATCHED_TOKENS 5120,
# chunked or not ("The value needs to be at least the number of multimodal tokens": vllm/config.py
# SchedulerConfig.__post_init__, read in 0.8.0 and 0.8.3; config/scheduler.py in 0.10.2); releases before 0.8.0 not
# read for this. Here for V0 on 0.8.0-0.10.x (V1's defaults are _v1_batch_defaults').
V0_MM_TOKENS_FROM = (0, 8)
V0_MM_TOKENS = 5120
# Without a GPU, the engines' GPU-dependent defaults are taken for an 80 GB one (H100, the common case).
ASSUMED_TOTAL = 80 * GiB
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
# The graph batch on GPUs of 20-35 GiB below tensor 4 was 16 in 0.5.3 and 0.5.4, 24 from 0.5.5
# (_handle_gpu_memory_settings, read in the 0.5.3-0.5.8 wheels).
SGLANG_GRAPH_BS_24 = (0, 5, 5)
# A multimodal model's default mem_fraction_static (server_args.py, after the fraction above and its speculative
# reserve, when ModelConfig.is_multimodal): x 0.90 in 0.4.9 (read in the 0.4.9 wheel; none in 0.4.8); from 0.4.10
# adjust_mem_fraction_for_vlm (read in the 0.4.9.post6, 0.4.10, 0.5.0rc0, 0.5.2, 0.5.3 and 0.5.10 wheels) x 0.95 x
# clamp(1 - 0.1 x (L x H^2 / (24 x 1024^2) - 1), 0.8, 1.05), L and H the vision_config's num_hidden_layers and
# hidden_size (24 and 1024 where the config has none: Qwen3-VL's names its depth `depth`). S1212 logged 0.8388 on
# an H200 at 0.5.10 (0.907 x 0.95 x 0.9734, Qwen3-VL-8B's 1152-wide ViT).
SGLANG_VLM_FLAT = (0, 4, 9)
SGLANG_VLM_BY_VIT = (0, 4, 10)
# Before that, ModelRunner.__init__ (python/sglang/srt/model_executor/model_runner.py) scaled its own copy of
# mem_fraction_static for a multimodal model (model_config.is_multimodal), after server_args was logged and whether
# the fraction was set or defaulted: x 0.95 from 0.3.5 (read in the 0.3.5, 0.3.6 and 0.4.0-0.4.4 wheels), x 0.90 from
# 0.4.5 (0.4.5-0.4.8 wheels). 0.2.15-0.3.4.post1 scaled server_args.mem_fraction_static there instead, after
# ModelRunner had copied it, so their pool never saw it; from 0.4.9 ModelRunner scales nothing (0.4.9, 0.4.9.post6 and
# 0.4.10 wheels) and server_args does it (above). S1455 (Llama-3.2-11B-Vision on an H100 at 0.3.5) and its 0.4.2 log
# ("K size: 22.85 GB" for 299,531 tokens: 40 layers) allocate the pool of 0.88 x 0.95 = 0.836.
SGLANG_RUNNER_VLM = (0, 3, 5)
SGLANG_RUNNER_VLM_090 = (0, 4, 5)
# vLLM's default gpu_memory_utilization (vllm/config/cache.py, CacheConfig): 0.9 through 0.19.x, 0.92 from 0.20.0
# (read in the 0.14.1-0.19.0 and 0.20.0-0.33.0 wheels); in 0.34.0 1.0 with the extensible KV cache, on by default
# (CacheConfig.resolved_gpu_memory_utilization, VllmConfig._resolve_extensible_kv_cache), else
# DEFAULT_GPU_MEMORY_UTILIZATION 0.92.
VLLM_UTIL_092 = (0, 20)


def cuda_total_bytes(gpu: GPU) -> int:
    """Total memory as CUDA reports it on this GPU: what the engines' fractions multiply. The published total for
    the model at its label where a log gives one, else the label less DRIVER_RESERVED."""
    published = gpu.published_cuda_total_bytes
    return gpu.memory_bytes - DRIVER_RESERVED if published is None else published


def settings(inf: Inference, gpu: GPU | None, tensor: int, pipeline: int, a: ModelArch | None = None
             ) -> EngineSettings:
    """The engine's settings on `gpu`: the spec's, else the engine's defaults for that GPU."""
    total = cuda_total_bytes(gpu) if gpu else None
    if inf.vllm_v0:
        # V0 without chunked prefill (vllm/config.py SchedulerConfig before 0.8): the profile run takes
        # max(max_model_len, 2048) tokens over max_num_seqs 256 sequences; above 32K tokens V0 chunked them
        util, tokens, seqs = 0.9, max(inf.context_length, 2048), 256
        if (inf.context_length > V0_LONG_CONTEXT and a is not None and not a.sliding_window
                and not inf.vllm_before(V0_AUTO_CHUNK)):
            tokens = V0_CHUNK_TOKENS_BEFORE if inf.vllm_before(V0_CHUNK_2048) else V0_CHUNK_TOKENS
        if a is not None and a.vision_parameters and not inf.vllm_before(V0_MM_TOKENS_FROM):
            tokens = max(tokens, V0_MM_TOKENS)
    elif inf.engine == "vllm":
        util = 1.0 if inf.extensible else 0.9 if inf.vllm_before(VLLM_UTIL_092) else 0.92
        tokens, seqs = _v1_batch_defaults(inf, gpu, total)
    elif inf.engine == "sglang":
        # SGLang sizes its defaults by nvidia-smi's memory.total (utils get_nvgpu_memory_capacity), the label's MiB
        mib = gpu.memory_mib if gpu else (ASSUMED_TOTAL + DRIVER_RESERVED) // MiB
        if inf.sglang_before(SGLANG_RESERVE_FORMULA):
            tokens, seqs = _sglang_defaults_before(inf, mib, tensor)
            util = _sglang_fraction_before(inf, mib, tensor, pipeline, dp_reserve_mib(inf, seqs))
        else:
            tokens, seqs = _sglang_defaults(mib, tensor)
            if seqs == 24 and inf.sglang_before(SGLANG_GRAPH_BS_24):
                seqs = 16
            # the reserve takes the chunk as set (--chunked-prefill-size), the graph batch as defaulted, and from
            # 0.5.10 the piecewise CUDA graphs captured up to that chunk (sglang.py SGLANG_PIECEWISE_RESERVE)
            chunk = inf.max_num_batched_tokens or tokens
            util = _sglang_fraction(mib, chunk, seqs, tensor, pipeline,
                                    piecewise_reserve_mib(inf, a, chunk, pipeline) + dp_reserve_mib(inf, seqs))
    else:
        util, tokens, seqs = TRTLLM_FRACTION, TRTLLM_MAX_TOKENS, TRTLLM_MAX_BATCH
    if inf.engine == "sglang" and inf.speculative_on:
        util = round(util - speculative_reserve_mib(inf) / mib, 3)  # its reserve for the drafter, after the floor
    util *= sglang_vlm_factor(inf, a)
    # SGLang 0.5.3 sets DeepSeek-V3.2's fraction over the flag too (sglang.nsa_fraction)
    forced = nsa_fraction(inf, a)
    return EngineSettings(engine=inf.engine, gpu_memory_utilization=forced or inf.gpu_memory_utilization or util,
                          max_num_batched_tokens=inf.max_num_batched_tokens or tokens,
                          max_num_seqs=inf.max_num_seqs or seqs, max_model_len=inf.context_length)


def sglang_vlm_factor(inf: Inference, a: ModelArch | None) -> float:
    """What SGLang's default mem_fraction_static is multiplied by for a multimodal model (one with a vision tower):
    SGLANG_VLM_FLAT's 0.90, then SGLANG_VLM_BY_VIT's adjust_mem_fraction_for_vlm by the ViT's layers x width^2 against
    ViT-L/14's 24 x 1024^2. 1 for other engines, text-only models and before 0.4.9."""
    if inf.engine != "sglang" or a is None or not a.vision_parameters or inf.sglang_before(SGLANG_VLM_FLAT):
        return 1.0
    if inf.sglang_before(SGLANG_VLM_BY_VIT):
        return 0.90
    ratio = (a.vision_num_hidden_layers or 24) * (a.vision_hidden_size or 1024) ** 2 / (24 * 1024 ** 2)
    return 0.95 * max(0.8, min(1.05, 1.0 - 0.1 * (ratio - 1.0)))


def sglang_runner_vlm_factor(inf: Inference, a: ModelArch | None) -> float:
    """What SGLang's ModelRunner multiplied mem_fraction_static by for a multimodal model (one with a vision tower)
    from 0.3.5 to 0.4.8 (SGLANG_RUNNER_VLM): 0.95, 0.90 from 0.4.5. It scaled the fraction as the server ran with
    it, set or defaulted, and the log's server_args kept the unscaled value, so it multiplies the budget
    (engines._sglang_plan), not the fraction rackfit hands the container. 1 for other engines, text-only models,
    releases outside that span and without engineVersion."""
    if (inf.engine != "sglang" or a is None or not a.vision_parameters or inf.sglang_before(SGLANG_RUNNER_VLM)
            or not inf.sglang_before(SGLANG_VLM_FLAT)):
        return 1.0
    return 0.95 if inf.sglang_before(SGLANG_RUNNER_VLM_090) else 0.90


def _v1_batch_defaults(inf: Inference, gpu: GPU | None, total: int | None) -> tuple[int, int]:
    """vLLM V1's max_num_batched_tokens and max_num_seqs for `vllm serve` (EngineArgs.get_batch_defaults, before it
    _set_default_args_v1): GPUs of 70 GiB or more other than A100 get 8192 tokens and 1024 sequences, the rest 2048 and
    256; from V1_LARGEST_BY_MEMORY GPUs of 160 GiB or more get 16384 and 1024; releases before 0.9.0 decided otherwise
    (V1_SEQS_BY_DEVICE, V1_LARGE_BY_MEMORY, V1_LARGE_NOT_A100); GB10 the small tier always (NVML_NO_MEMORY_MODELS).
    Without a GPU the large defaults are assumed."""
    if total is None:
        return 8192, 1024
    small = (2048, 1024 if inf.vllm_before(V1_SEQS_BY_DEVICE) else 256)
    if gpu.model.upper() in NVML_NO_MEMORY_MODELS:
        return small
    if total >= V1_LARGEST_MEMORY and not inf.vllm_before(V1_LARGEST_BY_MEMORY):
        return V1_LARGEST_TOKENS, 1024
    if inf.vllm_before(V1_LARGE_BY_MEMORY):
        large = any(name in gpu.model.lower() for name in V1_LARGE_DEVICE_NAMES)
    else:
        large = total >= 70 * GiB and (inf.vllm_before(V1_LARGE_NOT_A100) or "A100" not in gpu.model)
    return (8192, 1024) if large else small


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


def _sglang_fraction(mib: float, chunk: int, graph_bs: int, tensor: int, pipeline: int, piecewise: float = 0.0
                     ) -> float:
    """SGLang's default mem_fraction_static (the same _handle_gpu_memory_settings): what is left after a reserve in MiB
    for metadata (512), prefill activations (1.5 x chunk), CUDA graphs (2 x batch) and large groups (tp x pp / 8 GiB),
    at least 10 GiB on GPUs above 60 GiB. On an L40S (46,068 MiB) that is 0.851, which SGLang logged there
    (sgl-project/sglang PR 13023, 2025-11-11: server_args ... mem_fraction_static=0.851). `piecewise`: the piecewise
    CUDA graphs' MiB from 0.5.10 (sglang.piecewise_reserve_mib) and DP attention's (sglang.dp_reserve_mib), added
    before the floor."""
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + tensor * pipeline / 8 * 1024 + piecewise
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


def _sglang_fraction_before(inf: Inference, mib: float, tensor: int, pipeline: int, dp_mib: float = 0.0) -> float:
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
    `dp_mib`: DP attention's 4 GiB more of the 0.4.8-0.5.2 reserve (sglang.dp_reserve_mib); speculative decoding's
    reserve is counted after (speculative.py)."""
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
    return round((mib - gib * 1024 - dp_mib) / mib, 3)


def _sglang_defaults_before(inf: Inference, mib: float, tensor: int) -> tuple[int, int]:
    """SGLang's chunked_prefill_size and cuda_graph_max_bs before SGLANG_RESERVE_FORMULA (server_args.py): a chunk of
    2048 below 25,000 MiB (below 35 GiB from 0.4.8), else 8192 (16384 above 180,000 MiB in 0.4.7, from 160 GiB from
    0.4.8); graphs up to 8 requests on those small GPUs below tensor 4, 80 from it, else _sglang_graph_bs_before's."""
    small = mib < (35 * 1024 if not inf.sglang_before(SGLANG_RESERVE_TABLE) else 25_000)
    if small:
        return 2048, 8 if tensor < 4 else 80
    large = (mib >= 160 * 1024) if not inf.sglang_before(SGLANG_RESERVE_TABLE) else \
        (mib > 180_000 and not inf.sglang_before(SGLANG_TP_PP))
    return (16384 if large else 8192), _sglang_graph_bs_before(inf, mib)


def _sglang_graph_bs_before(inf: Inference, mib: float) -> int:
    """The largest batch SGLang captures by default on a GPU over 25,000 MiB before SGLANG_RESERVE_FORMULA
    (model_executor/cuda_graph_runner.py get_batch_sizes_to_capture; cuda_graph_max_bs stays unset there): 160, and
    on large cards up to 256 from 0.4.6 (over 96 GiB in 0.4.6.post2-0.4.7, over 90 GiB from 0.4.8, "H200, H20") and
    512 from 0.4.7 (over 180,000 MiB in 0.4.7, 160,000 from 0.4.8, "B200, MI300"). Read in the 0.4.5, 0.4.6-0.4.6.post5,
    0.4.7, 0.4.8, 0.4.9 and 0.5.2 wheels; 0.4.5.post3 and 0.4.6-0.4.6.post1 extended already above 81,920 MiB (a
    .postN is its release, so 0.4.6 is taken as its later posts; 0.4.5 as the base release, which did not)."""
    if inf.sglang_before(SGLANG_BY_MEMORY):
        return 160
    before_table = inf.sglang_before(SGLANG_RESERVE_TABLE)
    if mib > (180_000 if before_table else 160_000) and not inf.sglang_before(SGLANG_TP_PP):
        return 512
    return 256 if mib > (96 if before_table else 90) * 1024 else 160


def v0_under_pipeline(inf: Inference, pipeline: int) -> bool:
    """vLLM's release defaults to V1 but runs V0 at this pipeline degree unless started with the Ray executor
    (V1_PIPELINE_MP above)."""
    return (pipeline > 1 and inf.engine == "vllm" and inf.engine_version is not None
            and not inf.vllm_v0 and inf.vllm_before(V1_PIPELINE_MP))
