"""The training block: the framework, its release and settings, batch, method and optimizer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rackfit.spec.base import (
    LORA_TARGETS,
    RELEASE_PATTERN,
    Checkpointing,
    Framework,
    LoraTarget,
    MasterWeights,
    Method,
    Optimizer,
    Rule,
    SpecModel,
    older,
    parse_release,
)
from rackfit.spec.releases import (
    DEEPSPEED_DEVICE_OVERFLOW_CHECK,
    DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK,
    DEEPSPEED_ZERO3_FLAT_OVERFLOW_CHECK,
    HF_CACHE_OBJECT,
    HF_FSDP1_LIMITER_FROM_PLUGIN,
    HF_LOSS_FUNCTION,
    HF_LOSS_WITHOUT_SHIFT_COPY,
    TORCH_FOREACH_ADAMW_ONE_INTERMEDIATE,
    TORCH_STASHED_COLLECTIVES,
    TORCHAO_CHUNKED_NF4,
    TORCHTITAN_BMM_SCORES,
    TORCHTITAN_FFN_SHARED_EXPERTS,
    TORCHTITAN_FUSED_FINAL_NORM,
    TORCHTITAN_SAC_WITHOUT_ABS,
    TORCHTITAN_SPLIT_ROOT,
    TORCHTUNE_FROZEN_NF4_UNADAPTED,
)
from rackfit.spec.rules import MEGATRON_FLAGS, RULES


class Training(SpecModel):
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
        "none as torchtune builds them (16-bit, with 16-bit gradients and optimizer states), fp32 as peft keeps them; "
        "under framework transformers the adapters' dtype is adapterDtype's, not this field's. "
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
        "the default) 8 (the masked scores, the fp32 softmax and its 16-bit copy), and a recomputed layer's attention "
        "backward about 2 more in fp16, 4 in bf16 (the fp32 gradient and the scores' gradient). Default true"))
    expandable_segments: bool | None = Field(None, description=(
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the training processes (torchtitan's run_train.sh "
        "exports it): freed pages are remapped for any size, so less memory is stranded between the backward "
        "and the optimizer step. Default: true for fsdp (FSDP2) with selective checkpointing (modelled as torchtitan), "
        "else false (PyTorch's default). With framework transformers (a job or its launcher exporting the variable): "
        "the backward's freed blocks are remapped for the recomputed layers' and the step's requests, so no more "
        "than SLACK_TRAINING of its transient bytes stays reserved and the step's temporaries take no new segments"))
    fsdp_version: int | None = Field(None, ge=1, le=2, description=(
        "framework fsdp: which PyTorch FSDP shards the model. 2 (default): FSDP2, fully_shard (torchtitan, "
        "torchtune, accelerate with fsdp_version: 2): per-parameter shards, each block's 16-bit copy gathered before "
        "use, the models' own code (torchtitan's fused nn.RMSNorm). 1: FullyShardedDataParallel (accelerate's FSDP "
        "plugin and HF Trainer --fsdp by default, llama-recipes / llama-cookbook): one FlatParameter per wrapped "
        "unit, the root unit (embeddings, final norm, output) kept unsharded from the forward to the end of the "
        "backward, at most two all-gathers in flight (limit_all_gathers), the current unit's unsharded gradient in "
        "the reduce dtype, Hugging Face transformers' model code (unfused RMSNorm) with its reentrant gradient "
        "checkpointing (for lora and qlora, whose layer units are frozen, every layer's input gradient is held to the "
        "end of the backward; not under checkpointWrapper), and PyTorch's default allocator unless expandableSegments "
        "says otherwise"))
    paged_optimizer: bool | None = Field(None, description=(
        "optimizer adamw8bit as bitsandbytes' PagedAdamW8bit, or adamw as its 32-bit PagedAdamW (fp32 states "
        "whatever the parameters' dtype; bitsandbytes/functional.py get_paged: cudaMallocManaged, outside "
        "PyTorch's caching allocator, for every state of a tensor of 1e5 elements or more): the CUDA driver pages "
        "the states between host and GPU as the GPU fills, so they are not counted on it. Only with framework "
        "transformers (torchtune's single-device recipes, the HF Trainer's optim paged_adamw_32bit or "
        "paged_adamw_8bit) or fsdp with fsdpVersion 1 (the HF Trainer's optim under accelerate's FSDP1, built over "
        "the sharded parameters), and with adamw only without adamwImplementation. "
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
    accelerate_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework fsdp with fsdpVersion 2 and modelCode transformers (accelerate's FSDP2 under the HF Trainer or "
        "axolotl): the accelerate release the job runs, e.g. 1.10.1. Before 1.11.0 accelerate's no_sync is a null "
        "context for an FSDP2 module (getattr(model, 'no_sync', nullcontext), and torch's FSDPModule has no no_sync), "
        "so under gradient accumulation every micro-batch reduce-scatters into the sharded gradients; from 1.11.0 it "
        "calls set_requires_gradient_sync(False), and every rank keeps each trained parameter's unsharded 16-bit "
        "gradient between micro-batches. Default: a current release"))
    fsdp_activation_checkpointing: bool | None = Field(None, description=(
        "framework fsdp with fsdpVersion 2, modelCode transformers and activationCheckpointing full: true when "
        "accelerate's FSDP plugin checkpoints the layers itself (fsdp_config fsdp_activation_checkpointing true, "
        "accelerate's fsdp2_apply_ac), not transformers' gradient_checkpointing (the HF Trainer's "
        "--gradient_checkpointing). From accelerate 1.8.0 to 1.14.x fsdp2_apply_ac wraps each child of a decoder "
        "layer (attention, MLP, both norms) in its own checkpoint instead of the layer (accelerate issue 3897, fixed "
        "in 1.15.0 by PR 4172): each child keeps its input, four hidden-wide 16-bit tensors a token and layer "
        "instead of one, and the backward recomputes one child at a time. Set false where the job's own code wraps "
        "each decoder layer again outside them (axolotl's copy of fsdp2_prepare_model calls torch's "
        "apply_activation_checkpointing after fsdp2_apply_ac): a checkpoint nested in another saves its inputs "
        "under the outer one's hooks, which drop them. Read with accelerateVersion; default false"))
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
        "architecture gives maxPositionEmbeddings. Under deepspeed (no autocast) the model's modelType opt, gpt2, "
        "gptj, gpt_neox, bloom, falcon or gpt_bigcode before 4.49 (llama before 4.31), whose forward takes "
        "CrossEntropyLoss on the 16-bit logits without `logits.float()`, runs a 16-bit cross-entropy: 6 bytes a "
        "logit, no fp32 buffer. Default: current releases"))
    cublas_workspace_config: str | None = Field(None, pattern=r"^(:[0-9]{1,7}:[0-9]{1,3})+$", max_length=64,
                                                description=(
        "The job's CUBLAS_WORKSPACE_CONFIG environment variable, e.g. :4096:8 (Megatron-LM's functional tests set it "
        "for deterministic GEMMs): PyTorch's cuBLAS workspace, one a (handle, stream) and kept for the process, is "
        "the sum of SIZE KiB x COUNT over its :SIZE:COUNT pairs. Default: unset, torch's own size by the GPU, 32 MiB "
        "(:4096:8) on Hopper and Blackwell and 8.125 MiB (:4096:2:16:8) before Hopper (aten/src/ATen/cuda/"
        "CublasHandlePool.cpp); without a GPU the larger"))
    torch_version: str | None = Field(None, pattern=RELEASE_PATTERN, description=(
        "framework transformers: the PyTorch release the job runs, e.g. 2.5.1, where older releases held more memory. "
        "Over data > 1 without ZeRO (HF Trainer's DDP) the DistributedDataParallel constructor broadcasts every "
        "parameter and buffer from rank 0 in flattened buckets of 250 MiB (_sync_module_states, "
        "broadcast_coalesced) with no CPU synchronisation between them; before 2.8 ProcessGroupNCCL called "
        "record_stream on each bucket, so a bucket's flat copy stays reserved until the GPU has sent it and the "
        "CPU's lead keeps up to a second copy of the whole model on every GPU at wrap time (counted at that bound). "
        "From 2.8 each is released at its wait() and two buckets are in flight. A job that exported "
        "TORCH_NCCL_AVOID_RECORD_STREAMS=1 on an older release behaves as 2.8 here. Before 2.1 torch's foreach AdamW "
        "step (adamwImplementation foreach) held two state-sized intermediates per parameter at once (exp_avg_sq's "
        "square root and a second list, denom, for the eps), from 2.1 one (pytorch PR 104898). Default: current "
        "releases"))
    flash_attention_varlen: bool | None = Field(None, description=(
        "framework transformers or deepspeed with attn_implementation flash_attention_2: the batches carry padding "
        "that the attention_mask marks with 0 (axolotl's pad_to_sequence_len, padding='max_length', samples of "
        "unequal length in one batch), so every layer runs flash_attn_varlen_func on the unpadded tokens and "
        "pads its output back: the layer keeps one more query-wide 16-bit tensor a token (the padded output o_proj "
        "saves, beside the unpadded output flash-attn saves). false or unset: no padding zero (a batch of one "
        "unpadded sample, trl's packing into full rows), or SDPA"))
    kbit_norms_fp32: bool | None = Field(None, description=(
        "framework transformers, method qlora or lora on an int8 base: whether the norms, embeddings and head stay in "
        "fp32 after peft's prepare_model_for_kbit_training upcasts them. true (peft's own recipe, and TRL's "
        "SFTTrainer until it stopped calling the prepare, trl 20cc2e1d3 of December 16, 2025): a norm's fp32 "
        "output makes bitsandbytes' layers return fp32, so the residual stream and every checkpointed layer input "
        "are fp32. false: the trainer casts them back to the 16-bit dtype after the "
        "prepare, as axolotl does for every 4- and 8-bit adapter from 1991946c5 (September 1, 2023; "
        "src/axolotl/utils/models.py load_model, \"converting modules to ... for flash attention\"), and from "
        "August 2023 (PR 333) with flash_attention on a Llama-derived model: 16-bit layer inputs. "
        "Default true"))
    adapter_dtype: Literal["fp32", "16bit"] | None = Field(None, description=(
        "framework transformers, method lora or qlora: the dtype the trained LoRA adapters are kept and stepped in. "
        "fp32: peft's get_peft_model from 0.12.0 (autocast_adapter_dtype=True, tuners_utils._cast_adapter_dtype "
        "upcasts bf16/fp16 adapters to float32), peft before 0.6.0, and peft before 0.12.0 on a 4- or 8-bit base (the "
        "adapters are built in fp32 and only moved to the base's device): fp32 adapters, gradients and AdamW states, "
        "and each adapted input cast to fp32 for lora_A. 16bit: adapters in the model's 16-bit dtype, their gradients "
        "and states too, lora_A saving the 16-bit input the layer already keeps: peft 0.6.0-0.11.x on a bf16/fp16 "
        "base (update_layer's `self.to(weight.device, dtype=weight.dtype)`), Lightning/LitGPT's --precision bf16-true "
        "or 16-true (the whole module, adapters included, in the 16-bit dtype), Olive's QLoRA pass (every LoraLayer "
        "`module.to(compute_dtype)`). Unset: fp32. masterWeights keeps its meaning (no fp32 master copy of the "
        "weights)"))
    lm_head: bool | None = Field(None, description=(
        "framework transformers: whether the trained model runs its LM head. false: the job loads the bare decoder "
        "(transformers' AutoModel, e.g. LlamaModel, \"the bare ... Model outputting raw hidden-states without any "
        "specific head on top\") and trains a small task head over a few pooled hidden states (sequence "
        "classification, embeddings): no vocabulary-wide logits nor a cross-entropy over them, and an untied "
        "model's lm_head weight is never loaded. Default true"))
    mixed_precision: Literal["bf16", "fp16", "no"] | None = Field(None, description=(
        "framework transformers, method qlora: the Trainer's mixed-precision flag, --bf16, --fp16 or neither (bf16 and "
        "fp16 in TrainingArguments or SFTConfig). peft's prepare_model_for_kbit_training upcasts the parameters a "
        "4-bit base keeps in 16 bits (the input embedding, the head, the norms) to fp32; TRL's SFTTrainer casts the "
        "embedding and head back to bf16 under --bf16 only (trl/trainer/sft_trainer.py of 0.9.6: `if args is not "
        "None and args.bf16 and getattr(model, \"is_loaded_in_4bit\", False) and not is_sharded_qlora: "
        "peft_module_casting_to_bf16(model)`; prepare_peft_model in trl/models/utils.py of 0.24.0). fp16 or no: "
        "they stay fp32, 2 bytes a parameter more than the 16-bit weights. Unset: taken as --bf16 (SFTConfig's "
        "default in TRL 0.24 when fp16 is unset)"))
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
    loop_keeps_output: bool | None = Field(None, description=(
        "framework fsdp running transformers' model code (fsdpVersion 1, or modelCode transformers) or deepspeed: true "
        "when the job's own training loop keeps the model's output object referenced through the backward, as in "
        "`outputs = model(**batch); loss = outputs.loss; loss.backward()` where `outputs` lives in the loop's scope "
        "(dlrover ATorch's examples/llama2/fsdp_llama2.py, November 2023; llama-recipes before PR 41, which "
        "measured the drop when it wrote `loss = model(**batch).loss`). The output holds the logits - the fp32 "
        "upcast before transformers 4.46, whose models cast in their own forward and return the cast (`logits = "
        "logits.float()`), the 16-bit lm_head output from 4.46 and, before 4.49, of the families whose forward never "
        "upcast (the model's modelType opt, gpt2, gptj, gpt_neox, bloom, falcon or gpt_bigcode; llama before 4.31) - "
        "and, with useCache, every layer's key and value: none of them is saved by the loss, so without the "
        "reference they are freed before the backward; with it they stay through "
        "the whole backward, and the previous step's stay through the next forward until the name is rebound after "
        "it returns, beside the new step's own at its loss. The HF Trainer drops the output inside compute_loss. "
        "Default false"))
    checkpoint_wrapper: bool | None = Field(None, description=(
        "framework fsdp with fsdpVersion 1 and activationCheckpointing full: true when the layers are checkpointed "
        "by torch's checkpoint_wrapper applied inside the FSDP1 units after the wrap (apply_activation_checkpointing "
        "on the FSDP model, as Answer.AI's fsdp_qlora train.py does), not by transformers' own "
        "gradient_checkpointing (HF Trainer's --gradient_checkpointing), which calls each wrapped layer inside the "
        "checkpoint. Inside the unit, the unit's pre-forward runs once, in the forward, on the previous layer's "
        "output, and the reentrant recompute in the backward runs the layer alone: a frozen unit (lora, qlora) "
        "registers its reshard-only hook on no detached input, so no layer's input gradient is held to the end of "
        "the backward. Default false"))
    liger_kernel: bool | None = Field(None, description=(
        "Liger's kernels patched into transformers' model code (liger_kernel.transformers "
        "_apply_liger_kernel_to_instance): the HF Trainer's use_liger_kernel (TRL's use_liger_kernel / use_liger, "
        "ms-swift's --use_liger_kernel, LLaMA-Factory's enable_liger_kernel, axolotl's Liger plugin) under framework "
        "transformers (one GPU, DDP), deepspeed, or fsdp running transformers' model code (FSDP1 through accelerate, "
        "or FSDP2 with modelCode transformers: NeMo Automodel's from_pretrained does it by default, "
        "use_liger_kernel=True, for a model it has no custom class for). Only for a model type Liger patches "
        "(MODEL_TYPE_TO_APPLY_LIGER_FN: llama, mistral, qwen2, qwen3 from 0.5.10, smollm3 from 0.6.1, gemma, phi3 "
        "...), and not for a PeftModel under the HF Trainer before transformers 4.49 (PR 35680: earlier releases "
        "patch only a PreTrainedModel and log 'No liger kernels will be applied'). "
        "LigerRMSNorm saves its input in its own dtype and the per-token rstd, not the eager norm's fp32 upcast and "
        "normalised copy (4 bytes a hidden element a norm less in a full fine-tune; under LoRA/QLoRA, whose frozen "
        "norm saves no normalised copy, 2 with a 16-bit residual, none with QLoRA's fp32 one); "
        "LigerSiLUMulFunction saves gate and up and recomputes act(gate) (a dense SwiGLU MLP's act(gate) less). The "
        "q_norm / k_norm of QK-norm models are left to transformers by the instance patch and MoE experts are not "
        "counted. Under full activation checkpointing only the recomputed layer changes; under compile nothing. "
        "Under FSDP2 the final norm keeps its 16-bit input and output. Liger's fused linear cross-entropy (the model "
        "called with labels, as the HF Trainer does unless the job computes its own loss) is stated as lossChunks "
        "(Liger's chunk count: ceil(vocabulary / hidden), a chunk of the next power of two of ceil(tokens / that)). "
        "Default false"))
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
    torchtune_version: str | None = Field(None, pattern=RELEASE_PATTERN, max_length=16, description=(
        "method lora or qlora under framework fsdp with torchtune's model code: the torchtune release whose recipe "
        "and model builders run, e.g. 0.2.1. Under qlora, before 0.3 a projection without an adapter (not in "
        "loraTargets) is a plain 16-bit nn.Linear and only the adapted ones hold an NF4 base; from 0.3 every "
        "decoder projection is NF4. For a commit of torchtune's main branch name the release its code matches: "
        "0.2.1 for one before September 3, 2024 (Llama 3.1's builders; July 29 for Llama 2 and 3, Mistral, Gemma "
        "and Phi-3). Default: the current torchtune"))
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
    grad_reduce_in_fp32: bool | None = Field(None, description=(
        "framework megatron: the dtype of Megatron-Core DDP's gradient buffer (DistributedDataParallelConfig."
        "grad_reduce_in_fp32; megatron/core/distributed/distributed_data_parallel.py group_params_for_buffers). "
        "true: fp32 main gradients (Megatron-LM's --accumulate-allreduce-grads-in-fp32, which arguments.py sets with "
        "--bf16 unless --grad-reduce-in-bf16). false: gradients in the parameters' 16-bit dtype (Megatron-Bridge's "
        "performance recipes set ddp.grad_reduce_in_fp32 False), and the optimizer step copies the rank's share of "
        "them to fp32 (the distributed optimizer's _copy_model_grads_to_main_grads, `shard_model_grad.float()`). "
        "Default: true with bf16, false with fp16"))
    precision_aware_optimizer: bool | None = Field(None, description=(
        "framework megatron with the distributed optimizer: --use-precision-aware-optimizer, Transformer Engine's "
        "FusedAdam holding the optimizer's tensors (megatron/core/optimizer/__init__.py: master_weights True, "
        "use_decoupled_grad True, store_param_remainders True by default). Under bf16 the fp32 main parameters are "
        "kept as the 16-bit remainders beside the bf16 parameters, 2 bytes a parameter (transformer_engine/pytorch/"
        "optimizers/fused_adam.py `torch.zeros_like(param, dtype=torch.int16)`), not a 4-byte copy; the step reads "
        "each gradient shard in place (distrib_optimizer.py `shard_main_param.decoupled_grad = shard_model_grad`), "
        "so a 16-bit gradient buffer gets no fp32 copy. Megatron-Bridge's MoE recipes set it "
        "(optimizer.use_precision_aware_optimizer). Default false, Megatron-LM's default"))
    adam_moments_dtype: Literal["fp32", "bf16"] | None = Field(None, description=(
        "framework megatron with precisionAwareOptimizer: --exp-avg-dtype and --exp-avg-sq-dtype, the dtype "
        "Transformer Engine's FusedAdam keeps both Adam moments in (its _initialize_state: `torch.empty_like(param, "
        "dtype=dtype)`); bf16 halves them and the kernel updates them in place (fused_adam.py fuse_unscale). fp16 "
        "and uint8 moments, which the step unscales into fp32 copies (get_unscaled_state), are not modelled. "
        "Default fp32"))
    defer_embedding_wgrad: bool | None = Field(None, description=(
        "framework megatron with parallelism.pipeline > 1: --defer-embedding-wgrad-compute, the output layer's weight "
        "gradient GEMMs of the step's first micro-batches (wgradDeferralLimit) deferred to the pipeline's drain. The "
        "last stage keeps each deferred micro-batch's output-layer input and its logits' gradient (the vocabulary "
        "share, 16-bit) until the step's end (megatron/core/tensor_parallel/layers.py embedding_activation_buffer, "
        "grad_output_buffer; megatron/core/utils.py drain_embedding_wgrad_compute). Megatron refuses it without "
        "pipeline stages; rackfit then counts nothing. Default false, Megatron-LM's default"))
    wgrad_deferral_limit: int | None = Field(None, ge=0, description=(
        "framework megatron with deferEmbeddingWgrad: --wgrad-deferral-limit, how many micro-batches of a step "
        "defer their output-layer weight gradient; 0 (Megatron-LM's default) all of them"))
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
        """RULES' checks, in the order that decides which message a spec breaking several rules gets."""
        rules = RULES["Training"]
        self._method_rules(rules)
        self._memory_saving_rules(rules)
        self._loss_rules(rules)
        self._framework_option_rules(rules)
        self._release_rules(rules)
        self._deepspeed_rules(rules)
        self._loading_rules(rules)
        self._megatron_rules(rules)
        self._optimizer_and_float8_rules(rules)
        return self

    def _method_rules(self, rules: dict[str, Rule]) -> None:
        """Adapters only with LoRA/QLoRA, ZeRO stages only where they exist, Megatron's method, optimizers and
        compile, and sequence parallel only under Megatron or FSDP."""
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

    def _memory_saving_rules(self, rules: dict[str, Rule]) -> None:
        """Activation offloading, the optimizer in the backward and paged optimizers where their runtimes have them."""
        if self.activation_offloading and not (
                self.framework in ("fsdp", "transformers") and self.activation_checkpointing == "full"):
            raise ValueError(rules["activation_offloading"].message)
        if self.optimizer_in_backward and not (self.framework == "transformers" and self.method == "full"
                                               and (self.gradient_accumulation_steps or 1) == 1):
            raise ValueError(rules["optimizer_in_backward"].message)
        if self.paged_optimizer and not ((self.framework == "transformers" or (
                self.framework == "fsdp" and self.fsdp_version == 1)) and (
                self.optimizer == "adamw8bit" or (self.optimizer == "adamw" and self.adamw_implementation is None))):
            raise ValueError(rules["paged_optimizer"].message)

    def _loss_rules(self, rules: dict[str, Rule]) -> None:
        """The loss's upcast, chunked backward and torchtune's chunked loss."""
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

    def _framework_option_rules(self, rules: dict[str, Rule]) -> None:
        """Options only some frameworks read: FSDP's resharding, loss parallel, version and model code, Megatron's
        virtual stages, the AdamW implementation, and expandable segments outside the Trainer."""
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
        if self.fsdp_version is not None and self.framework != "fsdp":
            raise ValueError(rules["fsdp_version"].message)
        if self.model_code is not None and not (
                self.framework == "fsdp" and (self.model_code == "transformers" or self.fsdp == 2)):
            raise ValueError(rules["model_code"].message)

    def _release_rules(self, rules: dict[str, Rule]) -> None:
        """Each runtime's release where that runtime runs, with the transformers model code's options (varlen flash
        attention, fp32 norms under k-bit, the KV cache in training) and FSDP1's pre-wrap optimizer."""
        if self.transformers_version is not None and not (
                self.framework in ("transformers", "deepspeed") or (self.framework == "fsdp" and self.hf_model_code)):
            raise ValueError(rules["transformers_version"].message)
        if self.accelerate_version is not None and not (
                self.framework == "fsdp" and self.fsdp == 2 and self.hf_model_code):
            raise ValueError(rules["accelerate_version"].message)
        if self.fsdp_activation_checkpointing is not None and not (
                self.framework == "fsdp" and self.fsdp == 2 and self.hf_model_code
                and self.activation_checkpointing == "full"):
            raise ValueError(rules["fsdp_activation_checkpointing"].message)
        if self.torch_version is not None and self.framework != "transformers":
            raise ValueError(rules["torch_version"].message)
        if self.flash_attention_varlen is not None and not (
                self.framework in ("transformers", "deepspeed") and self.flash_attention is not False):
            raise ValueError(rules["flash_attention_varlen"].message)
        if self.kbit_norms_fp32 is not None and not (self.framework == "transformers" and self.method != "full"):
            raise ValueError(rules["kbit_norms_fp32"].message)
        if self.adapter_dtype is not None and not (self.framework == "transformers" and self.method != "full"):
            raise ValueError(rules["adapter_dtype"].message)
        if self.lm_head is not None and self.framework != "transformers":
            raise ValueError(rules["lm_head"].message)
        if self.mixed_precision is not None and not (self.framework == "transformers" and self.method == "qlora"):
            raise ValueError(rules["mixed_precision"].message)
        if self.pre_wrap_optimizer is not None and not (
                self.framework == "fsdp" and self.fsdp_version == 1 and self.method == "full"):
            raise ValueError(rules["pre_wrap_optimizer"].message)
        if self.use_cache and not (self.hf_model_code and self.activation_checkpointing == "full"):
            raise ValueError(rules["use_cache"].message)
        if self.use_cache and not (self.transformers_version is not None
                                   and older(self.transformers_version, HF_CACHE_OBJECT)):
            raise ValueError(rules["use_cache_version"].message)
        if self.loop_keeps_output is not None and not (
                self.framework == "deepspeed" or (self.framework == "fsdp" and self.hf_model_code)):
            raise ValueError(rules["loop_keeps_output"].message)
        if self.checkpoint_wrapper is not None and not (
                self.framework == "fsdp" and self.fsdp == 1 and self.activation_checkpointing == "full"):
            raise ValueError(rules["checkpoint_wrapper"].message)
        if self.liger_kernel is not None and not (
                self.framework in ("transformers", "deepspeed") or self.hf_model_code):
            raise ValueError(rules["liger_kernel"].message)
        if self.torchtitan_version is not None and not (
                self.framework == "fsdp" and self.fsdp == 2 and not self.hf_model_code):
            raise ValueError(rules["torchtitan_version"].message)
        if self.deepspeed_version is not None and self.framework != "deepspeed":
            raise ValueError(rules["deepspeed_version"].message)
        if self.torchao_version is not None and not (
                self.framework == "fsdp" and self.method == "qlora" and self.fsdp == 2 and not self.hf_model_code):
            raise ValueError(rules["torchao_version"].message)
        if self.torchtune_version is not None and not (
                self.framework == "fsdp" and self.method in ("lora", "qlora") and self.fsdp == 2
                and not self.hf_model_code):
            raise ValueError(rules["torchtune_version"].message)

    def _deepspeed_rules(self, rules: dict[str, Rule]) -> None:
        """DeepSpeed's buckets, communication overlap and CPU checkpointing, and offloading where it exists."""
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

    def _loading_rules(self, rules: dict[str, Rule]) -> None:
        """torchtitan's joint graph and HybridEP factor, and how the model loads: zero.Init, CPU-RAM-efficient
        loading."""
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

    def _megatron_rules(self, rules: dict[str, Rule]) -> None:
        """Megatron's flags only under Megatron, its local transformer without flash attention, and TP communication
        overlap only with sequence parallel."""
        for megatron_field in MEGATRON_FLAGS:
            if getattr(self, megatron_field) is not None and self.framework != "megatron":
                raise ValueError(rules[megatron_field].message)
        if self.transformer_impl == "local" and self.flash_attention is not False:
            raise ValueError(rules["transformer_impl_local"].message)
        if self.tp_comm_overlap and not self.sequence_parallel:
            raise ValueError(rules["tp_comm_overlap_sequence_parallel"].message)
        if self.wgrad_deferral_limit is not None and not self.defer_embedding_wgrad:
            raise ValueError(rules["wgrad_deferral_limit_defer"].message)
        if self.precision_aware_optimizer and not (self.optimizer == "adamw" and self.method == "full"
                                                   and self.distributed_optimizer is not False):
            raise ValueError(rules["precision_aware_optimizer_adam"].message)
        if self.adam_moments_dtype not in (None, "fp32") and not self.precision_aware_optimizer:
            raise ValueError(rules["adam_moments_dtype_precision_aware"].message)

    def _optimizer_and_float8_rules(self, rules: dict[str, Rule]) -> None:
        """SGD's momentum, the compiled loss, and float8 training where its runtimes have it."""
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
        return older(self.torch_version, TORCH_STASHED_COLLECTIVES)

    @property
    def foreach_adamw_intermediates(self) -> int:
        """State-sized intermediates torch's foreach AdamW step holds per parameter at once: 2 before PyTorch 2.1
        (`_multi_tensor_adamw`'s `exp_avg_sq_sqrt` and `denom = torch._foreach_add(exp_avg_sq_sqrt, eps)`, both
        alive at its addcdiv), 1 from 2.1 (pytorch PR 104898 adds eps in place: TORCH_FOREACH_ADAMW_ONE_INTERMEDIATE).
        Unset: a current release."""
        return 2 if older(self.torch_version, TORCH_FOREACH_ADAMW_ONE_INTERMEDIATE) else 1

    @property
    def hf_fsdp1_without_rate_limiter(self) -> bool:
        """FSDP1 under a Hugging Face Trainer before 4.33, which builds FullyShardedDataParallel with
        limit_all_gathers False unless its fsdp_config sets it (HF_FSDP1_LIMITER_FROM_PLUGIN)."""
        return self.framework == "fsdp" and self.fsdp == 1 and older(self.transformers_version,
                                                                      HF_FSDP1_LIMITER_FROM_PLUGIN)

    @property
    def transformers_release(self) -> tuple[int, ...] | None:
        """transformersVersion parsed ("4.39.3" -> (4, 39, 3)); None where unset (current releases)."""
        return None if self.transformers_version is None else parse_release(self.transformers_version)

    @property
    def copies_shifted_logits(self) -> bool:
        """Hugging Face transformers before 4.49.0: ForCausalLMLoss (loss/loss_utils.py) shifts the fp32 logits with
        `logits[..., :-1, :].contiguous()`, a third fp32 copy alive with the upcast and the log-softmax (removed by
        transformers PR 35646, which pads the labels instead)."""
        return older(self.transformers_version, HF_LOSS_WITHOUT_SHIFT_COPY)

    @property
    def own_16bit_loss(self) -> bool:
        """The job's own cross-entropy over 16-bit logits (lossUpcast false): the model returns its lm_head's 16-bit
        output only from transformers 4.46 (holds_16bit_logits_at_loss); before, its forward upcasts them itself."""
        return self.loss_upcast is False and self.holds_16bit_logits_at_loss

    @property
    def holds_16bit_logits_at_loss(self) -> bool:
        """Whether transformers' causal-LM forward keeps the 16-bit logits alive beside the fp32 upcast while the loss
        runs. Before 4.46 the upcasting families (Llama from 4.31, Mistral, Qwen2, Granite, ...; the others are
        estimator/activations.py hf_forward_upcasts_logits's, by model type) upcast in their own forward and rebind the
        name (4.45.2
        models/llama/modeling_llama.py LlamaForCausalLM.forward `logits = self.lm_head(...).float()`, Mistral's and
        Qwen2's `logits = logits.float()`, Granite's `logits = logits / self.config.logits_scaling` then
        `logits = logits.float()`): the 16-bit tensor has no reference left once the cast returns (the cast's backward
        saves nothing), so the forward's end holds only the fp32 upcast, its shifted copy and the log-softmax. From
        4.46 Llama and Qwen2 call self.loss_function(logits=logits, ...) (loss/loss_utils.py ForCausalLMLoss upcasts
        inside it) and the caller's 16-bit logits stay referenced; Mistral and Granite kept the in-forward upcast in
        4.46.0 and call loss_function by 4.48.1, counted as held from 4.46 (the larger count). Unset (a current
        release): held."""
        return not older(self.transformers_version, HF_LOSS_FUNCTION)

    @property
    def torchtitan_root_group(self) -> bool:
        """torchtitan before 0.2 (PR 1094): apply_fsdp shards each block and then `fully_shard(model)`, one root group
        holding tok_embeddings, norm and output (parallelize_llama.py apply_fsdp). accelerate's FSDP2 does the same
        with transformers' models (modelCode transformers): accelerate/utils/fsdp_utils.py fsdp2_prepare_model applies
        fully_shard to each module its auto-wrap policy matches (the decoder layers), then `fully_shard(model)`, one
        root group holding embed_tokens, norm and lm_head (estimator/hf_fsdp2.py)."""
        if self.framework == "fsdp" and self.fsdp == 2 and self.hf_model_code:
            return True
        return older(self.torchtitan_version, TORCHTITAN_SPLIT_ROOT)

    @property
    def torchtitan_bmm_scores(self) -> bool:
        """torchtitan 0.2.1-0.2.2 (TORCHTITAN_BMM_SCORES): MoE.forward scores the routed outputs by torch.bmm over
        `routed_output_unsorted`, a [bs*slen*top_k, dim] tensor of the layer's whole input, upcast with `.float()`
        (torchtitan/models/common/moe/moe.py at 72f89d206^); unset means a current main, which scatter-adds."""
        first, after = TORCHTITAN_BMM_SCORES
        return self.torchtitan_version is not None and not older(self.torchtitan_version, first) \
            and older(self.torchtitan_version, after)

    @property
    def torchtitan_grouped_shared_experts(self) -> bool:
        """torchtitan before 0.2 (TORCHTITAN_FFN_SHARED_EXPERTS): a MoE's shared experts are one GroupedExperts with
        num_experts=1 (models/deepseek_v3/model/moe.py and experiments/llama4/model/moe.py `MoE.__init__` at
        b109f7d71), whose [1, ...] weights FSDP2 cannot split on dim 0 (estimator/moe_training.py
        grouped_shared_params)."""
        return older(self.torchtitan_version, TORCHTITAN_FFN_SHARED_EXPERTS)

    @property
    def deepspeed_overflow_check_every_dtype(self) -> bool:
        """DeepSpeed before 0.11.2 (DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK): ZeRO-1/2's step runs check_overflow whatever
        the module's dtype; unset means a current release, which checks fp16 only."""
        return older(self.deepspeed_version, DEEPSPEED_FP16_ONLY_OVERFLOW_CHECK)

    @property
    def torchao_whole_tensor_nf4(self) -> bool:
        """torchao before 0.2 (TORCHAO_CHUNKED_NF4): to_nf4 quantizes a whole matrix at once; unset means a current
        release, which quantizes in chunks of 1024**2 elements."""
        return older(self.torchao_version, TORCHAO_CHUNKED_NF4)

    @property
    def torchtune_unadapted_16bit(self) -> bool:
        """QLoRA under torchtune before 0.3 (TORCHTUNE_FROZEN_NF4_UNADAPTED): the projections outside loraTargets are
        plain 16-bit nn.Linear, not NF4; unset means a current release, which quantizes them too."""
        return self.method == "qlora" and older(self.torchtune_version, TORCHTUNE_FROZEN_NF4_UNADAPTED)

    @property
    def deepspeed_device_overflow_check(self) -> bool:
        """DeepSpeed 0.13.3 on (DEEPSPEED_DEVICE_OVERFLOW_CHECK): `_has_inf_or_nan` builds its masks on the device;
        unset means a current release."""
        return not older(self.deepspeed_version, DEEPSPEED_DEVICE_OVERFLOW_CHECK)

    @property
    def deepspeed_zero3_flat_overflow_check(self) -> bool:
        """DeepSpeed 0.9.4 on (DEEPSPEED_ZERO3_FLAT_OVERFLOW_CHECK): ZeRO-3's has_overflow checks the rank's whole flat
        gradient partition in the reduce stream; unset means a current release."""
        return not older(self.deepspeed_version, DEEPSPEED_ZERO3_FLAT_OVERFLOW_CHECK)

    @property
    def torchtitan_eager_final_norm(self) -> bool:
        """torchtitan before 0.1 (PR 985): norm_type "rmsnorm" builds torchtitan's own eager RMSNorm (models/norms.py:
        `self._norm(x.float()).type_as(x) * self.weight`), not torch's fused nn.RMSNorm."""
        return older(self.torchtitan_version, TORCHTITAN_FUSED_FINAL_NORM)

    @property
    def torchtitan_sac_saves_abs(self) -> bool:
        """torchtitan before 0.1 (`torchtitanVersion` 0.0): per-op SAC caches every aten.abs output of a checkpointed
        block (TORCHTITAN_SAC_WITHOUT_ABS); unset means a current release, which does not."""
        return older(self.torchtitan_version, TORCHTITAN_SAC_WITHOUT_ABS)

    @property
    def loss_compiled(self) -> bool:
        """fsdp + compile compiles the loss unless compileLoss says not; compileLoss true compiles it alone."""
        return self.framework == "fsdp" and (self.compile_loss is True
                                             or (self.compile and self.compile_loss is not False))
