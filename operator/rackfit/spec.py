"""LLMWorkload `spec` (rackfit.io/v1alpha1): the single source of truth for the CRD schema.

Pydantic models with camelCase aliases. `parse_spec()` turns any document the CLI or the
operator receives (a whole manifest or a bare spec) into a validated `LLMWorkloadSpec`, or raises
`InvalidWorkload` naming every bad field and what is allowed.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from rackfit.errors import InvalidWorkload
from rackfit.names import KIND
from rackfit.units import parse_count

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "nf4", "mxfp4", "nvfp4"]
KVPrecision = Literal["fp32", "bf16", "fp16", "fp8"]
Method = Literal["full", "lora", "qlora"]
Optimizer = Literal["adamw", "adamw8bit", "sgd", "adafactor"]
MasterWeights = Literal["fp32", "none"]
Checkpointing = Literal["none", "selective", "full"]
LoraTarget = Literal["q", "k", "v", "o", "gate", "up", "down"]
LORA_TARGETS: tuple[str, ...] = get_args(LoraTarget)
Objective = Literal["fewestGPUs", "lowestCost"]
Engine = Literal["vllm", "sglang", "tensorrt-llm", "transformers"]
SpeculativeMethod = Literal["none", "draft", "eagle", "eagle3", "mtp", "ngram"]
TrtllmBackend = Literal["pytorch", "trt"]
Framework = Literal["transformers", "fsdp", "deepspeed", "megatron"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, validate_default=True
    )


Positive = Field(default=None, gt=0)


class Rule(NamedTuple):
    """A cross-field rule: pydantic's model validator raises `message`; the CRD carries `cel` with
    the same message (api/crdgen.py), so `kubectl apply` and the operator say the same thing."""

    cel: str
    message: str
    field: str = ""  # the field the error names, relative to the model (e.g. ".precision")


# By the model (its `$defs` name) whose validator checks them. Defaults are applied before CEL
# runs, so `method` and `precision` are always set there.
# A runtime release as the version fields take it: "0.8.5", "4.48" (the *Version fields; _release parses it)
RELEASE_PATTERN = r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"
# transformers' first release whose ForCausalLMLoss pads the labels instead of copying the shifted logits (PR 35646,
# merged after 4.48.0 of January 2025)
HF_LOSS_WITHOUT_SHIFT_COPY = (4, 49)
# transformers' first release whose Llama and Qwen2 pass the 16-bit logits to self.loss_function (ForCausalLMLoss
# upcasts them inside it, the caller's 16-bit tensor still referenced): 4.45.2's models upcast in their own forward
HF_LOSS_FUNCTION = (4, 46)
# transformers' first release whose decoder layers take a Cache object (DynamicCache, models/llama/modeling_llama.py
# LlamaModel.forward, 4.36.0) and update it in place: a recompute under an external checkpoint wrapper updates it again
HF_CACHE_OBJECT = (4, 36)
# transformers' first release whose Trainer leaves FSDP1's limit_all_gathers to accelerate's plugin default
# (trainer.py 4.33.0: `fsdp_config.get("limit_all_gathers", fsdp_plugin.limit_all_gathers)`). 4.27-4.29 wrap FSDP1
# themselves with `self.limit_all_gathers = False` unless fsdp_config sets it, and 4.30-4.32 set the plugin's to
# `fsdp_config.get("limit_all_gathers", False)` (read in the 4.27.0, 4.28.1 and 4.30.0 wheels)
HF_FSDP1_LIMITER_FROM_PLUGIN = (4, 33)
USE_CACHE_MESSAGE = (
    "training.useCache says transformers' model code returned each layer's key and value (use_cache) in training, "
    "kept by an external checkpoint wrapper: only with framework fsdp running transformers' model code (fsdpVersion "
    "1, or modelCode transformers) and activationCheckpointing full")
USE_CACHE_VERSION_MESSAGE = (
    "training.useCache needs training.transformersVersion before 4.36: from 4.36 each layer updates a DynamicCache in "
    "place, the checkpoint's recompute updates it again and the backward fails (transformers issues 28056, 34928), "
    "so a run that trained had use_cache off")
# PyTorch's first release whose ProcessGroupNCCL keeps an async collective's tensors alive by stashing them and
# releases them at work.wait(), instead of record_stream on its stream (pytorch PR 150398, relanding PR 148590, merged
# April 2025 after the 2.7 branch: "Decision is to not include this in 2.7 release")
TORCH_STASHED_COLLECTIVES = (2, 8)
TORCHTUNE_LOSS_MESSAGE = (
    "training.torchtuneLoss is the chunked cross-entropy class a torchtune config names (loss._component_): only "
    "with lossChunks above 1 (its num_output_chunks) and framework transformers (the single-device recipes) or fsdp "
    "with FSDP2 and torchtune's model code (fsdpVersion unset or 2, modelCode unset or torchtitan, no "
    "lossChunkBackward)")
TRANSFORMERS_VERSION_MESSAGE = (
    "training.transformersVersion is the Hugging Face transformers release whose model code and loss run: only with "
    "framework transformers, deepspeed (the HF Trainer's, accelerate's or DeepSpeed-Chat's transformers model under "
    "ZeRO), or fsdp running transformers' model code (fsdpVersion 1, or modelCode transformers)")
# torchtitan (pytorch/torchtitan): the first release whose final RMSNorm is torch's fused nn.RMSNorm (PR 985, 3b39d7ab0,
# March 19, 2025; first tag v0.1.0), and the first that shards tok_embeddings and [norm, output] as FSDP groups of
# their own instead of one root group (PR 1094, 83e694105, July 28, 2025; first tag v0.2.0)
TORCHTITAN_FUSED_FINAL_NORM = (0, 1)
TORCHTITAN_SPLIT_ROOT = (0, 2)
# torchtitan's MoE built its shared experts as GroupedExperts(num_experts=1), weights [1, dim, hidden], until PR 1561
# (7354848df, August 13, 2025, "rewrite shared experts with FFN"); that lies inside 0.2's range (from July 28), so a
# spec can only say "before 0.2"
TORCHTITAN_FFN_SHARED_EXPERTS = (0, 2)
# torchtitan's MoE.forward scored the routed outputs with torch.bmm over a [bs*slen*top_k, dim] zeros tensor of the
# whole sequence, `.float()`-ed (PR 1974, e1f7f318a, November 21, 2025, "remove scatter_add in MoE implementation")
# until PR 2775 (8bc267dea, April 6, 2026, "change torch.bmm back to scatter add"): the releases between are v0.2.1
# (December 26, 2025) and v0.2.2 (February 20, 2026)
TORCHTITAN_BMM_SCORES = ((0, 2, 1), (0, 2, 3))
# torchtitan's per-op SAC save list held aten.abs.default and aten.max.default ("for low precision training, it's useful
# to always save the result of max(abs(tensor))", PR 701, bcebc0de5, November 26, 2024) until PR 820 (88247277c,
# February 6, 2025) took abs out; both commits lie before v0.1.0, so a spec can only say "before 0.1"
TORCHTITAN_SAC_WITHOUT_ABS = (0, 1)
# DeepSpeed (deepspeedai/DeepSpeed): ZeRO-1/2's step checks its gradients for overflow only under fp16 from PR 4512
# (244040c18, October 27, 2023; first tag v0.11.2), and from PR 5115 (1c9e5ef2d, February 15, 2024; first tag v0.13.3)
# checks them on the device (`_has_inf_or_nan`: float_x, isnan, isinf, logical_or, .float() live together)
DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK = (0, 11, 2)
# torchao 0.2.0 quantizes a tensor to NF4 in chunks of CHUNK_SIZE = 1024**2 elements (torchao/dtypes/nf4tensor.py,
# PR 196); torchao 0.1 compared the whole tensor with the 16 NF4 values at once (estimator/torchtune.py).
TORCHAO_CHUNKED_NF4 = (0, 2)
DEEPSPEED_DEVICE_OVERFLOW_CHECK = (0, 13, 3)

# Training fields that are Megatron-LM command-line flags, by their snake_case name: (the spec field, the flag)
MEGATRON_FLAGS = {
    "hidden_dropout": ("hiddenDropout", "--hidden-dropout"),
    "attention_dropout": ("attentionDropout", "--attention-dropout"),
    "distributed_optimizer": ("distributedOptimizer", "--use-distributed-optimizer"),
    "expert_tensor_parallel": ("expertTensorParallel", "--expert-tensor-parallel-size"),
    "moe_grouped_gemm": ("moeGroupedGemm", "--moe-grouped-gemm"),
    "tp_comm_overlap": ("tpCommOverlap", "--tp-comm-overlap"),
    "mtp_num_layers": ("mtpNumLayers", "--mtp-num-layers"),
    "transformer_impl": ("transformerImpl", "--transformer-impl"),
    "cross_entropy_fusion": ("crossEntropyFusion", "--cross-entropy-loss-fusion"),
}


def _megatron_flag(field: str, flag: str) -> Rule:
    return Rule(f"!has(self.{field}) || self.framework == 'megatron'",
                f"training.{field} is Megatron's {flag}: only with framework megatron", f".{field}")


RULES: dict[str, dict[str, Rule]] = {
    "ModelSource": {
        "parameters_alone": Rule(
            "!has(self.parameters) || !(has(self.preset) || has(self.architecture) || has(self.huggingFaceConfig))",
            "`parameters` stands alone: give it without preset, architecture or huggingFaceConfig", ".parameters"),
        "preset_or_config": Rule("!(has(self.preset) && has(self.huggingFaceConfig))",
                                 "give either `preset` or `huggingFaceConfig`, not both", ".huggingFaceConfig"),
        "one_source": Rule(
            "has(self.preset) || has(self.architecture) || has(self.huggingFaceConfig) || has(self.parameters)",
            "give one of preset, architecture, huggingFaceConfig or parameters"),
    },
    "LLMWorkloadSpec": {
        "training_block": Rule("self.workload == 'training' || !has(self.training)",
                               "`training` is only allowed with workload: training", ".training"),
        "inference_block": Rule("self.workload == 'inference' || !has(self.inference)",
                                "`inference` is only allowed with workload: inference", ".inference"),
        "training_needed": Rule("self.workload != 'training' || has(self.training)",
                                "workload: training needs a `training` block (method full, lora or qlora)",
                                ".training"),
        "qlora_precision": Rule(
            "!has(self.training) || self.training.method != 'qlora' || self.precision in ['nf4', 'int4']",
            "training.method qlora needs precision nf4 (or int4)", ".precision"),
        "kbit_norms_base": Rule(
            "!has(self.training) || !has(self.training.kbitNormsFp32) || self.training.method == 'qlora' || "
            "self.precision == 'int8'",
            "training.kbitNormsFp32 is about peft's prepare of a 4- or 8-bit base: only with method qlora, or lora "
            "with precision int8", ".training.kbitNormsFp32"),
        "kv_cache_fp32": Rule(
            "!has(self.inference) || !has(self.inference.kvCachePrecision) || "
            "self.inference.kvCachePrecision != 'fp32' || self.precision == 'fp32'",
            "inference.kvCachePrecision fp32 is the engines' `auto` cache of a float32 model (precision fp32); "
            "with other weights they offer bf16, fp16 or fp8", ".inference.kvCachePrecision"),
        "data_parallel_attention_tensor": Rule(
            "!has(self.inference) || !has(self.inference.dataParallelAttention) || (has(self.parallelism) && "
            "self.parallelism.tensor % self.inference.dataParallelAttention == 0 && self.parallelism.data == 1)",
            "inference.dataParallelAttention splits SGLang's tensor-parallel group into attention data-parallel ranks: "
            "it needs parallelism.tensor set to a multiple of it (--tp-size; every GPU of the group is one DP rank's "
            "attention share) and parallelism.data 1", ".inference.dataParallelAttention"),
        # SGLANG_DP_ATTENTION_SIZE: a named release before 0.4.5 (0.0-0.3.x, 0.4, 0.4.0-0.4.4, as _older compares)
        "data_parallel_attention_size": Rule(
            "!has(self.inference) || !has(self.inference.dataParallelAttention) || "
            "!has(self.inference.engineVersion) || "
            "!self.inference.engineVersion.matches('^0*[.]0*([0-3]([.][0-9]+)?|4([.]0*[0-4])?)$') || "
            "(has(self.parallelism) && self.parallelism.tensor == self.inference.dataParallelAttention)",
            "inference.dataParallelAttention: SGLang before 0.4.5 sets --dp-size to the tensor size under "
            "--enable-dp-attention: give parallelism.tensor, or engineVersion 0.4.5 or later",
            ".inference.dataParallelAttention"),
        "optimizer_in_backward_layout": Rule(
            "!has(self.training) || !has(self.training.optimizerInBackward) || "
            "!self.training.optimizerInBackward || (has(self.parallelism) && "
            "self.parallelism.data * self.parallelism.tensor * self.parallelism.pipeline == 1)",
            "training.optimizerInBackward is torchtune's optimizer_in_bwd in its single-device recipes: only on one "
            "GPU, so set parallelism with data, tensor and pipeline 1 (without it the planner may pick more GPUs)",
            ".training.optimizerInBackward"),
        "full_precision": Rule(
            "!has(self.training) || self.training.method != 'full' || self.precision in ['fp32', 'bf16', 'fp16']",
            "a full fine-tune trains the weights: precision must be fp32, bf16 or fp16; "
            "use method qlora for 4-bit bases", ".precision"),
        # deepspeed/runtime/pipe/engine.py PipelineEngine.__init__ (DeepSpeed 0.3 to master, 03f6f75):
        # `assert self.zero_optimization_stage() < ZeroStageEnum.gradients, "ZeRO-2 and ZeRO-3 are incompatible with
        # pipeline parallelism"`
        "deepspeed_pipeline_zero": Rule(
            "!has(self.training) || self.training.framework != 'deepspeed' || self.training.zeroStage < 2 || "
            "!has(self.parallelism) || self.parallelism.pipeline == 1",
            "DeepSpeed's pipeline engine runs ZeRO stage 0 or 1 only (\"ZeRO-2 and ZeRO-3 are incompatible with "
            "pipeline parallelism\"): with framework deepspeed and parallelism.pipeline above 1, zeroStage must be "
            "0 or 1", ".training.zeroStage"),
        # expert parallelism adds no GPU (Layout.total_gpus): vLLM's expert group is its tensor x data ranks
        # (FusedMoEParallelConfig.make), SGLang's ep_size divides tp_size, Megatron's and torchtitan's experts take
        # the data (and tensor) ranks
        "expert_layout": Rule(
            "!has(self.parallelism) || "
            "(self.parallelism.tensor * self.parallelism.data) % self.parallelism.expert == 0",
            "parallelism.expert must divide parallelism.tensor x parallelism.data: expert parallelism spreads the "
            "experts over the tensor- and data-parallel GPUs and adds none", ".parallelism.expert"),
        # megatron/core/parallel_state.py initialize_model_parallel: the world size must be a multiple of expert
        # tensor x expert x pipeline ("world_size ... is not divisible by expert_tensor_model_pipeline_parallel_size"),
        # expert tensor defaulting to tensor (arguments.py: `args.expert_tensor_parallel_size =
        # args.tensor_model_parallel_size` when unset, core_r0.10.0 on)
        "megatron_expert_layout": Rule(
            "!has(self.training) || self.training.framework != 'megatron' || has(self.training.expertTensorParallel) "
            "|| !has(self.parallelism) || self.parallelism.data % self.parallelism.expert == 0",
            "with framework megatron, parallelism.expert must divide parallelism.data: Megatron splits the experts "
            "over expert tensor (by default parallelism.tensor) x expert ranks, and the world must be a multiple of "
            "that; set training.expertTensorParallel (e.g. 1) to take expert ranks from the tensor group too",
            ".parallelism.expert"),
        "expert_tensor_parallel_layout": Rule(
            "!has(self.training) || !has(self.training.expertTensorParallel) || (has(self.parallelism) && "
            "(self.parallelism.tensor * self.parallelism.data) % "
            "(self.training.expertTensorParallel * self.parallelism.expert) == 0)",
            "training.expertTensorParallel needs parallelism set, with expertTensorParallel x parallelism.expert "
            "dividing parallelism.tensor x parallelism.data (Megatron's world size must be a multiple of expert "
            "tensor x expert x pipeline)", ".training.expertTensorParallel"),
    },
    "Inference": {
        "engine_settings": Rule(
            "self.engine != 'transformers' || !(has(self.gpuMemoryUtilization) || has(self.maxNumBatchedTokens) "
            "|| has(self.maxNumSeqs))",
            "gpuMemoryUtilization, maxNumBatchedTokens and maxNumSeqs are serving-engine settings: "
            "not allowed with engine transformers", ".engine"),
        "engine_version": Rule("self.engine in ['vllm', 'sglang'] || !has(self.engineVersion)",
                               "engineVersion is modelled for engines vllm and sglang only (other engines: their "
                               "current releases)", ".engineVersion"),
        "vllm_use_v1": Rule("self.engine == 'vllm' || !has(self.vllmUseV1)",
                            "vllmUseV1 is vLLM's VLLM_USE_V1: only with engine vllm", ".vllmUseV1"),
        # VLLM_USE_V1=0 is honoured through 0.10.x; 0.11.0 removed V0 (VLLM_V0_REMOVED below)
        "vllm_v0_removed": Rule(
            "!has(self.vllmUseV1) || self.vllmUseV1 || (has(self.engineVersion) && "
            "!self.engineVersion.matches('^(0*[1-9][0-9]*[.][0-9]+|0*[.]0*(1[1-9]|[2-9][0-9]|[1-9][0-9][0-9]+))"
            "([.][0-9]+)?$'))",
            "vllmUseV1 false runs vLLM's V0 engine, which 0.11.0 removed (VLLM_USE_V1=0 then fails; an unset "
            "engineVersion means a current release): give engineVersion 0.10.2 or earlier, or leave vllmUseV1 unset",
            ".vllmUseV1"),
        # V1 before 0.8.0 was the opt-in alpha (VLLM_USE_V1=1 from 0.7.0): not modelled
        "vllm_v1_before_default": Rule(
            "!has(self.vllmUseV1) || !self.vllmUseV1 || !has(self.engineVersion) || "
            "!self.engineVersion.matches('^0*[.]0*[0-7]([.][0-9]+)?$')",
            "vllmUseV1 true before vLLM 0.8.0: that release runs V0 by default and its opt-in V1 (VLLM_USE_V1=1 "
            "from 0.7.0, an alpha) is not modelled: give engineVersion 0.8.0 or later, or leave vllmUseV1 unset",
            ".vllmUseV1"),
        "tensorrt_llm_backend": Rule("self.engine == 'tensorrt-llm' || !has(self.tensorrtLlmBackend)",
                                     "tensorrtLlmBackend is TensorRT-LLM's runtime (trtllm-serve --backend): only "
                                     "with engine tensorrt-llm; pytorch (the default) or trt (a trtllm-build engine "
                                     "run by the C++ executor, as Triton's tensorrtllm_backend runs it)",
                                     ".tensorrtLlmBackend"),
        "tensorrt_llm_parallel_embedding": Rule(
            "!has(self.tensorrtLlmParallelEmbedding) || (self.engine == 'tensorrt-llm' && has(self.tensorrtLlmBackend) "
            "&& self.tensorrtLlmBackend == 'trt')",
            "tensorrtLlmParallelEmbedding says how a trtllm-build engine's checkpoint holds the embedding table: only "
            "with engine tensorrt-llm and tensorrtLlmBackend trt", ".tensorrtLlmParallelEmbedding"),
        "extensible_kv_cache": Rule("self.engine == 'vllm' || !has(self.extensibleKvCache)",
                                    "extensibleKvCache is vLLM's (--enable-extensible-kv-cache, from 0.34.0): only "
                                    "with engine vllm", ".extensibleKvCache"),
        "lora": Rule("self.engine in ['vllm', 'sglang'] || !(has(self.maxLoras) || has(self.maxLoraRank))",
                     "maxLoras and maxLoraRank size the LoRA adapters' GPU buffers of engines vllm (--enable-lora "
                     "--max-loras --max-lora-rank) and sglang (--lora-paths --max-loras-per-batch --max-lora-rank) "
                     "only", ".maxLoras"),
        "vllm_lora_rank": Rule("self.engine != 'vllm' || !has(self.maxLoraRank) || "
                               "self.maxLoraRank in [1, 8, 16, 32, 64, 128, 256, 320, 512]",
                               "maxLoraRank under engine vllm is one of the ranks vLLM accepts for --max-lora-rank: "
                               "8, 16, 32, 64, 128, 256, 320 or 512 (and 1 in recent releases)", ".maxLoraRank"),
        "speculative": Rule("self.engine in ['vllm', 'sglang'] || !has(self.speculativeMethod) || "
                            "self.speculativeMethod == 'none'",
                            "speculativeMethod plans speculative decoding of engines vllm (--speculative-config) and "
                            "sglang (--speculative-algorithm) only; TensorRT-LLM's speculative decoding is not "
                            "modelled", ".speculativeMethod"),
        "draft_model": Rule("has(self.draftModel) == (has(self.speculativeMethod) && "
                            "self.speculativeMethod == 'draft')",
                            "draftModel names the draft model of speculativeMethod draft (vLLM's --speculative-config "
                            "model, SGLang's --speculative-draft-model-path with STANDALONE), and it needs one; other "
                            "methods take no draftModel", ".draftModel"),
        "draft_model_source": Rule("!has(self.draftModel) || !has(self.draftModel.huggingFaceConfig)",
                                   "draftModel takes a preset, an architecture or a parameter count; a "
                                   "huggingFaceConfig is read for the main model only", ".draftModel"),
        "speculative_tokens": Rule("!has(self.speculativeTokens) || (has(self.speculativeMethod) && "
                                   "self.speculativeMethod != 'none')",
                                   "speculativeTokens is only allowed with a speculativeMethod other than none",
                                   ".speculativeTokens"),
        "data_parallel_attention": Rule("self.engine == 'sglang' || !has(self.dataParallelAttention)",
                                        "dataParallelAttention is SGLang's DP attention (--enable-dp-attention with "
                                        "--dp-size): only with engine sglang", ".dataParallelAttention"),
        "prefill_chunk": Rule("self.engine == 'transformers' || !has(self.prefillChunkTokens)",
                              "prefillChunkTokens is only allowed with engine transformers; the serving engines "
                              "chunk prefills by maxNumBatchedTokens", ".prefillChunkTokens"),
    },
    "Training": {
        "lora_rank": Rule("!has(self.loraRank) || self.method != 'full'",
                          "training.loraRank is only allowed with method lora or qlora", ".loraRank"),
        "lora_targets": Rule("!has(self.loraTargets) || self.method != 'full'",
                             "training.loraTargets is only allowed with method lora or qlora", ".loraTargets"),
        "lora_dropout": Rule("!has(self.loraDropout) || self.method != 'full'",
                             "training.loraDropout is only allowed with method lora or qlora", ".loraDropout"),
        "zero_stage": Rule(
            "self.zeroStage == 0 || self.framework in ['transformers', 'deepspeed']",
            "training.zeroStage is DeepSpeed's: only with framework deepspeed or transformers (accelerate's "
            "DeepSpeed plugin); fsdp shards parameters, gradients and states over parallelism.data, megatron's "
            "distributed optimizer shards its states over it", ".zeroStage"),
        "megatron_full": Rule("self.framework != 'megatron' || self.method == 'full'",
                              "framework megatron trains every weight: method must be full", ".method"),
        "megatron_optimizer": Rule("self.framework != 'megatron' || self.optimizer in ['adamw', 'sgd']",
                                   "framework megatron offers adamw and sgd (--optimizer adam|sgd)", ".optimizer"),
        "megatron_compile": Rule("self.framework != 'megatron' || !self.compile",
                                 "framework megatron does not run torch.compile (Transformer Engine fuses its "
                                 "kernels): compile must be false", ".compile"),
        "expandable_segments": Rule(
            "self.framework != 'transformers' || !has(self.expandableSegments)",
            "training.expandableSegments is only allowed with framework fsdp, deepspeed or megatron (the "
            "transformers model is measured with PyTorch's default allocator)", ".expandableSegments"),
        "fsdp_version": Rule("self.framework == 'fsdp' || !has(self.fsdpVersion)",
                             "training.fsdpVersion says which FSDP runs framework fsdp: only with framework fsdp",
                             ".fsdpVersion"),
        "sgd_momentum": Rule("!has(self.sgdMomentum) || self.optimizer == 'sgd'",
                             "training.sgdMomentum is only allowed with optimizer sgd", ".sgdMomentum"),
        "compile_loss": Rule("!has(self.compileLoss) || (self.framework == 'fsdp' && (self.compile || "
                             "self.compileLoss))",
                             "training.compileLoss is only allowed with framework fsdp, and only true with compile: "
                             "false (the loss compiled alone)", ".compileLoss"),
        "sequence_parallel": Rule("!has(self.sequenceParallel) || !self.sequenceParallel || "
                                  "self.framework in ['megatron', 'fsdp']",
                                  "training.sequenceParallel says how tensor parallel splits the norms and the "
                                  "residual: only with framework megatron or fsdp", ".sequenceParallel"),
        "reshard_after_forward": Rule(
            "!has(self.reshardAfterForward) || (self.framework == 'fsdp' && self.method == 'full' && "
            "(!has(self.fsdpVersion) || self.fsdpVersion == 2))",
            "training.reshardAfterForward is FSDP2's fully_shard option: only with framework fsdp (fsdpVersion 2) "
            "and method full", ".reshardAfterForward"),
        "loss_parallel": Rule("!has(self.lossParallel) || self.framework == 'fsdp'",
                              "training.lossParallel says whether fsdp's tensor parallel keeps the logits split over "
                              "the vocabulary: only with framework fsdp", ".lossParallel"),
        "optimizer_in_backward": Rule(
            "!has(self.optimizerInBackward) || !self.optimizerInBackward || (self.framework == 'transformers' && "
            "self.method == 'full' && (!has(self.gradientAccumulationSteps) || self.gradientAccumulationSteps == 1))",
            "training.optimizerInBackward is torchtune's optimizer_in_bwd: only with framework transformers (its "
            "single-device full recipe, as its rows state it), method full and no gradient accumulation",
            ".optimizerInBackward"),
        "paged_optimizer": Rule(
            "!has(self.pagedOptimizer) || !self.pagedOptimizer || (self.framework == 'transformers' && "
            "(self.optimizer == 'adamw8bit' || (self.optimizer == 'adamw' && !has(self.adamwImplementation))))",
            "training.pagedOptimizer is bitsandbytes' PagedAdamW8bit or 32-bit PagedAdamW (states in CUDA managed "
            "memory): only with framework transformers and optimizer adamw8bit, or adamw without "
            "adamwImplementation (bitsandbytes' own kernel, not torch's AdamW; torchtune's single-device recipes; "
            "bitsandbytes' paged optimizers do not run under its FSDP recipes)", ".pagedOptimizer"),
        "activation_offloading": Rule(
            "!self.activationOffloading || (self.framework in ['fsdp', 'transformers'] && "
            "self.activationCheckpointing == 'full')",
            "training.activationOffloading is torchtune's enable_activation_offloading, modelled with full "
            "activation checkpointing (only the checkpointed layer inputs go to CPU): only with framework fsdp or "
            "transformers and activationCheckpointing full", ".activationOffloading"),
        "loss_upcast": Rule(
            "!has(self.lossUpcast) || self.lossUpcast || (self.framework == 'transformers' && self.method != 'qlora' "
            "&& !has(self.lossChunks))",
            "training.lossUpcast false is a job's own cross-entropy on transformers' 16-bit logits: only with "
            "framework transformers, method full or lora (a 16-bit head) and no lossChunks", ".lossUpcast"),
        "loss_chunk_backward": Rule(
            "!has(self.lossChunkBackward) || (self.framework == 'fsdp' && has(self.lossChunks) && self.lossChunks > 1)",
            "training.lossChunkBackward is torchtitan's ChunkedCELoss, which runs each chunk's backward in the loss: "
            "only with framework fsdp and lossChunks above 1", ".lossChunkBackward"),
        "torchtune_loss": Rule(
            "!has(self.torchtuneLoss) || (has(self.lossChunks) && self.lossChunks > 1 && "
            "(self.framework == 'transformers' || (self.framework == 'fsdp' && (!has(self.fsdpVersion) || "
            "self.fsdpVersion == 2) && (!has(self.modelCode) || self.modelCode == 'torchtitan'))))",
            TORCHTUNE_LOSS_MESSAGE, ".torchtuneLoss"),
        "torchtune_loss_backward": Rule(
            "!has(self.torchtuneLoss) || !has(self.lossChunkBackward) || !self.lossChunkBackward",
            TORCHTUNE_LOSS_MESSAGE, ".torchtuneLoss"),
        "virtual_stages": Rule("!has(self.virtualStages) || self.framework == 'megatron'",
                               "training.virtualStages is Megatron's interleaved pipeline schedule: only with "
                               "framework megatron", ".virtualStages"),
        "adamw_implementation": Rule(
            "!has(self.adamwImplementation) || "
            "(self.optimizer == 'adamw' && self.framework in ['transformers', 'fsdp', 'deepspeed', 'megatron'])",
            "training.adamwImplementation says which torch AdamW runs: only with optimizer adamw",
            ".adamwImplementation"),
        "transformers_version": Rule(
            "!has(self.transformersVersion) || self.framework in ['transformers', 'fsdp', 'deepspeed']",
            TRANSFORMERS_VERSION_MESSAGE, ".transformersVersion"),
        "transformers_version_fsdp": Rule(
            "!has(self.transformersVersion) || self.framework != 'fsdp' || (has(self.modelCode) ? "
            "self.modelCode == 'transformers' : has(self.fsdpVersion) && self.fsdpVersion == 1)",
            TRANSFORMERS_VERSION_MESSAGE, ".transformersVersion"),
        "torch_version": Rule(
            "!has(self.torchVersion) || self.framework == 'transformers'",
            "training.torchVersion is the PyTorch release the job runs, modelled for framework transformers (DDP's "
            "construction before 2.8) only", ".torchVersion"),
        "flash_attention_varlen": Rule(
            "!has(self.flashAttentionVarlen) || (self.framework in ['transformers', 'deepspeed'] && "
            "(!has(self.flashAttention) || self.flashAttention))",
            "training.flashAttentionVarlen says transformers' FlashAttention-2 path unpads a padded batch: only with "
            "framework transformers or deepspeed and flashAttention not false", ".flashAttentionVarlen"),
        "kbit_norms_fp32": Rule(
            "!has(self.kbitNormsFp32) || (self.framework == 'transformers' && self.method != 'full')",
            "training.kbitNormsFp32 says whether peft's fp32 upcast of the norms survives on a 4- or 8-bit base: "
            "only with framework transformers and method qlora or lora", ".kbitNormsFp32"),
        "pre_wrap_optimizer": Rule(
            "!has(self.preWrapOptimizer) || (self.framework == 'fsdp' && has(self.fsdpVersion) && "
            "self.fsdpVersion == 1 && self.method == 'full')",
            "training.preWrapOptimizer says an optimizer built before FSDP1's wrap keeps the original parameters: "
            "only with framework fsdp, fsdpVersion 1 and method full", ".preWrapOptimizer"),
        "use_cache": Rule(
            "!has(self.useCache) || !self.useCache || (self.framework == 'fsdp' && self.activationCheckpointing == "
            "'full' && (has(self.modelCode) ? self.modelCode == 'transformers' : has(self.fsdpVersion) && "
            "self.fsdpVersion == 1))", USE_CACHE_MESSAGE, ".useCache"),
        # a named release before 4.36 (0-3.x, 4.0-4.35.x, as _older compares)
        "use_cache_version": Rule(
            "!has(self.useCache) || !self.useCache || (has(self.transformersVersion) && "
            "self.transformersVersion.matches('^0*([0-3]|4[.]0*([0-9]|[12][0-9]|3[0-5]))([.][0-9]+)*$'))",
            USE_CACHE_VERSION_MESSAGE, ".useCache"),
        "torchtitan_version": Rule(
            "!has(self.torchtitanVersion) || (self.framework == 'fsdp' && (!has(self.fsdpVersion) || "
            "self.fsdpVersion == 2) && (!has(self.modelCode) || self.modelCode == 'torchtitan'))",
            "training.torchtitanVersion is the torchtitan release (or, for a commit of main, the release its code "
            "matches: 0.0, 0.1, 0.2 ...) the job runs: only with framework fsdp and FSDP2 (fsdpVersion unset or 2) "
            "running torchtitan's model code (modelCode unset or torchtitan)", ".torchtitanVersion"),
        "deepspeed_version": Rule("!has(self.deepspeedVersion) || self.framework == 'deepspeed'",
                                  "training.deepspeedVersion is the DeepSpeed release the job runs: only with "
                                  "framework deepspeed", ".deepspeedVersion"),
        "torchao_version": Rule(
            "!has(self.torchaoVersion) || (self.framework == 'fsdp' && self.method == 'qlora' && "
            "(!has(self.fsdpVersion) || self.fsdpVersion == 2) && (!has(self.modelCode) || "
            "self.modelCode == 'torchtitan'))",
            "training.torchaoVersion is the torchao release whose NF4Tensor holds torchtune's QLoRA base: only with "
            "framework fsdp, method qlora and torchtune's model code (FSDP2, modelCode unset or torchtitan)",
            ".torchaoVersion"),
        "zero_init": Rule(
            "!has(self.zeroInit) || (self.framework == 'deepspeed' && self.zeroStage == 3)",
            "training.zeroInit is whether the model is built under deepspeed.zero.Init: only with framework deepspeed "
            "and zeroStage 3", ".zeroInit"),
        "cpu_ram_efficient_loading": Rule(
            "!has(self.cpuRamEfficientLoading) || (self.framework == 'fsdp' && has(self.modelCode) && "
            "self.modelCode == 'transformers' && (!has(self.fsdpVersion) || self.fsdpVersion == 2))",
            "training.cpuRamEfficientLoading is accelerate's fsdp_cpu_ram_efficient_loading under FSDP2: only with "
            "framework fsdp, fsdpVersion 2 (or unset) and modelCode transformers", ".cpuRamEfficientLoading"),
        "model_code": Rule(
            "!has(self.modelCode) || (self.framework == 'fsdp' && (self.modelCode == 'transformers' || "
            "!has(self.fsdpVersion) || self.fsdpVersion == 2))",
            "training.modelCode says whose model code framework fsdp runs: only with framework fsdp; torchtitan's "
            "model code is modelled with FSDP2 only (fsdpVersion 1 runs transformers' models)", ".modelCode"),
        "reduce_bucket_size": Rule("!has(self.reduceBucketSize) || self.framework == 'deepspeed'",
                                   "training.reduceBucketSize is DeepSpeed's zero_optimization.reduce_bucket_size: "
                                   "only with framework deepspeed", ".reduceBucketSize"),
        "overlap_comm": Rule("!has(self.overlapComm) || self.framework == 'deepspeed'",
                             "training.overlapComm is DeepSpeed's zero_optimization.overlap_comm: only with framework "
                             "deepspeed", ".overlapComm"),
        "cpu_checkpointing": Rule(
            "!has(self.cpuCheckpointing) || (self.framework == 'deepspeed' && self.activationCheckpointing == 'full')",
            "training.cpuCheckpointing is DeepSpeed's activation_checkpointing.cpu_checkpointing "
            "(deepspeed.checkpointing, as Megatron-DeepSpeed runs it): only with framework deepspeed and "
            "activationCheckpointing full",
            ".cpuCheckpointing"),
        "joint_graph": Rule(
            "!has(self.jointGraph) || !self.jointGraph || (self.framework == 'fsdp' && self.compile && "
            "(!has(self.modelCode) || self.modelCode != 'transformers') && "
            "(!has(self.fsdpVersion) || self.fsdpVersion == 2))",
            "training.jointGraph is torchtitan's whole-model joint-graph trainers (graph_trainer, compiler_toolkit): "
            "only with framework fsdp (FSDP2, torchtitan's model code) and compile true", ".jointGraph"),
        "hybridep_capacity_factor": Rule(
            "!has(self.hybridepCapacityFactor) || self.framework == 'fsdp'",
            "training.hybridepCapacityFactor is torchtitan's HybridEP non-blocking dispatch (moe_comm_backend "
            "hybridep): only with framework fsdp", ".hybridepCapacityFactor"),
        **{name: _megatron_flag(field, flag) for name, (field, flag) in MEGATRON_FLAGS.items()},
        # megatron/training/arguments.py (d98e8a6): "Tensor parallel communication/GEMM overlap can happen only when
        # sequence parallelism is enabled"
        # megatron/core/models/backends.py (d98e8a6): LocalSpecProvider.core_attention is Megatron's own unfused
        # DotProductAttention, TESpecProvider's TEDotProductAttention
        "transformer_impl_local": Rule(
            "!has(self.transformerImpl) || self.transformerImpl != 'local' || "
            "(has(self.flashAttention) && !self.flashAttention)",
            "training.transformerImpl local (Megatron's --transformer-impl local) runs Megatron's own unfused "
            "attention: set training.flashAttention false with it", ".transformerImpl"),
        "tp_comm_overlap_sequence_parallel": Rule(
            "!has(self.tpCommOverlap) || !self.tpCommOverlap || (has(self.sequenceParallel) && self.sequenceParallel)",
            "training.tpCommOverlap (Megatron's --tp-comm-overlap) needs training.sequenceParallel true: Megatron "
            "overlaps the tensor-parallel communication only under sequence parallel", ".tpCommOverlap"),
        "offload_optimizer": Rule(
            "!has(self.offloadOptimizer) || (self.framework == 'deepspeed' && self.zeroStage >= 1)",
            "training.offloadOptimizer is DeepSpeed's zero_optimization.offload_optimizer (device cpu or nvme): only "
            "with framework deepspeed and zeroStage 1, 2 or 3; under framework fsdp the optimizer steps on the CPU "
            "with the parameters offloaded (offloadParameters)", ".offloadOptimizer"),
        "offload_parameters": Rule(
            "!has(self.offloadParameters) || self.framework == 'fsdp' || "
            "(self.framework == 'deepspeed' && self.zeroStage == 3)",
            "training.offloadParameters is DeepSpeed's zero_optimization.offload_param (ZeRO-3 only) or FSDP's CPU "
            "offload (FSDP2's CPUOffloadPolicy, FSDP1's CPUOffload(offload_params=True)): only with framework "
            "deepspeed and zeroStage 3, or framework fsdp", ".offloadParameters"),
        "float8": Rule(
            "!has(self.float8) || self.float8 == 'none' || (self.method == 'full' && (self.framework == 'megatron' || "
            "(self.framework == 'fsdp' && (!has(self.fsdpVersion) || self.fsdpVersion == 2))))",
            "training.float8 is float8 training of the linears (torchao's Float8Linear under FSDP2, Transformer "
            "Engine under Megatron): only with method full and framework fsdp (fsdpVersion 2) or megatron", ".float8"),
        "float8_megatron_rowwise": Rule(
            "!has(self.float8) || self.float8 != 'rowwise' || self.framework != 'megatron'",
            "training.float8 rowwise is torchao's recipe; Transformer Engine under megatron runs tensorwise "
            "(--fp8-recipe delayed or tensorwise) or mxfp8 (--fp8-recipe mxfp8)", ".float8"),
        "float8_all_gather": Rule(
            "!has(self.float8AllGather) || !self.float8AllGather || (has(self.float8) && "
            "(self.float8 == 'tensorwise' || (self.framework == 'megatron' && self.float8 == 'mxfp8')))",
            "training.float8AllGather needs training.float8: tensorwise under fsdp (torchao's "
            "enable_fsdp_float8_all_gather supports tensorwise scaling only), tensorwise or mxfp8 under megatron "
            "(--fp8-param-gather)", ".float8AllGather"),
    },
}
_FIELD_OF = {r.message: r.field for rules in RULES.values() for r in rules.values()}


class RopeScaling(_Model):
    """config.json's rope_scaling, as the engines read it to derive a model's longest context."""

    type: str = Field(min_length=1, description=(
        "rope_scaling's rope_type (or type): linear, dynamic, yarn, llama3, longrope, su, default, ..."))
    factor: float = Field(1.0, gt=0, description="rope_scaling's factor (default 1: none)")
    original_max_position_embeddings: int | None = Field(None, gt=0, description=(
        "rope_scaling's original_max_position_embeddings, where it names one: vLLM scales it (yarn), SGLang scales "
        "nothing when it is there"))


class Architecture(_Model):
    """Transformer shape, as in a Hugging Face config.json. Every field is optional here:
    given with a preset, they override it; alone, the dense core (layers, sizes, heads, vocab) is required."""

    num_layers: int | None = Positive
    hidden_size: int | None = Positive
    intermediate_size: int | None = Positive
    num_attention_heads: int | None = Positive
    num_key_value_heads: int | None = Positive
    head_dim: int | None = Positive
    vocab_size: int | None = Positive
    tie_word_embeddings: bool | None = None
    attention_bias: bool | None = Field(None, description="bias on q, k, v (Qwen2)")
    gated_mlp: bool | None = Field(None, description="SwiGLU/GeGLU (3 matrices) rather than 2 (GELU, squared ReLU)")
    # MoE
    num_experts: int | None = Field(None, ge=0)
    num_experts_per_token: int | None = Positive
    moe_intermediate_size: int | None = Positive
    num_shared_experts: int | None = Field(None, ge=0)
    first_dense_layers: int | None = Field(None, ge=0)
    # MLA (DeepSeek-V2/V3)
    kv_lora_rank: int | None = Positive
    q_lora_rank: int | None = Positive
    qk_rope_head_dim: int | None = Positive
    qk_nope_head_dim: int | None = Positive
    v_head_dim: int | None = Positive
    qk_norm: bool | None = Field(None, description=(
        "the attention normalises each head's queries and keys (an RMSNorm over head_dim before rope: Qwen3, "
        "Qwen3-MoE, Gemma 3; over the whole projection: OLMo 2; Megatron's --qk-layernorm). Training keeps each "
        "norm's input for the backward, a query- and key-sized activation more a layer. Read from a "
        "huggingFaceConfig's model_type; set by the qwen3-* presets"))
    # sliding-window attention (Gemma-2, gpt-oss, Mistral v0.1)
    sliding_window: int | None = Positive
    sliding_window_layers: int | None = Field(None, ge=0)
    # chunked local attention (Llama 4)
    attention_chunk_size: int | None = Field(None, ge=1, description=(
        "chunked local attention (Llama 4's attention_chunk_size): a chunked layer attends within blocks of this "
        "many tokens, so vLLM's hybrid KV cache manager (ChunkedLocalAttentionSpec) keeps a request's "
        "min(attentionChunkSize + max_num_batched_tokens, contextLength) tokens there, not the whole context; "
        "see inference.chunkedLocalAttentionHybrid. Read from a huggingFaceConfig"))
    chunked_attention_layers: int | None = Field(None, ge=0, description=(
        "how many layers use chunked local attention (Llama 4: the layers with rope, no_rope_layers 1; Scout 36 of "
        "48); the rest attend to the whole context. Default: every layer when attentionChunkSize is set"))
    vision_parameters: int | None = Field(None, ge=0, description=(
        "parameters of a multimodal checkpoint's vision encoder and its projector to the language model, stored in "
        "the checkpoint's 16-bit dtype whatever the text layers' quantization (bitsandbytes' and unsloth's skip "
        "lists, AWQ/GPTQ/compressed-tensors ignore lists leave it unconverted), split over tensor parallel, on the "
        "first pipeline stage. Read from a huggingFaceConfig's vision_config; 0 for text-only models"))
    vision_hidden_size: int | None = Field(None, ge=0, description=(
        "width of the vision encoder's transformer (vision_config embed_dim or hidden_size): with "
        "visionPatchesPerItem it sizes what vLLM's profile run spends on the encoder's forward. Read from a "
        "huggingFaceConfig's vision_config; 0 or unset for text-only models (no encoder profile)"))
    vision_intermediate_size: int | None = Field(None, ge=0, description=(
        "the vision encoder's MLP width (vision_config intermediate_size; else mlp_ratio x visionHiddenSize)"))
    vision_gated_mlp: bool | None = Field(None, description=(
        "the vision encoder's MLP is gated (SwiGLU, 3 matrices: Qwen2.5-VL's silu) rather than 2 (GELU: CLIP, "
        "SigLIP, Qwen2-VL)"))
    vision_patches_per_item: int | None = Field(None, ge=0, description=(
        "patches the vision encoder runs over for one image of the largest size the processor accepts (its sequence "
        "length): Qwen2-VL/Qwen2.5-VL max_pixels / patch_size^2 (65536 at the processor's default max_pixels "
        "12845056), SigLIP/CLIP (image_size / patch_size)^2. 0 or unset: no encoder profile"))
    vision_tokens_per_item: int | None = Field(None, ge=0, description=(
        "the language-model tokens (encoder output rows, each of hiddenSize) one such largest image becomes: vLLM's "
        "max tokens per multimodal item (Qwen2.5-VL 16384 at default max_pixels, Gemma 3 mm_tokens_per_image 256, "
        "LLaVA-1.5 576). It sets the encoder cache's budget and how many images vLLM's profile run encodes; counted "
        "with visionHiddenSize and visionPatchesPerItem, all three set. 0 or unset for text-only models, or to model "
        "--limit-mm-per-prompt image=0 (no encoder profile)"))
    vision_output_width: int | None = Field(None, ge=0, description=(
        "width of one vision encoder output row that vLLM keeps in its encoder cache, when it is not hiddenSize: "
        "Qwen3-VL concatenates its deepstack mergers' outputs to the last one's (out_hidden_size x (1 + "
        "len(deepstack_visual_indexes)), 4 x hiddenSize). Read from a huggingFaceConfig's vision_config; 0 or "
        "unset: hiddenSize"))
    vision_num_hidden_layers: int | None = Field(None, ge=0, description=(
        "the vision_config's num_hidden_layers where the config names its ViT depth so (SigLIP, CLIP, InternViT); "
        "unset where it names it depth (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). SGLang's default mem_fraction_static for a "
        "multimodal model shrinks with num_hidden_layers x visionHiddenSize^2, taking 24 layers when the config has no "
        "num_hidden_layers (server_args.py adjust_mem_fraction_for_vlm). Read from a huggingFaceConfig's "
        "vision_config"))
    # linear-attention / state-space layers of a hybrid model (estimator/linear_attention.py)
    linear_attention_layers: int | None = Field(None, ge=0, description=(
        "layers of numLayers that keep a fixed-size recurrent state per request instead of a KV cache: Qwen3-Next's "
        "and Qwen3.5's Gated DeltaNet layers (config.json layer_types 'linear_attention', or all but every "
        "full_attention_interval-th), a Mamba hybrid's mamba layers (Granite 4.0-H layer_types 'mamba', Jamba, "
        "Bamba). 0 or unset: every layer is attention. The state's shape is the five linear* fields below"))
    linear_num_key_heads: int | None = Field(None, ge=0, description=(
        "key heads of a linear-attention layer (linear_num_key_heads); for a Mamba-2 layer its groups (n_groups, "
        "replicated on every tensor rank when fewer than the ranks), for Mamba-1 0"))
    linear_num_value_heads: int | None = Field(None, ge=0, description=(
        "value heads of a linear-attention layer (linear_num_value_heads); for a Mamba-2 layer its heads "
        "(mamba_n_heads), for Mamba-1 its inner width (mamba_expand x hiddenSize)"))
    linear_key_head_dim: int | None = Field(None, ge=0, description=(
        "key head width of a linear-attention layer (linear_key_head_dim); for a Mamba layer its state size "
        "(mamba_d_state / ssm_state_size)"))
    linear_value_head_dim: int | None = Field(None, ge=0, description=(
        "value head width of a linear-attention layer (linear_value_head_dim); for a Mamba-2 layer its head width "
        "(mamba_head_dim), for Mamba-1 1"))
    linear_conv_kernel_dim: int | None = Field(None, ge=0, description=(
        "the short convolution's kernel (linear_conv_kernel_dim, mamba_d_conv, conv_kernel): vLLM keeps its last "
        "kernel - 1 inputs per request"))
    attention_output_gate: bool | None = Field(None, description=(
        "the full-attention layers gate their output with a second query-sized projection (Qwen3-Next, Qwen3.5: "
        "config.json attn_output_gate), doubling q_proj's width; counted in the weights"))
    linear_state_float32: bool | None = Field(None, description=(
        "the recurrent (ssm) state is kept in float32, not the model's dtype: vLLM's mamba_ssm_cache_dtype as "
        "config.json's mamba_ssm_dtype sets it (Qwen3.5) or NemotronH's float32 default"))
    index_head_dim: int | None = Field(None, ge=0, description=(
        "the lightning indexer of DeepSeek-V3.2's sparse attention (config.json index_head_dim, with index_topk): "
        "its key width, cached a token and layer beside the MLA latent (SGLang's NSA pool) and its projections "
        "held whole on every rank; 0 or unset: no indexer"))
    index_num_heads: int | None = Field(None, ge=0, description=(
        "the lightning indexer's query heads (config.json index_n_heads): the width of its wq_b and weights_proj"))
    max_position_embeddings: int | None = Field(None, gt=0, description=(
        "the longest context the model supports, in tokens. Without ropeScaling: that longest context for every "
        "engine (config.json's max_position_embeddings with its rope_scaling applied as vLLM derives max_model_len; "
        "yarn: original_max_position_embeddings x factor). With ropeScaling: config.json's max_position_embeddings as "
        "it stands, which each engine scales as its own source does. An inference contextLength above the engine's "
        "longest is refused where the engine refuses it"))
    model_type: str | None = Field(None, min_length=1, description=(
        "config.json's model_type (gemma3, llama, qwen2, ...): vLLM leaves a gemma3 model's rope_scaling out of its "
        "longest context, and transformers' model code for training.transformersVersion is chosen by it. Read from "
        "a huggingFaceConfig; set by the presets"))
    rope_scaling: RopeScaling | None = Field(None, description=(
        "config.json's rope_scaling, from which each engine derives the model's longest context from "
        "maxPositionEmbeddings (then config.json's own value): vLLM's _get_and_verify_max_len, SGLang's "
        "get_context_length; given beside a huggingFaceConfig or without a preset, maxPositionEmbeddings must be "
        "given with it. Unset: maxPositionEmbeddings is that longest context for every engine"))
    final_logit_softcapping: float | None = Field(None, ge=0, description=(
        "config.json's final_logit_softcapping (Gemma 2: 30.0): transformers' forward computes logits = cap x "
        "tanh(logits / cap) over the whole vocabulary, and tanh keeps its output for the backward, one more "
        "logit-sized tensor through the training loss (framework transformers). 0 or unset: none. Read from a "
        "huggingFaceConfig"))


class ModelSource(_Model):
    """Exactly one way to say which model: a preset (optionally overridden), an architecture,
    a Hugging Face config.json, or a bare parameter count for the rule-of-thumb estimate."""

    preset: str | None = None
    architecture: Architecture | None = None
    hugging_face_config: str | None = Field(
        None, description="CLI: path to a config.json; operator: name of a ConfigMap key `config.json`"
    )
    parameters: int | None = Field(None, gt=0, description="bare parameter count, e.g. 70e9 or '70B'")

    @field_validator("parameters", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        return None if v is None else parse_count(v)

    @property
    def label(self) -> str:
        """What `kubectl get llmw` shows in its MODEL column."""
        if self.preset:
            return self.preset + (" (modified)" if self.architecture else "")
        if self.hugging_face_config:
            return f"config.json from {self.hugging_face_config}"
        if self.parameters:
            return f"{self.parameters / 1e9:g}B parameters"
        a = self.architecture
        return f"custom ({a.num_layers} layers x {a.hidden_size})" if a else "custom"

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if self.parameters is not None and (self.preset or self.architecture or self.hugging_face_config):
            raise ValueError(RULES["ModelSource"]["parameters_alone"].message)
        if self.preset and self.hugging_face_config:
            raise ValueError(RULES["ModelSource"]["preset_or_config"].message)
        if not (self.preset or self.architecture or self.hugging_face_config or self.parameters):
            raise ValueError(RULES["ModelSource"]["one_source"].message)
        return self


# SGLang's first release that takes --dp-size under --enable-dp-attention (1 < dp-size, dividing tp-size; attention
# then split over tp / dp GPUs); 0.4.1-0.4.4 set dp_size = tp_size (server_args.py __post_init__, read in the wheels)
SGLANG_DP_ATTENTION_SIZE = (0, 4, 5)

# vLLM's first release without the V0 engine: 0.11.0's vllm/engine/llm_engine.py is `LLMEngine = V1LLMEngine`, and
# V1's LLMEngine/AsyncLLM raise "Using V1 LLMEngine, but envs.VLLM_USE_V1=False" under VLLM_USE_V1=0; 0.10.2 still
# ships V0 (vllm/worker/model_runner.py) and EngineArgs.create_engine_config honours VLLM_USE_V1=0.
VLLM_V0_REMOVED = (0, 11)
# vLLM's first release that runs V1 by default (envs.py VLLM_USE_V1 default "1"; 0.7.0's default was "0").
VLLM_V1_DEFAULT = (0, 8)

# vLLM's extensible KV cache, on by default from 0.34.0 (vllm/config/vllm.py, _resolve_extensible_kv_cache).
EXTENSIBLE_KV_CACHE = (0, 34)


@functools.cache
def _release(version: str) -> tuple[int, ...]:
    """ "0.8.5" -> (0, 8, 5), parsed once a string: an estimate asks a spec's release dozens of times."""
    return tuple(int(x) for x in version.split("."))


def replica_share(concurrency: int, data: int, data_parallel_attention: int | None) -> int:
    """The sequences each of `data` data-parallel replicas must hold at once; with SGLang's DP attention each of a
    replica's `data_parallel_attention` ranks holds its own share (the scheduler's load balancer spreads requests over
    them, data_parallel_controller.py)."""
    return -(-concurrency // (data * (data_parallel_attention or 1)))


def _older(version: str | None, release: tuple[int, ...]) -> bool:
    """A named release ("0.8.5", "4.48") older than `release`; unset means a current one."""
    return version is not None and _release(version) < release


class Inference(_Model):
    engine: Engine = Field("vllm", description=(
        "the serving runtime whose memory plan is modelled: vllm (V1; engineVersion for older releases), sglang, "
        "tensorrt-llm, or transformers "
        "(Hugging Face generate: no preallocated KV pool)"))
    context_length: int = Field(4096, gt=0, description="tokens per sequence, prompt plus output (the engine's "
                                "max_model_len)")
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
    prefix_caching: bool | None = Field(None, description=(
        "vLLM's --enable-prefix-caching, read for hybrid linear-attention / Mamba models only (architecture "
        "linearAttentionLayers): vLLM leaves it off for them by default (ModelConfig.is_prefix_caching_supported); "
        "on, from 0.15.0 each linear layer keeps 2 states a request instead of 1 (mamba_cache_mode 'align')"))
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
        if self.vllm_use_v1 is False and not _older(self.engine_version, VLLM_V0_REMOVED):
            raise ValueError(rules["vllm_v0_removed"].message)
        if self.vllm_use_v1 and _older(self.engine_version, VLLM_V1_DEFAULT):
            raise ValueError(rules["vllm_v1_before_default"].message)
        if self.extensible_kv_cache is not None and self.engine != "vllm":
            raise ValueError(rules["extensible_kv_cache"].message)
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
        if on and _older(release, EXTENSIBLE_KV_CACHE):
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
        # `_older` written out: an estimate asks this some seventy times, a plan some thousands
        version = self.engine_version
        return version is not None and self.engine == "vllm" and _release(version) < release

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
        version = self.engine_version  # `_older` written out, as in vllm_before
        return version is not None and self.engine == "sglang" and _release(version) < release


class Training(_Model):
    framework: Framework = Field("transformers", description=(
        "the training runtime whose memory is modelled: transformers (HF Trainer / accelerate, autocast over "
        "fp32 weights), fsdp (FSDP2 as torchtitan, torchtune and accelerate run it), deepspeed (ZeRO 1-3), "
        "megatron (Megatron-LM / Megatron-Core: tensor and sequence parallel, distributed optimizer)"))
    compile: bool = Field(False, description="torch.compile: fused kernels save fewer intermediates")
    method: Method = "full"
    optimizer: Optimizer = "adamw"
    sgd_momentum: bool | None = Field(None, description=(
        "optimizer sgd: whether it keeps a momentum buffer (one state per trained parameter, in the master "
        "dtype). Default: the framework's own. false for transformers, fsdp and deepspeed (torch.optim.SGD's "
        "momentum=0, which HF Trainer's optim='sgd' keeps); true for megatron (--sgd-momentum 0.9)"))
    master_weights: MasterWeights = Field("fp32", description=(
        "fp32: mixed precision; none: pure 16-bit. For lora/qlora under framework fsdp it is the adapters' dtype: "
        "none as torchtune builds them (16-bit, with 16-bit gradients and optimizer states), fp32 as peft keeps them. "
        "A model loaded in 16 bits and trained under accelerate's FSDP1 (HF Trainer --fsdp) with --bf16 or --fp16 is "
        "fp32: from accelerate 0.30.0 (PR 2674) Accelerator.prepare_model upcasts every trainable FlatParameter to "
        "fp32 when mixed precision is set, so its gradients and AdamW states are fp32 too; without the flag (mixed "
        "precision no) it stays none"))
    micro_batch_size: int = Field(1, gt=0)
    sequence_length: int = Field(4096, gt=0, description=(
        "tokens per sample as the runtime feeds them: the length it pads or packs every sample to (HF "
        "Trainer pads each batch to its longest sample, or to max_length with padding='max_length'; packed "
        "datasets fill every row). Memory follows this padded length, not the average sample"))
    activation_checkpointing: Checkpointing = Field("none", description=(
        "selective means what the framework means by it: transformers and deepspeed, recomputing the "
        "attention core (Korthikanti et al.); fsdp, torchtitan's per-op policy (saves matmul and attention "
        "outputs except every second matmul); megatron, core attention only (--recompute-granularity selective)"))
    lora_rank: int | None = Field(None, gt=0, description="default 16 for lora and qlora")
    lora_targets: list[LoraTarget] | None = Field(None, min_length=1, description=(
        "the projections that carry adapters, by role, lora and qlora only: q, k, v, o (attention) and gate, up, "
        "down (MLP; a non-gated MLP has up and down). peft's target_modules q_proj, k_proj, v_proj, o_proj, gate_proj, "
        "up_proj, down_proj ('all-linear' is all seven; peft's own default for Llama-style models is q and v); "
        "torchtune's lora_attn_modules (q_proj, k_proj, v_proj, output_proj) with apply_lora_to_mlp for gate, up, "
        "down. Default: all seven"))
    lora_dropout: float | None = Field(None, ge=0, lt=1, description=(
        "the adapters' dropout probability (peft's and torchtune's lora_dropout), lora and qlora only. Default 0, as "
        "peft's LoraConfig and torchtune's LoRA builders; above 0 each adapted layer keeps its dropped copy of the "
        "input and a 1-byte mask for the backward"))
    zero_stage: int = Field(0, ge=0, le=3, description=(
        "ZeRO sharding over the data-parallel GPUs: framework deepspeed, or transformers with accelerate's "
        "DeepSpeed plugin"))
    sequence_parallel: bool | None = Field(None, description=(
        "framework megatron: --sequence-parallel (norms, dropout and the layer inputs split over tensor too); "
        "default false. framework fsdp with tensor > 1: whether the tensor-parallel plan splits the norms and the "
        "residual over the sequence (SequenceParallel, each norm's output all-gathered for the next matmuls), as "
        "torchtitan's and torchtune's plans do (default true); false is a plan without it (torchtitan's "
        "enable_sequence_parallel false; Hugging Face transformers' tp_plan as accelerate applies it): every tensor "
        "rank keeps the whole sequence's block inputs and norms"))
    reshard_after_forward: bool | None = Field(None, description=(
        "framework fsdp (FSDP2), method full: fully_shard's reshard_after_forward. false (torchtitan's "
        "fsdp_reshard_after_forward never, torchtune's and accelerate's fsdp_reshard_after_forward: false) keeps each "
        "block's 16-bit parameters gathered from its forward to its backward: the whole model's 16-bit copy (over "
        "tensor and pipeline) is on every GPU when the backward starts. Default: true, except under pipeline stages, "
        "where torchtitan does not reshard (its default policy)"))
    loss_parallel: bool | None = Field(None, description=(
        "framework fsdp with tensor > 1: the output projection's logits stay split over the vocabulary and the "
        "cross-entropy runs on the shards (torch's loss_parallel; torchtitan's default). false: the output is "
        "all-gathered to the whole vocabulary on every tensor rank before the loss (torchtune's tensor-parallel "
        "plan before June 2025, output_layouts=Replicate(); transformers' lm_head colwise_rep; torchtitan's "
        "disable_loss_parallel), so each rank holds the whole logits and loss buffers. Default true"))
    virtual_stages: int | None = Field(None, gt=0, description=(
        "framework megatron with parallelism.pipeline > 1: model chunks per GPU of the interleaved pipeline schedule "
        "(--virtual-pipeline-model-parallel-size; with --num-layers-per-virtual-pipeline-stage k it is "
        "numLayers / (pipeline x k)). Interleaving keeps more micro-batches' activations in flight on every stage. "
        "Default 1: the plain 1F1B schedule"))
    flash_attention: bool | None = Field(None, description=(
        "whether attention runs a fused kernel that keeps no score matrix for the backward (flash attention, SDPA; "
        "Megatron's --use-flash-attn or Transformer Engine's fused attention). false keeps micro-batch x heads x "
        "sequence^2 scores a layer (split over tensor): Megatron's unfused attention (--transformer-impl local "
        "without --use-flash-attn) 5 bytes a score (softmax output, dropout mask, dropped-out probabilities); Hugging "
        "Face models' eager attention (attn_implementation eager, the only one before transformers 4.36 made SDPA "
        "the default) 8 (the masked scores, the fp32 softmax and its 16-bit copy). Default true"))
    expandable_segments: bool | None = Field(None, description=(
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the training processes (torchtitan's run_train.sh "
        "exports it): freed pages are remapped for any size, so less memory is stranded between the backward "
        "and the optimizer step. Default: true for fsdp (FSDP2) with selective checkpointing (modelled as torchtitan), "
        "else false (PyTorch's default). fsdp, deepspeed and megatron only"))
    fsdp_version: int | None = Field(None, ge=1, le=2, description=(
        "framework fsdp: which PyTorch FSDP shards the model. 2 (default): FSDP2, fully_shard (torchtitan, "
        "torchtune, accelerate with fsdp_version: 2): per-parameter shards, each block's 16-bit copy gathered before "
        "use, the models' own code (torchtitan's fused nn.RMSNorm). 1: FullyShardedDataParallel (accelerate's FSDP "
        "plugin and HF Trainer --fsdp by default, llama-recipes / llama-cookbook): one FlatParameter per wrapped "
        "unit, the root unit (embeddings, final norm, output) kept unsharded from the forward to the end of the "
        "backward, at most two all-gathers in flight (limit_all_gathers), the current unit's unsharded gradient in "
        "the reduce dtype, Hugging Face transformers' model code (unfused RMSNorm) with its reentrant gradient "
        "checkpointing (for lora and qlora, whose layer units are frozen, every layer's input gradient is held to the "
        "end of the backward), and PyTorch's default allocator unless expandableSegments says otherwise"))
    paged_optimizer: bool | None = Field(None, description=(
        "optimizer adamw8bit as bitsandbytes' PagedAdamW8bit, or adamw as its 32-bit PagedAdamW (fp32 states "
        "whatever the parameters' dtype; bitsandbytes/functional.py get_paged: cudaMallocManaged, outside "
        "PyTorch's caching allocator, for every state of a tensor of 1e5 elements or more): the CUDA driver pages "
        "the states between host and GPU as the GPU fills, so they are not counted on it. Only with framework "
        "transformers (torchtune's single-device recipes), and with adamw only without adamwImplementation. "
        "Default false: the states are counted on the GPU"))
    optimizer_in_backward: bool | None = Field(None, description=(
        "torchtune's optimizer_in_bwd (training/memory.py register_optim_in_bwd_hooks): one optimizer per parameter, "
        "stepped by the parameter's post-accumulate-grad hook, which then frees its gradient, so no moment holds "
        "every gradient and no step follows the backward. Only with framework transformers (torchtune's "
        "single-device full recipe), method full, one GPU and no gradient accumulation (the recipe refuses "
        "gradient_accumulation_steps > 1 with it). Default false"))
    activation_offloading: bool = Field(False, description=(
        "torchtune's enable_activation_offloading (training/_activation_offloading.py, OffloadActivations) with full "
        "activation checkpointing: each checkpointed layer's input is copied to pinned CPU memory as the forward goes "
        "and brought back in the backward; the last 5 stay on the GPU (max_fwd_stash_size) until the backward reaches "
        "them, so the layer inputs kept on the GPU are at most 5 instead of one per layer. framework fsdp "
        "(torchtune's distributed recipes) or transformers (its single-device recipes) with activationCheckpointing "
        "full. Default false"))
    compile_loss: bool | None = Field(None, description=(
        "framework fsdp with compile: the loss is compiled too, so no fp32 copy of the logits is kept (16-bit "
        "logits saved, a 16-bit gradient). Default true: torchtitan compiles the loss with the model since April "
        "2025 (components model and loss) and torchtune compiles its loss (not under tensor parallel since June "
        "2025: that loss runs eager whatever this says); false for torchtitan before that. true with compile false: "
        "the loss compiled alone, the model's blocks eager (torchtitan's compile.components = [\"loss\"], the "
        "DeepSeek-V3 tomls' default)"))
    loss_chunks: int | None = Field(None, gt=0, description=(
        "cross-entropy computed over this many chunks of the tokens, the fp32 buffers of one chunk alive at a "
        "time (chunked or fused-linear cross-entropy); default 1: the whole fp32 log-softmax at once"))
    loss_upcast: bool | None = Field(None, description=(
        "framework transformers, method full or lora: whether the cross-entropy runs on fp32 logits. Default true: "
        "transformers' own loss (the model called with labels; ForCausalLMLoss, loss/loss_utils.py, upcasts with "
        "`logits.float()`). false: the job calls the model without labels and computes the loss itself on the "
        "16-bit logits it gets back (a plain PyTorch loop's nn.CrossEntropyLoss over `logits[:, :-1, :].reshape(-1, "
        "vocab)`) and drops the model's output before the backward: a 16-bit shifted copy and a 16-bit log-softmax, "
        "no fp32 buffer. From transformers 4.46 the causal-LM models return the lm_head's 16-bit output when no labels "
        "are given (4.49.0 models/llama/modeling_llama.py LlamaForCausalLM.forward); before 4.46 their forward "
        "upcasts the logits whatever the caller does, so false changes nothing there"))
    loss_chunk_backward: bool | None = Field(None, description=(
        "framework fsdp with lossChunks > 1: the loss computes each chunk's logits from the hidden states and runs "
        "that chunk's backward before the next one (torchtitan's ChunkedCELoss, components/loss.py, from April 2026), "
        "so one chunk's logits exist at a time, beside a 16-bit copy of the hidden states split into chunks and an "
        "fp32 gradient accumulator the size of the hidden states. Default false: torchtune's chunked loss, one "
        "backward after all chunks: compiled, each chunk's 16-bit logits kept until its backward; eager (loss not "
        "compiled, or under tensor parallel), every chunk's fp32 log-softmax kept until the backward"))
    torchtune_loss: Literal["chunkedOutput", "linear"] | None = Field(None, description=(
        "a torchtune recipe's chunked cross-entropy, as its config's loss._component_ names it, with lossChunks its "
        "num_output_chunks. chunkedOutput: CEWithChunkedOutputLoss, the configs' loss in every release to 0.6.1 "
        "(torchtune/modules/loss/ce_chunked_output_loss.py): the model returns every chunk's 16-bit logits as one "
        "list (TransformerDecoder.chunked_output), alive through the loss's forward, and the loss upcasts one chunk "
        "at a time; torchtitan's chunked_cross_entropy_loss (PR 996, main from March 24 to April 2, 2025), which "
        "chunks the model's whole logits, is the same. linear: LinearCrossEntropyLoss, the configs' loss on main "
        "from PR 2531 (April 30, 2025; torchtune/modules/loss/cross_entropy_loss.py): the loss projects each chunk "
        "of the hidden states itself, so one chunk's logits exist at a time. Both sum the chunks' losses for one "
        "backward: not compiled (compile false, the configs' default), every chunk's fp32 log-softmax stays saved "
        "until the backward; compiled, each chunk's 16-bit logits and no fp32 buffer. framework transformers (the "
        "single-device recipes) or fsdp (FSDP2 with torchtune's model code). Unset: under fsdp as linear; under "
        "transformers lossChunks is a generic chunked or fused-linear cross-entropy (the 16-bit logits whole, one "
        "chunk's fp32 buffers at a time), as axolotl's Cut Cross Entropy is stated"))
    adamw_implementation: Literal["fused", "foreach"] | None = Field(None, description=(
        "optimizer adamw under framework transformers, fsdp, deepspeed or megatron: which AdamW runs the step. fused "
        "(torch.optim.AdamW(fused=True); HF Trainer's optim adamw_torch_fused, its default from torch 2.8; "
        "torchtitan's implementation fused) updates in place; foreach (torch.optim.AdamW's default on CUDA; HF "
        "Trainer's default adamw_torch before torch 2.8; accelerate and torchtune loops) makes one temporary the size "
        "of the optimizer's second moments. Under framework deepspeed, foreach is the torch AdamW that HF Trainer "
        "hands DeepSpeed when the DeepSpeed config names no optimizer (LLaMA-Factory's and the Trainer's example "
        "configs): it steps on ZeRO's flat fp32 partition, so its temporary is the whole partition's size. Default: "
        "fused for transformers and deepspeed (DeepSpeed's FusedAdam), foreach for fsdp. Under framework megatron, "
        "fused is Transformer Engine's or Apex's FusedAdam (the default); foreach is torch.optim.AdamW, which "
        "Megatron-Core falls back to when neither Transformer Engine nor Apex is installed (a pip install of "
        "megatron-core alone, as with --transformer-impl local)"))

    reduce_bucket_size: int | None = Field(None, gt=0, description=(
        "framework deepspeed: zero_optimization.reduce_bucket_size of the DeepSpeed config, in elements. With ZeRO-3 "
        "and contiguous_gradients (DeepSpeed's default) the optimizer allocates a gradient bucket of this many "
        "16-bit elements when it starts and keeps it for the whole run; ZeRO-1 and 2 reduce gradients through "
        "buckets of this size. Default 500000000 (5e8, DeepSpeed's default: about 0.93 GiB in bf16 per GPU)"))
    overlap_comm: bool | None = Field(None, description=(
        "framework deepspeed: zero_optimization.overlap_comm of the DeepSpeed config. With ZeRO-1 and 2, true keeps "
        "two gradient buckets of reduceBucketSize during the backward instead of one, and copies the rank's gradient "
        "partition on a separate CUDA stream, whose memory the next forward cannot reuse. Default: DeepSpeed's, "
        "false for ZeRO-1 and 2 and true for ZeRO-3 (where it changes no memory here). Hugging Face's example ZeRO-2 "
        "and ZeRO-3 configs set it true: copy the value from the config the job runs"))
    transformers_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework transformers, deepspeed (the HF Trainer's DeepSpeed integration, accelerate and DeepSpeed-Chat run "
        "the release's PreTrainedModel under ZeRO, so its forward and loss are that release's), or fsdp with "
        "fsdpVersion 1: the Hugging Face transformers release the job runs, "
        "e.g. 4.48.1, where its causal-LM loss held more memory: before 4.49.0 ForCausalLMLoss copied the shifted "
        "fp32 logits (logits[..., :-1, :].contiguous()) beside the fp32 upcast and the log-softmax, 4 bytes a "
        "logit more at the end of the forward. Under fsdpVersion 1 a Trainer before 4.33 built FSDP1 with "
        "limit_all_gathers False unless its fsdp_config set it: the estimate notes it and counts two units gathered "
        "ahead, as with the rate limiter. Releases before 4.41 (Llama), 4.42 (Mistral), 4.45 (Qwen2) and 4.48 "
        "(Mixtral; a bare architecture, whose family the spec cannot say) keep rotary cos/sin tables of "
        "maxPositionEmbeddings x headDim in every attention layer, whole on every GPU: counted where the "
        "architecture gives maxPositionEmbeddings. Default: current releases"))
    torch_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework transformers: the PyTorch release the job runs, e.g. 2.5.1, where older releases held more memory. "
        "Over data > 1 without ZeRO (HF Trainer's DDP) the DistributedDataParallel constructor broadcasts every "
        "parameter and buffer from rank 0 in flattened buckets of 250 MiB (_sync_module_states, "
        "broadcast_coalesced) with no CPU synchronisation between them; before 2.8 ProcessGroupNCCL called "
        "record_stream on each bucket, so a bucket's flat copy stays reserved until the GPU has sent it and the "
        "CPU's lead keeps up to a second copy of the whole model on every GPU at wrap time (counted at that bound). "
        "From 2.8 each is released at its wait() and two buckets are in flight. A job that exported "
        "TORCH_NCCL_AVOID_RECORD_STREAMS=1 on an older release behaves as 2.8 here. Default: current releases"))
    flash_attention_varlen: bool | None = Field(None, description=(
        "framework transformers or deepspeed with attn_implementation flash_attention_2: the batches carry padding "
        "that the attention_mask marks with 0 (axolotl's pad_to_sequence_len, padding='max_length', samples of "
        "unequal length in one batch), so every layer runs flash_attn_varlen_func on the unpadded tokens and "
        "pads its output back: the layer keeps one more query-wide 16-bit tensor a token (the padded output o_proj "
        "saves, beside the unpadded output flash-attn saves). false or unset: no padding zero (a batch of one "
        "unpadded sample, trl's packing into full rows), or SDPA"))
    kbit_norms_fp32: bool | None = Field(None, description=(
        "framework transformers, method qlora or lora on an int8 base: whether the norms, embeddings and head stay in "
        "fp32 after peft's prepare_model_for_kbit_training upcasts them. true (TRL's SFTTrainer, peft's own "
        "recipe): a norm's fp32 output makes bitsandbytes' layers return fp32, so the residual stream and every "
        "checkpointed layer input are fp32. false: the trainer casts them back to the 16-bit dtype after the "
        "prepare, as axolotl does for every 4- and 8-bit adapter from 1991946c5 (September 1, 2023; "
        "src/axolotl/utils/models.py load_model, \"converting modules to ... for flash attention\"), and from "
        "August 2023 (PR 333) with flash_attention on a Llama-derived model: 16-bit layer inputs. "
        "Default true"))
    pre_wrap_optimizer: bool | None = Field(None, description=(
        "framework fsdp, fsdpVersion 1, method full: the job built its optimizer over the model before FSDP1 wrapped "
        "it and kept that optimizer referenced. FSDP1 moves each unit's original parameters to the GPU and copies "
        "them into its flat parameter (torch.cat); the old optimizer's param_groups keep the originals alive: one "
        "unsharded copy of the model, in its loaded dtype, on every GPU for the whole run. Hugging Face's Trainer "
        "4.30.0-4.31.x does this: `_inner_training_loop` builds the optimizer and lr scheduler over the unwrapped "
        "model, `accelerator.prepare(self.model, self.optimizer)` wraps it and accelerate's `_prepare_fsdp` builds a "
        "new optimizer, but the lr scheduler still holds the first (transformers issue 25580; 4.32.0 prepares the "
        "model first). Default false"))
    use_cache: bool | None = Field(None, description=(
        "framework fsdp running transformers' model code with activationCheckpointing full applied by an external "
        "checkpoint wrapper (FSDP1's apply_activation_checkpointing, as llama-recipes and accelerate's FSDP plugin "
        "apply it), transformersVersion before 4.36: true when the model ran with use_cache on in training (the "
        "config's default, e.g. Llama's; llama-recipes until September 2023, PR 165). LlamaModel.forward then "
        "collects every layer's post-rotary key and value (16-bit, at the key-value heads) into past_key_values, "
        "which the checkpoint does not drop: all layers' are alive at the end of the forward, beside the logits and "
        "the loss, until the output is dropped before the backward. transformers turns use_cache off itself only "
        "under its own gradient_checkpointing (HF Trainer's --gradient_checkpointing); from 4.36 a run with it on "
        "under an external wrapper fails in the backward. Default: false"))
    torchtitan_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework fsdp with FSDP2: the torchtitan release the job runs, e.g. 0.2.1, where older releases held more "
        "memory. Before 0.2 (PR 1094, July 28, 2025) torchtitan applied fully_shard to the whole model last, one "
        "group holding the embeddings, final norm and output: gathered from the forward to the end of the backward "
        "and held a second time in FSDP2's all-gather pool, two vocabulary matrices in 16 bits more (1.96 GiB on "
        "Llama 3.1 8B). Before 0.1 (PR 985, March 19, 2025) RMSNorm was torchtitan's own eager one, which keeps its "
        "fp32 input and 16-bit normalised tensor: 6 bytes a hidden element more at the final norm, and 4 more at "
        "each block's two norms without activation checkpointing or compile. Before 0.2 a MoE's shared experts were "
        "one [1, ...] GroupedExperts that FSDP2 cannot split on dim 0: whole on the rank holding the row, with its "
        "gradients and optimizer states (PR 1561 replaced it on August 13, 2025). For a job that ran a "
        "commit of torchtitan's main branch rather than a release, name the release its code matches: 0.0 for a "
        "commit before March 19, 2025; 0.1 for one from then to July 28, 2025 (v0.1.0 came out June 17); for a later "
        "one the newest release before it (0.2 from July 28, 2025). Default: the current torchtitan"))
    deepspeed_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework deepspeed: the DeepSpeed release the job runs, e.g. 0.9.0, where ZeRO-1/2's step made other "
        "copies of its largest gradient. Before the step proper it checks each gradient for overflow and takes each "
        "one's norm over an fp64 copy (8 bytes an element); the overflow check makes one fp32 copy before 0.13.3 and "
        "from 0.13.3 an fp32 copy, three boolean masks and a second fp32 tensor at once (11 bytes an element), and "
        "runs under fp16 only from 0.11.2 (under bf16 too before). On the rank whose partition holds the embedding "
        "or the head these blocks can stay reserved beside the step's. Default: the current DeepSpeed"))
    torchao_version: str | None = Field(None, pattern=RELEASE_PATTERN, max_length=16, description=(
        "method qlora under framework fsdp with torchtune's model code: the torchao release whose NF4Tensor holds the "
        "frozen base, e.g. 0.1 (torchtune pinned torchao==0.1 in April 2024). Before 0.2 to_nf4 compares every "
        "element of a matrix with the 16 NF4 values at once, a 16-wide 16-bit difference and its absolute value (64 "
        "bytes an element), as the model is built and again as the checkpoint is copied in; on one GPU that can be "
        "the job's peak. Default: the current torchao, which quantizes in chunks"))
    model_code: Literal["torchtitan", "transformers"] | None = Field(None, description=(
        "framework fsdp: whose model code the sharded model runs. torchtitan: torchtitan's or torchtune's own "
        "models (fused nn.RMSNorm, their attention, rotary and loss, their tensor-parallel plans). transformers: "
        "Hugging Face transformers' models (LlamaForCausalLM and the like: an eager RMSNorm that keeps an fp32 copy "
        "of its input, transformers' causal-LM loss, and under tensor parallel transformers' tp_plan, which leaves "
        "the norms, block inputs and logits whole on every rank; accelerate's 16-bit gradient reduce-scatter and, "
        "with gradientAccumulationSteps, its no_sync, which keeps every unsharded gradient between micro-batches), "
        "as accelerate's FSDP plugin with fsdp_version: 2, "
        "HF Trainer or TRL with --fsdp and fsdp_version 2, or transformers' tp_plan with FSDP2 run it. Default: "
        "torchtitan with FSDP2 (fsdpVersion unset or 2), transformers with fsdpVersion 1 (the only one modelled "
        "there). With transformers, training.transformersVersion names its release"))
    hidden_dropout: float | None = Field(None, ge=0, lt=1, description=(
        "framework megatron: --hidden-dropout, the dropout after each layer's attention projection and MLP. Above 0 "
        "each keeps a 1-byte mask a token and hidden unit for the backward; 0 keeps none (torch's dropout returns "
        "its input at p = 0). Default 0.1, Megatron-LM's default; Megatron-Bridge's Llama provider, ms-swift's Qwen "
        "configs and many recipes set 0.0"))
    attention_dropout: float | None = Field(None, ge=0, lt=1, description=(
        "framework megatron: --attention-dropout, the dropout on the attention probabilities. It matters with "
        "unfused attention (flashAttention false): above 0 each score keeps a 1-byte mask and the 16-bit dropped-out "
        "probabilities beside the softmax output; 0 keeps the softmax output only (torch's dropout returns its "
        "input at p = 0). Default 0.1, Megatron-LM's default"))
    distributed_optimizer: bool | None = Field(None, description=(
        "framework megatron: --use-distributed-optimizer, the fp32 main parameters and Adam moments sharded over "
        "parallelism.data (megatron/core/optimizer/distrib_optimizer.py). false is Megatron-LM's own default "
        "(OptimizerConfig.use_distributed_optimizer False): Float16OptimizerWithFloat16Params keeps an fp32 copy of "
        "every parameter of the rank and the optimizer its moments for all of them (megatron/core/optimizer/"
        "optimizer.py). Default true, as most recipes set it"))
    expert_tensor_parallel: int | None = Field(None, gt=0, description=(
        "framework megatron, an MoE model: --expert-tensor-parallel-size, the ranks each routed expert's linears are "
        "split over (megatron/core/transformer/moe/experts.py). Default parallelism.tensor, as "
        "megatron/training/arguments.py sets it when the flag is not given"))
    moe_grouped_gemm: bool | None = Field(None, description=(
        "framework megatron, an MoE model: --moe-grouped-gemm, the routed experts as one grouped GEMM (Transformer "
        "Engine's GroupedLinear) rather than one GEMM an expert. Transformer Engine then keeps four more cuBLAS "
        "workspaces (32 MiB each on Hopper and later) for the process. Default false, Megatron-LM's default"))
    tp_comm_overlap: bool | None = Field(None, description=(
        "framework megatron with sequenceParallel: --tp-comm-overlap, Transformer Engine's userbuffers overlapping "
        "the tensor-parallel all-gathers and reduce-scatters with the GEMMs. Transformer Engine then keeps a cuBLAS "
        "workspace of three streams (3 x 32 MiB on Hopper and later) for the overlapped GEMMs beside its usual one; "
        "the userbuffers themselves are cudaMalloc'd, outside PyTorch's allocator. Default false, Megatron-LM's "
        "default"))
    transformer_impl: Literal["transformer_engine", "local"] | None = Field(None, description=(
        "framework megatron: --transformer-impl. transformer_engine (Megatron-LM's default): Transformer Engine's "
        "layers, which keep TE's cuBLAS workspaces for the process; with flashAttention false that is "
        "--attention-backend unfused, TE's UnfusedDotProductAttention, whose scores are a fresh tensor each call. "
        "local: Megatron's own layers and unfused DotProductAttention, whose scores live in Megatron's global memory "
        "buffer for the whole run (needs flashAttention false). Default: local with flashAttention false, else "
        "transformer_engine"))
    cross_entropy_fusion: Literal["none", "native"] | None = Field(None, description=(
        "framework megatron: the loss's cross-entropy. none (Megatron-LM's default, cross_entropy_loss_fusion False): "
        "tensor_parallel/cross_entropy.py, eager and in place. native: --cross-entropy-loss-fusion with "
        "--cross-entropy-fusion-impl native (Megatron-Bridge's Llama recipes turn it on), "
        "fusions/fused_cross_entropy.py, the same steps compiled with torch.compile; its backward keeps one more "
        "fp32 copy of the vocabulary share of the logits beside the saved softmax. Under --cross-entropy-fusion-impl "
        "te (Transformer Engine's kernel, not modelled) give none, which counts more. Default none"))
    mtp_num_layers: int | None = Field(None, gt=0, description=(
        "framework megatron: --mtp-num-layers, DeepSeek-V3's multi-token prediction (megatron/core/transformer/"
        "multi_token_prediction.py). Each MTP layer is one more layer of the decoder's last kind (a MoE layer in a MoE "
        "model) with two norms, a projection from 2 x hiddenSize to hiddenSize and a final norm, all on the last "
        "pipeline stage, which then also builds the word embedding; its own logits' cross-entropy keeps an fp32 "
        "softmax of the vocabulary share until the backward. Default none (no MTP), Megatron-LM's default"))
    gradient_accumulation_steps: int | None = Field(None, gt=0, description=(
        "micro-batches whose gradients are added up before each optimizer step (HF Trainer's, DeepSpeed's and "
        "torchtune's gradient_accumulation_steps; torchtitan's global batch over its local batch times the "
        "data-parallel size). Each micro-batch runs alone, so the activations stay those of one microBatchSize; from "
        "the second micro-batch on, the gradients of the earlier ones are held while it runs (on one GPU, under DDP "
        "beside its buckets, under accelerate's FSDP1 unsharded), which can raise the peak. Under framework "
        "megatron with pipeline stages, the step's micro-batches (Megatron's num_microbatches: global batch over "
        "micro-batch times data parallel): no stage holds more of them than the step has; unsaid, the first stage "
        "is taken to hold as many as the schedule could. Default 1: none"))
    float8: Literal["none", "tensorwise", "rowwise", "mxfp8"] | None = Field(None, description=(
        "float8 training of the linear layers, method full: framework fsdp, torchao's Float8Linear as torchtitan's "
        "--model.converters float8 applies it (tensorwise, its default recipe; rowwise, --float8.recipe_name "
        "rowwise; mxfp8, the MX recipe on Blackwell); framework megatron, Transformer Engine's --fp8-format hybrid "
        "(tensorwise: --fp8-recipe delayed or tensorwise; mxfp8: --fp8-recipe mxfp8). The master weights, gradients "
        "and optimizer states stay as without it. torchao saves the linears' 16-bit inputs and casts them again in "
        "the backward, so the activations do not shrink; Transformer Engine saves each linear's input in fp8 (1 byte "
        "instead of 2) and keeps an fp8 copy of every weight and its transpose for the whole step. Default none"))
    float8_all_gather: bool | None = Field(None, description=(
        "with training.float8: the weights are all-gathered in fp8, 1 byte a parameter instead of 2. framework fsdp: "
        "torchao's enable_fsdp_float8_all_gather (torchtitan's --float8.enable_fsdp_float8_all_gather; tensorwise "
        "only), which halves the gathered decoder blocks' linear weights; framework megatron: --fp8-param-gather, "
        "whose model parameters are Transformer Engine fp8 tensors in place of the 16-bit parameter buffer. Default "
        "false"))

    offload_optimizer: bool | None = Field(None, description=(
        "framework deepspeed with zeroStage 1-3: ZeRO-Offload, zero_optimization.offload_optimizer.device cpu (or "
        "nvme, ZeRO-Infinity) in the DeepSpeed config. The fp32 master partition, the optimizer states and the fp32 "
        "gradient partition live in host memory and DeepSpeedCPUAdam steps there; the GPU keeps the 16-bit "
        "parameters (ZeRO-1/2: all of them; ZeRO-3: this GPU's partition unless offloadParameters), the gradient "
        "buckets and, under ZeRO-1/2, one 16-bit buffer the size of the largest parameter. Host memory must hold "
        "about 18 bytes a parameter of the GPU's partition (the estimate's notes say how much). Default false"))
    offload_parameters: bool | None = Field(None, description=(
        "framework deepspeed with zeroStage 3: zero_optimization.offload_param.device cpu (or nvme): the 16-bit "
        "parameter partition stays in host memory and each module's parameters are fetched to the GPU and "
        "all-gathered before use (stage3_max_live_parameters, stage3_prefetch_bucket_size bound them as without "
        "offload). framework fsdp: CPU offload of the sharded parameters, gradients and optimizer states, the "
        "optimizer stepping on the CPU: FSDP2's fully_shard(offload_policy=CPUOffloadPolicy()) (torchtune's "
        "fsdp_cpu_offload: True, accelerate's fsdp_offload_params: true with fsdp_version 2), FSDP1's "
        "FullyShardedDataParallel(cpu_offload=CPUOffload(offload_params=True)) (accelerate's fsdp_offload_params: "
        "true). Each block's all-gathered 16-bit copy is still on the GPU. Default false"))
    cpu_ram_efficient_loading: bool | None = Field(None, description=(
        "framework fsdp with FSDP2 running transformers' model code (accelerate's FSDP plugin with fsdp_version 2, "
        "modelCode transformers): accelerate's fsdp_cpu_ram_efficient_loading. false (accelerate's default) with a "
        "bitsandbytes base (precision nf4 or int8, method qlora or lora): transformers' bitsandbytes quantizer puts "
        "the whole model on each rank's GPU to quantize it (update_device_map: {'': torch.cuda.current_device()}), and "
        "accelerate's fsdp2_prepare_model (utils/fsdp_utils.py; axolotl's patched copy alike) takes `original_sd = "
        "model.state_dict()` before fully_shard, so every original tensor stays referenced while the shards are made: "
        "the whole quantized model and this rank's shards at once, the originals then freed into the allocator's "
        "cache. true: the low-memory path (rank 0 loads on the CPU, the other ranks on meta, and "
        "fsdp2_load_full_state_dict sends each rank its shards): no whole copy is counted. A 16-bit base is loaded "
        "on the CPU either way (the Trainer does not place an FSDP model on the GPU) and fully_shard moves it a block "
        "at a time. Default false"))
    zero_init: bool | None = Field(None, description=(
        "framework deepspeed with zeroStage 3: whether the model is built under deepspeed.zero.Init, which partitions "
        "each parameter as it is created (transformers' from_pretrained enters it when is_deepspeed_zero3_enabled(): "
        "the HF Trainer's DeepSpeed config, or accelerate's zero3_init_flag true). false (accelerate's "
        "zero3_init_flag: false): the model is loaded whole and deepspeed.initialize's engine moves it to the GPU "
        "before ZeRO-3 partitions it (runtime/engine.py _configure_distributed_model: `self.module.to(self.device)` "
        "unless a parameter already has ds_id), so every GPU holds the whole 16-bit model once at start. zero.Init "
        "also replaces F.linear with DeepSpeed's memory-efficient linear (runtime/zero/linear.py), which saves the "
        "parameter itself: without activation checkpointing each layer's gathered weights are released after its "
        "module; built outside it, torch's linear saves weight.t() and every layer's gathered 16-bit weights stay "
        "until its backward. Default true"))

    cpu_checkpointing: bool | None = Field(None, description=(
        "framework deepspeed with activationCheckpointing full, a model that checkpoints its layers through "
        "deepspeed.checkpointing (Megatron-DeepSpeed's --deepspeed-activation-checkpointing, DeepSpeed's Megatron-LM "
        "examples, GPT-NeoX): the DeepSpeed config's activation_checkpointing.cpu_checkpointing true "
        "(Megatron-DeepSpeed's --checkpoint-in-cpu; before DeepSpeed 0.5.2 it acts only with partition_activations "
        "true). CheckpointFunction.forward copies each checkpointed layer's input to host memory and frees the GPU "
        "copy; the backward brings one back at a time to recompute its layer, so at most one layer's input is on the "
        "GPU at the backward's peak. Hugging Face models checkpoint with torch.utils.checkpoint, which this setting "
        "does not change. Default false"))

    joint_graph: bool | None = Field(None, description=(
        "framework fsdp with compile: torchtitan's whole-model joint-graph trainers of 2026 (experiments graph_trainer "
        "in its default AOT mode, compiler_toolkit): the model, SimpleFSDP's all-gathers included, is exported as one "
        "forward-backward graph and split by AOTAutograd's default_partition, run without Inductor. Without "
        "activation checkpointing that partitioner saves every forward node the backward uses except the all-gathers "
        "(tagged MUST_RECOMPUTE): eager autograd's saved set, and the views of each gathered 16-bit weight that the "
        "matmuls' backward reads, so every block stays gathered from its forward to its backward. With "
        "checkpointing, as compiled. The loss is as compile / compileLoss say (the compiler toolkit leaves "
        "compile.enable false: its loss is not compiled, compileLoss false). Default false"))

    hybridep_capacity_factor: float | None = Field(None, gt=0, le=1, description=(
        "framework fsdp, a MoE model under expert parallel: torchtitan's HybridEP dispatch in non-blocking mode "
        "(moe_comm_backend hybridep with non_blocking_capacity_factor, as deepseek_v3_16b_hybridep sets 1.0). With "
        "no device-to-host sync the permuted-token buffer is sized before the routing is known, num_tokens x expert "
        "parallel x min(local experts, top-k) x this factor rows (torchtitan/distributed/deepep/hybridep.py, "
        "_num_permuted_tokens_for_non_blocking; 1.0 is the worst case), and the routed experts' tensors are that "
        "many rows. Default unset: the routed copies as routed (torchtitan's all-to-all, DeepEP, blocking HybridEP)"))

    @model_validator(mode="after")
    def _framework_rules(self) -> Training:
        rules = RULES["Training"]
        if self.method == "full":
            for adapter_field in ("lora_rank", "lora_dropout", "lora_targets"):
                if getattr(self, adapter_field) is not None:
                    raise ValueError(rules[adapter_field].message)
        if self.zero_stage and self.framework not in ("transformers", "deepspeed"):
            raise ValueError(rules["zero_stage"].message)
        if self.framework == "megatron":
            if self.method != "full":
                raise ValueError(rules["megatron_full"].message)
            if self.optimizer not in ("adamw", "sgd"):
                raise ValueError(rules["megatron_optimizer"].message)
            if self.compile:
                raise ValueError(rules["megatron_compile"].message)
        elif self.sequence_parallel and self.framework != "fsdp":
            raise ValueError(rules["sequence_parallel"].message)
        if self.activation_offloading and not (
                self.framework in ("fsdp", "transformers") and self.activation_checkpointing == "full"):
            raise ValueError(rules["activation_offloading"].message)
        if self.optimizer_in_backward and not (self.framework == "transformers" and self.method == "full"
                                               and (self.gradient_accumulation_steps or 1) == 1):
            raise ValueError(rules["optimizer_in_backward"].message)
        if self.paged_optimizer and not (self.framework == "transformers" and (
                self.optimizer == "adamw8bit" or (self.optimizer == "adamw" and self.adamw_implementation is None))):
            raise ValueError(rules["paged_optimizer"].message)
        if self.loss_upcast is False and not (
                self.framework == "transformers" and self.method != "qlora" and self.loss_chunks is None):
            raise ValueError(rules["loss_upcast"].message)
        if self.loss_chunk_backward is not None and not (
                self.framework == "fsdp" and (self.loss_chunks or 1) > 1):
            raise ValueError(rules["loss_chunk_backward"].message)
        if self.torchtune_loss is not None and not (
                (self.loss_chunks or 1) > 1 and (self.framework == "transformers" or (
                    self.framework == "fsdp" and self.fsdp == 2 and not self.hf_model_code))):
            raise ValueError(rules["torchtune_loss"].message)
        if self.torchtune_loss is not None and self.loss_chunk_backward:
            raise ValueError(rules["torchtune_loss_backward"].message)
        if self.reshard_after_forward is not None and not (
                self.framework == "fsdp" and self.method == "full" and self.fsdp == 2):
            raise ValueError(rules["reshard_after_forward"].message)
        if self.loss_parallel is not None and self.framework != "fsdp":
            raise ValueError(rules["loss_parallel"].message)
        if self.virtual_stages is not None and self.framework != "megatron":
            raise ValueError(rules["virtual_stages"].message)
        if self.adamw_implementation is not None and not (
                self.optimizer == "adamw" and self.framework in ("transformers", "fsdp", "deepspeed", "megatron")):
            raise ValueError(rules["adamw_implementation"].message)
        if self.framework == "transformers" and self.expandable_segments is not None:
            raise ValueError(rules["expandable_segments"].message)
        if self.fsdp_version is not None and self.framework != "fsdp":
            raise ValueError(rules["fsdp_version"].message)
        if self.model_code is not None and not (
                self.framework == "fsdp" and (self.model_code == "transformers" or self.fsdp == 2)):
            raise ValueError(rules["model_code"].message)
        if self.transformers_version is not None and not (
                self.framework in ("transformers", "deepspeed") or (self.framework == "fsdp" and self.hf_model_code)):
            raise ValueError(rules["transformers_version"].message)
        if self.torch_version is not None and self.framework != "transformers":
            raise ValueError(rules["torch_version"].message)
        if self.flash_attention_varlen is not None and not (
                self.framework in ("transformers", "deepspeed") and self.flash_attention is not False):
            raise ValueError(rules["flash_attention_varlen"].message)
        if self.kbit_norms_fp32 is not None and not (self.framework == "transformers" and self.method != "full"):
            raise ValueError(rules["kbit_norms_fp32"].message)
        if self.pre_wrap_optimizer is not None and not (
                self.framework == "fsdp" and self.fsdp_version == 1 and self.method == "full"):
            raise ValueError(rules["pre_wrap_optimizer"].message)
        if self.use_cache and not (self.hf_model_code and self.activation_checkpointing == "full"):
            raise ValueError(rules["use_cache"].message)
        if self.use_cache and not (self.transformers_version is not None
                                   and _older(self.transformers_version, HF_CACHE_OBJECT)):
            raise ValueError(rules["use_cache_version"].message)
        if self.torchtitan_version is not None and not (
                self.framework == "fsdp" and self.fsdp == 2 and not self.hf_model_code):
            raise ValueError(rules["torchtitan_version"].message)
        if self.deepspeed_version is not None and self.framework != "deepspeed":
            raise ValueError(rules["deepspeed_version"].message)
        if self.torchao_version is not None and not (
                self.framework == "fsdp" and self.method == "qlora" and self.fsdp == 2 and not self.hf_model_code):
            raise ValueError(rules["torchao_version"].message)
        if self.reduce_bucket_size is not None and self.framework != "deepspeed":
            raise ValueError(rules["reduce_bucket_size"].message)
        if self.overlap_comm is not None and self.framework != "deepspeed":
            raise ValueError(rules["overlap_comm"].message)
        if self.offload_optimizer is not None and not (self.framework == "deepspeed" and self.zero_stage >= 1):
            raise ValueError(rules["offload_optimizer"].message)
        if self.offload_parameters is not None and not (
                self.framework == "fsdp" or (self.framework == "deepspeed" and self.zero_stage == 3)):
            raise ValueError(rules["offload_parameters"].message)
        if self.cpu_checkpointing is not None and not (
                self.framework == "deepspeed" and self.activation_checkpointing == "full"):
            raise ValueError(rules["cpu_checkpointing"].message)
        if self.joint_graph and not (
                self.framework == "fsdp" and self.fsdp == 2 and not self.hf_model_code and self.compile):
            raise ValueError(rules["joint_graph"].message)
        if self.hybridep_capacity_factor is not None and self.framework != "fsdp":
            raise ValueError(rules["hybridep_capacity_factor"].message)
        if self.zero_init is not None and not (self.framework == "deepspeed" and self.zero_stage == 3):
            raise ValueError(rules["zero_init"].message)
        if self.cpu_ram_efficient_loading is not None and not (
                self.framework == "fsdp" and self.fsdp == 2 and self.hf_model_code):
            raise ValueError(rules["cpu_ram_efficient_loading"].message)
        for megatron_field in MEGATRON_FLAGS:
            if getattr(self, megatron_field) is not None and self.framework != "megatron":
                raise ValueError(rules[megatron_field].message)
        if self.transformer_impl == "local" and self.flash_attention is not False:
            raise ValueError(rules["transformer_impl_local"].message)
        if self.tp_comm_overlap and not self.sequence_parallel:
            raise ValueError(rules["tp_comm_overlap_sequence_parallel"].message)
        if self.sgd_momentum is not None and self.optimizer != "sgd":
            raise ValueError(rules["sgd_momentum"].message)
        if self.compile_loss is not None and not (self.framework == "fsdp" and (self.compile or self.compile_loss)):
            raise ValueError(rules["compile_loss"].message)
        if self.float8 not in (None, "none") and not (self.method == "full" and (
                self.framework == "megatron" or (self.framework == "fsdp" and self.fsdp == 2))):
            raise ValueError(rules["float8"].message)
        if self.float8 == "rowwise" and self.framework == "megatron":
            raise ValueError(rules["float8_megatron_rowwise"].message)
        if self.float8_all_gather and not (self.float8 == "tensorwise" or (
                self.framework == "megatron" and self.float8 == "mxfp8")):
            raise ValueError(rules["float8_all_gather"].message)
        return self

    @property
    def rank(self) -> int:
        return self.lora_rank or 16

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(self.lora_targets or LORA_TARGETS)

    @property
    def momentum(self) -> bool:
        """optimizer sgd keeps a momentum buffer: sgdMomentum, else the framework's default."""
        return self.sgd_momentum if self.sgd_momentum is not None else self.framework == "megatron"

    @property
    def fsdp(self) -> int:
        """The FSDP version of framework fsdp (fsdpVersion, default 2)."""
        return self.fsdp_version or 2

    @property
    def runs_pipeline_stages(self) -> bool:
        """Whether the framework runs pipeline stages: not DeepSpeed under ZeRO-2 or 3, whose PipelineEngine asserts
        "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" (rule deepspeed_pipeline_zero)."""
        return not (self.framework == "deepspeed" and self.zero_stage >= 2)

    @property
    def hf_model_code(self) -> bool:
        """framework fsdp running Hugging Face transformers' model code: modelCode transformers, or unset with
        fsdpVersion 1."""
        if self.framework != "fsdp":
            return False
        return self.model_code == "transformers" if self.model_code is not None else self.fsdp == 1

    @property
    def records_collective_streams(self) -> bool:
        """PyTorch before 2.8: ProcessGroupNCCL calls record_stream on an async collective's tensors
        (torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp `collective`), so the caching allocator reuses a freed one
        only when the GPU has passed the collective; pytorch PR 150398 stashes them on the CPU side and releases them
        at work.wait() (TORCH_STASHED_COLLECTIVES)."""
        return _older(self.torch_version, TORCH_STASHED_COLLECTIVES)

    @property
    def hf_fsdp1_without_rate_limiter(self) -> bool:
        """FSDP1 under a Hugging Face Trainer before 4.33, which builds FullyShardedDataParallel with
        limit_all_gathers False unless its fsdp_config sets it (HF_FSDP1_LIMITER_FROM_PLUGIN)."""
        return self.framework == "fsdp" and self.fsdp == 1 and _older(self.transformers_version,
                                                                      HF_FSDP1_LIMITER_FROM_PLUGIN)

    @property
    def transformers_release(self) -> tuple[int, ...] | None:
        """transformersVersion parsed ("4.39.3" -> (4, 39, 3)); None where unset (current releases)."""
        return None if self.transformers_version is None else _release(self.transformers_version)

    @property
    def copies_shifted_logits(self) -> bool:
        """Hugging Face transformers before 4.49.0: ForCausalLMLoss (loss/loss_utils.py) shifts the fp32 logits with
        `logits[..., :-1, :].contiguous()`, a third fp32 copy alive with the upcast and the log-softmax (removed by
        transformers PR 35646, which pads the labels instead)."""
        return _older(self.transformers_version, HF_LOSS_WITHOUT_SHIFT_COPY)

    @property
    def own_16bit_loss(self) -> bool:
        """The job's own cross-entropy over 16-bit logits (lossUpcast false): the model returns its lm_head's 16-bit
        output only from transformers 4.46 (holds_16bit_logits_at_loss); before, its forward upcasts them itself."""
        return self.loss_upcast is False and self.holds_16bit_logits_at_loss

    @property
    def holds_16bit_logits_at_loss(self) -> bool:
        """Whether transformers' causal-LM forward keeps the 16-bit logits alive beside the fp32 upcast while the loss
        runs. Before 4.46 every model upcasts in its own forward and rebinds the name (4.45.2
        models/llama/modeling_llama.py LlamaForCausalLM.forward `logits = self.lm_head(...).float()`, Mistral's and
        Qwen2's `logits = logits.float()`, Granite's `logits = logits / self.config.logits_scaling` then
        `logits = logits.float()`): the 16-bit tensor has no reference left once the cast returns (the cast's backward
        saves nothing), so the forward's end holds only the fp32 upcast, its shifted copy and the log-softmax. From
        4.46 Llama and Qwen2 call self.loss_function(logits=logits, ...) (loss/loss_utils.py ForCausalLMLoss upcasts
        inside it) and the caller's 16-bit logits stay referenced; Mistral and Granite kept the in-forward upcast in
        4.46.0 and call loss_function by 4.48.1, counted as held from 4.46 (the larger count). Unset (a current
        release): held."""
        return not _older(self.transformers_version, HF_LOSS_FUNCTION)

    @property
    def torchtitan_root_group(self) -> bool:
        """torchtitan before 0.2 (PR 1094): apply_fsdp shards each block and then `fully_shard(model)`, one root group
        holding tok_embeddings, norm and output (parallelize_llama.py apply_fsdp). accelerate's FSDP2 does the same
        with transformers' models (modelCode transformers): accelerate/utils/fsdp_utils.py fsdp2_prepare_model applies
        fully_shard to each module its auto-wrap policy matches (the decoder layers), then `fully_shard(model)`, one
        root group holding embed_tokens, norm and lm_head (estimator/hf_fsdp2.py)."""
        if self.framework == "fsdp" and self.fsdp == 2 and self.hf_model_code:
            return True
        return _older(self.torchtitan_version, TORCHTITAN_SPLIT_ROOT)

    @property
    def torchtitan_bmm_scores(self) -> bool:
        """torchtitan 0.2.1-0.2.2 (TORCHTITAN_BMM_SCORES): MoE.forward scores the routed outputs by torch.bmm over
        `routed_output_unsorted`, a [bs*slen*top_k, dim] tensor of the layer's whole input, upcast with `.float()`
        (torchtitan/models/common/moe/moe.py at 72f89d206^); unset means a current main, which scatter-adds."""
        first, after = TORCHTITAN_BMM_SCORES
        return self.torchtitan_version is not None and not _older(self.torchtitan_version, first) \
            and _older(self.torchtitan_version, after)

    @property
    def torchtitan_grouped_shared_experts(self) -> bool:
        """torchtitan before 0.2 (TORCHTITAN_FFN_SHARED_EXPERTS): a MoE's shared experts are one GroupedExperts with
        num_experts=1 (models/deepseek_v3/model/moe.py and experiments/llama4/model/moe.py `MoE.__init__` at
        b109f7d71), whose [1, ...] weights FSDP2 cannot split on dim 0 (estimator/moe_training.py
        grouped_shared_params)."""
        return _older(self.torchtitan_version, TORCHTITAN_FFN_SHARED_EXPERTS)

    @property
    def deepspeed_overflow_check_every_dtype(self) -> bool:
        """DeepSpeed before 0.11.2 (DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK): ZeRO-1/2's step runs check_overflow whatever
        the module's dtype; unset means a current release, which checks fp16 only."""
        return _older(self.deepspeed_version, DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK)

    @property
    def torchao_whole_tensor_nf4(self) -> bool:
        """torchao before 0.2 (TORCHAO_CHUNKED_NF4): to_nf4 quantizes a whole matrix at once; unset means a current
        release, which quantizes in chunks of 1024**2 elements."""
        return _older(self.torchao_version, TORCHAO_CHUNKED_NF4)

    @property
    def deepspeed_device_overflow_check(self) -> bool:
        """DeepSpeed 0.13.3 on (DEEPSPEED_DEVICE_OVERFLOW_CHECK): `_has_inf_or_nan` builds its masks on the device;
        unset means a current release."""
        return not _older(self.deepspeed_version, DEEPSPEED_DEVICE_OVERFLOW_CHECK)

    @property
    def torchtitan_eager_final_norm(self) -> bool:
        """torchtitan before 0.1 (PR 985): norm_type "rmsnorm" builds torchtitan's own eager RMSNorm (models/norms.py:
        `self._norm(x.float()).type_as(x) * self.weight`), not torch's fused nn.RMSNorm."""
        return _older(self.torchtitan_version, TORCHTITAN_FUSED_FINAL_NORM)

    @property
    def torchtitan_sac_saves_abs(self) -> bool:
        """torchtitan before 0.1 (`torchtitanVersion` 0.0): per-op SAC caches every aten.abs output of a checkpointed
        block (TORCHTITAN_SAC_WITHOUT_ABS); unset means a current release, which does not."""
        return _older(self.torchtitan_version, TORCHTITAN_SAC_WITHOUT_ABS)

    @property
    def loss_compiled(self) -> bool:
        """fsdp + compile compiles the loss unless compileLoss says not; compileLoss true compiles it alone."""
        return self.framework == "fsdp" and (self.compile_loss is True
                                             or (self.compile and self.compile_loss is not False))


class Parallelism(_Model):
    tensor: int = Field(1, gt=0)
    pipeline: int = Field(1, gt=0)
    data: int = Field(1, gt=0)
    expert: int = Field(1, gt=0, description=(
        "expert-parallel degree of a MoE model: its routed experts are spread over this many of the tensor x data "
        "GPUs (vLLM's --enable-expert-parallel uses all of them, tensor x data). It adds no GPU, so it must divide "
        "tensor x data; with framework megatron, data (expert tensor parallel defaults to tensor)"))

    @property
    def total_gpus(self) -> int:
        # expert parallelism reuses the data-parallel (or tensor) GPUs, as in Megatron and vLLM
        return self.tensor * self.pipeline * self.data


class Placement(_Model):
    instance_types: list[str] | None = Field(None, description="allowed types; default the whole catalog")
    max_nodes: int | None = Field(None, gt=0)
    headroom: float = Field(0.1, ge=0, lt=1, description="fraction of each GPU's memory left free")
    objective: Objective = Field("lowestCost", description=(
        "lowestCost: cheapest for the whole job by the catalog's pricePerHour; without prices, the least GPU "
        "memory reserved, older generations first (small jobs to small GPUs); fewestGPUs: fewest GPUs, then nodes"))
    use_host_memory: bool = Field(False, description="count GH200's CPU-attached memory as capacity")


class Target(_Model):
    kind: Literal["Deployment", "StatefulSet", "Job", "LeaderWorkerSet", "JobSet"] = Field(description=(
        "Deployment or StatefulSet: pods that each hold a whole model replica (one node); LeaderWorkerSet "
        "(leaderworkerset.x-k8s.io/v1): multi-node serving, one group of nodes; JobSet (jobset.x-k8s.io/v1alpha2) "
        "or Job, created suspended: training"))
    name: str = Field(min_length=1)


class LLMWorkloadSpec(_Model):
    model: ModelSource
    workload: Literal["inference", "training"]
    precision: Precision = "bf16"
    inference: Inference | None = None
    training: Training | None = None
    parallelism: Parallelism | None = None
    placement: Placement = Placement()
    target: Target | None = Field(None, description="the Deployment, StatefulSet, Job, LeaderWorkerSet or "
                                   "JobSet the operator patches")

    @model_validator(mode="after")
    def _cross_field(self) -> LLMWorkloadSpec:
        rules = RULES["LLMWorkloadSpec"]
        if self.parallelism is not None and (self.parallelism.tensor * self.parallelism.data) % self.parallelism.expert:
            raise ValueError(rules["expert_layout"].message)
        if self.workload == "inference":
            if self.training is not None:
                raise ValueError(rules["training_block"].message)
            if self.inference is None:
                object.__setattr__(self, "inference", Inference())
            if self.precision == "fp32" and "kv_cache_precision" not in self.inference.model_fields_set:
                object.__setattr__(self.inference, "kv_cache_precision", "fp32")  # the engines' `auto` KV dtype
            if self.inference.kv_cache_precision == "fp32" and self.precision != "fp32":
                raise ValueError(rules["kv_cache_fp32"].message)
            dp = self.inference.data_parallel_attention
            par = self.parallelism
            if dp is not None and (par is None or par.tensor % dp or par.data != 1):
                raise ValueError(rules["data_parallel_attention_tensor"].message)
            if dp is not None and self.inference.sglang_before(SGLANG_DP_ATTENTION_SIZE) and par.tensor != dp:
                raise ValueError(rules["data_parallel_attention_size"].message)
        else:
            if self.inference is not None:
                raise ValueError(rules["inference_block"].message)
            if self.training is None:
                raise ValueError(rules["training_needed"].message)
            t = self.training
            if t.method == "qlora" and self.precision not in ("nf4", "int4"):
                raise ValueError(rules["qlora_precision"].message)
            if t.method == "full" and self.precision not in ("fp32", "bf16", "fp16"):
                raise ValueError(rules["full_precision"].message)
            if t.kbit_norms_fp32 is not None and t.method != "qlora" and self.precision != "int8":
                raise ValueError(rules["kbit_norms_base"].message)
            if not t.runs_pipeline_stages and self.parallelism and self.parallelism.pipeline > 1:
                raise ValueError(rules["deepspeed_pipeline_zero"].message)
            par = self.parallelism
            if t.optimizer_in_backward and (par is None or par.data * par.tensor * par.pipeline != 1):
                raise ValueError(rules["optimizer_in_backward_layout"].message)
            if (t.framework == "megatron" and t.expert_tensor_parallel is None and par is not None
                    and par.data % par.expert):
                raise ValueError(rules["megatron_expert_layout"].message)
            if t.expert_tensor_parallel is not None and (
                    par is None or (par.tensor * par.data) % (t.expert_tensor_parallel * par.expert)):
                raise ValueError(rules["expert_tensor_parallel_layout"].message)
        return self


def _path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    return ".".join(["spec", *parts]) if parts else "spec"


def validation_errors(e: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        field = _FIELD_OF.get(msg, "")  # a cross-field rule names its field, as its CEL rule's fieldPath does
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "literal_error":
            msg = f"got {err.get('input')!r}; allowed: {err['ctx']['expected']}"
        out.append((_path(err["loc"]) + field, msg))
    return out


def parse_spec(doc: dict[str, Any]) -> LLMWorkloadSpec:
    """A manifest (`kind: LLMWorkload`) or a bare spec -> LLMWorkloadSpec; InvalidWorkload otherwise."""
    if not isinstance(doc, dict):
        raise InvalidWorkload([("", "expected a mapping: an LLMWorkload manifest or its spec")])
    if "kind" in doc or "apiVersion" in doc:
        if doc.get("kind") != KIND:
            raise InvalidWorkload([("kind", f"got {doc.get('kind')!r}; expected {KIND}")])
        doc = doc.get("spec")
        if not isinstance(doc, dict):
            raise InvalidWorkload([("spec", "missing; an LLMWorkload needs a spec")])
    try:
        return LLMWorkloadSpec.model_validate(doc)
    except ValidationError as e:
        raise InvalidWorkload(validation_errors(e)) from None

