"""FSDP's own memory on a rank beside the model states, from torch's source (cited where used): FSDP1's wrap, FSDP2's
all-gather copy-in pool and torchtitan's root group, FSDP2's backward moment by moment, where its step's temporaries
go in the caching allocator, and which gathered bytes strand no allocator slack. frameworks.runtime_peak calls these.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass

from rackfit.estimator import hf_fsdp2, moe_training
from rackfit.estimator.activations import ACT_BYTES, kept_input_layers
from rackfit.estimator.framework_activations import (
    LOSS_PARALLEL_BACKWARD_BYTES,
    Activations,
    eager_final_norm_bytes,
    loss_parallel,
    torchtitan,
)
from rackfit.estimator.fsdp_tp import whole_sequence_gradient_excess
from rackfit.estimator.params import ParamCounts
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.models.quantization import PRECISION_FORMATS
from rackfit.spec import Training


def largest_layer_params(a: ModelArch, p: ParamCounts) -> int:
    return max(p.total - 2 * p.embedding, 0) // max(a.num_layers, 1)


def fsdp2_gathered_layer_params(a: ModelArch, p: ParamCounts, tr: Training, layout: Layout) -> int:
    """Parameters one decoder block's FSDP2 unshard gathers (all tensor ranks together; as largest_layer_params, an
    average over the layers). torchtitan's MoE under expert parallel (parallelism.expert > 1, full fine-tune, no
    tensor parallel: moe_training.applies) gathers only the rank's local routed experts: its apply_fsdp
    (torchtitan/experiments/llama4/infra/parallelize.py at 8ec37d2, models/llama4/infra/parallelize.py at 5fb7cc2,
    called by models/deepseek_v3/infra/parallelize.py) wraps `transformer_block.moe.experts` in its own
    fully_shard over `dp_mod_ep_mesh` ("the routed experts are sharded with the remaining dp_mod_ep_mesh"; the
    router and shared experts stay in the block's group over the whole dp_shard mesh), after apply_moe_ep_tp has
    made each expert weight a DTensor Shard(0) over EP (num_experts / ep local experts). The experts' group
    all-gathers over dp_shard_mod_ep = dp_shard x cp / ep (distributed/parallel_dims.py) and rebuilds the local
    experts only, num_experts / ep of them in 16 bits; the explicit prefetch under EP
    (`set_modules_to_forward_prefetch([next_block, next_block.moe.experts])`, backward alike) keeps two blocks in
    flight as without EP. Their unsharded gradients are the local experts' likewise. The sharded states are
    unchanged: ep x dp_shard_mod_ep = dp_shard ranks hold one shard each (Shard(1) where dp_shard_mod_ep x ep >
    num_experts), experts / dp_shard per rank as for the dense parameters."""
    layer = largest_layer_params(a, p)
    if not (tr.method == "full" and tr.fsdp != 1 and layout.expert > 1
            and moe_training.applies(a, torchtitan(tr), layout.tensor)):
        return layer
    remote = p.experts - p.experts // layout.expert   # the other EP ranks' routed experts, all MoE layers
    return layer - remote // max(a.num_layers, 1)


def step_segment_inputs(a: ModelArch, tr: Training, t: int, largest: int, state_bytes: int, optimizer: int,
                        compute_bytes: int) -> tuple[int, int, int]:
    """(largest step tensor, first-step states, largest freed block) in bytes, for FSDP2 over `data` > 1 on one stage:
    what `_runtime` compares to tell whether the optimizer step's temporaries fit in the blocks the backward left
    cached without expandable segments (docs/accuracy.md, "Where FSDP2's step temporaries go without expandable
    segments"). FSDP2 (torch/distributed/_composable/fsdp, _fully_shard since torch 2.6) registers each parameter as
    a DTensor of its dim-0 shard (`_fsdp_param.py`, FSDPParam's sharded_param), and torch/distributed/_tensor appends
    DTensor to `torch.optim.optimizer._foreach_supported_types`, so the foreach optimizer groups the shards by device
    and dtype and each `_foreach_*` output is one tensor per parameter shard (torch/optim/adamw.py
    `_multi_tensor_adamw`: `exp_avg_sq_sqrt = torch._foreach_sqrt(device_exp_avg_sqs)`; SGD's weight-decay copy
    likewise; Adafactor loops one parameter at a time, in fp32). AdamW's first step makes `exp_avg` and `exp_avg_sq`
    one shard at a time before that (`_init_group`, `torch.zeros_like(p)`). The largest of them is the largest
    parameter's shard (`largest`, elements). The largest block the backward frees in the default stream is at least
    the micro-batch's 16-bit logits (whole also with a chunked loss: framework_activations._loss), one allocation
    freed by the loss's backward."""
    width = 4 if tr.optimizer == "adafactor" else state_bytes
    logits = tr.micro_batch_size * tr.sequence_length * a.vocab_size // t * compute_bytes
    return largest * width, optimizer, logits


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


def fsdp1_loss_moment(base: int, loss_forward: int, loss_backward: int, root: int, root_and_unit: int
                      ) -> tuple[int, int]:
    """(what it holds beyond the states, what is gathered then) at FSDP1's loss, a full fine-tune, `base` the kept
    activations (less the gradients not yet made). Read in torch/distributed/fsdp/_runtime_utils.py (torch 2.1-2.5,
    the same): `_post_forward_reshard` frees every unit's unsharded flat parameter after its forward but the root's
    (`not state._is_root`), so at the loss's forward (the fp32 upcast, its shifted copy and the log-softmax, with
    the 16-bit logits) only the root unit, embeddings and output, is gathered. `_register_pre_backward_hooks` hooks
    the root's output tensors (the loss among them); the first gradient, the loss's, runs `_pre_backward_hook`,
    whose `_prefetch_handle(state, handle, _PrefetchMode.BACKWARD)` (BACKWARD_PRE, the default) all-gathers the next
    unit in backward order, the last decoder layer (`root_and_unit`, its 16-bit low-precision shard counted with
    it), before the loss's own backward runs. No parameter's gradient exists before the output projection's
    backward, after the loss's buffers are freed: the loss moments hold no unsharded gradient and no reduce-scatter
    shard. The larger of the two moments is returned."""
    forward, backward = base + loss_forward + root, base + loss_backward + root_and_unit
    return (forward, root) if forward >= backward else (backward, root_and_unit)


def fsdp1_unshard_pool_cached(gathered: int, loss_gathered: int) -> int:
    """Bytes FSDP1's own streams keep reserved at its loss moment (fsdp1_loss_moment, full fine-tune) beyond what is
    gathered then: the larger of those pools' forward peak (`gathered`: the root, the two layer units
    `limit_all_gathers` lets run ahead, a unit's 16-bit low-precision shard) less `loss_gathered`. Read in torch
    2.1-2.5 (and 2.11, the same): `_unshard` (torch/distributed/fsdp/_runtime_utils.py) casts the shard inside
    `with device_handle.stream(pre_unshard_stream): handle.pre_unshard()` (FlatParamHandle._use_low_precision_shard,
    `_alloc_storage(flat_param._mp_shard, ...)`) and all-gathers inside `with device_handle.stream(unshard_stream):
    handle.unshard()` (_flat_param.py `_alloc_padded_unsharded_flat_param`), so those blocks belong to the two
    streams' pools; `_reshard` frees a unit after its forward (`_free_unsharded_flat_param`: record_stream on the
    compute stream, then `_free_storage`), every unit but the root (`_post_forward_reshard`), and the rate limiter
    (_limiter_utils._FreeEventQueue, `_max_num_inflight_all_gathers = 2`) waits on the free two units back, so the
    forward holds the root and two layer units at once. The caching allocator gives a freed block only to an
    allocation of the stream it was made on (c10/cuda/CUDACachingAllocator.cpp get_free_block: `(*it)->stream !=
    p.stream()`), so at the loss, where the default stream's fp32 logit buffers peak, the freed layer units' blocks
    stay reserved in their pools, unusable by it. They strand no slack of their own: the next unshard reuses them."""
    return max(gathered - loss_gathered, 0)


def fsdp1_reserved_union(wrap_reserved: int, step_reserved: int, unshard_pool: int) -> int:
    """Reserved at the step's peak after FSDP1's wrap (fsdp1_wrap_peak), LoRA/QLoRA. The wrap runs on the default
    stream, so the blocks it leaves cached (`wrap_reserved`, its shards plus freed copies) belong to that stream's
    pool. The step's all-gathers do not: FSDP1 unshards inside `with device_handle.stream(unshard_stream):
    handle.unshard()` (torch/distributed/fsdp/_runtime_utils.py `_unshard`, torch 2.2), so the padded unsharded flat
    parameters (`_alloc_padded_unsharded_flat_param`) are allocated in `_unshard_stream`'s pool, and the caching
    allocator hands a freed block back only to the stream it was allocated on (c10/cuda/CUDACachingAllocator.cpp
    get_free_block: the pool is searched with the allocating stream in the key). `unshard_pool`: the root unit, kept
    unsharded from the forward to the end of the backward (`_post_forward_reshard`: not for the root), plus the two
    layer units `limit_all_gathers` lets run ahead. So the reading is the default stream's larger of the wrap and
    the step without its gathers, plus the unshard stream's pool, which cannot reuse the wrap's cached blocks."""
    return max(wrap_reserved, step_reserved - unshard_pool) + unshard_pool


def fsdp2_copy_in_pool(a: ModelArch, p: ParamCounts, layout: Layout, compute_bytes: int,
                       tr: Training | None = None) -> int:
    """Bytes FSDP2 keeps reserved for its all-gather copy-in stream (full fine-tune, `data` > 1), beside the gathered
    parameters the default stream holds. `foreach_all_gather` allocates each group's all-gather output inside
    `with device_handle.stream(all_gather_copy_in_stream)` (torch/distributed/_composable/fsdp/_fsdp_collectives.py in
    torch 2.4-2.6, fsdp/_fully_shard/_fsdp_collectives.py since; the input is a slice of that output, no second
    buffer), and `foreach_all_gather_copy_out` copies it into each parameter's unsharded storage, allocated in the
    default stream. In the forward `wait_for_unshard` defers freeing a group's output until the next group's
    all-gather has been issued (_fsdp_param_group.py, "[Note: Overlapping all-gather copy-in and all-gather]",
    `comm_ctx.all_gather_state`), so two consecutive groups' outputs are allocated at once; in the backward each is
    freed after its copy-out. The caching allocator gives a freed block back only to the stream it was allocated on
    (c10/cuda/CUDACachingAllocator.cpp get_free_block; expandable segments are per stream too), so that pool stays
    reserved at the loss's backward, unusable by the default stream. Its largest pair is a vocabulary matrix's group
    with a decoder block: torchtitan shards tok_embeddings and [norm, output] as their own groups since PR 1094 (July
    2025; parallelize.py / distributed/fsdp.py apply_fsdp), so tok_embeddings' output is allocated beside block 0's
    and [norm, output]'s beside the last block's. Before that (December 2024 to July 2025) the root group held the
    embeddings, norm and output together, twice this vocabulary part in the pool and kept unsharded in the default
    stream to the end of the backward: fsdp2_root_group_extra, for `torchtitanVersion` below 0.2 (docs/accuracy.md,
    "torchtitan's Hopper rows, audited")."""
    # `tr` given: a block's gathered parameters as fsdp2_gathered_layer_params counts them (EP-local experts)
    layer = (fsdp2_gathered_layer_params(a, p, tr, layout) if tr is not None else largest_layer_params(a, p)) \
        // layout.tensor
    vocab = max(p.embedding, p.lm_head) // layout.tensor
    return (vocab + layer) * compute_bytes


def fsdp2_root_group_extra(p: ParamCounts, layout: Layout, compute_bytes: int) -> int:
    """Bytes torchtitan before 0.2 (`torchtitanVersion` below 0.2; PR 1094, 83e694105, July 28, 2025) held beyond
    the split groups counted above, full fine-tune without pipeline stages, `data` > 1. Its apply_fsdp
    (torchtitan/parallelisms/parallelize_llama.py in December 2024, models/llama3/infra/parallelize.py by June 2025)
    shards each block and then calls `fully_shard(model, reshard_after_forward=not pp_enabled)`, one root group holding
    tok_embeddings, norm and output. torch does not reshard the root after the forward (FSDP2's _fsdp_state.py
    `_lazy_init`: the root's post_forward_mesh_info is None), so the embeddings stay gathered in the default stream
    beside the output to the end of the backward (beyond the output counted), and the copy-in pool
    (fsdp2_copy_in_pool) holds that whole group's all-gather output beside block 0's, where the split groups put one
    vocabulary matrix. Untied: two vocabulary matrices more (1.96 GiB in 16 bits on Llama 3.1 8B); tied, one matrix:
    nothing more. Under pipeline stages each stage's root holds one end's matrix, as counted."""
    t = layout.tensor
    root = (p.embedding + p.lm_head) // t
    output = p.embedding // t
    vocab = max(p.embedding, p.lm_head) // t
    return ((root - output) + (root - vocab)) * compute_bytes


@dataclass(frozen=True)
class BackwardMoment:
    """One moment of FSDP2's backward (fsdp2_backward_moments): what it holds beyond the states kept between steps."""

    name: str
    activations: int   # saved activations, the loss's buffers, a block's recompute
    gathered: int      # unsharded 16-bit parameters in the default stream and the all-gather copy-in pool
    buffers: int       # unsharded gradients and reduce-scatter inputs (the sharded gradients are among the states)

    @property
    def total(self) -> int:
        return self.activations + self.gathered + self.buffers


def fsdp2_backward_moments(kept: int, kept_block: int, loss: int, output_backward: int, output_reduce_act: int,
                           output_grad_made: int, recompute: int, gathered: int, output_weight: int, layer_weight: int,
                           layer_grad: int, layer_rs: int, output_grad: int, output_rs: int, end_weight: int,
                           end_grad: int, end_rs: int, root_group: bool, block_grad: int = 0) -> list[BackwardMoment]:
    """FSDP2's backward (full fine-tune, `data` > 1, no pipeline stages), in autograd's order, as a list of moments
    with what each holds beyond the states, read in torch's FSDP2 (torch/distributed/fsdp/_fully_shard/ at pytorch
    010ae4a, 2026; `_composable/fsdp/` in torch 2.5-2.6, the same): `FSDPParamGroup.post_backward`
    (_fsdp_param_group.py) takes the group's unsharded gradients, reshards its parameters (reshard_after_backward),
    waits for and drops the previous group's `comm_ctx.reduce_scatter_state`, and calls `foreach_reduce`
    (_fsdp_collectives.py): the reduce-scatter input is allocated in the default stream in the reduce dtype, beside
    the 16-bit gradients until the copy-in is done (`unsharded_grads.clear()`), and kept in `ReduceScatterState`
    until the NEXT group's post_backward (the last one until `_root_post_backward_final_callback`); the output (the
    sharded gradient) is allocated in the reduce-scatter stream (grads_at_loss_backward: held, cached, throughout).
    A group's post_backward runs when autograd reaches its inputs (`RegisterPostBackwardFunction`); a root group
    whose inputs need no gradient (token ids) runs it only in the final callback. Moments, in order (the caller
    passes each term's bytes):
    1. loss backward: the kept activations, the loss's buffers, the gathered parameters (the last block prefetched);
    2. output backward: the loss's fp32 buffers freed, the 16-bit logits' gradient and the final norm's output
       (`output_backward`) while the output projection makes its 16-bit gradient (`output_grad_made`: 0 where the
       loss makes it chunk by chunk, inside its own count);
    3. output reduce-scatter (torchtitan's `[norm, output]` group, PR 1094; not with a root group): after the final
       norm's backward, the output resharded, its gradient and reduce-scatter input (`output_reduce_act`: what the
       loss still holds, where it reduces inside the loss);
    4. the last block's recompute (or backward): its working set beside the kept activations, its 16-bit gradients,
       and the previous group's reduce-scatter input (the output's) or, with a root group, the output's 16-bit
       gradient, kept unreduced to the end;
    5. its reduce-scatter: its parameters resharded, its saved activations freed, its gradients and fp32 input;
    6. the next block's recompute: one block's activations fewer, the last block's reduce-scatter input held; every
       later block holds less (fewer kept activations, the same buffers);
    7. backward end: the activations freed, the last group (tok_embeddings; the root group) resharded, its
       gradients and reduce-scatter input beside the copy-in pool.
    `block_grad`: what a block's backward holds at its start beyond its per-token count under tensor parallel
    (fsdp_tp.whole_sequence_gradient_excess), added to moments 4 and 6."""
    out_held = output_grad if root_group else 0
    out_freed = 0 if root_group else output_weight
    prev_rs = 0 if root_group else output_rs
    block = "layer recompute" if recompute else "layer backward"
    moments = [
        BackwardMoment("loss backward", kept + loss, gathered, 0),
        BackwardMoment("output backward", kept + output_backward, gathered, output_grad_made),
    ]
    if not root_group:
        moments.append(BackwardMoment("output reduce-scatter", kept + output_reduce_act, gathered - output_weight,
                                      output_grad + output_rs))
    kept_rest = max(kept - kept_block, 0)
    moments += [
        BackwardMoment(block, kept + recompute + block_grad, gathered - out_freed, prev_rs + out_held + layer_grad),
        BackwardMoment("layer reduce-scatter", kept_rest, gathered - out_freed - layer_weight,
                       out_held + layer_grad + layer_rs),
        BackwardMoment("next " + block, kept_rest + recompute + block_grad, gathered - out_freed,
                       out_held + layer_rs + layer_grad),
        BackwardMoment("backward end", 0, gathered - out_freed - layer_weight - end_weight, end_grad + end_rs),
    ]
    return moments


def fsdp2_backward_peak(moments: list[BackwardMoment]) -> BackwardMoment:
    """The moment that holds the most (the earliest of equals)."""
    return max(moments, key=lambda m: m.total)


def fsdp2_backward_inputs(a: ModelArch, tr: Training, layout: Layout, act: Activations, gathered: int, layer: int,
                          output: int, root: int, compute_bytes: int, reduce_bytes: int) -> dict:
    """fsdp2_backward_moments' terms for runtime_peak's FSDP2 full fine-tune (`layer`, `output`, `root`: a block's,
    the output projection's and the embeddings' with it on this rank; `gathered`: as runtime_peak counts it, the
    copy-in pool included). The last group reduced is tok_embeddings' (one matrix, as big as the output untied), or
    before torchtitan 0.2 the root group, embeddings and output together (`root`).
    The output projection's backward (torchtitan's `cross_entropy(pred.flatten(0, 1).float(), labels)`,
    components/loss.py) gets the 16-bit logits' gradient and saves the final norm's output (whole sequence on every
    tensor rank, as framework_activations counts it; before 0.1 the eager norm's fp32 input and normalised tensor
    too). With ChunkedCELoss (`lossChunkBackward`) the loss makes the output's gradient itself, accumulated in the
    reduce dtype, and reduces it at the last chunk's backward while its `during` buffers (framework_activations
    chunk_backward_loss) are alive, less that chunk's loss buffers (freed by then; its 16-bit logits stay)."""
    t = layout.tensor
    tokens = tr.micro_batch_size * tr.sequence_length
    vocab_split = t if loss_parallel(tr, t) else 1
    final = tokens * a.hidden_size * ACT_BYTES
    if tr.torchtitan_eager_final_norm:
        final += eager_final_norm_bytes(a, tr, t)
    if hf_fsdp2.hf_fsdp2(tr):  # transformers' eager final norm: its fp32 upcast and normalised copy too
        final += hf_fsdp2.final_norm_beyond_output(a, tr)
    root_group = tr.torchtitan_root_group
    end = root if root_group else output
    if tr.loss_chunk_backward:
        chunk = tokens * a.vocab_size / vocab_split / (tr.loss_chunks or 1)
        if tr.loss_compiled:
            freed = ACT_BYTES
        elif t > 1:
            freed = LOSS_PARALLEL_BACKWARD_BYTES
        else:
            freed = 4 + 4 + 4
        output_backward, output_grad_made = act.loss_backward, 0
        output_reduce_act, output_grad = int(act.loss_forward - chunk * freed), 0
    else:
        output_backward = final + int(tokens * a.vocab_size / vocab_split) * ACT_BYTES
        output_grad_made = output * compute_bytes
        output_reduce_act, output_grad = 0, output * compute_bytes
    kept_layers = kept_input_layers(tr, a.num_layers) if tr.activation_checkpointing == "full" else a.num_layers
    return dict(kept=act.kept, kept_block=act.kept // max(kept_layers, 1),
                loss=max(act.loss_backward, act.loss_forward), output_backward=output_backward,
                output_reduce_act=output_reduce_act, output_grad_made=output_grad_made, recompute=act.recompute,
                gathered=gathered, output_weight=output * compute_bytes, layer_weight=layer * compute_bytes,
                layer_grad=layer * compute_bytes, layer_rs=layer * reduce_bytes, output_grad=output_grad,
                output_rs=output * reduce_bytes, end_weight=end * compute_bytes if root_group else 0,
                end_grad=end * compute_bytes, end_rs=end * reduce_bytes, root_group=root_group,
                block_grad=whole_sequence_gradient_excess(a, tr, t))


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


def bnb_quant_state_bytes(p: ParamCounts, tr: Training, precision: str, t: int) -> int:
    """Bytes of a bitsandbytes 4-bit base's quantization states (absmax and double quantization's nested absmax, the
    `QuantState` of each Linear4bit) that FSDP neither shards nor offloads: the whole model's on every rank's GPU.
    bitsandbytes keeps each matrix's QuantState on the Params4bit and on its module (nn/modules.py, 0.43.1 to 2026:
    `Params4bit._quantize` sets `self.module.quant_state`), not as a parameter or buffer; FSDP1's FlatParameter and
    FSDP2's DTensor replace the Params4bit by a plain tensor (Linear4bit.forward: "the quant state got lost when the
    parameter got converted. This happens for example for fsdp since we registered the module, we can recover the
    state here", from `module.quant_state`). The states are made on the GPU where the matrix is quantized: transformers'
    loader under FSDP (modeling_utils.py `_load_state_dict_into_meta_model`, 4.40-4.46: `type(value)(value.data.to(
    "cpu"), **value.__dict__)` moves the packed data, not the quant_state kwarg) and Answer.AI's fsdp_qlora
    `load_and_quantize` alike; `QuantState.to` (functional.py) moves them only with the Params4bit's own `.to`, which
    torch's FSDP1 calls as it moves a unit to the GPU (fsdp/_init_utils.py `_move_states_to_device`: `param.data =
    param.to(device)`). FSDP1 with `accelerate`/peft (fsdpVersion 1) and accelerate's
    FSDP2 (hf_fsdp2) on `precision: nf4`; torchtune's NF4Tensor shards its scales with its data
    (fsdp_pre_all_gather), so not there. The states of `p.linear` (what quantization compresses) at the nf4 format's
    scale bytes; the small per-matrix code tables are left out."""
    if tr.framework != "fsdp" or tr.method != "qlora" or precision != "nf4" or \
            not (tr.fsdp == 1 or hf_fsdp2.hf_fsdp2(tr)):
        return 0
    f = PRECISION_FORMATS["nf4"]
    return int(p.linear * f.scale_bytes / (f.rows * f.cols)) // t
