"""The runtime releases whose behaviour the spec's rules and properties turn on: each the first release of a change,
with the change and where it was read."""

# transformers' first release whose ForCausalLMLoss pads the labels instead of copying the shifted logits (PR 35646,
# merged after 4.48.0 of January 2025)
HF_LOSS_WITHOUT_SHIFT_COPY = (4, 49)
# transformers' first release whose eager LlamaAttention has no `torch.max(attn_weights, finfo.min)` clamp after the
# mask (read in the 4.30.0 and 4.31.0 wheels, models/llama/modeling_llama.py LlamaAttention.forward): the clamp saved
# its 16-bit input for the backward, 2 bytes a score more
HF_EAGER_WITHOUT_CLAMP = (4, 31)
# transformers' first release whose Llama and Qwen2 pass the 16-bit logits to self.loss_function (ForCausalLMLoss
# upcasts them inside it, the caller's 16-bit tensor still referenced): 4.45.2's models upcast in their own forward
HF_LOSS_FUNCTION = (4, 46)
# transformers' causal-LM families whose forward took CrossEntropyLoss on the lm_head's 16-bit output, with no
# `logits.float()`, by config.json's model_type: the first release whose forward upcasts. Read in the 4.28.0, 4.29.0,
# 4.30.0, 4.31.0, 4.35.0, 4.40.0, 4.45.2, 4.46.0, 4.47.0, 4.48.0 and 4.49.0 wheels: LlamaForCausalLM.forward has
# `logits = self.lm_head(hidden_states)` and `shift_logits = logits[..., :-1, :].contiguous()` to 4.30.0 and
# `logits = logits.float()` from 4.31.0; OPT's `logits = self.lm_head(outputs[0]).contiguous()`, GPT-2's, GPT-J's,
# BLOOM's, Falcon's and GPTBigCode's `lm_logits = self.lm_head(hidden_states)` and GPT-NeoX's `lm_logits =
# self.embed_out(hidden_states)` go to CrossEntropyLoss over `lm_logits[..., :-1, :].contiguous()` through 4.48.0, and
# call self.loss_function (loss/loss_utils.py ForCausalLMLoss, `logits = logits.float()`) from 4.49.0. Mistral,
# Mixtral, Qwen2, Qwen2-MoE, Gemma, Phi-3 and Granite upcast in each of those wheels that has them
HF_LOGITS_UPCAST_FROM = {
    "llama": (4, 31),
    "opt": (4, 49),
    "gpt2": (4, 49),
    "gptj": (4, 49),
    "gpt_neox": (4, 49),
    "bloom": (4, 49),
    "falcon": (4, 49),
    "gpt_bigcode": (4, 49),
}
# transformers' first release whose decoder layers take a Cache object (DynamicCache, models/llama/modeling_llama.py
# LlamaModel.forward, 4.36.0) and update it in place: a recompute under an external checkpoint wrapper updates it again
HF_CACHE_OBJECT = (4, 36)
# transformers' first release whose Trainer leaves FSDP1's limit_all_gathers to accelerate's plugin default
# (trainer.py 4.33.0: `fsdp_config.get("limit_all_gathers", fsdp_plugin.limit_all_gathers)`). 4.27-4.29 wrap FSDP1
# themselves with `self.limit_all_gathers = False` unless fsdp_config sets it, and 4.30-4.32 set the plugin's to
# `fsdp_config.get("limit_all_gathers", False)` (read in the 4.27.0, 4.28.1 and 4.30.0 wheels)
HF_FSDP1_LIMITER_FROM_PLUGIN = (4, 33)
# PyTorch's first release whose ProcessGroupNCCL keeps an async collective's tensors alive by stashing them and
# releases them at work.wait(), instead of record_stream on its stream (pytorch PR 150398, relanding PR 148590, merged
# April 2025 after the 2.7 branch: "Decision is to not include this in 2.7 release")
TORCH_STASHED_COLLECTIVES = (2, 8)
# PyTorch's first release whose foreach AdamW keeps one state-sized intermediate per parameter: until pytorch PR
# 104898 ("[foreach][AdamW] Minimize intermediates to save peak memory", merged July 10, 2023, after the 2.0 releases;
# issue 97712 "Foreach optimizers use higher memory due to intermediates") torch/optim/adamw.py `_multi_tensor_adamw`
# made `exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)` and then `denom = torch._foreach_add(exp_avg_sq_sqrt,
# eps)`, a second list, both alive at `torch._foreach_addcdiv_(device_params, device_exp_avgs, denom, step_size)`;
# from 2.1 the eps is added in place (`torch._foreach_add_(exp_avg_sq_sqrt, eps)`)
TORCH_FOREACH_ADAMW_ONE_INTERMEDIATE = (2, 1)
# torchtitan (pytorch/torchtitan): the first release whose final RMSNorm is torch's fused nn.RMSNorm (PR 985, 3b39d7ab0,
# March 19, 2025; first tag v0.1.0), and the first that shards tok_embeddings and [norm, output] as FSDP groups of
# their own instead of one root group (PR 1094, 83e694105, July 28, 2025; first tag v0.2.0)
TORCHTITAN_FUSED_FINAL_NORM = (0, 1)
# accelerate's FSDP2 no_sync: ec92b1af ("fix: model.set_requires_gradient_sync(False) should be called to turn off
# gradient synchronization in FSDP2 (#3762)", September 7, 2025), first in 1.11.0 (estimator/accumulation.py)
ACCELERATE_FSDP2_NO_SYNC = (1, 11, 0)
# accelerate's FSDP2 activation checkpointing (fsdp_config fsdp_activation_checkpointing, utils/fsdp_utils.py): up to
# 1.7.0 fsdp2_prepare_model calls torch's apply_activation_checkpointing with the auto-wrap policy (each decoder layer
# wrapped); from 1.8.0 (d2e6b031, PR 3585 "[FSDP2] Refactor + FP8", June 10, 2025) Accelerator._prepare_fsdp2 calls
# fsdp2_apply_ac, which wraps every module whose *parent* the policy matches (`if auto_wrap_policy_func(parent_module):
# layer = checkpoint_wrapper(layer, preserve_rng_state=False)`): each child of a decoder layer (read at v1.8.0, v1.10.0,
# v1.12.0, v1.14.0 and 16cb6eb8 of July 24, 2026); PR 4172 (merged August 2026; accelerate issue 3897) wraps the
# matched layer itself again (`if auto_wrap_policy_func(layer):`, read in the 1.15.0 wheel)
ACCELERATE_FSDP2_CHILD_CHECKPOINT = (1, 8)
ACCELERATE_FSDP2_LAYER_CHECKPOINT = (1, 15)
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
# DeepSpeed ZeRO-3's has_overflow checks the rank's whole grad_partitions_flat_buffer (isinf, isnan) in the reduce
# stream from v0.9.4 (stage3.py; v0.9.3's partition_grads checked each parameter's partition); estimator/zero.py
# zero3_overflow_cached
DEEPSPEED_ZERO3_FLAT_OVERFLOW_CHECK = (0, 9, 4)
# torchtune's first release whose QLoRA builders quantize the projections without an adapter too (FrozenNF4Linear):
# PR 1119 (898670f0e, July 29, 2024) for llama2, llama3, mistral, gemma and phi3, PR 1485 (cb476cfdc, September 3,
# 2024) for llama3_1; both first tagged v0.3.0 (September 17, 2024). Through v0.2.1 `lora_llama3_self_attention` and
# the like build an unadapted projection as a plain bf16 nn.Linear (torchtune/models/*/_component_builders.py)
TORCHTUNE_FROZEN_NF4_UNADAPTED = (0, 3)

# SGLang's first release that takes --dp-size under --enable-dp-attention (1 < dp-size, dividing tp-size; attention
# then split over tp / dp GPUs); 0.4.1-0.4.4 set dp_size = tp_size (server_args.py __post_init__, read in the wheels)
SGLANG_DP_ATTENTION_SIZE = (0, 4, 5)

# vLLM's first release without the V0 engine: 0.11.0's vllm/engine/llm_engine.py is `LLMEngine = V1LLMEngine`, and
# V1's LLMEngine/AsyncLLM raise "Using V1 LLMEngine, but envs.VLLM_USE_V1=False" under VLLM_USE_V1=0; 0.10.2 still
# ships V0 (vllm/worker/model_runner.py) and EngineArgs.create_engine_config honours VLLM_USE_V1=0.
VLLM_V0_REMOVED = (0, 11)
# vLLM's first release that runs V1 by default (envs.py VLLM_USE_V1 default "1"; 0.7.0's default was "0").
VLLM_V1_DEFAULT = (0, 8)

# vLLM's GPU model runners (VLLM_USE_V2_MODEL_RUNNER, v2ModelRunner): 0.22.0 is the first release whose new runner
# (v1/worker/gpu/model_runner.py) is a default for some models (vllm/config/vllm.py VllmConfig.use_v2_model_runner
# returns the env var when set, else _is_default_v2_model_runner_model and the unsupported features; 0.21.0's envs.py
# has it default "0", an opt-in); 0.34.0 is the first with only the new runner (its envs.py and config/vllm.py no
# longer read VLLM_USE_V2_MODEL_RUNNER; gpu_worker.py no longer imports gpu_model_runner.py). Read in the 0.21.0,
# 0.26.0 and 0.34.0 wheels.
VLLM_V2_RUNNER_BY_MODEL = (0, 22)
VLLM_V2_RUNNER_ONLY = (0, 34)

# vLLM's extensible KV cache, on by default from 0.34.0 (vllm/config/vllm.py, _resolve_extensible_kv_cache).
EXTENSIBLE_KV_CACHE = (0, 34)


