"""The serving block: the engine, its release and settings, the context and concurrency to hold."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rackfit.spec.base import (
    RELEASE_PATTERN,
    Engine,
    KVPrecision,
    SpecModel,
    SpeculativeMethod,
    TrtllmBackend,
    older,
    parse_release,
)
from rackfit.spec.model_source import ModelSource
from rackfit.spec.releases import (
    EXTENSIBLE_KV_CACHE,
    VLLM_V0_REMOVED,
    VLLM_V1_DEFAULT,
    VLLM_V2_RUNNER_BY_MODEL,
    VLLM_V2_RUNNER_ONLY,
)
from rackfit.spec.rules import RULES


def replica_share(concurrency: int, data: int, data_parallel_attention: int | None) -> int:
    """The sequences each of `data` data-parallel replicas must hold at once; with SGLang's DP attention each of a
    replica's `data_parallel_attention` ranks holds its own share (the scheduler's load balancer spreads requests over
    them, data_parallel_controller.py)."""
    return -(-concurrency // (data * (data_parallel_attention or 1)))


class Inference(SpecModel):
    engine: Engine = Field("vllm", description=(
        "the serving runtime whose memory plan is modelled: vllm (V1; engineVersion for older releases), sglang, "
        "tensorrt-llm, or transformers "
        "(Hugging Face generate: no preallocated KV pool)"))
    context_length: int = Field(4096, gt=0, description=(
        "tokens per sequence, prompt plus output (the engine's max_model_len / --context-length). Unset: 4096, where "
        "the engines' own default is the model's longest context; the operator hands the planned length to the "
        "containers as RACKFIT_MAX_MODEL_LEN, for the engine's command line"))
    concurrency: int = Field(1, gt=0, description="sequences that must fit at full contextLength at once")
    kv_cache_precision: KVPrecision | None = Field(None, description=(
        "the KV cache's element type (vLLM's and SGLang's --kv-cache-dtype). Unset: their `auto`, the model's dtype "
        "(vLLM gpu_model_runner.py and V0 cache_engine.py: kv_cache_dtype = model_config.dtype), so fp32 where "
        "precision is fp32 (--dtype float32) and bf16 otherwise"))
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description=(
        "the engine's memory fraction: vLLM's --gpu-memory-utilization (default 0.9 before 0.20.0, 0.92 from "
        "0.20.0, 1.0 with the extensible KV cache of 0.34.0), SGLang's "
        "--mem-fraction-static (default from the GPU's memory), TensorRT-LLM's free_gpu_memory_fraction "
        "(default 0.9, of the memory free after weights)"))
    max_num_batched_tokens: int | None = Field(None, gt=0, description=(
        "tokens per engine step (vLLM's --max-num-batched-tokens, SGLang's --chunked-prefill-size, "
        "TensorRT-LLM's max_num_tokens); default as the engine picks it for the GPU"))
    max_num_seqs: int | None = Field(None, gt=0, description=(
        "sequences per engine step (vLLM's --max-num-seqs, SGLang's --max-running-requests, TensorRT-LLM's "
        "max_batch_size); default as the engine picks it for the GPU"))
    cuda_graphs: bool = Field(True, description="false: vLLM's --enforce-eager, SGLang's --disable-cuda-graph")
    max_cuda_graph_capture_size: int | None = Field(None, gt=0, description=(
        "engine vllm (V1): the largest batch the CUDA graphs are captured for, --max-cudagraph-capture-size "
        "(compilation_config.max_cudagraph_capture_size; --cuda-graph-sizes N before 0.11.1). vLLM captures 1, 2, 4, "
        "then every 8 (from 0.11.1 every 16 from 256 on) up to it, none above maxNumBatchedTokens, and a value the "
        "user sets replaces the model's own (gpt-oss's). Read for the V1 engine only. Default: min(2 x maxNumSeqs, "
        "512), raised to 1024 on B200/B300-class GPUs from 0.28.0, and gpt-oss's own largest (992 from 0.10.1, 1024 "
        "from 0.11.1)"))
    online_quantization: bool | None = Field(None, description=(
        "true: the checkpoint is 16-bit and the engine quantizes it to `precision` fp8 as it loads (SGLang's "
        "--quantization fp8 on a bf16/fp16 checkpoint). Read for engine sglang: its default loader creates every "
        "layer's weights at 16 bits (Fp8LinearMethod and Fp8MoEMethod create_weights use params_dtype unless the "
        "checkpoint is fp8-serialized) and quantizes them only after all are loaded "
        "(DefaultModelLoader.load_weights_and_postprocess), so the 16-bit model must fit the GPU first; read in "
        "the 0.4.9 and 0.5.16 wheels. Not with --load-format layered, which quantizes layer by layer. Default: the "
        "checkpoint is stored at `precision`"))
    prefix_caching: bool | None = Field(None, description=(
        "vLLM's --enable-prefix-caching, read for hybrid linear-attention / Mamba models only (architecture "
        "linearAttentionLayers): on, from 0.15.0 each linear layer keeps 2 states a request instead of 1 "
        "(mamba_cache_mode 'align'). Default: vLLM's, on for them from 0.28.0 (EngineArgs takes "
        "ModelConfig.is_prefix_caching_supported) and off before, where hybrids were opt-in"))
    engine_version: str | None = Field(None, pattern=RELEASE_PATTERN, max_length=16, description=(
        "the engine's release, e.g. 0.7.3. vLLM planned memory differently: before 0.8.0 (the V0 engine) the "
        "profile run took max(contextLength, 2048) tokens and 256 sequences unless set; before 0.20.0 the CUDA "
        "graphs came out of the 1 - gpuMemoryUtilization share, not the KV cache's budget; V0 chunked prefills "
        "by itself above 32768 tokens (2048 per step); before 0.7.1 MLA models cached full K and V per head, not "
        "the latent. SGLang (engine sglang) chose its default --mem-fraction-static by tensor size before 0.4.8, "
        "from a table of the GPU's memory before 0.5.3, by its reserve formula from 0.5.3 (a .postN is its "
        "release). Default: current releases"))
    vllm_use_v1: bool | None = Field(None, description=(
        "vLLM's VLLM_USE_V1: false runs the V0 engine on a release that defaults to V1 (0.8.0-0.10.x; 0.11.0 "
        "removed V0); true is V1, from 0.8.0 (the opt-in V1 of 0.7.x is not modelled). Default: the release's "
        "default engine"))
    v2_model_runner: bool | None = Field(None, description=(
        "vLLM's VLLM_USE_V2_MODEL_RUNNER: true runs the model through the new GPU model runner "
        "(v1/worker/gpu/model_runner.py), false through the old one (v1/worker/gpu_model_runner.py), whatever the "
        "release would choose for it (vllm/config/vllm.py VllmConfig.use_v2_model_runner returns the variable when "
        "set). Read from 0.22.0, the first release that defaults some models to the new runner, through 0.33.x; "
        "0.34.0 has only the new one. Default: the release's choice by model"))
    chunked_local_attention_hybrid: bool | None = Field(None, description=(
        "vLLM: whether a model with chunked local attention (architecture.attentionChunkSize, Llama 4) is paged by "
        "the hybrid KV cache manager, its chunked layers holding one chunk a request "
        "(VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE=1; vllm/config/vllm.py VllmConfig.__post_init__ turns "
        "the manager off for such a model unless it is set, and for EAGLE drafts). Default: the release's, on in "
        "0.10.0 and from 0.14.0, off in 0.10.1-0.13.x; before 0.10.0 every layer caches the whole context"))
    flashinfer_sampler: bool | None = Field(None, description=(
        "vLLM: whether top-k/top-p sampling runs through FlashInfer (its log says \"Using FlashInfer for top-p & "
        "top-k sampling\"; before 0.11.1 where it is installed, as in the official images, then only with "
        "VLLM_USE_FLASHINFER_SAMPLER=1 until 0.21.0; V0, before 0.8.0, only with VLLM_USE_FLASHINFER_SAMPLER=1) or "
        "natively: by a sort before "
        "0.17.0, whose profile run holds twice the bytes per logit, by a Triton kernel from it. Default: what "
        "`pip install vllm` of engineVersion runs (native before 0.21.0, FlashInfer from it)"))
    extensible_kv_cache: bool | None = Field(None, description=(
        "vLLM from 0.34.0: the extensible KV cache (--enable-extensible-kv-cache), sized from the memory measured "
        "after warmup and CUDA graph capture, keeping free the profiled activation peak and a margin of "
        "max(1 GiB, 0.75 x that peak); gpuMemoryUtilization then defaults to 1.0. Default: on where engineVersion "
        "is 0.34.0 or later (vLLM turns it on wherever it is supported; a KV connector sharing the cache through "
        "CUDA IPC, such as LMCache, or kv_cache_memory_bytes turn it off: say false then). Without engineVersion "
        "rackfit plans vLLM at gpuMemoryUtilization 0.92, which every release accepts and which caps 0.34.0's "
        "cache the same way (RACKFIT_GPU_MEMORY_UTILIZATION hands it to the container)"))
    prefill_chunk_tokens: int | None = Field(None, gt=0, description=(
        "engine transformers: tokens per prefill chunk; default min(contextLength x concurrency, 8192)"))
    tensorrt_llm_backend: TrtllmBackend | None = Field(None, description=(
        "engine tensorrt-llm: which of its runtimes serves the model (trtllm-serve --backend). pytorch, the default "
        "of current releases: the KV cache is free_gpu_memory_fraction of what its estimation run leaves free. trt: "
        "an engine built by trtllm-build and run by the C++ executor (Triton's tensorrtllm_backend, trtllm-serve "
        "before the PyTorch backend became its default): the engine's activation memory, sized at build time for "
        "max_num_tokens (maxNumBatchedTokens), and the logits and decoder buffers of max_batch_size (maxNumSeqs) "
        "sequences are held first, and the cache gets kv_cache_free_gpu_mem_fraction (gpuMemoryUtilization) of "
        "what is free then; no CUDA graphs. Give maxNumBatchedTokens and maxNumSeqs as the engine was built "
        "(trtllm-build's defaults 8192 and 2048)"))
    tensorrt_llm_parallel_embedding: bool | None = Field(None, description=(
        "engine tensorrt-llm with tensorrtLlmBackend trt: whether the engine's checkpoint splits the embedding table "
        "over the tensor-parallel ranks. Default false, as examples/*/convert_checkpoint.py writes it without "
        "--use_parallel_embedding: every tensor rank then holds the whole vocabulary x hidden table (0.49 GiB more a "
        "rank for Llama 3 8B in 16-bit at tensor 2). true for checkpoints written with --use_parallel_embedding, by "
        "examples/quantization/quantize.py (ModelOpt), or by the LLM API (trtllm-serve --backend trt from a Hugging "
        "Face model; embedding_parallel_mode SHARDING_ALONG_VOCAB)"))
    max_loras: int | None = Field(None, gt=0, description=(
        "serve LoRA adapters: how many the GPU holds at once (vLLM's --max-loras with --enable-lora, default 1; "
        "SGLang's --max-loras-per-batch with --lora-paths, default 8). Each slot takes maxLoraRank x (every wrapped "
        "layer's input + output width) in the model's 16-bit dtype from the KV cache's budget, whatever the "
        "adapters' own ranks; adapters kept in CPU memory (--max-cpu-loras) cost no GPU memory. Unset, with "
        "maxLoraRank unset: no LoRA. Engines vllm and sglang only"))
    max_lora_rank: int | None = Field(None, gt=0, description=(
        "serve LoRA adapters: the largest adapter rank the engine sizes its buffers for (vLLM's and SGLang's "
        "--max-lora-rank; vLLM's default 16; SGLang's default is the largest rank among --lora-paths, give it "
        "here). Setting it alone turns LoRA on with the engine's default maxLoras. Engines vllm and sglang only"))
    speculative_method: SpeculativeMethod | None = Field(None, description=(
        "speculative decoding: draft (a separate draft model, draftModel: vLLM's --speculative-config method "
        "draft_model, SGLang's --speculative-algorithm STANDALONE), eagle or eagle3 (an EAGLE head of one decoder "
        "layer that shares the target's embedding; SGLang EAGLE, EAGLE3), mtp (the checkpoint's own multi-token "
        "prediction layer: DeepSeek-V3, Qwen3-Next, GLM; vLLM method mtp/deepseek_mtp, SGLang NEXTN) or ngram "
        "(prompt lookup: no weights). The drafter's weights, its layers' KV cache (vLLM: in the same budget, every "
        "token costs the draft's layers too) and its CUDA graphs are counted. Unset or none: no speculative "
        "decoding. Engines vllm and sglang only"))
    speculative_tokens: int | None = Field(None, gt=0, description=(
        "tokens proposed per step: vLLM's num_speculative_tokens in --speculative-config, SGLang's "
        "--speculative-num-steps (with --speculative-eagle-topk 1 and --speculative-num-draft-tokens one more). "
        "Default 1 for mtp, else 3"))
    data_parallel_attention: int | None = Field(None, ge=2, description=(
        "engine sglang: DP attention (--enable-dp-attention with --dp-size N). The tensor-parallel group of "
        "parallelism.tensor GPUs runs attention as N data-parallel ranks of tensor / N GPUs each: every rank holds "
        "its own requests' KV cache (concurrency / N requests each, at tensor / N for the KV heads; MLA's latent is "
        "whole either way) and attention weights split over tensor / N GPUs only, while MoE experts and dense MLPs "
        "stay split over the whole group. Before SGLang 0.4.5 --dp-size is forced to the tensor size (give "
        "parallelism.tensor) and the embedding and lm_head are whole on every GPU. Unset: no DP attention"))
    draft_model: ModelSource | None = Field(None, description=(
        "the draft model of speculativeMethod draft, as spec.model says a model (a preset, an architecture or a "
        "parameter count); it runs at the target's tensor parallel size, in 16-bit unless its preset is "
        "quantized"))

    @property
    def chunk_tokens(self) -> int:
        return self.prefill_chunk_tokens or min(self.context_length * self.concurrency, 8192)

    @property
    def serving_engine(self) -> bool:
        """vllm, sglang or tensorrt-llm: an engine that preallocates its KV cache and takes the serving
        settings (transformers grows its cache per request)."""
        return self.engine != "transformers"

    def per_replica(self, data: int) -> int:
        """The sequences each of `data` data-parallel replicas must hold at once (replica_share)."""
        return replica_share(self.concurrency, data, self.data_parallel_attention)

    @model_validator(mode="after")
    def _engine_settings(self) -> Inference:
        rules = RULES["Inference"]
        if self.kv_cache_precision is None:  # `auto` in a 16-bit model; LLMWorkloadSpec makes it fp32 under fp32
            object.__setattr__(self, "kv_cache_precision", "bf16")
        if self.engine == "transformers" and (self.gpu_memory_utilization or self.max_num_batched_tokens
                                              or self.max_num_seqs):
            raise ValueError(rules["engine_settings"].message)
        if self.engine != "transformers" and self.prefill_chunk_tokens is not None:
            raise ValueError(rules["prefill_chunk"].message)
        if self.engine not in ("vllm", "sglang") and self.engine_version is not None:
            raise ValueError(rules["engine_version"].message)
        if self.vllm_use_v1 is not None and self.engine != "vllm":
            raise ValueError(rules["vllm_use_v1"].message)
        if self.vllm_use_v1 is False and not older(self.engine_version, VLLM_V0_REMOVED):
            raise ValueError(rules["vllm_v0_removed"].message)
        if self.vllm_use_v1 and older(self.engine_version, VLLM_V1_DEFAULT):
            raise ValueError(rules["vllm_v1_before_default"].message)
        if self.v2_model_runner is not None and self.engine != "vllm":
            raise ValueError(rules["v2_model_runner"].message)
        if self.v2_model_runner is False and not older(self.engine_version, VLLM_V2_RUNNER_ONLY):
            raise ValueError(rules["v2_model_runner_only"].message)
        if self.v2_model_runner and older(self.engine_version, VLLM_V2_RUNNER_BY_MODEL):
            raise ValueError(rules["v2_model_runner_before_default"].message)
        if self.online_quantization is not None and self.engine != "sglang":
            raise ValueError(rules["online_quantization"].message)
        if self.extensible_kv_cache is not None and self.engine != "vllm":
            raise ValueError(rules["extensible_kv_cache"].message)
        if self.max_cuda_graph_capture_size is not None and self.engine != "vllm":
            raise ValueError(rules["max_cuda_graph_capture_size"].message)
        if self.tensorrt_llm_backend is not None and self.engine != "tensorrt-llm":
            raise ValueError(rules["tensorrt_llm_backend"].message)
        if self.tensorrt_llm_parallel_embedding is not None and not self.trt_engine:
            raise ValueError(rules["tensorrt_llm_parallel_embedding"].message)
        if self.engine not in ("vllm", "sglang") and self.lora_on:
            raise ValueError(rules["lora"].message)
        # vllm/config/lora.py: possible_max_ranks (0.8-0.11) and MaxLoRARanks (read in 0.19.0, which adds 1)
        if self.engine == "vllm" and self.max_lora_rank not in (None, 1, 8, 16, 32, 64, 128, 256, 320, 512):
            raise ValueError(rules["vllm_lora_rank"].message)
        if self.speculative_on and self.engine not in ("vllm", "sglang"):
            raise ValueError(rules["speculative"].message)
        if (self.draft_model is not None) != (self.speculative_method == "draft"):
            raise ValueError(rules["draft_model"].message)
        if self.draft_model is not None and self.draft_model.hugging_face_config is not None:
            raise ValueError(rules["draft_model_source"].message)
        if self.speculative_tokens is not None and not self.speculative_on:
            raise ValueError(rules["speculative_tokens"].message)
        if self.data_parallel_attention is not None and self.engine != "sglang":
            raise ValueError(rules["data_parallel_attention"].message)
        return self

    @field_validator("extensible_kv_cache")
    @classmethod
    def _extensible_release(cls, on: bool | None, info: ValidationInfo) -> bool | None:
        release = info.data.get("engine_version")
        if on and older(release, EXTENSIBLE_KV_CACHE):
            raise ValueError(f"vLLM {release} has no extensible KV cache (it came with 0.34.0): leave it unset or "
                             "give engineVersion 0.34.0 or later")
        return on

    @property
    def extensible(self) -> bool:
        """vLLM sizes its KV cache as the extensible KV cache does: asked for, or a named release from 0.34.0 on
        that does not turn it off. Unset, the release is not known, and a utilization every release accepts
        (0.92) is planned and handed to the container instead of 0.34.0's 1.0, which older releases refuse."""
        if self.engine != "vllm" or self.extensible_kv_cache is False:
            return False
        return bool(self.extensible_kv_cache) or (self.engine_version is not None
                                                  and not self.vllm_before(EXTENSIBLE_KV_CACHE))

    @property
    def lora_on(self) -> bool:
        """The spec serves LoRA adapters (maxLoras or maxLoraRank set)."""
        return self.max_loras is not None or self.max_lora_rank is not None

    @property
    def speculative_on(self) -> bool:
        """The spec decodes speculatively (speculativeMethod set, and not none)."""
        return self.speculative_method not in (None, "none")

    def vllm_before(self, release: tuple[int, ...]) -> bool:
        """The spec names a vLLM release older than `release` (unset, or another engine: a current one)."""
        # `older` written out: an estimate asks this some seventy times, a plan some thousands
        version = self.engine_version
        return version is not None and self.engine == "vllm" and parse_release(version) < release

    @property
    def vllm_v0(self) -> bool:
        """vLLM's V0 engine serves: a named release before 0.8.0, or vllmUseV1 false (VLLM_USE_V1=0)."""
        return self.engine == "vllm" and (self.vllm_use_v1 is False or self.vllm_before(VLLM_V1_DEFAULT))

    @property
    def trt_engine(self) -> bool:
        """TensorRT-LLM's TRT-engine runtime (the C++ executor), not its PyTorch backend."""
        return self.engine == "tensorrt-llm" and self.tensorrt_llm_backend == "trt"

    def sglang_before(self, release: tuple[int, ...]) -> bool:
        """The spec names an SGLang release older than `release` (unset, or another engine: a current one)."""
        version = self.engine_version  # `older` written out, as in vllm_before
        return version is not None and self.engine == "sglang" and parse_release(version) < release
