"""What each training runtime other than Hugging Face transformers keeps for the backward, per GPU: torchtitan's
FSDP2 (eager, compiled, per-op SAC, tensor and sequence parallel, loss parallel, pipelining), Megatron-LM
(Korthikanti et al. with tensor and sequence parallelism, core-attention recompute), DeepSpeed and FSDP1 over
transformers models; the loss buffers and each pipeline schedule's micro-batches. frameworks.py adds the model states
and sharding buffers and picks the peak. Each mechanism cites the runtime's source.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rackfit.estimator import float8, hf_fsdp2, megatron_mtp, moe_training
from rackfit.estimator.activations import (
    ACT_BYTES,
    COMPILED_NORM_BYTES_PER_H,
    FUSED_NORM_BYTES_PER_H,
    NORM_BYTES_PER_H,
    OWN_LOSS_BACKWARD_BYTES,
    OWN_LOSS_FORWARD_BYTES,
    QK_NORM_EAGER_BYTES,
    QK_NORM_FUSED_BYTES,
    SHIFT_COPY_BYTES,
    _layer_bytes_per_token,
    attention_dims,
    compile_savings,
    eager_backward_bytes,
    eager_chunked_loss_bytes,
    hf_16bit_cross_entropy,
    hf_forward_upcasts_logits,
    kept_input_layers,
    liger_savings,
    lora_dropout_bytes,
    qk_norm_bytes,
)
from rackfit.estimator.kvcache import kv_bytes_per_token_layer
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Training

# Megatron's hidden dropout (megatron/training/arguments.py --hidden-dropout 0.1): a 1-byte mask after
# the attention projection and after the MLP (Korthikanti et al. 2022, Table 2: 2sbh of the 34sbh).
MEGATRON_DROPOUT_MASK_BYTES = 1
# Unfused attention's score bytes (Korthikanti et al. 2022, Table 2, 5as^2b): softmax output 2, dropout mask 1,
# dropped-out probabilities 2.
MEGATRON_UNFUSED_SCORE_BYTES = 5
# At --attention-dropout 0 (training.attentionDropout) the dropout returns its input (torch's _dropout_impl at p == 0,
# as for the hidden dropout): Megatron's DotProductAttention and TE's UnfusedDotProductAttention then keep only the
# 16-bit softmax output, which the softmax and the bmm with the values both save.
MEGATRON_UNFUSED_SCORE_BYTES_NO_DROPOUT = 2

def _tokens(tr: Training) -> int:
    return tr.micro_batch_size * tr.sequence_length


def _mlp_widths(a: ModelArch) -> tuple[float, float]:
    """(fc1 output width, activation output width) per token: SwiGLU's gate+up and act*up; GELU's fc1 and
    act; MoE counts every routed copy (top-k) and the shared experts."""
    gated = a.gated_mlp
    if a.is_moe:
        inter = a.num_experts_per_token * a.moe_intermediate_size + a.num_shared_experts * a.moe_intermediate_size
    else:
        inter = a.intermediate_size
    return (2 * inter if gated else inter), inter


# aten._scaled_dot_product_flash_attention / _efficient_attention return the fp32 log-sum-exp [batch, heads, seq] beside
# the output, saved with it by per-op SAC: 4 bytes a head and token, not a head_dim
SDPA_LSE_BYTES = 4

# Bytes a logit of DTensor's loss-parallel cross-entropy (torch/distributed/tensor/parallel/loss.py)
LOSS_PARALLEL_FORWARD_BYTES = 2 + 4 + 4 + 4
LOSS_PARALLEL_BACKWARD_BYTES = 4 + 4 + 4 + 4


# The 16-bit output of each of a block's two fused RMSNorms, the input its matmuls save (wq/wk/wv share the
# attention norm's, w1/w3 the MLP norm's). transformers' eager RMSNorm count (NORM_BYTES_PER_H) includes it.
NORM_OUTPUT_BYTES_PER_H = 2 * ACT_BYTES


def torchtitan(tr: Training) -> bool:
    """framework fsdp as FSDP2 runs it with torchtitan's (or torchtune's) model code; fsdpVersion 1 is FSDP1 with
    Hugging Face transformers' models (accelerate, llama-recipes)."""
    return tr.framework == "fsdp" and tr.fsdp == 2 and not tr.hf_model_code


def sequence_parallel(tr: Training, t: int) -> bool:
    """Tensor parallel under fsdp splits the norms and the residual over the sequence unless `sequenceParallel: false`:
    torchtitan's plan (torchtitan/models/llama3/infra/parallelize.py, apply_tp: SequenceParallel norms, the block's
    input Shard(1)) and torchtune's (torchtune/models/llama3/_parallelism.py, BASE_LLAMA_TP_TRAINING_PLAN) are;
    transformers' tp_plan (LlamaConfig.base_model_tp_plan: colwise / rowwise linears only, as accelerate applies
    it) is not, so every tensor rank keeps the whole sequence's block inputs and norms. Megatron: its flag."""
    if t == 1:
        return False
    if tr.framework == "fsdp":
        if tr.sequence_parallel is None and hf_fsdp2.hf_fsdp2(tr):
            return False  # transformers' tp_plan under FSDP2 (`modelCode: transformers`): no sequence parallel
        return tr.sequence_parallel is not False
    return bool(tr.sequence_parallel)


def loss_parallel(tr: Training, t: int) -> bool:
    """fsdp under tensor parallel keeps the logits split over the vocabulary unless `lossParallel: false`: torchtitan's
    "output" is ColwiseParallel(output_layouts=Shard(-1)) with the loss in loss_parallel() (disable_loss_parallel
    false by default); torchtune's training plan gathers it (ColwiseParallel(input_layouts=Shard(1),
    output_layouts=Replicate())) and transformers' lm_head is "colwise_rep": the whole vocabulary on every rank."""
    if tr.loss_parallel is None and hf_fsdp2.hf_fsdp2(tr):
        return False  # transformers' lm_head "colwise_rep" under FSDP2 (`modelCode: transformers`)
    return t > 1 and tr.loss_parallel is not False


def eager_layer_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """Bytes one layer keeps per token without checkpointing in eager PyTorch with 16-bit weights (no
    autocast residual): activations.py's calibrated count, whose norms are transformers' RMSNorm (an fp32
    upcast kept per norm). torchtitan's models use nn.RMSNorm (torchtitan/models/llama3/model/model.py),
    whose fused CUDA kernel (aten._fused_rms_norm) keeps the 16-bit input and the per-token rstd; its 16-bit
    output is what the next matmuls save. Under tensor parallel, torchtitan's plan (parallelize.py, apply_tp)
    is sequence parallel: the norms and the block's input are split over the sequence (SequenceParallel, Shard(1)),
    and each norm's output is all-gathered (PrepareModuleInput, Shard(1) -> Replicate) before the colwise
    matmuls, which save the gathered whole-sequence tensor: those two outputs are not divided by the tensor degree.
    Without sequence parallel (`sequenceParallel: false`) the norms' inputs are the whole sequence on every rank too
    (the rowwise outputs are all-reduced, Replicate)."""
    per = _layer_bytes_per_token(a, tr, t, mixed=False)[0]
    if torchtitan(tr):
        norm_split = t if sequence_parallel(tr, t) else 1
        per -= NORM_BYTES_PER_H * a.hidden_size / t
        per += FUSED_NORM_BYTES_PER_H * a.hidden_size / norm_split + NORM_OUTPUT_BYTES_PER_H * a.hidden_size
        if tr.torchtitan_eager_final_norm:
            # before PR 985 (torchtitanVersion below 0.1) every norm was torchtitan's eager RMSNorm: the fp32 upcast
            # and the 16-bit normalised tensor (EAGER_RMSNORM_BYTES_PER_H) where the fused kernel keeps the input
            per += 2 * (EAGER_RMSNORM_BYTES_PER_H - FUSED_NORM_BYTES_PER_H / 2) * a.hidden_size / norm_split
        # torchtitan's q_norm / k_norm are nn.RMSNorm too (torchtitan/models/qwen3/model/model.py Attention, now
        # models/common/attention.py GQAttention qk_norm): the fused kernel keeps the 16-bit input and the rstd; the
        # output goes to rope (apply_rotary_emb: `xq * cos`, no gradient to cos, saves nothing of it). Heads
        # are split over tensor parallel (colwise wq/wk), not over the sequence.
        per += qk_norm_bytes(a, t, QK_NORM_FUSED_BYTES) - qk_norm_bytes(a, t, QK_NORM_EAGER_BYTES)
    return per


def compiled_layer_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """As eager, under torch.compile (activations.compile_savings: each norm keeps its 16-bit input and output, the
    fp32 upcast and SwiGLU's act(gate) are recomputed). Under torchtitan's tensor parallel the saved norm outputs
    are the gathered whole-sequence tensors (the all-gather is not recomputable either), not a t-th of them; without
    sequence parallel the norms' inputs are whole too (COMPILED_NORM_BYTES_PER_H: input and output)."""
    per = _layer_bytes_per_token(a, tr, t, mixed=False)[0] - compile_savings(a, tr, t)
    if torchtitan(tr) and t > 1:
        whole = NORM_OUTPUT_BYTES_PER_H if sequence_parallel(tr, t) else COMPILED_NORM_BYTES_PER_H
        per += whole * a.hidden_size * (1 - 1 / t)
    return per


def layer_bytes(a: ModelArch, tr: Training, t: int) -> float:
    # Liger's RMSNorm and SwiGLU (`ligerKernel`, activations.liger_savings): transformers' model code under FSDP1/2 and
    # DeepSpeed, 16-bit activations
    if tr.compile:
        return compiled_layer_bytes(a, tr, t)
    return eager_layer_bytes(a, tr, t) - liger_savings(a, tr, t)


def torchtitan_sac_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """torchtitan's per-op selective AC (torchtitan/distributed/activation_checkpoint.py, `_custom_policy` /
    SelectiveAC, was torchtitan/models/llama3/parallelize_llama.py): inside each checkpointed block, outputs of
    ops in the save list (aten.mm / aten.linear, SDPA, reduce_scatter_tensor) are saved, except every second mm
    (the count restarts per block); everything else is recomputed. The block's input is kept by the checkpoint
    itself. The mm order is wq, wk, wv, wo, then w1 (gate), w3 (up), w2 (down)
    (torchtitan/models/llama3/model/model.py): wq, wv, w1 and w2 are saved.
    Under torchtitan's tensor parallel (sequence parallel, apply_tp) the colwise outputs are split over t, the
    rowwise w2's saved output is the whole sequence's partial sum (before its reduce-scatter), the
    reduce_scatter_tensor outputs of wo and w2 are saved (split over the sequence), the block's input is split
    over the sequence, and the all-gathered norm outputs are recomputed (all_gather is not in the list). Without
    sequence parallel the block's input is the whole sequence and the rowwise outputs are all-reduced (all_reduce is
    not in the save list either): no reduce-scatter output is saved.
    Eager, the policy's cache (torch/utils/checkpoint.py, _CachingTorchDispatchMode) stores every MUST_SAVE output
    whether the backward uses it or not. Under torch.compile (torchtitan compiles each checkpointed block) the policy
    only tags the traced graph, and AOTAutograd's partitioner (torch/_functorch/partitioners.py,
    min_cut_rematerialization_partition) saves the forward values the backward graph reads, MUST_SAVE ones being
    banned from recomputation: w2's output, and its reduce-scatter under sequence parallel, feed only the residual
    add, whose backward reads nothing, so they are not kept (wo's reduce-scatter output is: the MLP norm's input is
    recomputed from it)."""
    h = a.hidden_size
    q, kv = attention_dims(a)
    fc1, inter = _mlp_widths(a)
    # (width per token, rowwise: a partial sum over the whole sequence under tensor parallel)
    mms = [(q, False), (kv / 2, False), (kv / 2, False), (h, True)]
    mms += [(fc1 / 2, False), (fc1 / 2, False), (h, True)] if a.gated_mlp else [(fc1, False), (h, True)]
    saved_mms = [(w, rowwise) for i, (w, rowwise) in enumerate(mms) if i % 2 == 0]
    if tr.compile and saved_mms[-1] == (h, True):
        saved_mms.pop()  # w2 (the block's last mm): its output feeds only the residual add
    saved = sum(w if rowwise else w / t for w, rowwise in saved_mms)
    sp = sequence_parallel(tr, t)
    saved += q / t + (h / t if sp else h)  # SDPA output; the block's input
    if sp:
        saved += (1 if tr.compile else 2) * h / t  # the reduce-scatter outputs of wo and w2 (wo's alone compiled)
    # SDPA's saved outputs include the flash kernel's fp32 log-sum-exp, one a head and token (heads split over t)
    lse = SDPA_LSE_BYTES * a.num_attention_heads / t
    lora = 0.0
    if tr.method != "full":  # peft/torchtune adapters' fp32 inputs are saved as in eager
        lora = _layer_bytes_per_token(a, tr, 1, mixed=False)[0] - \
            _layer_bytes_per_token(a, tr.model_copy(update={"method": "full"}), 1, mixed=False)[0]
    return ACT_BYTES * saved + lse + lora / t


def megatron_dropout_masks(tr: Training) -> int:
    """Dropout masks a Megatron layer keeps: one after the attention projection and one after the MLP when
    --hidden-dropout is above 0 (its default 0.1, `training.hiddenDropout`). At 0 there are none: Megatron-Core's
    bias-dropout-add (megatron/core/fusions/fused_bias_dropout.py, `_bias_dropout_add_func`) calls
    torch.nn.functional.dropout(p=prob), and torch returns the input unmasked at p = 0 (aten/src/ATen/native/
    Dropout.cpp: the fused kernel only for 0 < p < 1, `_dropout_impl` returning the input when p == 0; under
    torch.compile, Megatron's jit_fuser, the dropout decomposition does the same)."""
    return 0 if tr.hidden_dropout == 0 else 2


def megatron_layer_bytes(a: ModelArch, tr: Training, t: int, sp: bool) -> tuple[float, float]:
    """(bytes one layer keeps per token, of which core attention alone keeps) in Megatron-Core with
    Transformer Engine and flash/fused attention: Korthikanti et al. 2022 (arXiv 2205.05198) eq. 2 and 4,
    sbh(10 + 24/t + 5as/(ht)) with sequence parallel dividing the 10 by t too; the 5as/(ht) score terms
    vanish with flash attention (q, k, v, the output and the softmax statistics are kept). Generalised to
    GQA and SwiGLU: replicated: two norm inputs (2 x 2h), the QKV input (2h), the fc1 input (2h), two
    dropout masks (2 x 1h) unless --hidden-dropout is 0 (megatron_dropout_masks); split over t: q, k, v
    (2q + 2kv), the attention output (2q, the projection's input), fc1 output and activation output.
    Recomputing core attention (selective) still keeps its inputs q, k, v (the checkpoint's) and its output
    (the projection's): only the per-head fp32 softmax statistics go."""
    h = a.hidden_size
    q, kv = attention_dims(a)
    fc1, inter = _mlp_widths(a)
    replicated = ACT_BYTES * (2 * h + h + h) + megatron_dropout_masks(tr) * MEGATRON_DROPOUT_MASK_BYTES * h
    if tr.flash_attention is False:
        # unfused attention (legacy megatron/model/transformer.py CoreAttention, megatron/core/transformer/
        # dot_product_attention.py DotProductAttention): baddbmm scores, FusedScaleMaskSoftmax saving its 16-bit
        # output, attention_dropout (--attention-dropout 0.1: a 1-byte mask and the 16-bit dropped-out
        # probabilities that the bmm with the values saves): Korthikanti's 5as/(ht) per token, no softmax statistics
        score = MEGATRON_UNFUSED_SCORE_BYTES_NO_DROPOUT if tr.attention_dropout == 0 else MEGATRON_UNFUSED_SCORE_BYTES
        core = score * a.num_attention_heads * tr.sequence_length
    else:
        core = 4 * a.num_attention_heads  # flash: an fp32 log-sum-exp per head
    split = ACT_BYTES * (2 * q + kv) + core + ACT_BYTES * (fc1 + inter)
    # --qk-layernorm (megatron/core/transformer/attention.py, SelfAttention.get_query_key_value_tensors: q_layernorm /
    # k_layernorm, TENorm over hidden_size_per_attention_head): Transformer Engine's RMSNorm saves its 16-bit input and
    # the fp32 rsigma a head; core-attention recompute does not cover them; heads split over t
    split += qk_norm_bytes(a, 1, QK_NORM_FUSED_BYTES)
    # Transformer Engine's float8 linears save their inputs in fp8 (float8.te_saved_input_delta)
    fp8_replicated, fp8_split = float8.te_saved_input_delta(a, tr)
    replicated, split = replicated + fp8_replicated, split + fp8_split
    per = (replicated / t if sp else replicated) + split / t
    # The routed experts' fc1 and activation outputs stay split over t whatever --expert-tensor-parallel-size says
    # (training.expertTensorParallel, etp): Megatron-LM d98e8a6 trains an MoE under tensor parallel only with
    # sequence parallel (moe_layer.py MoELayer.forward raises otherwise), so a rank routes its s / t tokens, and the
    # dispatcher gathers them over the expert-tensor x expert group (token_dispatcher.py: tp_group = expt_tp,
    # tp_ep_group = tp_ep; MoEAllGatherTokenDispatcher.token_dispatch, MoEAlltoAllTokenDispatcher.dispatch_postprocess):
    # (s / t) x etp x top-k rows reach the rank's experts, whose fc1 is split over etp (experts.py TEGroupedMLP), so
    # (s / t) x top-k x the expert's whole width a rank, as with etp = t. Only the permuted input grows with etp.
    etp = tr.expert_tensor_parallel or t
    return per + megatron_moe_saved_bytes(a, t, etp), core / t


def megatron_moe_saved_bytes(a: ModelArch, t: int, etp: int | None = None) -> float:
    """Bytes a Megatron-Core MoE layer keeps per token beyond the dense count (Megatron-LM d98e8a6), routing taken
    as balanced, at tensor-parallel size `t` and expert-tensor-parallel size `etp` (training.expertTensorParallel;
    unset: t, Megatron's default):
    - the routed experts' fc1 input: the dispatcher's permuted tokens, [top-k x tokens, h] on each rank
      (megatron/core/transformer/moe/token_dispatcher.py MoEAllGatherTokenDispatcher.dispatch_postprocess ->
      moe_utils.permute, an index_select that saves only the indices, so the copy the experts' GroupedLinear /
      Linear fc1 saves is the only one kept). The gather over the expert-tensor x EP group (tp_ep_group) brings the
      (s / t) b tokens of etp x ep ranks, the rank's 1/ep of the experts take top-k of them each: top-k x etp x s / t
      x b rows of h (top-k x s x b at etp = t).
      The router's gating linear (moe_utils.RouterGatingLinearFunction) saves the norm output, the dense count's
      fc1 input.
    - non-gated (GELU) experts: experts.py TEGroupedMLP.forward bias_act_func's unfused branch multiplies the
      activation by the fp32 router probabilities and casts back (`intermediate_parallel * permuted_probs`,
      `.to(original_dtype)`): the multiply saves the activation output (counted) and fc2 saves the weighted 16-bit
      copy, top-k x moe_intermediate / t more a token (the rows x etp, the width / etp). Gated
      experts with --bias-swiglu-fusion (the default) go through weighted_bias_swiglu_impl, which saves fc1's output
      and the probabilities only: nothing more.
    The probabilities (fp32, one a routed copy) and the routing indices are under 1% of these and not counted."""
    if not a.is_moe:
        return 0.0
    etp = etp or t
    k = a.num_experts_per_token
    permuted = ACT_BYTES * k * a.hidden_size * etp / t
    weighted = 0.0 if a.gated_mlp else ACT_BYTES * k * a.moe_intermediate_size / t
    return permuted + weighted


@dataclass(frozen=True)
class Activations:
    kept: int        # saved for the backward, all layers of the most loaded stage
    recompute: int   # recomputed/backward working set of one layer
    loss_forward: int
    loss_backward: int


def _loss(a: ModelArch, tr: Training, t: int, fwd_bytes: float, bwd_bytes: float) -> tuple[int, int]:
    """Loss buffers per token x vocabulary entry (vocab split over t). `lossChunks` > 1: the 16-bit logits
    stay whole, the fp32 buffers exist for one chunk at a time (chunked cross-entropy)."""
    n = _tokens(tr) * a.vocab_size / t
    c = tr.loss_chunks or 1
    if c > 1:
        return int(n * (ACT_BYTES + (fwd_bytes - ACT_BYTES) / c)), int(n * (ACT_BYTES + bwd_bytes / c))
    return int(n * fwd_bytes), int(n * bwd_bytes)


# The fp32 buffer a logit that Inductor's lowering of a functional index_put allocates (torch/_inductor/lowering.py,
# `index_put` returns `index_put_(clone(x), ...)`), in the backward of Megatron's native fused cross-entropy
MEGATRON_FUSED_CE_CLONE_BYTES = 4


def megatron_loss_backward_bytes(tr: Training) -> float:
    """Bytes a logit (of this rank's vocabulary share) at the backward of Megatron's cross-entropy. Unfused
    (megatron/core/tensor_parallel/cross_entropy.py, _VocabParallelCrossEntropy.backward; Megatron-LM's default,
    cross_entropy_loss_fusion False in megatron/core/model_parallel_config.py from core 0.8 to d98e8a6): the saved fp32
    softmax becomes the gradient in place (an indexed `-=` on its 2-D view, `mul_`) and autograd casts it to the 16-bit
    logits' dtype: 4 + 2. Native fused (`crossEntropyFusion` native: megatron/core/fusions/fused_cross_entropy.py,
    the same steps from core 0.8.0 to d98e8a6): the same steps run in `calculate_gradients`, decorated with jit_fuser,
    which is torch.compile from torch 2.2 (megatron/core/jit.py). Compiled, the saved softmax is a graph input that the
    function mutates; AOTAutograd functionalises the indexed `-=` on its view into `index_put(view, ...)` and the
    `mul_` into a `mul` copied back into the input (`copy_` epilogue, kept in the graph for an inference graph: the
    custom Function's backward runs without grad). Inductor's reinplace pass (torch/_inductor/fx_passes/reinplace.py,
    reinplace_inplaceable_ops_core) makes an index_put on a view of a graph input in place only when a copy_ writes
    that index_put's result (or a view of it) back into the input; here the copy_ writes the `mul`, so the index_put
    stays functional and its lowering clones the whole softmax (torch/_inductor/lowering.py `index_put`:
    `index_put_(clone(x), ...)`). The mul kernel then reads the clone while it writes the input and the 16-bit
    `.to(torch.bfloat16)` output: 4 (saved softmax) + 4 (clone) + 2. The forward's in-place subtract, exp and divide
    are pointwise, which Inductor writes into the input (realize_into with a MutationLayout): counted as eager."""
    return 4 + 2 + (MEGATRON_FUSED_CE_CLONE_BYTES if tr.cross_entropy_fusion == "native" else 0)


def torchtune_eager_chunked_loss(tr: Training, t: int) -> bool:
    """fsdp (FSDP2) with `lossChunks` > 1 and no per-chunk backward is torchtune's chunked cross-entropy
    (LinearCrossEntropyLoss, the recipes' default since PR 2531 of April 2025; CEWithChunkedOutputLoss before it),
    eager unless compiled: under tensor parallel always (since PR 2782, June 2025, its apply_compile_strategy skips
    compile "as it is not supported with both masking and tensor parallelism enabled"; mask_ignored_tokens is True by
    default, torchtune/modules/loss/cross_entropy_loss.py; the recipe sets `tp_enabled` in _setup_model before
    compile_loss), whatever `compile` says; without it when the loss is not compiled. That skip is
    LinearCrossEntropyLoss.apply_compile_strategy's: CEWithChunkedOutputLoss (`torchtuneLoss` chunkedOutput) is eager
    only when not compiled. torchtitan's own chunked loss (ChunkedCELoss) runs each chunk's backward inside the loss
    (`lossChunkBackward`)."""
    skips_compile = t > 1 and tr.torchtune_loss != "chunkedOutput"
    return torchtitan(tr) and (tr.loss_chunks or 1) > 1 and not tr.loss_chunk_backward \
        and (skips_compile or not tr.loss_compiled)


def eager_chunked_loss(a: ModelArch, tr: Training, t: int, fwd_bytes: float, bwd_bytes: float) -> tuple[int, int]:
    """(forward, backward) loss buffers of torchtune's eager chunked cross-entropy, the logits on this rank split over
    `t`. LinearCrossEntropyLoss.forward (torchtune/modules/loss/cross_entropy_loss.py) runs, chunk after chunk, the
    output projection and `F.cross_entropy(logits.float(), ...)` and sums the chunks' losses; the recipe calls
    `loss.backward()` once, after the loop (recipes/full_finetune_distributed.py, _loss_step and train). So every
    chunk's fp32 log-softmax stays saved until the backward (CHUNK_SAVED_LOG_SOFTMAX_BYTES a logit, all chunks), and the
    cross-entropy's other buffers (`fwd_bytes`, `bwd_bytes` a logit, less the saved one) exist for one chunk at a time:
    the last chunk's forward, the first chunk's backward. The 16-bit logits of a chunk are not saved (the projection
    saves its input, `.float()` nothing); the inputs it saves, the whole sequence's hidden states, are counted with the
    final norm's output. Under tensor parallel (PR 2782, June 2025) patch_tp_plan makes the projection
    ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False) and the recipe runs the
    loss in loss_parallel(): DTensor's buffers over the vocabulary's t-th. CEWithChunkedOutputLoss (`torchtuneLoss`
    chunkedOutput) gets every chunk's 16-bit logits from the model at once (eager_chunked_loss_bytes)."""
    n = _tokens(tr) * a.vocab_size / t
    fwd, bwd = eager_chunked_loss_bytes(tr, fwd_bytes, bwd_bytes)
    return int(n * fwd), int(n * bwd)


def _pipeline(kept_per: float, tokens: int, L: int, pipeline: int, loss: tuple[int, int], stage: str,
              virtual: int = 1, held: tuple[int, int] = (0, 0), recompute: int = 0,
              microbatches: int | None = None) -> tuple[int, int, int]:
    """(kept, loss forward, loss backward) of the pipeline stage asked for: "first" holds `pipeline` micro-batches
    of its layers and no loss, "last" one micro-batch and the loss, "max" the larger. 1F1B as Megatron runs it
    (megatron/core/pipeline_parallel/schedules.py, forward_backward_pipelining_without_interleaving:
    num_warmup_microbatches = pipeline_parallel_size - rank - 1, plus the one in steady state), DeepSpeed's
    PipelineModule (deepspeed/runtime/pipe/schedule.py, TrainSchedule.num_pipe_buffers = min(stages - stage_id,
    micro_batches); the loss only on the last stage, engine.py _exec_forward_pass) and torchtitan's 1F1B.
    Megatron's interleaved schedule (`virtual` model chunks of L / (pipeline x virtual) layers a GPU;
    schedules.py get_pp_rank_microbatches, forward_backward_pipelining_with_interleaving) runs
    2 (pipeline - rank - 1) + (virtual - 1) x microbatch_group_size_per_vp_stage warmup forwards of one chunk
    each (the group size defaults to the pipeline size, megatron/core/model_parallel_config.py), plus the one in steady
    state: the last stage holds (virtual - 1) pipeline + 1 chunks' activations, the first 2 (pipeline - 1) more.
    `microbatches`: the step's micro-batches where the spec says them (Megatron's num_microbatches, the spec's
    gradientAccumulationSteps); a stage never holds more than the step has: schedules.py at the row releases
    (Megatron-LM main of 2025-09-01 and d98e8a6) caps the 1F1B warmup, `num_warmup_microbatches =
    min(num_warmup_microbatches, num_microbatches)` with the steady-state forward only when micro-batches remain, and
    get_pp_rank_microbatches the interleaved one at total_num_microbatches = num_microbatches x num_model_chunks
    (are_all_microbatches_in_warmup). Unsaid (None): the upper bound above.
    `held`: what the runtime's schedule keeps beside the activations on the (first, last) stage (fsdp:
    torch.distributed.pipelining's buffers and output chunks), counted with the kept activations. "max" compares
    each end stage at its own peak: the first's kept activations and a layer's recompute, the last's and the larger
    of its loss and a recompute."""
    fwd, bwd = loss
    if pipeline == 1:
        return int(L * kept_per * tokens), fwd, bwd
    stage_layers = math.ceil(L / pipeline)
    cap = math.inf if microbatches is None else microbatches * virtual  # the step's chunk forwards on a stage
    if virtual > 1:
        chunk_layers = stage_layers / virtual
        first = int(min(2 * (pipeline - 1) + (virtual - 1) * pipeline + 1, cap) * chunk_layers * kept_per * tokens)
        last = int(min((virtual - 1) * pipeline + 1, cap) * chunk_layers * kept_per * tokens)
    else:
        first = int(stage_layers * min(pipeline, cap) * kept_per * tokens)
        last = int(stage_layers * kept_per * tokens)
    first, last = first + held[0], last + held[1]
    if stage == "first" or (stage == "max" and first + recompute >= last + max(fwd, bwd, recompute)):
        return first, 0, 0
    return last, fwd, bwd


def frozen_input_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """Bytes per token and layer that a full fine-tune's count keeps only as the input of a projection that LoRA
    leaves frozen and unadapted (training.loraTargets): no weight gradient, so nothing saves it. PyTorch's autograd
    saves a matmul's input only for its weight's gradient: tools/autograd/gen_variable_type.py `guard_for` guards a
    saved variable used by a single derivative with `grad_fn->should_compute_output(...)`, and `mm`'s `self` is used
    only by `mat2`'s (tools/autograd/derivatives.yaml, `mm_mat2_backward(grad, self, ...)`); torchtune freezes the
    base and its norms (torchtune/modules/peft/_utils.py set_trainable_params: only the adapters require grad), so
    F.linear over a frozen weight (torchtune/modules/peft/lora.py, LoRALinear without an adapter is nn.Linear;
    FrozenNF4Linear for QLoRA) saves nothing but its weight, and Inductor's partitioner has no weight-gradient mm to
    ban from recomputation (activations.compile_savings). What goes: the MLP norm's 16-bit output when neither gate
    nor up carries an adapter, the attention norm's when none of q, k, v does (an eager norm's frozen scale saves no
    output either: `x_normed * self.scale`), and down's input (SwiGLU's act(gate) x up, or the act of a plain MLP)
    when down carries none; o's input is the attention output that SDPA saves for itself. Dense MLPs only: an MoE's
    experts are not adapted linears.
    With lora_dropout above 0 an adapted projection's input goes unsaved too: LoRALinear.forward (torchtune/modules/
    peft/lora.py at fef3ed10d: `out = F.linear(x, self.weight)`, `self.lora_a(self.dropout(x))`; peft's
    Linear.forward the same) gives lora_a the dropout's new tensor, which it saves (lora_dropout_bytes), and
    aten.native_dropout's backward needs only its mask (derivatives.yaml, `native_dropout_backward(grad, result1,
    ...)`), so under method lora each projection is then treated as unadapted here. Not under qlora: bitsandbytes
    before 0.45 saves the input of its frozen 4-bit matmul (bitsandbytes/autograd/_functions.py, MatMul4Bit.forward
    at 0.43.0: `ctx.tensors = (A, B)`; 0.45.0: `(None, B)`), which the spec cannot tell from torchao's NF4."""
    targets = frozenset() if tr.lora_dropout and tr.method == "lora" else tr.targets
    h = a.hidden_size
    norm_out = NORM_OUTPUT_BYTES_PER_H / 2 * h  # one norm's 16-bit output, whole under torchtitan's tensor parallel
    saved = 0.0
    if not targets & {"q", "k", "v"}:
        saved += norm_out
    if not a.is_moe:
        if not targets & {"gate", "up"}:
            saved += norm_out
        if "down" not in targets:
            saved += ACT_BYTES * a.intermediate_size / t
    return saved


def joint_graph_keeps_gathered(tr: Training) -> bool:
    """`jointGraph` without activation checkpointing: torchtitan's graph_trainer (AOT mode, its default) and
    compiler_toolkit export the whole model, SimpleFSDP's all-gathers included, as one forward-backward graph and
    split it with aot_compile_joint_with_descriptors' default partition_fn, default_partition (torch 2.11,
    torch/_functorch/aot_autograd.py; graph_utils.joint_graph_builder at torchtitan 72f89d206^ and a764c9815^ passes
    none). Its only recompute tags are the FSDP all-gathers': reshard_after_forward.annotate_fsdp_all_gather marks the
    all_gather, its wait_tensor, a slice right after it and the cast before it MUST_RECOMPUTE. default_partition
    (torch/_functorch/partitioners.py) saves every other forward node the backward uses, so (1) the saved set is
    eager autograd's, not the min-cut partitioner's (no recompute of pointwise ops: activations.compile_savings does
    not apply), and (2) the untagged views of each gathered weight that a matmul's backward reads (`t` / `transpose`
    of the 16-bit all-gather output, aten.mm's and _grouped_mm's saved `mat2`) are saved, so every block's gathered
    16-bit weights stay alive from its forward to its backward, as with reshard_after_forward false. With
    checkpointing the regions' ops all carry tags (MUST_SAVE or PREFER_RECOMPUTE), the views among them: as
    compiled, resharded after the forward."""
    return bool(tr.joint_graph) and tr.activation_checkpointing == "none"


def partitioned_as(tr: Training) -> Training:
    """The job as its saved set is estimated: under joint_graph_keeps_gathered the same job eager (compile off, the
    loss as `tr` states it), else `tr`."""
    if joint_graph_keeps_gathered(tr):
        return tr.model_copy(update={"compile": False, "compile_loss": tr.loss_compiled})
    return tr


def runtime_activations(a: ModelArch, tr: Training, layout: Layout, stage: str = "max",
                        fp16: bool = False) -> Activations:
    """Activations of the most loaded pipeline stage (`stage` "max"), or of the "first" or "last" one
    (Megatron logs its last rank's memory). `fp16`: fp16 activations, not bf16 (activations.eager_backward_bytes)."""
    tokens, ckpt = _tokens(tr), tr.activation_checkpointing
    tr = partitioned_as(tr)
    if tr.framework == "megatron":
        return _megatron_activations(a, tr, layout, stage, tokens, ckpt)
    t = layout.tensor
    # transformers' reentrant checkpointing around each frozen FSDP1 unit (not torch's checkpoint_wrapper inside it)
    frozen_fsdp1_units = (tr.framework == "fsdp" and tr.fsdp == 1 and tr.method != "full" and ckpt == "full"
                          and not tr.checkpoint_wrapper)
    tr, per = _runtime_layer_bytes(a, tr, layout, tokens)
    kept_per, recompute = _checkpointed(a, tr, layout, tokens, per, ckpt)
    if recompute:  # a recomputed layer's eager attention backward holds more than its count
        recompute += eager_backward_bytes(a, tr, t, fp16)
        if moe_training.applies(a, torchtitan(tr), t):  # and torchtitan's eager MoE scoring backward
            recompute += moe_training.scoring_backward_bytes(a, tr, layout)
    if frozen_fsdp1_units:
        recompute += fsdp1_held_input_grads(a, t)
    # the logits on this rank: split over the vocabulary, or gathered whole without loss parallel (fsdp)
    vocab_split = t if tr.framework != "fsdp" or loss_parallel(tr, t) else 1
    loss = _held_at_loss(a, tr, layout, tokens, _loss_bytes(a, tr, t, vocab_split))
    held = (0, 0)
    if tr.framework == "fsdp" and layout.pipeline > 1:
        held = pipelining_held(a, tr, layout)
    # the model output a loop of the job's own keeps through the backward (loopKeepsOutput), on the loss's stage
    out = loop_output_bytes(a, tr, layout, vocab_split)
    held = held[0], held[1] + out
    # torchtune's activation offloading keeps only its forward stash of checkpointed inputs (activations.py)
    kept_layers = kept_input_layers(tr, a.num_layers) if ckpt == "full" and layout.pipeline == 1 else a.num_layers
    kept, fwd, bwd = _pipeline(kept_per, tokens, kept_layers, layout.pipeline, loss, stage, held=held,
                               recompute=int(recompute * tokens))
    if layout.pipeline == 1:   # _pipeline's one stage holds its `held` too
        kept += out
    return Activations(kept, int(recompute * tokens), fwd, bwd)


def loop_output_bytes(a: ModelArch, tr: Training, layout: Layout, vocab_split: int) -> int:
    """Bytes of transformers' model output that the job's loop keeps referenced through the backward
    (`loopKeepsOutput`), counted with the kept activations at every moment of the step from the loss on. Read in
    transformers 4.31.0 models/llama/modeling_llama.py LlamaForCausalLM.forward: `logits = logits.float()`, then the
    loss over a shifted copy, and `CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=...)`: the
    output carries the fp32 upcast (4 bytes a logit) and, with use_cache, every layer's key and value
    (training_kv_cache_bytes). From 4.46 the output carries the lm_head's 16-bit logits (the loss function upcasts
    inside, Training.holds_16bit_logits_at_loss), and before 4.49 OPT's, GPT-NeoX's and the other families' that
    never upcast their 16-bit logits, whatever autocast does inside the loss
    (activations.hf_forward_upcasts_logits). Neither is saved by the loss's backward (the cast's backward keeps
    nothing, cross_entropy keeps its log-softmax), so a loop that drops the output (`loss = model(**batch).loss`,
    the HF Trainer's compute_loss) frees them before the backward; one that keeps `outputs` (dlrover ATorch's
    examples/llama2/fsdp_llama2.py at 3a442b728: `outputs = model(**batch); loss = loss_func(None, outputs);
    loss.backward()`) holds them through the backward, and the previous step's through the next forward until the
    name is rebound when the forward returns: beside the loss's own forward buffers (the new output's logits and
    cache), which the loss counts. The optimizer step's moment, between the two, is not given them (not counted
    there)."""
    if not tr.loop_keeps_output:
        return 0
    logit_bytes = ACT_BYTES if tr.holds_16bit_logits_at_loss or not hf_forward_upcasts_logits(a, tr) else 4
    out = int(_tokens(tr) * a.vocab_size / vocab_split * logit_bytes)
    if tr.use_cache:
        out += training_kv_cache_bytes(a, tr, layout)
    return out


# --- runtime_activations' parts ------------------------------------------------------------------------------


def _megatron_activations(a: ModelArch, tr: Training, layout: Layout, stage: str, tokens: int,
                          ckpt: str) -> Activations:
    """Megatron's stage: each layer's kept bytes under its recompute setting, the MTP block and the loss's softmax."""
    t = layout.tensor
    sp = sequence_parallel(tr, t)
    per, core = megatron_layer_bytes(a, tr, t, sp)
    if ckpt == "full":  # --recompute-granularity full --recompute-method uniform: each layer's input
        kept_per, recompute = ACT_BYTES * a.hidden_size / (t if sp else 1), per
    elif ckpt == "selective":  # --recompute-granularity selective (core_attn): drops the scores or statistics
        # the recomputed output lives only within its layer's backward, like the activation gradients
        # not counted without checkpointing either
        kept_per, recompute = per - core, 0.0
    else:
        kept_per, recompute = per, 0.0
    # megatron/core/tensor_parallel/cross_entropy.py: logits.float(), then exp/div in place; the
    # softmax is reused as the gradient in place, cast back to 16-bit: 2 + 4 bytes each way (the native fused
    # cross-entropy's backward one fp32 buffer more: megatron_loss_backward_bytes)
    # --mtp-num-layers: the MTP block's one micro-batch and its loss's softmax on the last stage (megatron_mtp)
    mtp = int(megatron_mtp.kept_bytes_per_token(a, tr, t, sp, kept_per) * tokens)
    loss = _loss(a, tr, t, 2 + 4, megatron_loss_backward_bytes(tr))
    # --defer-embedding-wgrad-compute: the last stage's deferred output-layer inputs and logits' gradients
    deferred = megatron_deferred_wgrad_bytes(a, tr, layout, tokens)
    kept, fwd, bwd = _pipeline(kept_per, tokens, a.num_layers, layout.pipeline, loss, stage,
                               tr.virtual_stages or 1, held=(0, mtp + deferred),
                               microbatches=tr.gradient_accumulation_steps)
    if layout.pipeline == 1:
        kept += mtp
    return Activations(kept, int(recompute * tokens), fwd, bwd)


def megatron_deferred_wgrad_bytes(a: ModelArch, tr: Training, layout: Layout, tokens: int) -> int:
    """Bytes the last pipeline stage keeps for `training.deferEmbeddingWgrad` (--defer-embedding-wgrad-compute) at
    its peak, a micro-batch's loss backward. The output layer (a ColumnParallelLinear, megatron/core/tensor_parallel/
    layers.py at d98e8a6) appends its input to `embedding_activation_buffer` in the forward, and its backward
    (LinearWithGradAccumulationAndAsyncCommunication.backward) appends the logits' gradient to `grad_output_buffer`
    instead of computing the weight gradient, for the step's first wgradDeferralLimit micro-batches (0: all);
    finish_embedding_wgrad_compute (megatron/core/pipeline_parallel/schedules.py) runs the GEMMs at the pipeline's
    drain (utils.py drain_embedding_wgrad_compute). So at the loss backward of a later micro-batch the earlier deferred
    ones are still held: min(limit, micro-batches - 1) of them, each its [s, b, vocab / t] gradient and its
    [s, b, h] input (divided by t under sequence parallel, where the layer takes the sharded input), both in the
    activations' 16-bit dtype. The step's micro-batches unsaid (gradientAccumulationSteps unset): the limit, or the
    pipeline's depth at limit 0. 0 without pipeline stages (Megatron refuses the flag) or without the flag."""
    if tr.framework != "megatron" or not tr.defer_embedding_wgrad or layout.pipeline == 1:
        return 0
    limit = tr.wgrad_deferral_limit or 0
    microbatches = tr.gradient_accumulation_steps or (limit or layout.pipeline)
    held = min(limit, microbatches - 1) if limit else microbatches - 1
    t = layout.tensor
    per_token = a.vocab_size / t + a.hidden_size / (t if sequence_parallel(tr, t) else 1)
    return int(max(held, 0) * tokens * per_token * ACT_BYTES)


def _runtime_layer_bytes(a: ModelArch, tr: Training, layout: Layout, tokens: int) -> tuple[Training, float]:
    """A layer's bytes a token without checkpointing (FSDP, DeepSpeed): with 16-bit adapters in a 16-bit model
    counted as a full fine-tune (the Training returned) plus their dropout's copy, the norms transformers' tp_plan
    keeps whole and torchtitan's MoE routing."""
    t = layout.tensor
    dropout = 0.0
    if tr.framework == "fsdp" and tr.method != "full" and tr.master_weights == "none":
        # 16-bit adapters in a 16-bit model: peft's cast of each adapted input to the adapters' fp32 dtype
        # (LORA_INPUT_BYTES) does not happen; lora_a saves the same input tensor the base linear received
        # (torchtune/modules/peft/lora.py, LoRALinear.forward; lora_dropout 0.0 is nn.Identity), which a
        # full fine-tune keeps too, and lora_b's rank-wide input is negligible; a dropout's copy is 16-bit.
        dropout = lora_dropout_bytes(a, tr, ACT_BYTES) / t - frozen_input_bytes(a, tr, t)
        tr = tr.model_copy(update={"method": "full"})
    per = layer_bytes(a, tr, t) + dropout
    if hf_fsdp2.hf_fsdp2(tr):  # transformers' tp_plan: the norms whole on every tensor rank
        per += hf_fsdp2.whole_norm_bytes(a, tr, t)
    if moe_training.applies(a, torchtitan(tr), t):  # torchtitan's router, fp32 scoring copy, padded token groups
        per += moe_training.eager_extra_bytes(a, tr, layout, tokens)
    elif moe_training.sequence_parallel_routing(a, torchtitan(tr), layout):  # the same, the router on every rank
        per += moe_training.sequence_parallel_routing_bytes(a, tr, layout, tokens)
    return tr, per


def _checkpointed(a: ModelArch, tr: Training, layout: Layout, tokens: int, per: float,
                  ckpt: str) -> tuple[float, float]:
    """What a layer keeps a token and what its backward recomputes, under each framework's checkpointing."""
    t = layout.tensor
    if ckpt == "full" and hf_fsdp2.child_checkpoint(tr):
        # accelerate 1.8.0-1.14.x: each child of the layer checkpointed, each child's input kept; the backward
        # recomputes one child at a time: the attention's saved tensors, or the rest (MLP, norms, adapters)
        _, attention = _layer_bytes_per_token(a, tr, t, mixed=False)
        return ACT_BYTES * a.hidden_size + hf_fsdp2.child_checkpoint_bytes(a), max(attention, per - attention)
    if ckpt == "full":  # each block's input: split over the sequence, or whole without sequence parallel
        split = t if tr.framework != "fsdp" or t == 1 or sequence_parallel(tr, t) else 1
        return ACT_BYTES * a.hidden_size / split, per
    if ckpt == "selective" and moe_training.flex_sac(a, torchtitan(tr), t):
        # torchtitan's DeepSeek-V3: per-op SAC on each MoE / feed-forward module, full AC on the attention
        kept_per = moe_training.sac_layer_bytes(a, tr, layout)
        return kept_per, max(per - moe_training.sac_layer_bytes(a, tr, layout, all_to_all=False), 0.0)
    if ckpt == "selective" and torchtitan(tr):
        sac = torchtitan_sac_bytes(a, tr, t)
        kept_per = sac + float8.sac_abs_bytes(a, tr, t, tokens)  # torchao's abs copies, cached by SAC before 0.1
        return kept_per, max(per - sac, 0.0)
    if ckpt == "selective":  # DeepSpeed, FSDP1 with transformers models: Korthikanti's attention recompute
        _, attention = _layer_bytes_per_token(a, tr, t, mixed=False)
        return per - attention, attention
    return per, 0.0


def _loss_bytes(a: ModelArch, tr: Training, t: int, vocab_split: int) -> tuple[int, int]:
    """The loss's forward and backward bytes on this rank, per the runtime's cross-entropy (`vocab_split`: the
    logits' split over the vocabulary)."""
    if torchtune_eager_chunked_loss(tr, t):
        # torchtune's eager chunked loss: every chunk's log-softmax kept for the one backward; DTensor's buffers under
        # loss parallel, torch's fused kernels on the whole vocabulary without
        fwd, bwd = (LOSS_PARALLEL_FORWARD_BYTES, LOSS_PARALLEL_BACKWARD_BYTES) if loss_parallel(tr, t) \
            else (2 + 4 + 4, 4 + 4 + 4)
        loss = eager_chunked_loss(a, tr, vocab_split, fwd, bwd)
    elif tr.loss_compiled:
        # torch.compile over cross_entropy(logits.float()) (torchtitan components/loss.py, compiled with the model
        # since April 2025, build_cross_entropy_loss; torchtune's compile_loss): Inductor fuses the upcast and
        # the log-softmax, saving the 16-bit logits and per-token statistics; the backward writes the 16-bit
        # gradient from them. No fp32 buffer per logit, chunked or not.
        # Chunked (`lossChunks` c > 1), each chunk is its own tensor and its own compiled call: torchtune's
        # chunked_output applies the output projection per chunk (torchtune/modules/transformer.py), and
        # CEWithChunkedOutputLoss calls its compiled compute_cross_entropy once a chunk
        # (torchtune/modules/loss/ce_chunked_output_loss.py; training/_compile.py compile_loss compiles that method
        # alone; the recipe's `del logits` drops its own references). A chunk's saved logits are freed when its
        # backward has written its gradient, so the backward holds the whole 16-bit gradient and one chunk more at
        # most (the gradient chunks wait for the output projection's backward), not the logits and the gradient
        # whole. c = 1 is the unchunked case: 2 x 16-bit a logit.
        n = _tokens(tr) * a.vocab_size / vocab_split
        c = tr.loss_chunks or 1
        loss = int(n * ACT_BYTES), int(n * ACT_BYTES * (1 + 1 / c))
    elif torchtitan(tr) and loss_parallel(tr, t):
        # loss parallel (torchtitan's default under tensor parallel: the output stays Shard(-1) and the loss runs in
        # torch.distributed.tensor.parallel.loss_parallel()): DTensor's own ops replace the fused kernels
        # (torch/distributed/tensor/parallel/loss.py). `_log_softmax` keeps the fp32 input, `shifted = x - x_max` and
        # `torch.exp(shifted)` at once beside the 16-bit logits: 2 + 4 + 4 + 4 bytes a logit forward;
        # `_nll_loss_and_log_softmax_backward` holds the saved log-softmax, `grad_input = torch.zeros_like(x)`,
        # `grad_input + torch.exp(x)` and its product with the gradient: 4 x 4 bytes backward.
        loss = _loss(a, tr, t, LOSS_PARALLEL_FORWARD_BYTES, LOSS_PARALLEL_BACKWARD_BYTES)
    elif hf_16bit_cross_entropy(a, tr):
        # transformers' CrossEntropyLoss over a non-upcasting family's 16-bit logits, no autocast (DeepSpeed's engine):
        # 16-bit logits, shifted copy and log-softmax; their 16-bit gradients (activations.hf_16bit_cross_entropy)
        loss = _loss(a, tr, vocab_split, OWN_LOSS_FORWARD_BYTES, OWN_LOSS_BACKWARD_BYTES)
    else:
        # torch cross_entropy(logits.float()): bf16 logits, fp32 copy, fp32 log-softmax (forward); saved
        # log-softmax, nll's gradient, log-softmax's gradient (backward) (torchtitan/components/loss.py).
        # FSDP1 over transformers models before 4.49: ForCausalLMLoss's shifted fp32 copy too (SHIFT_COPY_BYTES)
        # and, before 4.46, no 16-bit logits beside the upcast (Training.holds_16bit_logits_at_loss)
        unchunked = (tr.loss_chunks or 1) == 1
        shift_copy = SHIFT_COPY_BYTES if tr.copies_shifted_logits and unchunked else 0
        logits16 = 0 if unchunked and not tr.holds_16bit_logits_at_loss else 2
        loss = _loss(a, tr, vocab_split, logits16 + 4 + 4 + shift_copy, 4 + 4 + 4)
    if tr.loss_chunk_backward:
        loss = chunk_backward_loss(a, tr, vocab_split)
    return loss


def _held_at_loss(a: ModelArch, tr: Training, layout: Layout, tokens: int,
                  loss: tuple[int, int]) -> tuple[int, int]:
    """`loss` with what lives beside it: the final norm's output (and torchtitan's eager norm's or transformers'
    under FSDP2), and the KV cache a `use_cache` forward keeps."""
    if torchtitan(tr):
        # the final norm's output, a new tensor (nn.RMSNorm) that the output projection saves for its backward: under
        # torchtitan's tensor parallel the whole sequence on every rank (apply_tp: "output" is ColwiseParallel with
        # input_layouts=Shard(1), so its input is all-gathered), alive through the loss forward and backward
        final = tokens * a.hidden_size * ACT_BYTES
        if tr.torchtitan_eager_final_norm:
            final += eager_final_norm_bytes(a, tr, layout.tensor)
        loss = loss[0] + final, loss[1] + final
    elif hf_fsdp2.hf_fsdp2(tr):
        # transformers' final LlamaRMSNorm under FSDP2: its eager upcast, normalised copy and output, whole sequence
        final = hf_fsdp2.final_norm_bytes(a, tr)
        loss = loss[0] + final, loss[1] + final
    if tr.use_cache:  # every layer's key and value, alive beside the loss's forward buffers (training_kv_cache_bytes)
        loss = loss[0] + training_kv_cache_bytes(a, tr, layout), loss[1]
    return loss


# torchtitan's own RMSNorm before PR 985 (torchtitan/models/norms.py, removed by 3b39d7ab0, March 19, 2025):
# `self._norm(x.float()).type_as(x) * self.weight`: pow and the rsqrt product save the fp32 upcast (4 bytes), the
# weight multiply saves the 16-bit normalised tensor (2 bytes); the per-token rsqrt is negligible
EAGER_RMSNORM_BYTES_PER_H = 4 + 2


def eager_final_norm_bytes(a: ModelArch, tr: Training, t: int) -> int:
    """What torchtitan's final norm kept for its backward before 0.1 (`torchtitanVersion` below 0.1) beyond its output
    (counted by the caller): the eager RMSNorm's fp32 input and 16-bit normalised tensor. The final norm is outside
    the checkpointed and compiled blocks (apply_ac / apply_compile wrap the TransformerBlocks), so neither per-op
    SAC, full AC nor torch.compile drops them. Its input is split over the sequence under tensor parallel with
    sequence parallel (apply_tp: "norm" is SequenceParallel), whole without."""
    split = t if sequence_parallel(tr, t) else 1
    return int(_tokens(tr) * a.hidden_size * EAGER_RMSNORM_BYTES_PER_H / split)


def chunk_backward_loss(a: ModelArch, tr: Training, t: int) -> tuple[int, int]:
    """(during the loss call, after it) for torchtitan's ChunkedCELoss (torchtitan/components/loss.py, PR 2937, April
    2026; `lossChunkBackward`). `__call__` redistributes the hidden states to Replicate over tensor parallel (whole
    sequence), makes `lossChunks` contiguous 16-bit copies of their chunks up front (`h_chunks`) and a GradAccumulator
    whose buffer is `torch.zeros_like(hidden, dtype=torch.float32)`; then, chunk by chunk, `logits = lm_head(h_chunk)`,
    the (compiled) cross-entropy and `chunk_loss.backward()`, whose gradient for the chunk is copied into the buffer:
    one chunk's logits and loss buffers at a time (16-bit logits and their 16-bit gradient when compiled; else the
    fp32 upcast, log-softmax and gradients beside the 16-bit logits the loop variable holds; loss parallel's under
    tensor parallel). After the loop the buffer is cast to 16 bits (`accumulated_grad`) and saved by
    _DecoderOutputGradientBackProp for the decoder's backward. The hidden states themselves are the final norm's
    output, counted by the caller. For a full fine-tune the loop also sets `lm_head.set_requires_gradient_sync(False)`
    until the last chunk, so FSDP2 keeps the output's unsharded gradient across chunks, accumulated in the reduce dtype
    (torch/distributed/fsdp/_fully_shard/_fsdp_param.py, to_accumulated_grad_if_needed: fp32, torchtitan's
    mixed_precision_reduce) beside each chunk's 16-bit gradient (counted with the gathered output)."""
    tokens, h, c = _tokens(tr), a.hidden_size, tr.loss_chunks or 1
    chunk = tokens * a.vocab_size / t / c  # one chunk's logits on this rank
    if tr.loss_compiled:
        per_logit = 2 * ACT_BYTES
    elif t > 1:
        per_logit = ACT_BYTES + LOSS_PARALLEL_BACKWARD_BYTES
    else:
        per_logit = ACT_BYTES + 4 + 4 + 4
    during = tokens * h * (ACT_BYTES + 4) + chunk * per_logit + tokens * h * ACT_BYTES / c  # + the chunk's h grad
    if tr.method == "full":
        during += a.vocab_size * h / t * 4
    return int(during), int(tokens * h * ACT_BYTES)


def training_kv_cache_bytes(a: ModelArch, tr: Training, layout: Layout) -> int:
    """The key-value cache transformers' model code returns in training with use_cache on (`useCache`), read in
    transformers 4.31.0 models/llama/modeling_llama.py: LlamaAttention.forward returns `past_key_value = (key_states,
    value_states)`, the key after apply_rotary_pos_emb and before repeat_kv (16-bit, [batch, kv heads, sequence,
    head_dim]); LlamaModel.forward appends each layer's to `next_decoder_cache` and returns it as past_key_values,
    and LlamaForCausalLM.forward computes the logits and the loss with it alive and returns it in the output.
    LlamaModel turns use_cache off only under its own `self.gradient_checkpointing`; under an external checkpoint
    wrapper the layer runs as itself and its outputs, the cache included, leave the checkpoint (only the saved tensors
    are dropped and recomputed). Nothing the loss saves references the cache, so it is freed when the output is
    dropped (`loss = model(**batch).loss`) before the backward: at the end of the forward, every layer's key and value
    beside the checkpointed inputs and the loss's forward buffers, what llama-recipes PR 165 measured ("peak memory at
    the end of forward ... saving past key/value states", ~4 GB on Llama-2-7b). The loss's pipeline stage holds its
    own layers' (heaviest_stage_layers); key-value heads split over tensor parallel."""
    per_token_layer = kv_bytes_per_token_layer(a, "bf16", layout.tensor, mla_latent=False)
    return heaviest_stage_layers(a.num_layers, layout.pipeline) * _tokens(tr) * per_token_layer


def fsdp1_held_input_grads(a: ModelArch, t: int) -> float:
    """Bytes a token that FSDP1 keeps through the backward of LoRA/QLoRA under transformers' reentrant checkpointing,
    at the first layer's recompute: every later layer's 16-bit input gradient. Read in torch 2.4.1 and transformers
    4.48.1: `gradient_checkpointing_enable` defaults to `use_reentrant: True` (modeling_utils.py), whose backward
    (torch/utils/checkpoint.py, CheckpointFunction.backward) runs the layer on `detach_variable` copies of its inputs,
    leaf tensors, and returns their `.grad`. The layer is an FSDP1 unit (accelerate's transformer-layer wrap) whose
    flat parameter is frozen (peft's fsdp_auto_wrap_policy gives the adapters their own units), so its pre-forward
    registers `_register_post_backward_reshard_only_hook` (fsdp/_runtime_utils.py): `register_multi_grad_hook` on
    those detached inputs (autograd/graph.py), whose hook closure keeps the inputs' grad accumulators
    (`_get_grad_fn_or_grad_acc`), and an AccumulateGrad node holds its variable (autograd/functions/accumulate_grad.h,
    `Variable variable`). The hook is removed only by `_finalize_params` in the end-of-backward callback
    (`_post_backward_hook_state[-1].remove()`), so each layer's detached input, with the `.grad` the layer's backward
    wrote into it, stays until the whole backward ends: at layer 0's recompute the inputs (counted as the
    checkpointed ones) and L - 1 input gradients. A unit whose flat parameter requires gradients (a full
    fine-tune) registers its hook on the flat parameter instead and keeps nothing.
    Not under `checkpointWrapper` (read in Answer.AI's fsdp_qlora train.py at 05ed9f2 and torch 2.2): there
    `apply_activation_checkpointing(model, checkpoint_wrapper_fn=partial(checkpoint_wrapper,
    checkpoint_impl=CheckpointImpl.REENTRANT), check_fn=...)` runs on the FSDP model after the wrap, and its
    `_recursive_wrap(..., only_wrap_children=True)` replaces each unit's wrapped LlamaDecoderLayer, so the units are
    FSDP(CheckpointWrapper(layer)): the unit's pre-forward runs once, in the forward with gradients on, and registers
    the reshard-only hook on the previous unit's output (not a leaf: the hook keeps its grad_fn, which holds no
    gradient; `register_multi_grad_hook` drops its buffer once its one tensor's gradient arrives), and the reentrant
    backward reruns the inner layer alone, whose nested units (peft's adapters) are trainable and hook their flat
    parameters. Only the first layer's input, the embeddings' output that `enable_input_require_grads` makes a leaf,
    keeps an accumulator: one hidden-sized tensor, not counted."""
    return (a.num_layers - 1) * a.hidden_size * ACT_BYTES / t


def pipelining_held(a: ModelArch, tr: Training, layout: Layout) -> tuple[int, int]:
    """Bytes torch.distributed.pipelining (torchtitan's pipeline parallel) keeps on the (first, last) stage beside the
    activations, for `pipeline` micro-batches a step (torchtitan's default, pipeline_parallel_microbatches unset),
    read in torch 2.6's pipelining/stage.py and schedules.py:
    - `PipelineStage._prepare_backward_infra` allocates a gradient receive buffer for every micro-batch's output on
      every stage but the last, and `_prepare_forward_infra` an input receive buffer for every micro-batch on every
      stage but the first (`_make_tensor_from_meta`), once, kept across steps;
    - `forward_one_chunk` appends each micro-batch's output to `output_chunks`, which `clear_runtime_states` empties
      only at the next step's start (`PipelineScheduleSingle.step`, which merges them on the last stage): every
      micro-batch's stage output is kept through the step. A stage's output is its last block's, a 16-bit
      [micro-batch, sequence / tensor, hidden] tensor under torchtitan's sequence parallel; the last stage's is the
      16-bit logits (vocabulary over tensor under loss parallel), beside the loss buffers of the one in its
      backward.
    So the first stage holds 2 x pipeline outputs (gradient buffers and output chunks), the last stage pipeline
    input buffers and pipeline micro-batches' 16-bit logits."""
    m, t = layout.pipeline, layout.tensor
    tokens = _tokens(tr)
    block_output = tokens * a.hidden_size * ACT_BYTES // (t if sequence_parallel(tr, t) else 1)
    logits = tokens * a.vocab_size * ACT_BYTES // (t if loss_parallel(tr, t) else 1)
    return 2 * m * block_output, m * block_output + m * logits
