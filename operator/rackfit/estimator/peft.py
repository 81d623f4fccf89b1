"""The Hugging Face transformers path's optimizer step against the caching allocator (issue 22): which of
foreach AdamW's per-parameter temporaries the blocks the backward freed cannot hold.

torch.optim.AdamW built with neither `foreach` nor `fused` (PEFT's MetaMathQA run.py, accelerate's and most custom
loops; torch/optim/optimizer.py `_default_to_fused_or_foreach` picks foreach on CUDA) steps every parameter of a
group at once: torch/optim/adam.py `_multi_tensor_adam` makes `exp_avg_sq_sqrt = torch._foreach_sqrt(...)`, one
tensor the size of each parameter's state, all alive together (training.step_temporary_bytes counts them). The
caching allocator (c10/cuda/CUDACachingAllocator.cpp `malloc`) serves each from the smallest cached free block at
least as large (`get_free_block`), splitting it, and calls cudaMalloc for a new segment only where no cached block is
large enough. After a single GPU's backward the cached blocks are the freed activations: per layer, tensors of
tokens x width elements (the micro-batch's tokens times the hidden size, the MLP's intermediate size or the
attention's query width), in the activations' 16-bit dtype. A parameter's temporary larger than the largest of them
-- an MLP matrix's (hidden x intermediate) when the micro-batch holds fewer tokens than the hidden size, or the
embedding's (vocab x hidden) -- cannot be carved from them and takes a new segment beside them: the reservation at
the step is the backward's plus those temporaries. The loss's large blocks (the vocabulary-wide logits) are taken
by the gradients first, which the backward allocates before the step (best fit: the MLP weights' gradients where the
per-layer blocks are too small).
"""

from __future__ import annotations

from rackfit.estimator.params import ParamCounts, lora_projections
from rackfit.estimator.result import Layout
from rackfit.estimator.training import adamw_foreach, kbit_fp32_residual
from rackfit.models import ModelArch
from rackfit.spec import LORA_TARGETS, Training

ACT_BLOCK_BYTES = 2  # the activations' 16-bit dtype (bf16/fp16 compute)


def largest_layer_block(a: ModelArch, tr: Training) -> int:
    """Bytes of the largest per-layer activation tensor the backward frees: tokens of the micro-batch times the widest
    of the hidden size, the dense MLP's intermediate size and the attention's query width, in 16 bits."""
    widest = max(a.hidden_size, a.intermediate_size, a.query_width)
    return tr.micro_batch_size * tr.sequence_length * widest * ACT_BLOCK_BYTES


def trained_matrices(a: ModelArch, tr: Training) -> list[tuple[int, int]]:
    """(elements, count) of each trained tensor's shape on one GPU: a full fine-tune's projections (every layer's q,
    k, v, o and the MLP's), the embedding and, untied, the head; LoRA's A (rank x in) and B (out x rank) for each
    adapted projection (peft/tuners/lora/layer.py `update_layer`). Norm weights are too small to matter."""
    L = a.num_layers
    if tr.method != "full":
        out = []
        for i, o in lora_projections(a, tr.targets):
            out += [(tr.rank * i, L), (o * tr.rank, L)]
        return out
    widths = lora_projections(a, frozenset(LORA_TARGETS))
    out = [(i * o, L) for i, o in widths]
    out.append((a.vocab_size * a.hidden_size, 1 if a.tie_word_embeddings else 2))
    return out


def unfit_step_temporaries(a: ModelArch, tr: Training, layout: Layout, state_bytes: int) -> int:
    """Bytes of foreach AdamW's step temporaries (one per trained tensor, `state_bytes` an element) that no block the
    backward freed can hold, under framework transformers on one GPU (a dense model, no tensor or pipeline split):
    those tensors whose temporary is larger than `largest_layer_block`. 0 for a fused AdamW, whose kernel updates in
    place, and for other optimizers."""
    if tr.framework != "transformers" or tr.optimizer != "adamw" or not adamw_foreach(tr):
        return 0
    if layout.total_gpus != 1 or a.is_moe:
        return 0
    block = largest_layer_block(a, tr)
    # before PyTorch 2.1 each parameter has two such temporaries, both alive (Training.foreach_adamw_intermediates)
    return tr.foreach_adamw_intermediates * sum(n * count * state_bytes for n, count in trained_matrices(a, tr)
                                                if n * state_bytes > block)


# --- bitsandbytes bases under peft's prepare, by release (issue 22: the 4-bit blog's T4 table) -------------

# transformers 4.36.0 (December 11, 2023) is the first release contemporary with TRL 0.7.5 (December 22, 2023), whose
# SFTTrainer casts the embeddings and head that peft's prepare upcast back to bf16 -- for a 4-bit base under --bf16 only
# (trl/trainer/sft_trainer.py: `if args.bf16 and getattr(model, "is_loaded_in_4bit", False):
# peft_module_casting_to_bf16(model)`; trl/trainer/utils.py, TRL PR 1110). A job naming an older transformers release
# (`training.transformersVersion`) ran a TRL without it.
TRL_CASTS_VOCAB_BACK = (4, 36)


def kbit_fp32_vocab_bytes(p: ParamCounts, tr: Training, precision: str) -> int:
    """Bytes that peft's prepare adds to a bitsandbytes base's weights by keeping the parameters it does not
    quantize -- the input embedding, the (untied) LM head and the norms -- in fp32 rather than the checkpoint's 16
    bits: 2 bytes each. peft's `prepare_model_for_int8_training` (peft 0.3.0, src/peft/utils/other.py) and
    `prepare_model_for_kbit_training` (peft main from PR 476, May 20, 2023; 0.4.0 on) run `param.data =
    param.data.to(torch.float32)` on every fp16/bf16 parameter. Counted where rackfit counts peft's fp32 residual
    (training.kbit_fp32_residual: QLoRA or LoRA on an int8 base under transformers): for an 8-bit base always (TRL
    never casts it back), for a 4-bit base where the job names a transformers release before 4.36.0
    (TRL_CASTS_VOCAB_BACK); a current 4-bit run is taken as TRL's --bf16 one, whose head and embeddings are bf16,
    unless training.mixedPrecision says --fp16 or neither flag: TRL casts them back under args.bf16 only
    (trl/trainer/sft_trainer.py of 0.9.6, `if args is not None and args.bf16 and getattr(model,
    "is_loaded_in_4bit", False) and not is_sharded_qlora: peft_module_casting_to_bf16(model)`), so they stay fp32."""
    if not kbit_fp32_residual(tr, precision):
        return 0
    v = tr.transformers_version
    current = v is None or tuple(int(x) for x in v.split(".")) >= TRL_CASTS_VOCAB_BACK
    if tr.method == "qlora" and current and tr.mixed_precision in (None, "bf16"):
        return 0
    return 2 * (p.embedding + p.lm_head + p.norms)


def kbit_fp32_head_cast_bytes(a: ModelArch, p: ParamCounts, tr: Training, precision: str) -> int:
    """Bytes of the 16-bit copy of the fp32 LM head that autocast makes in every forward where peft's prepare keeps the
    head fp32 (kbit_fp32_vocab_bytes) and the Trainer runs autocast (mixedPrecision fp16 or bf16, not "no").
    PyTorch's autocast caches a cast only for a weight that requires grad (aten/src/ATen/autocast_mode.cpp
    `cached_cast`: `can_try_cache = (to_type == get_lower_precision_fp_from_device_type(device_type) &&
    arg.scalar_type() == at::kFloat && arg.requires_grad() && arg.is_leaf() ...)`, else `arg.to(to_type)`); the
    frozen head is cast afresh, and the linear saves that copy for its input's gradient (the hidden states require
    grad: peft's enable_input_require_grads and the adapters). It lives from the head's forward through the loss to
    the head's backward: the loss's peak. The fp32 embedding and norms make no copy (embedding and the eager RMSNorm
    are not autocast ops)."""
    if tr.mixed_precision == "no" or not kbit_fp32_vocab_bytes(p, tr, precision):
        return 0
    return 2 * a.vocab_size * a.hidden_size


def kbit_vocab_recast_bytes(p: ParamCounts, tr: Training, precision: str) -> int:
    """Bytes the caching allocator holds free at load where the trainer casts the fp32 embeddings, head and norms of a
    bitsandbytes base back to 16 bits (training.kbitNormsFp32 false): the fp32 copies' blocks. axolotl (loaders/
    model.py `_configure_embedding_dtypes` at c11938233 and 753906cfc; utils/models.py `load_model` at 682a9cf79), on a
    model it does not shard, first runs `module.to(torch.float32)` on every module named like a norm or an embedding
    (`before_kbit_train_or_finetune=True`), then peft's prepare_model_for_kbit_training casts the remaining 16-bit
    parameters to fp32, then `should_convert` casts the norms, embeddings and head back to the 16-bit dtype. All fp32
    copies are alive at once (4 bytes a parameter, each a new block: the freed 16-bit blocks are half their size);
    the cast back reuses the freed 16-bit blocks and frees the fp32 ones into the cache. axolotl's log resets the peak
    at "after adapters" (utils/bench.py `gpu_memory_usage_all`: max_memory_reserved, then reset_peak_memory_stats)
    before its `torch.cuda.empty_cache()`, so its first step's memory/device_reserved still holds them."""
    kbit = tr.method == "qlora" or (tr.method == "lora" and precision == "int8")
    if tr.framework != "transformers" or not kbit or tr.zero_stage >= 3 or tr.kbit_norms_fp32 is not False:
        return 0
    return 4 * (p.embedding + p.lm_head + p.norms)


# bitsandbytes' autograd functions dequantize the whole frozen matrix for the input's gradient in each backward
# (bitsandbytes/autograd/_functions.py, 0.39.0 of May 2023 and every later release):
# - MatMul4Bit.backward: `torch.matmul(grad_output, F.dequantize_4bit(B, ctx.state).to(grad_output.dtype).t())` --
#   the matrix in the dtype it was quantized from (quant_state's dtype, the checkpoint's 16 bits); a second 16-bit
#   copy when the compute dtype differs from it (bf16 compute over an fp16 checkpoint, which the spec cannot say:
#   not counted).
# - MatMul8bitLt.backward (Linear8bitLt with has_fp16_weights=False, the LLM.int8 base transformers loads): on GPUs
#   with int8 tensor cores (supports_igemmlt, Turing and later) the weight is held in the tiled layout (state.CxB) after
#   the first forward, so `undo_layout(state.CxB, state.tile_indices).to(ctx.dtype_A).mul_(SCB / 127)`: a row-major
#   int8 copy (1 byte an element) alive while `.to` makes the dequantized matrix in the input's dtype -- fp32 under
#   peft's fp32 residual (kbit_fp32_residual), else 16 bits. (0.39.0's `undo_layout` itself peaks at two int8 copies,
#   `empty_like` and the `.contiguous()` of the permuted view, less than that.) Read in 0.39.0 and 0.43 (June 2024);
#   a release that keeps the row-major `state.CB` runs `state.CB.to(ctx.dtype_A, copy=True)` without the int8 copy,
#   1 byte an element less than counted here.
# One matrix at a time: the largest, a dense MLP projection (hidden x intermediate), at the start of its layer's
# backward, beside everything that layer keeps.
BNB4_DEQUANT_BYTES = 2


def bnb_backward_dequant_bytes(a: ModelArch, tr: Training, precision: str, layout: Layout) -> int:
    """Bytes of the dequantized copy of the largest frozen bitsandbytes matrix that one layer's backward makes
    (above) under framework transformers on one unsharded GPU: QLoRA over nf4/int4 (MatMul4Bit) or LoRA over an int8
    base (MatMul8bitLt); 0 otherwise."""
    if tr.framework != "transformers" or tr.method == "full" or tr.zero_stage >= 3:
        return 0
    if layout.tensor * layout.pipeline != 1:
        return 0
    if a.is_moe and not a.first_dense_layers:
        inter = a.moe_intermediate_size  # every layer's MLP is its experts (bitsandbytes Linear4bit per expert)
    else:
        inter = max(a.intermediate_size, a.moe_intermediate_size if a.is_moe else 0)
    largest = a.hidden_size * max(inter, a.query_width, a.hidden_size)
    if precision in ("nf4", "int4") and tr.method == "qlora":
        return largest * BNB4_DEQUANT_BYTES
    if precision == "int8" and tr.method == "lora":
        a_bytes = 4 if kbit_fp32_residual(tr, precision) else 2
        return largest * (1 + a_bytes)
    return 0
