"""Training runtimes other than Hugging Face transformers: what FSDP2, DeepSpeed ZeRO and Megatron-LM
keep on each GPU during a step. `_training` in estimator/__init__.py calls `runtime_peak` for
`spec.training.framework` fsdp, deepspeed and megatron; `transformers` keeps the H200-calibrated model.

Each runtime differs from transformers' autocast-over-fp32 regime in its own mechanisms, each taken
from the runtime's source (cited where used):
- mixed precision: a bf16 compute copy of the weights (FSDP2 gathers it per layer; DeepSpeed and
  Megatron cast the module) beside fp32 master weights held by the optimizer, sharded; no autocast
  copies and no fp32 residual stream;
- what each checkpointing policy saves (torchtitan's per-op SAC; Megatron's core-attention recompute;
  Korthikanti et al. activations per layer with tensor and sequence parallelism);
- the loss (fp32 log-softmax as torch computes it; Megatron's in-place vocab-parallel softmax);
- the transient buffers of each sharding scheme (FSDP2's gathered layers, ZeRO-3's live parameters,
  prefetch and reduce buckets, DeepSpeed's fp32 gradient partition at the step);
- the pipeline schedule (1F1B: the first stage holds `pipeline` micro-batches);
- optimizer step temporaries (foreach vs fused AdamW: training.py).
Pure: bytes in, bytes out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rackfit.estimator.activations import (
    ACT_BYTES,
    COMPILED_NORM_BYTES_PER_H,
    FUSED_NORM_BYTES_PER_H,
    NORM_BYTES_PER_H,
    SHIFT_COPY_BYTES,
    _dims,
    _layer_bytes_per_token,
    compile_savings,
    kept_input_layers,
    lora_dropout_bytes,
)
from rackfit.estimator.params import ParamCounts
from rackfit.estimator.result import Layout
from rackfit.estimator.training import largest_parameter, lora_params, optimizer_state_bytes, step_temporary_bytes
from rackfit.models import ModelArch
from rackfit.spec import Training

# --- DeepSpeed ZeRO defaults (deepspeed/runtime/zero/config.py, DeepSpeedZeroConfig) --------------------
ZERO_MAX_LIVE_PARAMETERS = 1_000_000_000   # stage3_max_live_parameters: gathered elements kept at once
ZERO_PREFETCH_BUCKET = 50_000_000          # stage3_prefetch_bucket_size: elements fetched ahead
ZERO_REDUCE_BUCKET = 500_000_000           # reduce_bucket_size: gradient elements per reduce(-scatter)
ZERO_ALLGATHER_BUCKET = 500_000_000        # allgather_bucket_size (stages 1-2, after the step)
ZERO_SUB_GROUP = 1_000_000_000             # sub_group_size: stage-3 step upcasts one sub-group's grads at a time

# Megatron's hidden dropout (megatron/training/arguments.py --hidden-dropout 0.1): a 1-byte mask after
# the attention projection and after the MLP (Korthikanti et al. 2022, Table 2: 2sbh of the 34sbh).
MEGATRON_DROPOUT_MASK_BYTES = 1


@dataclass(frozen=True)
class RuntimePeak:
    """What is live at the runtime's peak (bytes per GPU), and what the allocator's slack applies to."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    phase: str
    states: int                  # weights, gradients and optimizer states kept between steps
    transient: int               # allocated and freed at the peak phase: max(backward, step)
    backward_transient: int      # activations, loss, gathered weights and buckets of the backward
    step_transient: int          # the optimizer step's temporaries (fp32 partitions, foreach lists)
    expandable_segments: bool    # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True set by the runtime
    # of backward_transient, the gathered parameters that strand no allocator slack (fsdp_gathered_reuse)
    reused: int = 0
    load: int = 0                # FSDP1's wrap: what is allocated at its peak (fsdp1_wrap_peak), 0 elsewhere
    load_cached: int = 0         # and what the allocator holds free beside it then


# --- activations ----------------------------------------------------------------------------------------

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
    return tr.framework == "fsdp" and tr.fsdp == 2


def sequence_parallel(tr: Training, t: int) -> bool:
    """Tensor parallel under fsdp splits the norms and the residual over the sequence unless `sequenceParallel: false`:
    torchtitan's plan (torchtitan/models/llama3/infra/parallelize.py, apply_tp: SequenceParallel norms, the block's
    input Shard(1)) and torchtune's (torchtune/models/llama3/_parallelism.py, BASE_LLAMA_TP_TRAINING_PLAN) are;
    transformers' tp_plan (LlamaConfig.base_model_tp_plan: colwise / rowwise linears only, as accelerate applies
    it) is not, so every tensor rank keeps the whole sequence's block inputs and norms. Megatron: its flag."""
    if t == 1:
        return False
    if tr.framework == "fsdp":
        return tr.sequence_parallel is not False
    return bool(tr.sequence_parallel)


def loss_parallel(tr: Training, t: int) -> bool:
    """fsdp under tensor parallel keeps the logits split over the vocabulary unless `lossParallel: false`: torchtitan's
    "output" is ColwiseParallel(output_layouts=Shard(-1)) with the loss in loss_parallel() (disable_loss_parallel
    false by default); torchtune's training plan gathers it (ColwiseParallel(input_layouts=Shard(1),
    output_layouts=Replicate())) and transformers' lm_head is "colwise_rep": the whole vocabulary on every rank."""
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
    return per


def compiled_layer_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """As eager, under torch.compile (activations.compile_savings: each norm keeps its 16-bit input and output, the
    fp32 upcast and SwiGLU's act(gate) are recomputed). Under torchtitan's tensor parallel the saved norm outputs
    are the gathered whole-sequence tensors (the all-gather is not recomputable either), not a t-th of them; without
    sequence parallel the norms' inputs are whole too (COMPILED_NORM_BYTES_PER_H: input and output)."""
    per = _layer_bytes_per_token(a, tr, t, mixed=False)[0] - compile_savings(a, t)
    if torchtitan(tr) and t > 1:
        whole = NORM_OUTPUT_BYTES_PER_H if sequence_parallel(tr, t) else COMPILED_NORM_BYTES_PER_H
        per += whole * a.hidden_size * (1 - 1 / t)
    return per


def layer_bytes(a: ModelArch, tr: Training, t: int) -> float:
    return compiled_layer_bytes(a, tr, t) if tr.compile else eager_layer_bytes(a, tr, t)


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
    q, kv = _dims(a)
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


def megatron_layer_bytes(a: ModelArch, tr: Training, t: int, sp: bool) -> tuple[float, float]:
    """(bytes one layer keeps per token, of which core attention alone keeps) in Megatron-Core with
    Transformer Engine and flash/fused attention: Korthikanti et al. 2022 (arXiv 2205.05198) eq. 2 and 4,
    sbh(10 + 24/t + 5as/(ht)) with sequence parallel dividing the 10 by t too; the 5as/(ht) score terms
    vanish with flash attention (q, k, v, the output and the softmax statistics are kept). Generalised to
    GQA and SwiGLU: replicated: two norm inputs (2 x 2h), the QKV input (2h), the fc1 input (2h), two
    dropout masks (2 x 1h); split over t: q, k, v (2q + 2kv), the attention output (2q, the projection's
    input), fc1 output and activation output. Recomputing core attention (selective) still keeps its
    inputs q, k, v (the checkpoint's) and its output (the projection's): only the per-head fp32 softmax
    statistics go."""
    h = a.hidden_size
    q, kv = _dims(a)
    fc1, inter = _mlp_widths(a)
    replicated = ACT_BYTES * (2 * h + h + h) + 2 * MEGATRON_DROPOUT_MASK_BYTES * h
    lse = 4 * a.num_attention_heads  # fp32 log-sum-exp per head
    split = ACT_BYTES * (2 * q + kv) + lse + ACT_BYTES * (fc1 + inter)
    per = (replicated / t if sp else replicated) + split / t
    return per, lse / t


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


def _pipeline(kept_per: float, tokens: int, L: int, pipeline: int, loss: tuple[int, int], stage: str,
              virtual: int = 1, held: tuple[int, int] = (0, 0), recompute: int = 0) -> tuple[int, int, int]:
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
    state: the last stage holds (virtual - 1) pipeline + 1 chunks' activations, the first 2 (pipeline - 1) more
    (fewer when the step has fewer micro-batches than that, which the spec does not say: the upper bound).
    `held`: what the runtime's schedule keeps beside the activations on the (first, last) stage (fsdp:
    torch.distributed.pipelining's buffers and output chunks), counted with the kept activations. "max" compares
    each end stage at its own peak: the first's kept activations and a layer's recompute, the last's and the larger
    of its loss and a recompute."""
    fwd, bwd = loss
    if pipeline == 1:
        return int(L * kept_per * tokens), fwd, bwd
    stage_layers = math.ceil(L / pipeline)
    if virtual > 1:
        chunk_layers = stage_layers / virtual
        first = int((2 * (pipeline - 1) + (virtual - 1) * pipeline + 1) * chunk_layers * kept_per * tokens)
        last = int(((virtual - 1) * pipeline + 1) * chunk_layers * kept_per * tokens)
    else:
        first = int(stage_layers * pipeline * kept_per * tokens)
        last = int(stage_layers * kept_per * tokens)
    first, last = first + held[0], last + held[1]
    if stage == "first" or (stage == "max" and first + recompute >= last + max(fwd, bwd, recompute)):
        return first, 0, 0
    return last, fwd, bwd


def runtime_activations(a: ModelArch, tr: Training, layout: Layout, stage: str = "max") -> Activations:
    """Activations of the most loaded pipeline stage (`stage` "max"), or of the "first" or "last" one
    (Megatron logs its last rank's memory)."""
    t, tokens, L = layout.tensor, _tokens(tr), a.num_layers
    ckpt = tr.activation_checkpointing
    frozen_fsdp1_units = tr.framework == "fsdp" and tr.fsdp == 1 and tr.method != "full" and ckpt == "full"
    if tr.framework == "megatron":
        sp = sequence_parallel(tr, t)
        per, core = megatron_layer_bytes(a, tr, t, sp)
        if ckpt == "full":  # --recompute-granularity full --recompute-method uniform: each layer's input
            kept_per, recompute = ACT_BYTES * a.hidden_size / (t if sp else 1), per
        elif ckpt == "selective":  # --recompute-granularity selective (core_attn): flash keeps no scores
            # the recomputed output lives only within its layer's backward, like the activation gradients
            # not counted without checkpointing either
            kept_per, recompute = per - core, 0.0
        else:
            kept_per, recompute = per, 0.0
        # megatron/core/tensor_parallel/cross_entropy.py: logits.float(), then exp/div in place; the
        # softmax is reused as the gradient in place, cast back to 16-bit: 2 + 4 bytes each way
        kept, fwd, bwd = _pipeline(kept_per, tokens, L, layout.pipeline, _loss(a, tr, t, 2 + 4, 4 + 2), stage,
                                   tr.virtual_stages or 1)
        return Activations(kept, int(recompute * tokens), fwd, bwd)
    dropout = 0.0
    if tr.framework == "fsdp" and tr.method != "full" and tr.master_weights == "none":
        # 16-bit adapters in a 16-bit model: peft's cast of each adapted input to the adapters' fp32 dtype
        # (LORA_INPUT_BYTES) does not happen; lora_a saves the same input tensor the base linear received
        # (torchtune/modules/peft/lora.py, LoRALinear.forward; lora_dropout 0.0 is nn.Identity), which a
        # full fine-tune keeps too, and lora_b's rank-wide input is negligible; a dropout's copy is 16-bit.
        dropout = lora_dropout_bytes(a, tr, ACT_BYTES) / t
        tr = tr.model_copy(update={"method": "full"})
    per = layer_bytes(a, tr, t) + dropout
    if ckpt == "full":  # each block's input: split over the sequence, or whole without sequence parallel
        split = t if tr.framework != "fsdp" or t == 1 or sequence_parallel(tr, t) else 1
        kept_per, recompute = ACT_BYTES * a.hidden_size / split, per
    elif ckpt == "selective" and torchtitan(tr):
        kept_per = torchtitan_sac_bytes(a, tr, t)
        recompute = max(per - kept_per, 0.0)
    elif ckpt == "selective":  # DeepSpeed, FSDP1 with transformers models: Korthikanti's attention recompute
        _, attention = _layer_bytes_per_token(a, tr, t, mixed=False)
        kept_per, recompute = per - attention, attention
    else:
        kept_per, recompute = per, 0.0
    if frozen_fsdp1_units:
        recompute += fsdp1_held_input_grads(a, t)
    # the logits on this rank: split over the vocabulary, or gathered whole without loss parallel (fsdp)
    vocab_split = t if tr.framework != "fsdp" or loss_parallel(tr, t) else 1
    if tr.loss_compiled:
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
    else:
        # torch cross_entropy(logits.float()): bf16 logits, fp32 copy, fp32 log-softmax (forward); saved
        # log-softmax, nll's gradient, log-softmax's gradient (backward) (torchtitan/components/loss.py).
        # FSDP1 over transformers models before 4.49: ForCausalLMLoss's shifted fp32 copy too (SHIFT_COPY_BYTES)
        shift_copy = SHIFT_COPY_BYTES if tr.copies_shifted_logits and (tr.loss_chunks or 1) == 1 else 0
        loss = _loss(a, tr, vocab_split, 2 + 4 + 4 + shift_copy, 4 + 4 + 4)
    if tr.loss_chunk_backward:
        loss = chunk_backward_loss(a, tr, vocab_split)
    if torchtitan(tr):
        # the final norm's output, a new tensor (nn.RMSNorm) that the output projection saves for its backward: under
        # torchtitan's tensor parallel the whole sequence on every rank (apply_tp: "output" is ColwiseParallel with
        # input_layouts=Shard(1), so its input is all-gathered), alive through the loss forward and backward
        final = tokens * a.hidden_size * ACT_BYTES
        loss = loss[0] + final, loss[1] + final
    held = (0, 0)
    if tr.framework == "fsdp" and layout.pipeline > 1:
        held = pipelining_held(a, tr, layout)
    # torchtune's activation offloading keeps only its forward stash of checkpointed inputs (activations.py)
    kept_layers = kept_input_layers(tr, L) if ckpt == "full" and layout.pipeline == 1 else L
    kept, fwd, bwd = _pipeline(kept_per, tokens, kept_layers, layout.pipeline, loss, stage, held=held,
                               recompute=int(recompute * tokens))
    return Activations(kept, int(recompute * tokens), fwd, bwd)


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
    fine-tune) registers its hook on the flat parameter instead and keeps nothing."""
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


# --- model states and sharding buffers ------------------------------------------------------------------

def _largest_layer_params(a: ModelArch, p: ParamCounts) -> int:
    return max(p.total - 2 * p.embedding, 0) // max(a.num_layers, 1)


def stage_params(a: ModelArch, p: ParamCounts, tr: Training, pipeline: int) -> int:
    """Parameters of the most loaded pipeline stage (before the tensor split). Megatron builds the embedding on
    the first stage and the output layer on the last (megatron/core/models/gpt/gpt_model.py: `pre_process` /
    `post_process`; with tied weights the last stage keeps its own copy of the word embeddings,
    `shared_embedding_or_output_weight`), and torchtitan's pipeline split does the same (the embeddings in the
    first stage's module, the norm and output in the last's): each end stage holds its ceil(L / pipeline) layers
    and one vocabulary matrix, not a pipeline-th of the whole model. DeepSpeed's PipelineModule partitions its
    layers by parameter count (deepspeed/runtime/pipe/module.py, partition_method "parameters"): an even split."""
    if pipeline == 1:
        return p.total
    if tr.framework not in ("megatron", "fsdp"):
        return p.total // pipeline
    layers = p.total - p.embedding - p.lm_head
    return math.ceil(a.num_layers / pipeline) * layers // max(a.num_layers, 1) + max(p.embedding, p.lm_head)


def frozen_layer_bytes(a: ModelArch, p: ParamCounts, frozen_weight_bytes: int, t: int) -> int:
    """Bytes of one decoder layer of the frozen base on this tensor rank, as stored (16-bit, or 4-bit with
    scales for QLoRA): the weights less the 16-bit embeddings and output, over the layers."""
    vocab = (p.embedding + p.lm_head) * ACT_BYTES // t
    return max(frozen_weight_bytes - vocab, 0) // max(a.num_layers, 1)


def largest_matrix(a: ModelArch) -> int:
    """Elements of the largest linear weight of a decoder layer (an MLP matrix, or the query projection)."""
    inter = a.moe_intermediate_size if a.is_moe else a.intermediate_size
    q, _ = _dims(a)
    return a.hidden_size * max(inter, q)


def adapter_bytes(tr: Training, compute_bytes: int) -> int:
    """Bytes per LoRA adapter element. fsdp: `masterWeights` says the adapters' dtype: torchtune builds the
    whole model, adapters included, in the recipe's dtype (`dtype: bf16`, torchtune/training/precision.py
    set_default_dtype), so `none` keeps them, their gradients and AdamW states 16-bit; peft upcasts adapters
    to fp32 (peft/tuners/lora/layer.py, autocast_adapter_dtype=True), which `fp32` (the default) means.
    Other runtimes: peft's fp32."""
    if tr.framework == "fsdp" and tr.master_weights == "none":
        return compute_bytes
    return 4


def runtime_peak(a: ModelArch, p: ParamCounts, tr: Training, precision: str, layout: Layout,
                 frozen_weight_bytes: int, stage: str = "max") -> RuntimePeak:
    """The step's peak per GPU for framework fsdp, deepspeed or megatron (`stage`: runtime_activations)."""
    act = runtime_activations(a, tr, layout, stage)
    full = tr.method == "full"
    mixed = full and tr.master_weights == "fp32"
    t, pp, d = layout.tensor, layout.pipeline, layout.data
    compute_bytes = 4 if precision == "fp32" else 2   # the 16-bit compute copy (fp32 stays fp32)
    state_bytes = 4 if mixed or precision == "fp32" else 2
    n = stage_params(a, p, tr, pp) // t if full else lora_params(a, tr) // (t * pp)
    layer = _largest_layer_params(a, p) // t
    output = p.embedding // t  # the output projection's parameters on this rank
    if not full:
        state_bytes = adapter_bytes(tr, compute_bytes)
    optimizer = optimizer_state_bytes(tr, n, state_bytes, a)
    masters = n * 4 if mixed else 0
    fw = tr.framework
    gathered = buckets = step_extra = load = load_cached = 0
    if fw == "fsdp":
        # FSDP2 (torch/distributed/fsdp/_fully_shard): parameters, gradients and optimizer states are all
        # sharded over `data`; with MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) the sharded
        # parameters are the fp32 masters and each block's bf16 copy is all-gathered before use and freed
        # after (reshard_after_forward=True), the next block prefetched: two blocks in flight. The root
        # (embeddings, output) is gathered for the loss; its gradients wait for the end of the backward.
        if full and tr.fsdp == 1:
            # FSDP1 (torch/distributed/fsdp/_flat_param.py, _runtime_utils.py): one FlatParameter per wrapped unit
            # (each decoder layer under accelerate's TRANSFORMER_BASED_WRAP; the root holds the embeddings, final
            # norm and output). The unit's sharded flat parameter is cast to the 16-bit MixedPrecision param_dtype
            # (_mp_shard, freed after the all-gather) and all-gathered into _full_param_padded. limit_all_gathers
            # (_limiter_utils._FreeEventQueue, _max_num_inflight_all_gathers = 2) keeps at most two units gathered
            # ahead of their free; the backward's BACKWARD_PRE prefetch holds the current and the next unit. The
            # root is not resharded after the forward (_post_forward_reshard: `not state._is_root`), so the
            # embeddings and output stay gathered to the end of the backward, and the root's flat gradient
            # (output first, embeddings last) is reduced only when the whole unit's gradient is ready. Each
            # unit's unsharded gradient is in the param dtype and reduce-scattered in the reduce dtype
            # (accelerate's MixedPrecision: param, reduce and buffer dtype all bf16), then cast to the fp32
            # shard (_cast_grad_to_param_dtype).
            weights = n * state_bytes // d
            grads = n * state_bytes // d
            optimizer //= d
            root = (p.embedding + p.lm_head) // t
            gathered = 2 * layer * compute_bytes + layer * compute_bytes // d + root * compute_bytes
            buckets = layer * compute_bytes + layer * compute_bytes // d + output * compute_bytes
            load, load_cached = fsdp1_wrap_peak(weights, layer * state_bytes, root * state_bytes)
        elif full:
            weights = n * state_bytes // d
            grads = n * state_bytes // d
            optimizer //= d
            reduce_bytes = 4 if mixed else compute_bytes
            if pp > 1:
                # FSDP2 under pipeline stages, as torchtitan applies it (torchtitan/distributed/fsdp.py, apply_fsdp;
                # parallelize_llama.py in 2024): "For PP, do not reshard after forward to avoid per-microbatch
                # all-gathers" (reshard_after_forward = not pp_enabled), so every layer of the stage stays gathered
                # in 16-bit from its first forward to the step. The schedule runs each micro-batch's backward with
                # set_requires_gradient_sync(False) and set_reshard_after_backward(False) until the last one
                # (torch/distributed/pipelining/stage.py, backward_maybe_with_nosync), and FSDP2 keeps those
                # unsharded gradients, cast to the reduce dtype (fp32 with fp32 masters) and accumulated
                # (_fsdp_param.py, to_accumulated_grad_if_needed / accumulate_unsharded_grad_if_needed), for
                # every parameter of the stage until the last micro-batch's reduce-scatter.
                stage_layers = math.ceil(a.num_layers / pp)
                held = 2 if tr.reshard_after_forward else stage_layers  # "always" reshards under PP too
                gathered = held * layer * compute_bytes + output * compute_bytes
                buckets = (stage_layers * layer + output) * reduce_bytes + layer * compute_bytes
            else:
                # reshardAfterForward false (fully_shard(reshard_after_forward=False); torchtitan's
                # fsdp_reshard_after_forward "never", torchtune's and accelerate's fsdp_reshard_after_forward): each
                # block stays gathered from its forward until its backward (FSDPParamGroup.post_forward skips the
                # reshard; post_backward reshards, reshard_after_backward=True), so the backward starts with every
                # block's 16-bit copy on the GPU, not two
                held = 2 if tr.reshard_after_forward is not False else a.num_layers
                gathered = held * layer * compute_bytes + output * compute_bytes
                buckets = layer * (compute_bytes + reduce_bytes) + output * compute_bytes
        else:
            # LoRA/QLoRA under FSDP2 (torchtune's lora_finetune_distributed, torchtune/training/_distributed.py
            # shard_model: fully_shard per decoder layer, then the root): the frozen base and the adapters
            # are parameters of the same layer, so both are sharded over `data`; the base gets no gradient,
            # no master and no optimizer state (the optimizer is built over the adapters only). The base is
            # all-gathered in the dtype it is stored in: 16-bit for LoRA; for QLoRA, torchao's NF4Tensor
            # (torchao/dtypes/nf4tensor.py, fsdp_pre_all_gather/fsdp_post_all_gather) gathers its 4-bit data
            # and scales, and LinearNF4 dequantizes one matrix at a time (`weight.to(input.dtype)`, freed
            # after the matmul, again in the backward). Embeddings and the output stay 16-bit in the root.
            weights = frozen_weight_bytes // d + n * state_bytes // d
            grads = n * state_bytes // d
            optimizer //= d
            stored_layer = frozen_layer_bytes(a, p, frozen_weight_bytes, t)
            # FSDP1 (peft + accelerate's FSDP plugin) keeps its root unit, embeddings and output, unsharded from the
            # forward to the end of the backward (_runtime_utils._post_forward_reshard: not for the root), as for a
            # full fine-tune; FSDP2 gathers the output for the loss
            root = output if tr.fsdp == 2 else (p.embedding + p.lm_head) // t
            gathered = 2 * stored_layer + root * compute_bytes
            if tr.fsdp == 1:
                load, load_cached = fsdp1_wrap_peak(weights, stored_layer, root * compute_bytes)
            if tr.method == "qlora":
                gathered += largest_matrix(a) // t * compute_bytes
        trainable_here = n // d
    elif fw == "deepspeed":
        # DeepSpeed builds its ZeRO optimizer for any zero stage above 0 whatever the world size (engine.py,
        # _do_optimizer_sanity_check returns ZERO_OPTIMIZATION): ZeRO on one GPU runs its stage, over one partition
        zero = tr.zero_stage
        trainable_here = n
        if full:
            # bf16 module (engine.py casts it) + fp32 master partition in the optimizer
            # (runtime/zero/stage_1_and_2.py single_partition_of_fp32_groups; stage3.py fp32_partitioned_groups_flat)
            weights = n * compute_bytes
            grads = n * compute_bytes
            master = masters if mixed else 0
            if zero == 0:  # bf16_optimizer.py: fp32 gradient accumulation beside the masters
                grads = n * 4 if mixed else grads
                optimizer += master
            else:
                optimizer = (optimizer + master) // d
                trainable_here = n // d
                # the step upcasts the gradient partition to fp32 (stage_1_and_2.py: .float() of the
                # flat partition; stage3.py: one sub_group_size at a time)
                part = n // d
                step_extra = min(part, ZERO_SUB_GROUP) * 4 if zero == 3 else part * 4
            if zero >= 2:
                grads //= d
            if zero >= 3:
                weights //= d
        else:
            weights = frozen_weight_bytes + n * state_bytes
            grads = n * state_bytes
            if zero >= 1:
                optimizer //= d
            if zero >= 2:
                grads //= d
            if zero >= 3:
                weights = (frozen_weight_bytes + n * state_bytes) // d
        reduce_bucket = tr.reduce_bucket_size or ZERO_REDUCE_BUCKET
        if zero == 3:
            # stage3.py (DeepSpeedZeroOptimizer_Stage3.__init__): with contiguous_gradients (DeepSpeed's default) one
            # IPG bucket of reduce_bucket_size elements per communication dtype (the model's 16-bit dtype unless
            # communication_data_type says otherwise, engine.py) is allocated with torch.empty when the optimizer is
            # built and kept for the run: the gradients are copied into it and reduce-scattered from it. Kept
            # between steps, whatever the model's size; beside it one layer's unpartitioned gradients as autograd
            # makes them.
            ipg = reduce_bucket * compute_bytes
            grads += ipg
            buckets = layer * compute_bytes
        elif zero >= 1:
            # reduce_bucket_size elements of 16-bit gradients per reduce (stage 1-2: the ipg bucket), beside one
            # layer's unpartitioned gradients as autograd makes them
            buckets = min(reduce_bucket, n) * compute_bytes + layer * compute_bytes
        if zero == 3:
            # gathered parameters: at most stage3_max_live_parameters live, plus the prefetch bucket (parameters
            # fetched ahead of their module), and never more than the whole model's 16-bit weights
            gathered = min(ZERO_MAX_LIVE_PARAMETERS + ZERO_PREFETCH_BUCKET, p.total) * compute_bytes
            if tr.activation_checkpointing != "full":
                # torch's linear saves `weight.t()` for its backward, a view that keeps the gathered storage
                # after ZeRO-3 frees the parameter (param.data = empty): every layer's 16-bit weights stay
                # until their backward. DeepSpeed's LinearFunctionForZeroStage3 (runtime/zero/linear.py),
                # which saves the parameter itself, replaces F.linear when a zero.Init context is entered
                # (runtime/zero/partition_parameters.py, patch_init_and_builtins; it then persists), not for
                # a model built outside zero.Init and handed to deepspeed.initialize: counted as the latter
                # (the upper bound). A checkpointed layer saves nothing but its input.
                gathered = max(gathered, p.total // (t * pp) * compute_bytes)
        elif zero in (1, 2):
            step_extra += min(ZERO_ALLGATHER_BUCKET, n) * compute_bytes  # the updated partitions' all-gather
    else:  # megatron
        # Megatron-Core DDP (megatron/core/distributed/param_and_grad_buffer.py): bf16 parameters in one
        # buffer, gradients in an fp32 buffer (--accumulate-allreduce-grads-in-fp32 is set with --bf16,
        # megatron/training/arguments.py); the distributed optimizer
        # (megatron/core/optimizer/distrib_optimizer.py) shards fp32 main parameters and Adam states over data.
        weights = n * compute_bytes
        grads = n * (4 if mixed else compute_bytes)
        optimizer = (optimizer + masters) // d
        trainable_here = n // d
    # the largest tensor the step holds: as sharded as the trained parameters here
    largest = largest_parameter(a, tr, t * pp) * trainable_here // max(n, 1)
    temp = step_temporary_bytes(tr, trainable_here, state_bytes, largest)
    loss = max(act.loss_backward, act.loss_forward)
    backward_transient = act.kept + max(loss, act.recompute) + gathered + buckets
    step_transient = step_extra + temp
    if backward_transient >= step_transient:
        phase = "loss backward" if loss >= act.recompute else "layer recompute"
        live_act = act.kept + max(loss, act.recompute)
        weights_live, grads_live, opt_live = weights + gathered, grads + buckets, optimizer
        transient = backward_transient
    else:
        phase, live_act = "optimizer step", 0
        weights_live, grads_live, opt_live = weights, grads + step_extra, optimizer + temp
        transient = step_transient
    return RuntimePeak(weights=weights_live, gradients=grads_live, optimizer=opt_live, activations=live_act,
                       phase=phase, states=weights + grads + optimizer, transient=transient,
                       backward_transient=backward_transient, step_transient=step_transient,
                       expandable_segments=expandable_segments(tr), reused=fsdp_gathered_reuse(tr, gathered),
                       load=load, load_cached=load_cached)


def fsdp1_wrap_peak(resident: int, layer_unit: int, root_unit: int) -> tuple[int, int]:
    """FSDP1's wrap of a model that is not yet on the GPU (on CPU, or on meta and materialised by `param_init_fn`,
    as accelerate's and Answer.AI's fsdp_qlora loaders hand it over), unit by unit, children first
    (torch/distributed/fsdp/_init_utils.py, `_init_param_handle_from_module`): the unit's parameters are moved to
    (or materialised on) the GPU (`_move_module_to_device` / `_materialize_with_param_init_fn`), broadcast from rank
    0 with sync_module_states, then flattened into one padded flat parameter (FlatParamHandle.flatten_tensors:
    `torch.cat`, a second unsharded copy) while `managed_params` still holds the originals, and `handle.shard()`
    clones this rank's chunk before it frees the flat storage (`orig_storage._resize_(0)`). So at the root, wrapped
    last, the GPU holds every shard (`resident`) and the root's unsharded parameters twice; the decoder layers'
    blocks of the same two kinds, freed, stay cached (the next layer reused them) until the step.
    Returns (allocated at that peak, cached beside it). `resident`: the sharded states as the step keeps them (no
    gradients or optimizer states yet: torch.optim builds AdamW's lazily)."""
    return resident + 2 * max(root_unit, layer_unit), 2 * min(root_unit, layer_unit)


def fsdp_gathered_reuse(tr: Training, gathered: int) -> int:
    """Bytes of the gathered parameters on which the caching allocator strands no slack: FSDP's, whose unsharded
    storage is freed and re-requested at the same sizes layer after layer, so each request is served by the block the
    previous layer freed. FSDP2 allocates each parameter's all-gather output once (torch/distributed/fsdp/
    _fully_shard/_fsdp_param.py, FSDPParam.init_all_gather_outputs) and frees and re-allocates its storage with
    `free_storage` / `alloc_storage` (`storage.resize_`) at every reshard and unshard; its decoder layers are
    alike, so the sizes repeat. FSDP1 does the same with each unit's padded flat parameter
    (torch/distributed/fsdp/_flat_param.py, FlatParamHandle `_full_param_padded`, `_alloc_storage` /
    `_free_storage`). The allocator's slack shares (estimator/__init__.py, set on the H200 rows, single GPU, where the
    step's transient memory is activations of every size) then apply to the rest of the backward's transient memory.
    DeepSpeed ZeRO-3 gathers parameter by parameter into buffers of varying sizes: no such reuse is assumed."""
    return gathered if tr.framework == "fsdp" else 0


def expandable_segments(tr: Training) -> bool:
    """The spec's expandableSegments, else: torchtitan's launcher (run_train.sh) exports
    expandable_segments:True and per-op SAC (fsdp + selective) is torchtitan's; accelerate and
    torchtune's releases keep PyTorch's default (torchtune's main sets expandable_segments:True when imported since
    June 2025, torchtune/__init__.py, PR 2841: such runs say expandableSegments: true)."""
    if tr.expandable_segments is not None:
        return tr.expandable_segments
    return torchtitan(tr) and tr.activation_checkpointing == "selective"


def runtime_notes(tr: Training, layout: Layout) -> list[str]:
    """What the estimate assumed about the runtime that the spec does not say."""
    if tr.framework == "fsdp" and tr.fsdp == 1:
        return ["fsdp (FSDP1) is modelled as accelerate's FSDP plugin runs it: FullyShardedDataParallel with "
                "transformer-layer wrapping, limit_all_gathers, BACKWARD_PRE prefetch, bf16 MixedPrecision, "
                "transformers' model code and reentrant checkpointing"
                + ("" if tr.expandable_segments else ", PyTorch's default allocator")]
    notes = []
    if tr.framework == "fsdp" and layout.tensor > 1:
        t = layout.tensor
        sp = "sequence parallel norms" if sequence_parallel(tr, t) else "no sequence parallel (whole-sequence norms " \
            "and block inputs on every rank)"
        lp = "loss parallel" if loss_parallel(tr, t) else "the logits gathered to the whole vocabulary on every rank"
        plan = "torchtitan's plan" if sequence_parallel(tr, t) and loss_parallel(tr, t) else "its tensor-parallel plan"
        notes.append(f"fsdp with tensor parallel is modelled as {plan}: {sp}, all-gathered norm outputs, {lp}")
    if tr.framework == "fsdp" and tr.expandable_segments is None:
        if tr.activation_checkpointing == "selective":
            return notes + ["fsdp with selective checkpointing is modelled as torchtitan: per-op SAC, expandable "
                            "segments, foreach AdamW"]
        return notes + ["fsdp is modelled with PyTorch's default allocator and foreach AdamW (torchtune, accelerate "
                        "with FSDP2; set fsdpVersion: 1 for accelerate's default FSDP1); torchtitan exports expandable "
                        "segments (set training.expandableSegments: true), as torchtune's main does since June "
                        "2025, which needs less"]
    if notes:
        return notes
    if tr.framework == "deepspeed" and tr.zero_stage == 3 and layout.data > 1 \
            and tr.activation_checkpointing != "full":
        return ["ZeRO-3 without full checkpointing: every layer's gathered weights are counted until their backward "
                "(a model built outside deepspeed.zero.Init); HF from_pretrained under zero.Init needs less"]
    if tr.framework == "megatron":
        sp = "sequence parallel" if tr.sequence_parallel else "no sequence parallel (sequenceParallel: false)"
        return [f"megatron is modelled with the distributed optimizer, flash attention, hidden dropout and {sp}"]
    return []
