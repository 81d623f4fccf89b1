"""Activation memory per GPU: the inference peak of one prefill chunk, and what training keeps for
the backward pass under each checkpointing policy, plus full-vocabulary logits and loss buffers.

Attention is flash/SDPA everywhere (no s^2 score matrix). Sizes are elements per token per layer,
counted from what PyTorch keeps alive (Korthikanti et al. 2022 with flash attention, SwiGLU and
RMSNorm's fp32 upcast), then calibrated on bench/cases/h200/h200-memory-calibration.jsonl: the
constants below name their rows; bench/calibrate.py re-derives them, bench/accuracy.py checks the totals.
"""

from __future__ import annotations

from dataclasses import dataclass

from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Training
from rackfit.spec.base import older
from rackfit.spec.releases import HF_EAGER_WITHOUT_CLAMP, HF_LOGITS_UPCAST_FROM

ACT_BYTES = 2  # bf16/fp16 activations
EAGER_SCORE_BYTES = 8  # eager attention: masked 16-bit scores, fp32 softmax output, its 16-bit copy (a score)
EAGER_SAVED_WITHOUT_CLAMP_BYTES = 6  # from transformers 4.31: the fp32 softmax output and its 16-bit copy
# eager attention's backward at its peak (the softmax's node), a score beyond the forward's saved (eager_backward_bytes)
EAGER_BACKWARD_FP16_BYTES = 4  # the fp32 gradient (4) and the fp16 scores' gradient (2), less the 16-bit copy freed (2)
EAGER_BACKWARD_BYTES = 6       # bf16: the fp32 gradient (4) and the fp32 scores' gradient (4), less the 16-bit copy (2)


def attention_dims(a: ModelArch) -> tuple[int, int]:
    """Width of the query and of the key+value projections' outputs."""
    if a.is_mla:
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        return a.num_attention_heads * qk, a.num_attention_heads * (qk + a.v_head_dim)
    return a.query_width, 2 * a.kv_width


def _expert_shard(layout: Layout) -> tuple[int, int]:
    """(divisor of routed tokens, divisor of each expert's width) on one GPU."""
    return (layout.expert, 1) if layout.expert > 1 else (1, layout.tensor)


# --- inference -------------------------------------------------------------------------------------

def inference_activation_bytes(a: ModelArch, layout: Layout, chunk_tokens: int, sequences: int) -> int:
    """Peak transient memory of one prefill chunk: the widest layer's live tensors, plus the logits
    of the chunk's last positions (bf16, then fp32 for sampling)."""
    t, h = layout.tensor, a.hidden_size
    q, kv = attention_dims(a)
    # the residual stream, its normed copy and the block output stay live around each block
    attention = 3 * h + 3 * (q + kv) / t
    widths = [attention]
    ffn_mult = 3 if a.gated_mlp else 2  # gate, up, act(gate) | fc1, act(fc1)
    if a.num_layers > a.moe_layers:
        widths.append(4 * h + ffn_mult * a.intermediate_size / t)
    if a.is_moe:
        tokens_div, width_div = _expert_shard(layout)
        # every token is copied to its top-k experts; each copy holds its input, the fused gate/up
        # output, the activation and the product (grouped-GEMM MoE kernels keep all copies live)
        routed = a.num_experts_per_token * (h + (ffn_mult + 1) * a.moe_intermediate_size / width_div) / tokens_div
        shared = a.num_shared_experts * ffn_mult * a.moe_intermediate_size / t
        widths.append(4 * h + routed + shared)
    logits = min(sequences, chunk_tokens) * a.vocab_size * (2 + 4)
    return int(max(widths) * chunk_tokens * ACT_BYTES + logits)


# --- training --------------------------------------------------------------------------------------

# Each value below is solved per row so that the estimated allocated peak equals max(step_peak_bytes),
# the other constants held; median over the `train` rows (checkpointing false) whose estimate it moves.
NORM_BYTES_PER_H = 16          # two RMSNorms per layer, each keeping its fp32-upcast input
                               # rows: all 5 without checkpointing (15.5-16.8, median 15.5)
AUTOCAST_RESIDUAL_BYTES_PER_H = 20  # fp32 weights under bf16 autocast: the residual stream stays fp32
# rows: only Llama-3.2-1B full_mixed_adamw b4 s2048 moves it, and solves to 18.8: 20 is not re-derived
# (it overestimates that row's allocated peak by 0.33 GB)
# peft casts each adapted matrix's input to the adapters' fp32 dtype and keeps it for the adapter's
# gradient; the frozen base no longer keeps some bf16 inputs, which offsets part of it.
# rows: lora_r16 Llama-3.2-1B b4 s2048, Llama-3.2-3B b8 s2048, Llama-3.1-8B b2 s2048 (2.45-2.49, median 2.45)
LORA_INPUT_BYTES = 2.5
# Pure fp32 training (precision fp32 without autocast, the HF Trainer with fp16 and bf16 False over a model loaded
# without torch_dtype): every tensor the forward saves is fp32, 4 bytes an element where the counts above take 2, and
# each of a layer's two RMSNorms (transformers' LlamaRMSNorm, 4.31 and later) keeps three fp32 tensors a token: its
# input (`hidden_states.to(torch.float32)` returns the tensor itself; pow and the rsqrt multiply save it), the
# normalized tensor before the weight (`hidden_states.to(input_dtype)`, again the same tensor, saved by the weight's
# multiply for the weight gradient) and its output (saved by the q, k, v or gate, up projections for theirs): 3 x 4
# bytes a norm, where NORM_BYTES_PER_H's 16 is the 16-bit run's fp32 upcast and two 16-bit copies (4 + 2 + 2 a norm).
FP32_ACT_BYTES = 4
FP32_NORM_BYTES_PER_H = 24
# Eager attention's saved scores in pure fp32 (transformers 4.31.0 LlamaAttention.forward, the eager path of later
# releases): `nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)` saves the fp32
# softmax output (`_softmax`'s result), and `.to(torch.float32)` of an fp32 tensor returns that tensor, which the
# matmul with the values saves again: 4 bytes a score, where the 16-bit count keeps the fp32 output and a 16-bit copy.
# Before 4.31 (HF_EAGER_WITHOUT_CLAMP) `torch.max(attn_weights, torch.tensor(finfo.min))` also saved its fp32 input: 8.
FP32_EAGER_SCORE_BYTES = 4
FP32_EAGER_CLAMP_SCORE_BYTES = 8

# transformers' NewGELUActivation (activations.py, "gelu_new": the same Python expression from 4.3.3's `gelu_new` to
# 4.56.0's class), `0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (input + 0.044715 *
# torch.pow(input, 3.0))))`, runs as eager ops, each keeping what its backward reads (tools/autograd/derivatives.yaml):
# pow its input (fc1's output, which GELU's count already holds), tanh its result, and the last multiply both its
# operands, `0.5 * input` and `1.0 + tanh(...)` (scalar multiplies and adds save nothing): three intermediate-wide
# tensors a token beyond F.gelu's one saved input. Under autocast pow runs in fp32 (autocast's fp32 list), so the
# saved input is an fp32 copy, tanh's result and `1 + tanh` fp32, `0.5 * input` 16-bit: 4 + 4 + 4 + 2 - 2 = 12 bytes
# beyond the count's 16-bit fc1 output, as in pure fp32 (3 x 4). By config.json's model_type: every GPT-2 and GPT-J
# checkpoint's config (and the GPT2Config and GPTJConfig defaults) has activation_function "gelu_new"; GPT-NeoX is
# not listed (pythia's hidden_act is "gelu", F.gelu; gpt-neox-20b's "gelu_fast"), nor phi (remote code and LitGPT
# run their own GELU). transformers' model code only: framework transformers or deepspeed, or fsdp with hfModelCode.
HF_GELU_NEW_MODEL_TYPES = frozenset({"gpt2", "gptj"})
GELU_NEW_EXTRA_TENSORS = 3


# transformers' OPT decoder layer (models/opt/modeling_opt.py OPTDecoderLayer, the same from 4.28 to the current
# release): two nn.LayerNorm (self_attn_layer_norm, final_layer_norm), and fc1 -> ACT2FN[config.activation_function]
# -> fc2 with "relu" in every OPT checkpoint's config.json. aten's native_layer_norm saves its input, weight, bias and
# the per-token mean and rstd (tools/autograd/derivatives.yaml), no upcast copy, so where the layer runs in its 16-bit
# dtype (DeepSpeed casts the module to fp16 or bf16 and has no autocast: hf_16bit_cross_entropy) each norm keeps its
# 16-bit input and the next linear its 16-bit output: 8 bytes a hidden unit a layer, not transformers' eager
# RMSNorm count (NORM_BYTES_PER_H). relu's backward reads its result (derivatives.yaml `relu: threshold_backward(grad,
# result, 0)`), the very tensor fc2 saves as its input, so fc1's output is not kept: one intermediate-wide tensor a
# token (_mlp_saved), not GELU's two.
# The other transformers families that norm with nn.LayerNorm, by config.json's model_type: (LayerNorms a decoder layer
# runs, distinct tensors they read). Each norm keeps its input (shared where two norms read the same tensor) and the
# next linear its output, 2 bytes each a hidden unit in 16 bits (8 for OPT's two sequential norms). Read in the
# models' modeling files:
#   gpt2 (GPT2Block): ln_1 -> attn -> residual add, ln_2 -> mlp on that sum: two norms, two inputs
#   gpt_bigcode (GPTBigCodeBlock, StarCoder, SantaCoder): as GPT-2
#   bloom (BloomBlock): input_layernorm, then post_attention_layernorm on the attention's residual sum: two, two
#   gpt_neox (GPTNeoXLayer, pythia; use_parallel_residual true in every pythia config): `self.attention(
#     self.input_layernorm(hidden_states))` and `self.mlp(self.post_attention_layernorm(hidden_states))`, both on the
#     layer's input: two norms, one input
#   gptj (GPTJBlock): one ln_1 whose output both the attention and the MLP read: one norm, one input
# Falcon is not listed: its norms depend on the config, not the model_type (new_decoder_architecture: ln_attn and
# ln_mlp on the input; parallel_attn alone: one input_layernorm; neither: two sequential norms).
# Their MLPs are GELU (fc -> act -> fc): the activation keeps its input, the next linear the activation's output, which
# _mlp_saved already counts for a non-gated MLP (BLOOM's bloom_gelu_forward runs as GeLUFunction in training, saving
# its input; GPT-NeoX's config hidden_act "gelu" is F.gelu, saving its input).
HF_LAYERNORM_LAYERS = {
    "opt": (2, 2),
    "gpt2": (2, 2),
    "gpt_bigcode": (2, 2),
    "bloom": (2, 2),
    "gpt_neox": (2, 1),
    "gptj": (1, 1),
}
HF_RELU_MLP_MODEL_TYPES = frozenset({"opt"})


def layernorm_bytes_per_h(a: ModelArch, element_bytes: int = ACT_BYTES) -> int:
    """Bytes a hidden unit a token and layer the decoder layer's nn.LayerNorms keep (HF_LAYERNORM_LAYERS), in their
    dtype's `element_bytes` (16-bit unless said): each distinct input once and each norm's output."""
    norms, inputs = HF_LAYERNORM_LAYERS[a.model_type]
    return element_bytes * (norms + inputs)


# A fused RMSNorm (nn.RMSNorm's CUDA kernel, or Inductor's fusion under torch.compile) keeps its 16-bit
# input (the rstd is one float per token), against NORM_BYTES_PER_H/2 per norm in transformers' eager RMSNorm.
FUSED_NORM_BYTES_PER_H = 2 * ACT_BYTES   # two norms per layer

# Hugging Face transformers before 4.49.0 (loss/loss_utils.py, ForCausalLMLoss): `logits = logits.float()`, then
# `shift_logits = logits[..., :-1, :].contiguous()` and cross_entropy over it, so the fp32 upcast, its shifted copy
# and the log-softmax are alive at once beside the 16-bit logits: 4 bytes a logit more at the end of the forward.
# transformers PR 35646 pads the labels instead (read in the 4.48.3 and 4.49.0 wheels); the backward (saved
# log-softmax and the gradients) is unchanged.
SHIFT_COPY_BYTES = 4


# A job's own loss on the model's 16-bit logits (Training.own_16bit_loss; ljm565/universal-llm-trainer 1c4dca8
# src/models/llama3.py Llama3.forward: `self.criterion(output.logits[:, :-1, :].reshape(-1, vocab), ...)`, then
# `del output`): at the end of the forward the 16-bit logits, the 16-bit copy reshape makes of the non-contiguous
# shifted slice and the 16-bit log-softmax F.cross_entropy saves (torch's log_softmax keeps the input's dtype); in the
# backward the saved log-softmax, nll_loss's gradient of it and log_softmax_backward's gradient of the shifted copy,
# all 16-bit (the logits and the copy have no reference left once the loss returns and the output is dropped).
OWN_LOSS_FORWARD_BYTES = 2 + 2 + 2
OWN_LOSS_BACKWARD_BYTES = 2 + 2 + 2


def hf_forward_upcasts_logits(a: ModelArch, tr: Training) -> bool:
    """Whether the model's causal-LM forward in transformersVersion upcasts its logits to fp32 itself (before 4.46, the
    output's logits are then the fp32 upcast): false for a family of spec.releases.HF_LOGITS_UPCAST_FROM before its
    first upcasting release, whose forward returns the lm_head's 16-bit output. True where the release or the
    model_type is unset (a current release, or a family read as upcasting)."""
    first = HF_LOGITS_UPCAST_FROM.get(a.model_type)
    return first is None or not older(tr.transformers_version, first)


def hf_16bit_cross_entropy(a: ModelArch, tr: Training) -> bool:
    """transformers' own loss taken over the 16-bit logits, no fp32 buffer: a model family whose causal-LM forward
    did not upcast at the job's release (spec.releases.HF_LOGITS_UPCAST_FROM, by the model's model_type: Llama before
    4.31, OPT, GPT-2, GPT-J, GPT-NeoX, BLOOM, Falcon and GPTBigCode before 4.49) run where no autocast is active, so
    CrossEntropyLoss over `logits[..., :-1, :].contiguous()` runs in the logits' dtype: the 16-bit logits, the 16-bit
    shifted copy and torch's 16-bit log-softmax at the end of the forward, their 16-bit gradients in the backward
    (OWN_LOSS_FORWARD_BYTES, OWN_LOSS_BACKWARD_BYTES: the same ops as a job's own 16-bit loss). Counted under framework
    deepspeed: DeepSpeed's engine casts the module to fp16 or bf16 and runs its forward as it is (runtime/engine.py
    has no autocast from 0.9.0 to 0.17.0; the opt-in torch_autocast config arrived after), and the HF Trainer turns
    its own autocast off under DeepSpeed (trainer.py 4.31.0: `if (args.fp16 or args.bf16) and not
    (self.is_deepspeed_enabled or is_sagemaker_mp_enabled()): # deepspeed and SageMaker Model Parallel manage their
    own half precision`). Not under framework transformers, whose autocast puts cross_entropy and log_softmax on its
    fp32 list (the widths stay fp32 whatever the model does), nor under fsdp, where the loop decides: accelerate's
    FSDP (HF Trainer --fsdp with --bf16) autocasts the forward, llama-recipes' pure bf16 does not, and the spec does
    not say which. Unset transformersVersion (a current release) or model type: the model upcasts."""
    return tr.framework == "deepspeed" and not hf_forward_upcasts_logits(a, tr) and (tr.loss_chunks or 1) == 1


# Final logit soft-capping (ModelArch.final_logit_softcapping; transformers' Gemma2ForCausalLM.forward, 4.42.0 to 4.49.0
# and later, models/gemma2/modeling_gemma2.py): `logits = logits / cap; logits = torch.tanh(logits); logits = logits *
# cap` over the lm_head's output, before the loss. Division and multiplication by a Python scalar save nothing for the
# backward; tanh saves its output (TanhBackward0's `result`), a logit-sized tensor in the logits' 16-bit dtype that
# stays alive from the end of the forward until the capping's backward runs, after the loss's. One 16-bit tensor a
# logit more at the loss's forward and backward, whatever loss follows.
SOFTCAP_TANH_BYTES = ACT_BYTES


# Under torch.compile a norm keeps its 16-bit input and its 16-bit output: the output feeds the next matmuls, whose
# weight gradient (an mm in the backward) needs it, so the partitioner may not recompute it (below).
COMPILED_NORM_BYTES_PER_H = 2 * 2 * ACT_BYTES   # two norms per layer, input and output each


# Query/key normalization (ModelArch.qk_norm). transformers' eager Qwen3RMSNorm (models/qwen3/modeling_qwen3.py, the
# q_norm / k_norm of Qwen3Attention over each head's head_dim, on the q_proj / k_proj outputs): `hidden_states.to(
# torch.float32)`, `.pow(2)` (saves the fp32 upcast), `* torch.rsqrt(variance + eps)` (saves the upcast again and the
# fp32 rstd, one a head and token), `self.weight * hidden_states.to(input_dtype)` (saves the 16-bit normalised copy for
# the weight's gradient): 4 + 2 bytes an element of q and k, and the rstd. Its output goes to apply_rotary_pos_emb,
# whose `q * cos` saves only cos (no gradient to cos), and SDPA saves the rotated q, k as before: nothing else. Without
# QK-norm nothing saved the projections' outputs.
QK_NORM_EAGER_BYTES = 4 + 2
# A fused norm (nn.RMSNorm's aten._fused_rms_norm in torchtitan, Transformer Engine's RMSNorm in Megatron) or one
# compiled by Inductor keeps its 16-bit input and the fp32 rstd (a reduction the partitioner does not recompute).
QK_NORM_FUSED_BYTES = ACT_BYTES
QK_NORM_RSTD_BYTES = 4


def qk_norm_bytes(a: ModelArch, t: int, per_element: float) -> float:
    """Bytes a token and layer that the q and k norms keep, `per_element` for each element of the queries and keys on
    this rank (heads split over tensor parallel) and an fp32 rstd a head; 0 without QK-norm."""
    if not a.qk_norm or a.is_mla:
        return 0.0
    heads = a.num_attention_heads + a.num_key_value_heads
    return (per_element * heads * a.head_dim + QK_NORM_RSTD_BYTES * heads) / t


def compile_savings(a: ModelArch, tr: Training, t: int) -> float:
    """Bytes per token per layer that torch.compile does not keep. Inductor's min-cut partitioner
    (torch/_functorch/partitioners.py, min_cut_rematerialization_partition) recomputes pointwise ops in the
    backward, but `should_ban_recomputation` bans any node that `is_materialized_backwards`, one a non-fusible op
    (the matmuls' weight-gradient mm, through views) uses in the backward (torch/_functorch/config.py:
    ban_recompute_materialized_backward = True). So each norm keeps its 16-bit input and its 16-bit output (the
    q/k/v and gate/up matmuls' input), not its fp32 upcast; SwiGLU keeps gate, up and their product (down's
    input) and recomputes only act(gate)."""
    saved = (NORM_BYTES_PER_H - COMPILED_NORM_BYTES_PER_H) * a.hidden_size
    if a.gated_mlp:
        inter = a.moe_intermediate_size * (routed_copies(a, tr) + a.num_shared_experts) if a.is_moe \
            else a.intermediate_size
        saved += ACT_BYTES * inter
    # q_norm / k_norm: the 16-bit input (the q/k projections' output, an mm's: not recomputable) and the rstd, not the
    # eager fp32 upcast and normalised copy
    saved += qk_norm_bytes(a, 1, QK_NORM_EAGER_BYTES) - qk_norm_bytes(a, 1, QK_NORM_FUSED_BYTES)
    return saved / t


def liger_savings(a: ModelArch, tr: Training, t: int, fp32_residual: bool = False) -> float:
    """Bytes per token per layer that Liger's kernels (`ligerKernel`, not compiled) do not keep of transformers' eager
    layer. liger_kernel.transformers' _apply_liger_kernel_to_instance (what the HF Trainer's use_liger_kernel runs on
    the model, or on a PeftModel's get_base_model(); NeMo Automodel's from_pretrained) calls the model type's
    apply_liger_kernel_to_* with the instance (monkey_patch.py, 0.5.3 to 0.6.2): each decoder layer's
    input_layernorm and post_attention_layernorm get LigerRMSNorm's forward (_patch_rms_norm_module), its mlp
    LigerSwiGLUMLP's (`down_proj(LigerSiLUMulFunction.apply(gate_proj(x), up_proj(x)))`), whatever peft put in the
    projections. LigerRMSNormFunction saves the input X in its own dtype, W and the per-row rstd (ops/rms_norm.py
    `ctx.save_for_backward(X, W, RSTD)`), not transformers' fp32 upcast nor the normalised copy `self.weight *
    hidden_states.to(input_dtype)` saves when the weight is trained; LigerSiLUMulFunction saves gate and up
    (ops/swiglu.py `ctx.save_for_backward(a, b)`) and recomputes silu(gate), which eager's mul saves. So a norm keeps
    4 bytes a hidden element less in a full fine-tune (16-bit residual: the upcast's 4 against X's 2 and the 16-bit
    normalised copy; fp32 residual under autocast: the fp32 normalised copy), and under LoRA / QLoRA, whose frozen
    norm saves no normalised copy, 4 - the residual's bytes (2 a 16-bit residual, 0 the fp32 one of
    kbit_fp32_residual); a dense SwiGLU MLP keeps act(gate), 2 bytes an intermediate element, less. Not counted: the
    q_norm / k_norm of QK-norm models (the instance patch leaves them transformers' Qwen3RMSNorm: only the class
    swap `modeling_qwen3.Qwen3RMSNorm = LigerRMSNorm` before the model is built reaches them) and MoE experts.
    Liger's rope (LigerRopeFunction) saves cos and sin, as transformers' rotary does; the final norm is not in a
    layer's count."""
    if not tr.liger_kernel or tr.compile:
        return 0.0
    per_norm = (NORM_BYTES_PER_H - COMPILED_NORM_BYTES_PER_H) / 2
    if tr.method != "full":
        per_norm = 4 - (4 if fp32_residual else ACT_BYTES)
    saved = 2 * per_norm * a.hidden_size
    if a.gated_mlp and not a.is_moe:
        saved += ACT_BYTES * a.intermediate_size
    return saved / t


# torchtune's activation offloading (torchtune/training/_activation_offloading.py, OffloadActivations): its
# saved-tensor hook copies every saved tensor of 1 KiB or more to pinned CPU memory; with full checkpointing those are
# the checkpointed layers' inputs (torchtune's memory tutorial: "only the checkpointed tensors will be offloaded"). With
# streams (torch >= 2.5.1) pack_tensor keeps the GPU tensor in its forward stash until max_fwd_stash_size (default 5)
# newer ones were packed, so the last 5 stay on the GPU through the loss and are freed at the first offloaded tensor's
# backward node (the hook deletes the whole stash); earlier ones come back one at a time in the backward, the previous
# node's freed when the next one runs. The kept inputs at the peak (the loss or the last layer's recompute): 5 layers'.
OFFLOAD_FWD_STASH = 5


# DeepSpeed's cpu_checkpointing (deepspeed/runtime/activation_checkpointing/checkpointing.py, CheckpointFunction; v0.3.0
# to v0.19): forward copies each checkpointed input to host memory (`partition.cpu()`, or a CPU contiguous buffer
# with contiguous_memory_optimization; from 0.5.2 also without partition_activations, copy_to_device(args, cpu)) and
# `arg.data = inp.data` frees the GPU copy; backward brings it back (get_full_inputs(..., device=cuda_device)) just
# before recomputing that layer. At the peak (the loss, or the last layer's recompute) one layer's input is on the GPU.
CPU_CHECKPOINT_ON_GPU = 1


def kept_input_layers(tr: Training, layers: int) -> int:
    """Layers whose checkpointed input is on the GPU at the backward's peak: all of them; with `activationOffloading`
    at most OffloadActivations' forward stash; with DeepSpeed's `cpuCheckpointing` the one being recomputed."""
    if tr.cpu_checkpointing:
        return min(layers, CPU_CHECKPOINT_ON_GPU)
    return min(layers, OFFLOAD_FWD_STASH) if tr.activation_offloading else layers


def freed_16bit_logits_bytes(a: ModelArch, tr: Training, vocab_split: int) -> int:
    """Bytes of the 16-bit logits' block that transformers before 4.46 frees at its in-forward upcast
    (Training.holds_16bit_logits_at_loss) and the caching allocator keeps through the loss: the fp32 upcast, its
    shifted copy, the log-softmax and their gradients each ask for twice its size, so none is served from it
    (c10/cuda/CUDACachingAllocator.cpp `get_free_block`: the smallest cached block at least as large), until the
    upcast's backward asks for a 16-bit gradient of its size. Reserved, not allocated, at the loss's forward and
    backward; 0 where the 16-bit logits stay referenced (4.46 and later, a chunked loss, a family that does not upcast
    at the release without autocast, hf_16bit_cross_entropy). Granite's division by
    logits_scaling frees a second such block (not a spec field: one counted)."""
    if tr.holds_16bit_logits_at_loss or (tr.loss_chunks or 1) > 1 or hf_16bit_cross_entropy(a, tr):
        return 0
    return int(tr.micro_batch_size * tr.sequence_length * a.vocab_size / vocab_split * ACT_BYTES)


# The fp32 log-softmax each chunk of an eager chunked cross-entropy keeps for the backward: torch's _log_softmax saves
# its `result` (tools/autograd/derivatives.yaml) and nll_loss saves the same tensor as `self`; DTensor's loss-parallel
# _log_softmax returns it as the DTensor the same ops save (torch/distributed/tensor/parallel/loss.py)
CHUNK_SAVED_LOG_SOFTMAX_BYTES = 4


def eager_chunked_loss_bytes(tr: Training, fwd_bytes: float, bwd_bytes: float) -> tuple[float, float]:
    """(forward, backward) bytes a logit of torchtune's eager chunked cross-entropy, whose chunks' losses are summed for
    one backward: every chunk's saved fp32 log-softmax (CHUNK_SAVED_LOG_SOFTMAX_BYTES) and the cross-entropy's other
    buffers (`fwd_bytes`, `bwd_bytes` a logit, less the saved one) for one chunk at a time. CEWithChunkedOutputLoss
    (`torchtuneLoss` chunkedOutput; torchtune 0.3.1-0.6.1 modules/loss/ce_chunked_output_loss.py) gets its input from
    TransformerDecoder.chunked_output (modules/transformer.py), `[self.output(chunk) for chunk in h.chunk(...)]`: the
    recipe's `logits` holds every chunk's 16-bit logits until `del logits`, after the loss returns and before
    `backward()` (recipes/lora_finetune_single_device.py and lora_finetune_distributed.py, _loss_step / train), so the
    other chunks' 16-bit logits are alive beside the one counted in `fwd_bytes` through the forward, not the
    backward (nothing saves them: the projection saves its input, `.float()` nothing). LinearCrossEntropyLoss projects
    each chunk inside the loss: one chunk's 16-bit logits at a time."""
    c = tr.loss_chunks or 1
    s = CHUNK_SAVED_LOG_SOFTMAX_BYTES
    other_chunks = ACT_BYTES * (1 - 1 / c) if tr.torchtune_loss == "chunkedOutput" else 0.0
    return s + other_chunks + (fwd_bytes - s) / c, s + (bwd_bytes - s) / c


def torchtune_loss_bytes(tr: Training) -> tuple[float, float]:
    """(forward, backward) bytes a logit of a torchtune single-device recipe's chunked loss (`torchtuneLoss` under
    framework transformers). Compiled (`compile`: the recipe's `training.compile_loss(self._loss_fn)`, which compiles
    compute_cross_entropy alone, torchtune 0.4.0 recipes/lora_finetune_single_device.py _setup_model / __init__):
    each chunk's call saves its 16-bit logits and no fp32 buffer, and the backward holds the whole 16-bit gradient and
    one chunk more, as under fsdp (framework_activations, the loss_compiled branch). Eager: torch's cross_entropy on
    each chunk's `logits.float()` (2 + 4 + 4 forward, 4 + 4 + 4 backward, eager_chunked_loss_bytes)."""
    if tr.compile:
        return ACT_BYTES, ACT_BYTES * (1 + 1 / (tr.loss_chunks or 1))
    return eager_chunked_loss_bytes(tr, 2 + 4 + 4, 4 + 4 + 4)


@dataclass(frozen=True)
class TrainingActivations:
    layers: int        # kept for backward across all layers (the most loaded pipeline stage)
    recompute: int     # one layer recomputed in the backward (checkpointing), after the loss is done
    loss_forward: int  # logits bf16 + fp32 upcast + log-softmax, at the end of the forward
    loss_backward: int  # saved log-softmax + its gradient + the logits' gradient
    attention_backward: int = 0  # of `recompute`: eager attention's backward beyond its count (eager_backward_bytes)


def routed_copies(a: ModelArch, tr: Training) -> int:
    """Copies of each token a MoE layer's routed experts run on in training: its top-k, except in Hugging Face
    transformers' Llama 4. Its Llama4TextMoe.forward (models/llama4/modeling_llama4.py, from 4.51.0, the first release
    with Llama 4) repeats the tokens for every expert, `routed_in = hidden_states.repeat(router_scores.shape[1], 1)`,
    scales each copy by its router score (0 off the token's top-k) and runs self.experts over all of them
    (Llama4TextExperts' bmm over [experts, tokens, hidden], or axolotl's linearized experts, one nn.Linear an expert
    over the input "organized by expert", src/axolotl/monkeypatch/models/llama4/modeling.py): every expert keeps its
    gate, up, activation and product for every token. Llama 4 is the MoE with chunked attention (its
    attention_chunk_size). transformers' model code runs under framework transformers and deepspeed, and fsdp with
    it; torchtitan's and torchtune's Llama 4 send each token to its top-k experts only (grouped GEMM)."""
    transformers_code = tr.framework in ("transformers", "deepspeed") or tr.hf_model_code
    return a.num_experts if a.attention_chunk_size and transformers_code else a.num_experts_per_token


def _layer_bytes_per_token(a: ModelArch, tr: Training, t: int, mixed: bool,
                           fp32: bool = False) -> tuple[float, float]:
    """(bytes one layer keeps per token, of which attention's share) under tensor+sequence parallel. `fp32`: a pure
    fp32 full fine-tune or LoRA (pure_fp32_activations), its saved tensors fp32."""
    if fp32 and tr.method != "full":
        return _fp32_lora_layer_bytes(a, tr, t)
    h = a.hidden_size
    q, kv = attention_dims(a)
    act = FP32_ACT_BYTES if fp32 else ACT_BYTES
    attention = act * (2 * q + kv)  # SDPA keeps q, k, v and its output
    if tr.flash_attention_varlen:
        # transformers' FlashAttention-2 path with a padding zero in the attention_mask (modeling_flash_attention_utils
        # _flash_attention_forward, 4.49.0; LlamaFlashAttention2 from 4.34): `_upad_input` gathers q, k, v into new
        # unpadded tensors (flash_attn bert_padding IndexFirstAxis saves only the indices), flash_attn_varlen_func
        # saves them and its output (flash_attn_interface.py FlashAttnVarlenFunc, 2.7.4.post1), and `pad_input` writes
        # that output into a new zeroed padded tensor, which o_proj saves: one more query-wide tensor a token
        attention += act * q
    if tr.flash_attention is False:
        # eager attention (transformers 4.28 LlamaAttention.forward, the eager path of later releases): matmul scores,
        # `attn_weights + attention_mask`, `torch.max(attn_weights, finfo.min)` (saves its 16-bit input), `softmax(...,
        # dtype=torch.float32)` (saves its fp32 output), `.to(query_states.dtype)` (the 16-bit copy the matmul with
        # the values saves): EAGER_SCORE_BYTES a score; releases without the torch.max clamp keep 6, counted as 8.
        # Pure fp32 keeps the fp32 softmax output alone (fp32_eager_score_bytes)
        score_bytes = fp32_eager_score_bytes(tr) if fp32 else EAGER_SCORE_BYTES
        attention += score_bytes * a.num_attention_heads * tr.sequence_length
    norms = (_fp32_norm_bytes_per_h(a) if fp32 else
             layernorm_bytes_per_h(a) if hf_16bit_layernorm(a, tr, mixed) else NORM_BYTES_PER_H)
    per = attention + act * _mlp_saved(a, tr) + norms * h + qk_norm_bytes(a, 1, QK_NORM_EAGER_BYTES)
    per += gelu_new_bytes(a, tr, 4 if mixed or fp32 else ACT_BYTES)
    if mixed:
        per += AUTOCAST_RESIDUAL_BYTES_PER_H * h
    if tr.method != "full":
        per += lora_adapter_bytes(a, tr)
    return per / t, attention / t


def fp32_eager_score_bytes(tr: Training) -> int:
    """Bytes a score eager attention saves in pure fp32: the softmax output, and before 4.31 the clamp's input."""
    return FP32_EAGER_CLAMP_SCORE_BYTES if older(tr.transformers_version, HF_EAGER_WITHOUT_CLAMP) \
        else FP32_EAGER_SCORE_BYTES


def _fp32_norm_bytes_per_h(a: ModelArch) -> int:
    """Bytes a hidden unit a token and layer a pure fp32 full fine-tune's norms keep: transformers' RMSNorm three fp32
    tensors a norm (FP32_NORM_BYTES_PER_H); nn.LayerNorm (HF_LAYERNORM_LAYERS) each distinct input and each output."""
    if a.model_type in HF_LAYERNORM_LAYERS:
        return layernorm_bytes_per_h(a, FP32_ACT_BYTES)
    return FP32_NORM_BYTES_PER_H


def gelu_new_bytes(a: ModelArch, tr: Training, saved_bytes: int) -> float:
    """Bytes a token and layer NewGELUActivation keeps beyond a GELU's count (HF_GELU_NEW_MODEL_TYPES under
    transformers' model code), `saved_bytes` each of its three extra intermediate-wide tensors (4 in pure fp32 and
    under autocast, 2 in 16 bits)."""
    hf_code = tr.framework in ("transformers", "deepspeed") or tr.hf_model_code
    if a.model_type not in HF_GELU_NEW_MODEL_TYPES or a.gated_mlp or a.is_moe or not hf_code:
        return 0.0
    return float(GELU_NEW_EXTRA_TENSORS * saved_bytes * a.intermediate_size)


def _fp32_lora_layer_bytes(a: ModelArch, tr: Training, t: int) -> tuple[float, float]:
    """(bytes, attention's share) a token and layer of LoRA on an fp32 base under framework transformers
    (pure_fp32_activations): every saved tensor fp32, and the frozen base saves only what an op with a trained input
    needs. Read in transformers 4.31.0 models/llama/modeling_llama.py and peft 0.9.0 tuners/lora/layer.py:
    - a frozen Linear saves no input (its weight needs no gradient); the adapted one runs `result = self.base_layer(x)`
      and `result + lora_B(lora_A(dropout(x))) * scaling`, `x.to(lora_A.weight.dtype)` a no-op on an fp32 base: per
      target the dropout's fp32 output and 1-byte mask with lora_dropout (lora_dropout_bytes), else the input itself,
      shared by the targets that read the same tensor (q, k, v the first norm's output; gate, up the second's; o the
      attention output, already saved under SDPA; down the MLP product), and lora_A's rank-wide output (lora_B's input)
    - each norm its fp32 input (`hidden_states.pow(2)` and the rsqrt multiply); its output only through the adapters
      (above), and no normalized copy (`self.weight * ...`, the weight frozen); nn.LayerNorm per distinct input
    - rotary's `q * cos` saves cos only; the score and value matmuls (or SDPA) keep q, k and v, SDPA its output too;
      eager the fp32 softmax output (fp32_eager_score_bytes)
    - SwiGLU: gate (SiLU's input), SiLU's output and up (the product's operands), not the product (a frozen down's
      input); a GELU MLP the activation's input (and gelu_new's intermediates), not its output (fc2 frozen); relu its
      output (threshold_backward reads it)."""
    h, b = a.hidden_size, FP32_ACT_BYTES
    q, kv = attention_dims(a)
    attention = b * (q + kv)
    eager = tr.flash_attention is False
    if eager:
        attention += fp32_eager_score_bytes(tr) * a.num_attention_heads * tr.sequence_length
    else:
        attention += b * q
    inputs = HF_LAYERNORM_LAYERS[a.model_type][1] if a.model_type in HF_LAYERNORM_LAYERS else 2
    # the MLP's count less the down projection's input (relu's output stays: its backward reads it)
    frozen_down = 0 if a.model_type in HF_RELU_MLP_MODEL_TYPES else \
        (routed_copies(a, tr) * a.moe_intermediate_size if a.is_moe else a.intermediate_size)
    mlp = b * (_mlp_saved(a, tr) - frozen_down)
    per = attention + b * inputs * h + mlp + gelu_new_bytes(a, tr, b) + qk_norm_bytes(a, 1, QK_NORM_EAGER_BYTES)
    targets = [role for role in tr.targets if role != "gate" or a.gated_mlp]
    if tr.lora_dropout:
        per += lora_dropout_bytes(a, tr, b)
    else:
        inter = a.moe_intermediate_size * a.num_experts_per_token if a.is_moe else a.intermediate_size
        seen = {"q": h, "k": h, "v": h, "gate": h, "up": h, "o": 0 if not eager else q, "down": inter}
        groups = {"q": "norm1", "k": "norm1", "v": "norm1", "gate": "norm2", "up": "norm2", "o": "o", "down": "down"}
        per += b * sum(seen[role] for role in {groups[r]: r for r in targets}.values())
    per += b * tr.rank * len(targets)
    return per / t, attention / t


def hf_16bit_layernorm(a: ModelArch, tr: Training, mixed: bool) -> bool:
    """Whether the model's decoder layers norm with nn.LayerNorm in their 16-bit dtype (HF_LAYERNORM_LAYERS under
    framework deepspeed, no autocast and no fp32 residual): layernorm_bytes_per_h a token and layer."""
    return a.model_type in HF_LAYERNORM_LAYERS and tr.framework == "deepspeed" and not mixed


def _mlp_saved(a: ModelArch, tr: Training) -> int:
    """Elements a token one layer's MLP saves for the backward (its routed copies and shared experts under MoE)."""
    # gate, up, act, product | fc1, act | relu's output alone (HF_RELU_MLP_MODEL_TYPES)
    ffn_saved = 4 if a.gated_mlp else (1 if a.model_type in HF_RELU_MLP_MODEL_TYPES else 2)
    if a.is_moe:
        return routed_copies(a, tr) * (ffn_saved * a.moe_intermediate_size + a.hidden_size) + \
            a.num_shared_experts * ffn_saved * a.moe_intermediate_size
    return ffn_saved * a.intermediate_size


def eager_backward_bytes(a: ModelArch, tr: Training, t: int, fp16: bool) -> float:
    """Bytes a token that a recomputed layer's eager attention backward (training.flashAttention false, Hugging Face
    models) holds beyond what the layer's count (_layer_bytes_per_token) says at its start.

    The forward (transformers 4.31-4.57 LlamaAttention.forward / eager_attention_forward, Qwen2 of 4.40): scores P16 =
    `softmax(S, dim=-1, dtype=torch.float32).to(query.dtype)`, then `dropout(P16, p)` (p 0.0 returns its input,
    aten/src/ATen/native/Dropout.cpp `_dropout_impl`) and `torch.matmul(P16, value_states)`. Saved a score: the fp32
    softmax output P32 (tools/autograd/derivatives.yaml `_softmax`: `_softmax_backward_data(grad, result, dim,
    self.scalar_type())`) and P16 (bmm's `self`); 4.28-4.30 also the clamp's 16-bit input (HF_EAGER_WITHOUT_CLAMP).
    The backward, node by node (the engine frees a node's saved tensors once it has run, its input gradients when it
    returns: torch/csrc/autograd/engine.cpp evaluate_function, release_variables): bmm makes dP16 (2) and frees P16;
    `_to_copy`'s backward (`_to_copy_backward`, grad.to(fp32)) makes dP32 (4) beside dP16; then `_softmax_backward_data`
    writes the scores' gradient beside dP32 and P32 in the input's dtype (SoftMax.cpp's meta function, output dtype
    `input_dtype`): fp16 on CUDA calls `_softmax(S, dim, half_to_float=true)` (2 bytes), bf16 (and fp32) converts S to
    fp32 first (4 bytes; its `_to_copy` casts it back after). Peak: P32 + dP32 + dS, the saved bytes plus
    EAGER_BACKWARD_FP16_BYTES or EAGER_BACKWARD_BYTES (a dropout's 1-byte mask and dropped-out copy are freed by then,
    so dropout leaves the peak as it is). By then the layer's MLP has run its backward and freed what it saved."""
    if tr.flash_attention is not False:
        return 0.0
    clamp = older(tr.transformers_version, HF_EAGER_WITHOUT_CLAMP)
    saved = EAGER_SCORE_BYTES if clamp else EAGER_SAVED_WITHOUT_CLAMP_BYTES
    peak = saved + (EAGER_BACKWARD_FP16_BYTES if fp16 else EAGER_BACKWARD_BYTES)
    scores = (peak - EAGER_SCORE_BYTES) * a.num_attention_heads * tr.sequence_length
    return max(scores - ACT_BYTES * _mlp_saved(a, tr), 0.0) / t


def lora_input_width(a: ModelArch, tr: Training) -> int:
    """Elements per token of the adapted projections' inputs (training.loraTargets): the hidden size for q, k, v, gate
    and up, the attention's width for o, the MLP's (a token's routed experts under MoE) for down."""
    q, _ = attention_dims(a)
    inter = a.moe_intermediate_size * a.num_experts_per_token if a.is_moe else a.intermediate_size
    width = {"o": q, "down": inter}
    return sum(width.get(role, a.hidden_size) for role in tr.targets if role != "gate" or a.gated_mlp)


def lora_adapter_bytes(a: ModelArch, tr: Training) -> float:
    """Bytes per token per layer the adapters keep beyond the layer's own count.

    peft keeps its adapters in fp32 and casts each adapted matrix's input to them (LORA_INPUT_BYTES). Under DeepSpeed
    no adapter is fp32: DeepSpeedEngine._configure_distributed_model casts the whole module, adapters included, to
    the 16-bit dtype (`self.module.half()` with fp16, `self.module.bfloat16()` with bf16; deepspeed/runtime/engine.py,
    0.9.0, the same in 0.16.x), and without either the base is fp32 as well. The adapter's first matmul then saves
    the 16-bit input the layer's count already holds (peft's lora_A(x), `_cast_input_dtype` a no-op; DeepSpeed-Chat's
    LinearLayer_LoRA `input @ self.lora_right_weight`, utils/module/lora.py), and the second saves the first's
    rank-wide 16-bit output (lora_B's input; `@ self.lora_left_weight`). The same under framework transformers
    where training.adapterDtype says 16bit (peft 0.6.0-0.11.x on a 16-bit base: update_layer's `self.to(...,
    dtype=weight.dtype)`, and `_cast_input_dtype`/`x.to(lora_A.weight.dtype)` a no-op; LitGPT's bf16-true
    LoRALinear, `self.lora_dropout(x) @ self.lora_A.transpose(0, 1) @ self.lora_B.transpose(0, 1)`, all bf16)."""
    if tr.framework == "deepspeed" or tr.adapter_dtype == "16bit":
        adapted = len([role for role in tr.targets if role != "gate" or a.gated_mlp])
        return ACT_BYTES * tr.rank * adapted + lora_dropout_bytes(a, tr, ACT_BYTES)
    return LORA_INPUT_BYTES * lora_input_width(a, tr) + lora_dropout_bytes(a, tr, 4)


def lora_dropout_bytes(a: ModelArch, tr: Training, adapter_bytes: int) -> float:
    """Bytes per token per layer that lora_dropout > 0 keeps: peft's LoRA Linear.forward computes
    lora_B(lora_A(dropout(x))) (peft/tuners/lora/layer.py; torchtune's LoRALinear, torchtune/modules/peft/lora.py,
    lora_a(dropout(x))). At 0 the dropout is nn.Identity and lora_A saves x itself; above 0 it is nn.Dropout, whose
    output, a new tensor in the adapters' dtype, lora_A saves for its weight gradient, beside the 1-byte mask
    aten.native_dropout keeps for the backward."""
    if tr.method == "full" or not tr.lora_dropout:
        return 0.0
    return (adapter_bytes + 1) * lora_input_width(a, tr)


def pure_fp32_activations(tr: Training, precision: str) -> bool:
    """Whether every activation the forward saves is fp32: a full fine-tune or LoRA under framework transformers in
    precision fp32 without autocast (masterWeights none; the Trainer's fp16 and bf16 False over a model loaded in fp32),
    so transformers' modules and peft's fp32 adapters run in the weights' dtype (LoRA's own fp32 count:
    _fp32_lora_layer_bytes). QLoRA's base is 4-bit (another precision); fsdp, deepspeed and megatron keep theirs."""
    return (tr.framework == "transformers" and tr.method in ("full", "lora") and precision == "fp32"
            and tr.master_weights != "fp32")


def training_activations(a: ModelArch, tr: Training, layout: Layout, mixed: bool,
                         fp16: bool = False, fp32: bool = False) -> TrainingActivations:
    """`fp16`: the activations are fp16 (precision fp16), not bf16 (eager_backward_bytes). `fp32`: a pure fp32 full
    fine-tune or LoRA (pure_fp32_activations), every saved activation and each checkpointed layer input fp32."""
    tokens = tr.micro_batch_size * tr.sequence_length
    t = layout.tensor
    per_layer, attention = _layer_bytes_per_token(a, tr, t, mixed, fp32)
    if tr.compile:
        per_layer -= compile_savings(a, tr, t)
    per_layer -= liger_savings(a, tr, t, mixed)  # Liger's RMSNorm and SwiGLU (`ligerKernel`)
    residual = (4 if mixed or fp32 else ACT_BYTES) * a.hidden_size / t
    layers = a.num_layers
    recompute = 0.0
    if tr.activation_checkpointing == "full":
        # each layer's input is kept; the backward recomputes one layer at a time
        kept, recompute = kept_input_layers(tr, layers) * residual, per_layer
    elif tr.activation_checkpointing == "selective":
        kept, recompute = layers * (per_layer - attention), attention  # attention recomputed (Korthikanti §4)
    else:
        kept = layers * per_layer
    # a recomputed layer's eager attention backward holds more than its count (not counted without checkpointing)
    attention_backward = eager_backward_bytes(a, tr, t, fp16) if recompute else 0.0
    recompute += attention_backward
    vocab = a.vocab_size / t  # vocab-parallel cross-entropy
    # Gemma 2's final soft-capping: tanh's saved output beside the loss (SOFTCAP_TANH_BYTES)
    capped = SOFTCAP_TANH_BYTES if a.final_logit_softcapping else 0
    if tr.torchtune_loss:
        fwd, bwd = torchtune_loss_bytes(tr)
    elif tr.own_16bit_loss:
        fwd, bwd = OWN_LOSS_FORWARD_BYTES, OWN_LOSS_BACKWARD_BYTES
    else:
        chunks = tr.loss_chunks or 1  # chunked cross-entropy: 16-bit logits whole, fp32 buffers per chunk
        # transformers before 4.49: ForCausalLMLoss's `logits[..., :-1, :].contiguous()` of the fp32 upcast, alive
        # with it and the log-softmax until the loss returns (an unchunked loss only)
        shift_copy = SHIFT_COPY_BYTES if tr.copies_shifted_logits and chunks == 1 else 0
        # transformers before 4.46: the model upcasts in its forward and drops the 16-bit logits (an unchunked loss)
        logits16 = 2 if tr.holds_16bit_logits_at_loss or chunks > 1 else 0
        fwd = logits16 + (4 + 4) / chunks + shift_copy
        bwd = (4 + 4 + 4) / chunks + (2 if chunks > 1 else 0)
    return TrainingActivations(
        layers=int(kept * tokens),
        recompute=int(recompute * tokens),
        loss_forward=int(tokens * vocab * (fwd + capped)),
        loss_backward=int(tokens * vocab * (bwd + capped)),
        attention_backward=int(attention_backward * tokens),
    )
