"""The Hugging Face transformers path's optimizer step against the caching allocator (issue 22, acc-h8): which of
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

from rackfit.estimator.params import lora_projections
from rackfit.estimator.result import Layout
from rackfit.estimator.training import adamw_foreach
from rackfit.models import ModelArch
from rackfit.spec import Training

ACT_BLOCK_BYTES = 2  # the activations' 16-bit dtype (bf16/fp16 compute)


def largest_layer_block(a: ModelArch, tr: Training) -> int:
    """Bytes of the largest per-layer activation tensor the backward frees: tokens of the micro-batch times the widest
    of the hidden size, the dense MLP's intermediate size and the attention's query width, in 16 bits."""
    q = a.num_attention_heads * (a.head_dim or a.hidden_size // a.num_attention_heads)
    return tr.micro_batch_size * tr.sequence_length * max(a.hidden_size, a.intermediate_size, q) * ACT_BLOCK_BYTES


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
    widths = lora_projections(a, frozenset({"q", "k", "v", "o", "gate", "up", "down"}))
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
    return sum(n * count * state_bytes for n, count in trained_matrices(a, tr) if n * state_bytes > block)
