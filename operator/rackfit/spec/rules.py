"""The spec's cross-field rules: one table, which pydantic's validators raise and the CRD carries as CEL
(api/crdgen.py), so `kubectl apply` and the operator say the same thing."""

from __future__ import annotations

from rackfit.spec.base import Rule

USE_CACHE_MESSAGE = (
    "training.useCache says transformers' model code returned each layer's key and value (use_cache) in training, "
    "kept by an external checkpoint wrapper: only with framework fsdp running transformers' model code (fsdpVersion "
    "1, or modelCode transformers) and activationCheckpointing full")
USE_CACHE_VERSION_MESSAGE = (
    "training.useCache needs training.transformersVersion before 4.36: from 4.36 each layer updates a DynamicCache in "
    "place, the checkpoint's recompute updates it again and the backward fails (transformers issues 28056, 34928), "
    "so a run that trained had use_cache off")
TORCHTUNE_LOSS_MESSAGE = (
    "training.torchtuneLoss is the chunked cross-entropy class a torchtune config names (loss._component_): only "
    "with lossChunks above 1 (its num_output_chunks) and framework transformers (the single-device recipes) or fsdp "
    "with FSDP2 and torchtune's model code (fsdpVersion unset or 2, modelCode unset or torchtitan, no "
    "lossChunkBackward)")
TRANSFORMERS_VERSION_MESSAGE = (
    "training.transformersVersion is the Hugging Face transformers release whose model code and loss run: only with "
    "framework transformers, deepspeed (the HF Trainer's, accelerate's or DeepSpeed-Chat's transformers model under "
    "ZeRO), or fsdp running transformers' model code (fsdpVersion 1, or modelCode transformers)")

# Training fields that are Megatron-LM command-line flags, by their snake_case name: (the spec field, the flag)
MEGATRON_FLAGS = {
    "hidden_dropout": ("hiddenDropout", "--hidden-dropout"),
    "attention_dropout": ("attentionDropout", "--attention-dropout"),
    "distributed_optimizer": ("distributedOptimizer", "--use-distributed-optimizer"),
    "expert_tensor_parallel": ("expertTensorParallel", "--expert-tensor-parallel-size"),
    "moe_grouped_gemm": ("moeGroupedGemm", "--moe-grouped-gemm"),
    "tp_comm_overlap": ("tpCommOverlap", "--tp-comm-overlap"),
    "mtp_num_layers": ("mtpNumLayers", "--mtp-num-layers"),
    "defer_embedding_wgrad": ("deferEmbeddingWgrad", "--defer-embedding-wgrad-compute"),
    "wgrad_deferral_limit": ("wgradDeferralLimit", "--wgrad-deferral-limit"),
    "transformer_impl": ("transformerImpl", "--transformer-impl"),
    "cross_entropy_fusion": ("crossEntropyFusion", "--cross-entropy-loss-fusion"),
    "grad_reduce_in_fp32": ("gradReduceInFp32", "--accumulate-allreduce-grads-in-fp32"),
    "precision_aware_optimizer": ("precisionAwareOptimizer", "--use-precision-aware-optimizer"),
    "adam_moments_dtype": ("adamMomentsDtype", "--exp-avg-dtype and --exp-avg-sq-dtype"),
}


def _megatron_flag(field: str, flag: str) -> Rule:
    return Rule(f"!has(self.{field}) || self.framework == 'megatron'",
                f"training.{field} is Megatron's {flag}: only with framework megatron", f".{field}")

# By the model (its `$defs` name) whose validator checks them. Defaults are applied before CEL
# runs, so `method` and `precision` are always set there.
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
        "online_quantization_fp8": Rule(
            "!has(self.inference) || !has(self.inference.onlineQuantization) || "
            "!self.inference.onlineQuantization || self.precision == 'fp8'",
            "inference.onlineQuantization quantizes a 16-bit checkpoint to fp8 as it loads: only with precision fp8",
            ".inference.onlineQuantization"),
        "data_parallel_attention_tensor": Rule(
            "!has(self.inference) || !has(self.inference.dataParallelAttention) || (has(self.parallelism) && "
            "self.parallelism.tensor % self.inference.dataParallelAttention == 0 && self.parallelism.data == 1)",
            "inference.dataParallelAttention splits SGLang's tensor-parallel group into attention data-parallel ranks: "
            "it needs parallelism.tensor set to a multiple of it (--tp-size; every GPU of the group is one DP rank's "
            "attention share) and parallelism.data 1", ".inference.dataParallelAttention"),
        # SGLANG_DP_ATTENTION_SIZE: a named release before 0.4.5 (0.0-0.3.x, 0.4, 0.4.0-0.4.4, as base.older compares)
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
        "v2_model_runner": Rule("self.engine == 'vllm' || !has(self.v2ModelRunner)",
                                "v2ModelRunner is vLLM's VLLM_USE_V2_MODEL_RUNNER: only with engine vllm",
                                ".v2ModelRunner"),
        # VLLM_USE_V2_MODEL_RUNNER=0 is read through 0.33.x; 0.34.0 has only the new runner (VLLM_V2_RUNNER_ONLY)
        "v2_model_runner_only": Rule(
            "!has(self.v2ModelRunner) || self.v2ModelRunner || (has(self.engineVersion) && "
            "!self.engineVersion.matches('^(0*[1-9][0-9]*[.][0-9]+|0*[.]0*(3[4-9]|[4-9][0-9]|[1-9][0-9][0-9]+))"
            "([.][0-9]+)?$'))",
            "v2ModelRunner false runs vLLM's old GPU model runner, which 0.34.0 removed (it no longer reads "
            "VLLM_USE_V2_MODEL_RUNNER; an unset engineVersion means a current release): give engineVersion 0.33.x or "
            "earlier, or leave v2ModelRunner unset", ".v2ModelRunner"),
        # the new runner before 0.22.0 was an opt-in (VLLM_USE_V2_MODEL_RUNNER=1, default 0): not modelled
        "v2_model_runner_before_default": Rule(
            "!has(self.v2ModelRunner) || !self.v2ModelRunner || !has(self.engineVersion) || "
            "!self.engineVersion.matches('^0*[.]0*([0-9]|1[0-9]|2[01])([.][0-9]+)?$')",
            "v2ModelRunner true before vLLM 0.22.0: that release runs the old GPU model runner and its opt-in new "
            "one (VLLM_USE_V2_MODEL_RUNNER=1) is not modelled: give engineVersion 0.22.0 or later, or leave "
            "v2ModelRunner unset", ".v2ModelRunner"),
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
        "max_cuda_graph_capture_size": Rule(
            "self.engine == 'vllm' || !has(self.maxCudaGraphCaptureSize)",
            "maxCudaGraphCaptureSize is vLLM's --max-cudagraph-capture-size: only with engine vllm",
            ".maxCudaGraphCaptureSize"),
        "online_quantization": Rule("self.engine == 'sglang' || !has(self.onlineQuantization)",
                                    "onlineQuantization is SGLang's --quantization fp8 on a 16-bit checkpoint (its "
                                    "loader read): only with engine sglang", ".onlineQuantization"),
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
            "!has(self.pagedOptimizer) || !self.pagedOptimizer || ((self.framework == 'transformers' || "
            "(self.framework == 'fsdp' && has(self.fsdpVersion) && self.fsdpVersion == 1)) && "
            "(self.optimizer == 'adamw8bit' || (self.optimizer == 'adamw' && !has(self.adamwImplementation))))",
            "training.pagedOptimizer is bitsandbytes' PagedAdamW8bit or 32-bit PagedAdamW (states in CUDA managed "
            "memory): only with framework transformers, or fsdp with fsdpVersion 1 (the HF Trainer's optim "
            "paged_adamw_* under accelerate's FSDP1), and optimizer adamw8bit, or adamw without "
            "adamwImplementation (bitsandbytes' own kernel, not torch's AdamW; torchtune's single-device recipes; "
            "bitsandbytes' paged optimizers do not run under torchtune's FSDP2 recipes)", ".pagedOptimizer"),
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
        "accelerate_version": Rule(
            "!has(self.accelerateVersion) || (self.framework == 'fsdp' && (!has(self.fsdpVersion) || "
            "self.fsdpVersion == 2) && has(self.modelCode) && self.modelCode == 'transformers')",
            "training.accelerateVersion is the accelerate release whose FSDP2 integration runs: only with framework "
            "fsdp, fsdpVersion 2 and modelCode transformers", ".accelerateVersion"),
        "fsdp_activation_checkpointing": Rule(
            "!has(self.fsdpActivationCheckpointing) || (self.framework == 'fsdp' && (!has(self.fsdpVersion) || "
            "self.fsdpVersion == 2) && has(self.modelCode) && self.modelCode == 'transformers' && "
            "self.activationCheckpointing == 'full')",
            "training.fsdpActivationCheckpointing says accelerate's FSDP plugin checkpoints the layers: only with "
            "framework fsdp, fsdpVersion 2, modelCode transformers and activationCheckpointing full",
            ".fsdpActivationCheckpointing"),
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
            "construction before 2.8, foreach AdamW's step before 2.1) only", ".torchVersion"),
        "flash_attention_varlen": Rule(
            "!has(self.flashAttentionVarlen) || (self.framework in ['transformers', 'deepspeed'] && "
            "(!has(self.flashAttention) || self.flashAttention))",
            "training.flashAttentionVarlen says transformers' FlashAttention-2 path unpads a padded batch: only with "
            "framework transformers or deepspeed and flashAttention not false", ".flashAttentionVarlen"),
        "kbit_norms_fp32": Rule(
            "!has(self.kbitNormsFp32) || (self.framework == 'transformers' && self.method != 'full')",
            "training.kbitNormsFp32 says whether peft's fp32 upcast of the norms survives on a 4- or 8-bit base: "
            "only with framework transformers and method qlora or lora", ".kbitNormsFp32"),
        "adapter_dtype": Rule(
            "!has(self.adapterDtype) || (self.framework == 'transformers' && self.method != 'full')",
            "training.adapterDtype says the LoRA adapters' dtype under peft or LitGPT: only with framework "
            "transformers and method lora or qlora (under fsdp masterWeights says it; DeepSpeed casts the whole "
            "module to its 16-bit dtype)", ".adapterDtype"),
        "lm_head": Rule(
            "!has(self.lmHead) || self.framework == 'transformers'",
            "training.lmHead says whether the model runs its LM head (false: transformers' bare AutoModel under a "
            "small task head): only with framework transformers", ".lmHead"),
        "mixed_precision": Rule(
            "!has(self.mixedPrecision) || (self.framework == 'transformers' && self.method == 'qlora')",
            "training.mixedPrecision says whether TRL casts a 4-bit base's fp32 embedding and head back to bf16: "
            "only with framework transformers and method qlora", ".mixedPrecision"),
        "pre_wrap_optimizer": Rule(
            "!has(self.preWrapOptimizer) || (self.framework == 'fsdp' && has(self.fsdpVersion) && "
            "self.fsdpVersion == 1 && self.method == 'full')",
            "training.preWrapOptimizer says an optimizer built before FSDP1's wrap keeps the original parameters: "
            "only with framework fsdp, fsdpVersion 1 and method full", ".preWrapOptimizer"),
        "use_cache": Rule(
            "!has(self.useCache) || !self.useCache || (self.framework == 'fsdp' && self.activationCheckpointing == "
            "'full' && (has(self.modelCode) ? self.modelCode == 'transformers' : has(self.fsdpVersion) && "
            "self.fsdpVersion == 1))", USE_CACHE_MESSAGE, ".useCache"),
        # a named release before 4.36 (0-3.x, 4.0-4.35.x, as base.older compares)
        "use_cache_version": Rule(
            "!has(self.useCache) || !self.useCache || (has(self.transformersVersion) && "
            "self.transformersVersion.matches('^0*([0-3]|4[.]0*([0-9]|[12][0-9]|3[0-5]))([.][0-9]+)*$'))",
            USE_CACHE_VERSION_MESSAGE, ".useCache"),
        "loop_keeps_output": Rule(
            "!has(self.loopKeepsOutput) || self.framework == 'deepspeed' || (self.framework == 'fsdp' && "
            "(has(self.modelCode) ? self.modelCode == 'transformers' : has(self.fsdpVersion) && "
            "self.fsdpVersion == 1))",
            "training.loopKeepsOutput says the job's own loop keeps transformers' model output (its logits and, with "
            "useCache, the key-value cache) referenced through the backward: only with framework deepspeed or fsdp "
            "running transformers' model code (fsdpVersion 1, or modelCode transformers)", ".loopKeepsOutput"),
        "checkpoint_wrapper": Rule(
            "!has(self.checkpointWrapper) || (self.framework == 'fsdp' && has(self.fsdpVersion) && "
            "self.fsdpVersion == 1 && self.activationCheckpointing == 'full')",
            "training.checkpointWrapper says torch's checkpoint_wrapper checkpoints the layers inside the FSDP1 units: "
            "only with framework fsdp, fsdpVersion 1 and activationCheckpointing full", ".checkpointWrapper"),
        "liger_kernel": Rule(
            "!has(self.ligerKernel) || self.framework == 'transformers' || self.framework == 'deepspeed' || "
            "(self.framework == 'fsdp' && (has(self.modelCode) ? self.modelCode == 'transformers' : "
            "has(self.fsdpVersion) && self.fsdpVersion == 1))",
            "training.ligerKernel says Liger's kernels replace the RMSNorm and SwiGLU of transformers' model code (the "
            "HF Trainer's use_liger_kernel, NeMo Automodel's from_pretrained): only with framework transformers, "
            "deepspeed, or fsdp running transformers' model code (fsdpVersion 1, or modelCode transformers)",
            ".ligerKernel"),
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
        "torchtune_version": Rule(
            "!has(self.torchtuneVersion) || (self.framework == 'fsdp' && self.method in ['lora', 'qlora'] && "
            "(!has(self.fsdpVersion) || self.fsdpVersion == 2) && (!has(self.modelCode) || "
            "self.modelCode == 'torchtitan'))",
            "training.torchtuneVersion is the torchtune release whose LoRA recipe and model builders run: only with "
            "framework fsdp, method lora or qlora and torchtune's model code (FSDP2, modelCode unset or torchtitan)",
            ".torchtuneVersion"),
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
        "wgrad_deferral_limit_defer": Rule(
            "!has(self.wgradDeferralLimit) || (has(self.deferEmbeddingWgrad) && self.deferEmbeddingWgrad)",
            "training.wgradDeferralLimit (Megatron's --wgrad-deferral-limit) needs training.deferEmbeddingWgrad true: "
            "it limits the deferred embedding weight-gradient micro-batches", ".wgradDeferralLimit"),
        # megatron/core/optimizer/optimizer_config.py (24bad8e6, d98e8a6): "--use-precision-aware-optimizer only
        # supported with adam", "... only supported with distributed optimizer"; without it "exp_avg_dtype can only be
        # fp32 when not using precision-aware optimizer"
        "precision_aware_optimizer_adam": Rule(
            "!has(self.precisionAwareOptimizer) || !self.precisionAwareOptimizer || (self.optimizer == 'adamw' && "
            "self.method == 'full' && (!has(self.distributedOptimizer) || self.distributedOptimizer))",
            "training.precisionAwareOptimizer (Megatron's --use-precision-aware-optimizer) needs optimizer adamw, "
            "method full and the distributed optimizer (distributedOptimizer unset or true)",
            ".precisionAwareOptimizer"),
        "adam_moments_dtype_precision_aware": Rule(
            "!has(self.adamMomentsDtype) || self.adamMomentsDtype == 'fp32' || "
            "(has(self.precisionAwareOptimizer) && self.precisionAwareOptimizer)",
            "training.adamMomentsDtype other than fp32 (Megatron's --exp-avg-dtype, --exp-avg-sq-dtype) needs "
            "training.precisionAwareOptimizer true: Megatron keeps fp32 moments otherwise", ".adamMomentsDtype"),
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
FIELD_OF = {r.message: r.field for rules in RULES.values() for r in rules.values()}
