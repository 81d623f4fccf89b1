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

from dataclasses import dataclass, replace

from rackfit.estimator import float8, megatron_mtp, moe_training, torchtune
from rackfit.estimator.accumulation import (
    accumulation_steps,
    no_sync_reuse,
    no_sync_unsharded,
    runtime_accumulated_grads,
)
from rackfit.estimator.activations import (
    ACT_BYTES,
    attention_dims,
    freed_16bit_logits_bytes,
)
from rackfit.estimator.framework_activations import (
    Activations,
    joint_graph_keeps_gathered,
    loss_parallel,
    runtime_activations,
    sequence_parallel,
    torchtitan,
    torchtune_eager_chunked_loss,
)
from rackfit.estimator.fsdp import (
    BackwardMoment,
    bnb_quant_state_bytes,
    expandable_segments,
    fsdp1_loss_moment,
    fsdp1_unshard_pool_cached,
    fsdp1_wrap_peak,
    fsdp2_backward_inputs,
    fsdp2_backward_moments,
    fsdp2_backward_peak,
    fsdp2_copy_in_pool,
    fsdp2_gathered_layer_params,
    fsdp2_root_group_extra,
    fsdp_gathered_reuse,
    step_segment_inputs,
)
from rackfit.estimator.hf_fsdp2 import hf_fsdp2, whole_quantized_load
from rackfit.estimator.hf_fsdp2 import sharded_lora as hf_fsdp2_sharded_lora
from rackfit.estimator.hf_rotary import hf_rotary_table_bytes
from rackfit.estimator.megatron_buffers import (
    megatron_global_buffer_bytes,
    megatron_workspace_bytes,
    te_workspace_bytes,
)
from rackfit.estimator.offload import fsdp_offloaded, offloads, reduction_after_loss, zero_offloaded
from rackfit.estimator.params import ParamCounts
from rackfit.estimator.result import Layout
from rackfit.estimator.training import largest_parameter, lora_params, optimizer_state_bytes, step_temporary_bytes
from rackfit.estimator.zero import (
    ZERO_REDUCE_BUCKET,
    ZERO_SUB_GROUP,
    loss_freed_blocks,
    zero2_gradient_reuse,
    zero3_gathered_elements,
    zero3_gathers,
    zero3_norm_copy,
    zero3_overflow_cached,
    zero3_reduce_copy,
    zero3_step,
    zero3_step_segments,
    zero12_ipg_buffers,
    zero12_partition_held,
    zero12_prestep,
    zero12_reduce_copy,
    zero12_step,
    zero12_step_cached,
    zero_overlap_comm,
)
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Training


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
    # FSDP1 LoRA/QLoRA: of the step, the bytes its all-gathers hold in FSDP1's unshard stream pool, which cannot
    # reuse the wrap's cached default-stream blocks (fsdp.fsdp1_reserved_union); 0 elsewhere
    load_unshard_pool: int = 0
    host_offload: int = 0        # training.offloadOptimizer / offloadParameters: host memory per GPU (offload.py)
    # of `gradients`, the bytes held as cached blocks of the gradients' own stream, not allocated, at the backward's
    # peak (grads_at_loss_backward): in what nvidia-smi and max_memory_reserved show, not in max_memory_allocated
    cached_gradients: int = 0
    # FSDP2 over `data` > 1 on one stage only (step_segment_inputs; 0 elsewhere): the largest single tensor the step
    # allocates (a parameter shard's temporary or state), the optimizer states its first step allocates, and the
    # largest block the backward frees in the default stream (the micro-batch's 16-bit logits)
    step_largest: int = 0
    step_first_states: int = 0
    freed_block: int = 0
    # deepspeed ZeRO-1/2 (zero.zero12_step_cached; 0 elsewhere): of step_transient, the bytes reserved, not allocated
    step_cached: int = 0
    # deepspeed ZeRO-3 (zero.zero3_step_segments; -1 elsewhere): the bytes of new segments its step reserves beyond the
    # blocks the backward freed, in place of step_transient (__init__._step_segments)
    step_segments: int = -1
    # transformers before 4.46 (activations.freed_16bit_logits_bytes): of `activations` at the loss's backward, the
    # 16-bit logits' block held cached, not allocated; 0 elsewhere
    cached_logits: int = 0
    # FSDP1 full fine-tune whose backward peaks at the loss (fsdp.fsdp1_unshard_pool_cached): the gathered units' blocks
    # freed after the forward that FSDP1's unshard and pre-unshard streams keep reserved then; 0 elsewhere
    unshard_cached: int = 0
    # Megatron with a 16-bit gradient buffer (0 elsewhere): the step's fp32 copy of the rank's gradients, which the
    # optimizer leaves in each main parameter's .grad until the next step's zero_grad (_megatron_states): allocated
    # between steps beside `states`, freed before the next forward, so in a reading taken after the step only
    after_step: int = 0


# --- model states and sharding buffers ------------------------------------------------------------------


def stage_params(a: ModelArch, p: ParamCounts, tr: Training, pipeline: int) -> int:
    """Parameters of the most loaded pipeline stage (before the tensor split). Megatron builds the embedding on
    the first stage and the output layer on the last (megatron/core/models/gpt/gpt_model.py: `pre_process` /
    `post_process`; with tied weights the last stage keeps its own copy of the word embeddings,
    `shared_embedding_or_output_weight`), and torchtitan's pipeline split does the same (the embeddings in the
    first stage's module, the norm and output in the last's): each end stage holds its ceil(L / pipeline) layers
    and one vocabulary matrix, not a pipeline-th of the whole model. DeepSpeed's PipelineModule partitions its
    layers by parameter count (deepspeed/runtime/pipe/module.py, partition_method "parameters"): an even split."""
    if pipeline == 1:
        return p.total + sum(megatron_mtp.stage_params(a, tr, pipeline))
    if tr.framework not in ("megatron", "fsdp"):
        return p.total // pipeline
    layers = p.total - p.embedding - p.lm_head
    stage = heaviest_stage_layers(a.num_layers, pipeline) * layers // max(a.num_layers, 1) + max(p.embedding, p.lm_head)
    # Megatron's MTP layers and the word embedding they need sit on the last stage (megatron_mtp.stage_params)
    return stage + sum(megatron_mtp.stage_params(a, tr, pipeline))


def megatron_expert_split(a: ModelArch, p: ParamCounts, tr: Training, layout: Layout) -> tuple[int, int, int]:
    """(parameters of the rank outside the routed experts, routed-expert parameters of the rank, the expert
    data-parallel size) for a Megatron MoE with expert parallelism (`parallelism.expert`,
    --expert-model-parallel-size).
    Megatron-Core splits the routed experts over the expert-parallel group and each expert over the expert-tensor
    group (megatron/core/transformer/moe/experts.py: num_local_experts = num_experts / ep; TEGroupedMLP's linears
    over expert_tensor_parallel_size, which megatron/training/arguments.py sets to the tensor-parallel size when
    --expert-tensor-parallel-size is not given), and the rest of the layer (attention, router, shared experts)
    over tensor parallel only. The distributed optimizer shards the dense parameters' fp32 copies and moments over
    the data-parallel group and the experts' over the expert data-parallel group (distrib_optimizer.py, one buffer
    per group: `expert_data_parallel_group`, of world / (expert tensor x expert parallel x pipeline) ranks). A
    stage's share of the experts is its share of the layers."""
    t, pp, d, ep = layout.tensor, layout.pipeline, layout.data, layout.expert
    etp = tr.expert_tensor_parallel or t   # --expert-tensor-parallel-size (training.expertTensorParallel)
    stage = stage_params(a, p, tr, pp)
    stage_experts = p.experts * heaviest_stage_layers(a.num_layers, pp) // max(a.num_layers, 1) if pp > 1 else p.experts
    stage_experts += megatron_mtp.stage_params(a, tr, pp)[1]   # the MTP layers' routed experts, on the last stage
    edp = max(t * d // (ep * etp), 1)
    return (stage - stage_experts) // t, stage_experts // (ep * etp), edp


def frozen_layer_bytes(a: ModelArch, p: ParamCounts, frozen_weight_bytes: int, t: int) -> int:
    """Bytes of one decoder layer of the frozen base on this tensor rank, as stored (16-bit, or 4-bit with
    scales for QLoRA): the weights less the 16-bit embeddings and output, over the layers."""
    vocab = (p.embedding + p.lm_head) * ACT_BYTES // t
    return max(frozen_weight_bytes - vocab, 0) // max(a.num_layers, 1)


def largest_matrix(a: ModelArch) -> int:
    """Elements of the largest linear weight of a decoder layer (an MLP matrix, or the query projection)."""
    inter = a.moe_intermediate_size if a.is_moe else a.intermediate_size
    q, _ = attention_dims(a)
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
                 frozen_weight_bytes: int, stage: str = "max", architecture: str | None = None) -> RuntimePeak:
    """The step's peak per GPU for framework fsdp, deepspeed or megatron (`stage`: runtime_activations), on a GPU of
    `architecture` (None: not known; it sizes Megatron's cuBLAS workspaces, megatron_buffers)."""
    g = _given(a, p, tr, precision, layout, frozen_weight_bytes, stage, architecture)
    c = _Count(n=g.n, optimizer=g.optimizer)
    if tr.framework == "fsdp":
        _fsdp_states(g, c)
    elif tr.framework == "deepspeed":
        _deepspeed_states(g, c)
    else:
        _megatron_states(g, c)
    _step_temporaries(g, c)
    _grads_held(g, c)
    _offload(g, c)
    # transformers' per-attention-layer rotary tables (an older transformersVersion, hf_rotary.py): buffers, whole
    # on every GPU and not offloaded
    c.weights += hf_rotary_table_bytes(a, tr, precision, g.pp)
    return _peak(g, c)


# --- runtime_peak's phases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Given:
    """runtime_peak's inputs and what follows from them alone, shared by its phases."""

    a: ModelArch
    p: ParamCounts
    tr: Training
    precision: str
    layout: Layout
    frozen_weight_bytes: int
    stage: str
    architecture: str | None  # the GPU's, None where not known (megatron_buffers.hopper_or_later)
    act: Activations
    full: bool
    mixed: bool
    compute_bytes: int
    state_bytes: int
    n: int             # trained parameters of this rank
    layer: int         # a block's gathered parameters on this rank
    output: int        # the output projection's parameters on this rank
    optimizer: int     # the optimizer states of the n parameters, unsharded
    masters: int       # their fp32 master copies (mixed precision), unsharded

    @property
    def t(self) -> int:
        return self.layout.tensor

    @property
    def pp(self) -> int:
        return self.layout.pipeline

    @property
    def d(self) -> int:
        return self.layout.data


def _given(a: ModelArch, p: ParamCounts, tr: Training, precision: str, layout: Layout, frozen_weight_bytes: int,
           stage: str, architecture: str | None = None) -> _Given:
    """The dtypes, the trained parameters of this rank, their optimizer states and the activations."""
    full = tr.method == "full"
    mixed = full and tr.master_weights == "fp32"
    t, pp = layout.tensor, layout.pipeline
    compute_bytes = 4 if precision == "fp32" else 2   # the 16-bit compute copy (fp32 stays fp32)
    state_bytes = 4 if mixed or precision == "fp32" else 2
    n = stage_params(a, p, tr, pp) // t if full else lora_params(a, tr) // (t * pp)
    if not full:
        state_bytes = adapter_bytes(tr, compute_bytes)
    return _Given(a=a, p=p, tr=tr, precision=precision, layout=layout, frozen_weight_bytes=frozen_weight_bytes,
                  stage=stage, architecture=architecture,
                  act=runtime_activations(a, tr, layout, stage, fp16=precision == "fp16"), full=full,
                  mixed=mixed, compute_bytes=compute_bytes, state_bytes=state_bytes, n=n,
                  # a block's gathered parameters: torchtitan's MoE under expert parallel gathers its local experts
                  # only (fsdp.fsdp2_gathered_layer_params); elsewhere largest_layer_params
                  layer=fsdp2_gathered_layer_params(a, p, tr, layout) // t,
                  output=p.embedding // t,  # the output projection's parameters on this rank
                  optimizer=optimizer_state_bytes(tr, n, state_bytes, a), masters=n * 4 if mixed else 0)


@dataclass
class _Count:
    """runtime_peak's running count (bytes per GPU): the framework's states and buffers, then the step's
    temporaries, the gradients held at the loss's backward and what offload moves, each phase adjusting it."""

    n: int                 # trained parameters of this rank (Megatron's expert split recounts them)
    optimizer: int
    weights: int = 0
    grads: int = 0
    trainable_here: int = 0   # trained parameters whose optimizer step runs on this rank
    gathered: int = 0       # unsharded parameters at the backward's peak
    buckets: int = 0        # the backward's gradient buffers beside them
    # ZeRO-1/2 offload: the largest transient of a bucket's reduction (offload.zero_offloaded's `buckets_extra`), made
    # in a gradient hook: beside a layer's backward or the epilogue, never the loss's (offload.reduction_after_loss)
    buckets_extra: int = 0
    step_extra: int = 0     # the step's allocations beside `temp` (fp32 partitions, flat copies)
    load: int = 0           # what loading the model allocates at its peak, 0 where not counted (RuntimePeak.load)
    load_cached: int = 0
    shared_pad: int = 0   # torchtitan's unsplit shared experts (moe_training.grouped_shared_params)
    unsplit: int = 0
    step_cached: int = 0
    step_segments: int = -1
    unshard_pool: int = 0
    quant_states: int = 0   # fsdp.bnb_quant_state_bytes, kept on the GPU under CPU offload
    fp16_optimizer: bool = False
    # FSDP2 LoRA's groups: (loss's backward, a layer's backward) gathered bytes
    lora_gathered: tuple[int, int] | None = None
    # FSDP1 full: (loss's forward, loss's backward) gathered bytes (fsdp1_loss_moment)
    fsdp1_loss_gathered: tuple[int, int] | None = None
    reduce_bytes: int = 0   # FSDP2 full: the dtype its gradients are reduced in
    zero: int = 0           # deepspeed: the ZeRO stage
    overlap: bool = False   # deepspeed: zero_optimization.overlap_comm
    reduce_bucket: int = 0  # deepspeed: reduce_bucket_size
    largest: int = 0        # the largest tensor the step holds
    temp: int = 0           # the optimizer step's temporaries (step_temporary_bytes)
    kept_grads: int = 0     # gradients kept between steps
    after_step: int = 0     # allocated after the step until the next one begins (RuntimePeak.after_step)
    held: int = 0           # gradients holding memory at the loss's backward (grads_at_loss_backward)
    cached: int = 0         # of `held`, those held as cached blocks
    host: int = 0           # host memory per GPU under CPU offload


def _fsdp_states(g: _Given, c: _Count) -> None:
    """fsdp: states sharded over `data`, and the gathered blocks of FSDP1 or FSDP2, full or LoRA/QLoRA."""
    # FSDP2 (torch/distributed/fsdp/_fully_shard): parameters, gradients and optimizer states are all
    # sharded over `data`; with MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) the sharded
    # parameters are the fp32 masters and each block's bf16 copy is all-gathered before use and freed
    # after (reshard_after_forward=True), the next block prefetched: two blocks in flight. The root
    # (embeddings, output) is gathered for the loss; its gradients wait for the end of the backward.
    if g.full and g.tr.fsdp == 1:
        _fsdp1_full(g, c)
    elif g.full:
        _fsdp2_full(g, c)
    else:
        _fsdp_lora(g, c)
    c.trainable_here = g.n // g.d + c.unsplit


def _fsdp1_full(g: _Given, c: _Count) -> None:
    """FSDP1, a full fine-tune: its flat units, the root gathered from the forward to the end of the backward."""
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
    n, d, layer, compute_bytes, state_bytes = g.n, g.d, g.layer, g.compute_bytes, g.state_bytes
    c.weights = n * state_bytes // d
    # an optimizer built before the wrap (HF Trainer 4.30-4.31) keeps the original parameters, unsharded, from
    # the wrap on (training.preWrapOptimizer)
    c.weights += n * state_bytes if g.tr.pre_wrap_optimizer else 0
    c.grads = n * state_bytes // d
    c.optimizer //= d
    root = (g.p.embedding + g.p.lm_head) // g.t
    c.gathered = 2 * layer * compute_bytes + layer * compute_bytes // d + root * compute_bytes
    c.buckets = layer * compute_bytes + layer * compute_bytes // d + g.output * compute_bytes
    c.load, c.load_cached = fsdp1_wrap_peak(c.weights, layer * state_bytes, root * state_bytes)
    c.fsdp1_loss_gathered = (root * compute_bytes,
                             root * compute_bytes + layer * compute_bytes + layer * compute_bytes // d)


def _fsdp2_full(g: _Given, c: _Count) -> None:
    """FSDP2, a full fine-tune: sharded states (with torchtitan's unsplit shared experts), the blocks held
    gathered, the all-gather copy-in pool and torchao's float8 all-gather."""
    a, tr, t, pp, d = g.a, g.tr, g.t, g.pp, g.d
    compute_bytes, state_bytes = g.compute_bytes, g.state_bytes
    c.weights = g.n * state_bytes // d
    c.grads = g.n * state_bytes // d
    c.optimizer //= d
    c.reduce_bytes = 4 if g.mixed else compute_bytes
    # torchtitan's shared experts before 0.2, [1, ...] weights FSDP2 cannot split on dim 0
    # (moe_training.grouped_shared_params): whole on the rank that holds the row, in the master dtype,
    # with its gradients and states; padded copies in every all-gather and reduce-scatter
    c.shared_pad = moe_training.grouped_shared_params(a, torchtitan(tr), tr, g.layout)
    if c.shared_pad:
        moe_here = min(heaviest_stage_layers(a.num_layers, pp), a.moe_layers) if pp > 1 else a.moe_layers
        c.unsplit = c.shared_pad * moe_here - c.shared_pad * moe_here // d
        c.weights += c.unsplit * state_bytes
        c.grads += c.unsplit * state_bytes
        c.optimizer += optimizer_state_bytes(tr, c.unsplit, state_bytes, a)
    if hf_fsdp2(tr):
        # accelerate's FSDP2 (utils/dataclasses.py FullyShardedDataParallelPlugin.set_mixed_precision):
        # MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype): gradients reduced in 16 bits
        c.reduce_bytes = compute_bytes
    held = _fsdp2_held_blocks(g, c)
    if d > 1:
        # the all-gather outputs' own pool (fsdp2_copy_in_pool); where blocks are resharded after the forward
        # (held 2) the second block in flight counted above is the one in that pool
        second = g.layer * compute_bytes if held == 2 else 0
        c.gathered += fsdp2_copy_in_pool(a, g.p, g.layout, compute_bytes, tr) - second
        c.gathered += c.shared_pad * (d - 1) * compute_bytes   # the pool's block output, padded
        if pp == 1 and tr.torchtitan_root_group:
            c.gathered += fsdp2_root_group_extra(g.p, g.layout, compute_bytes)
    # torchao's float8 all-gather: the gathered blocks' linear weights in fp8 (float8.fsdp2_gathered_saving);
    # the copy-in pool holds one block's all-gather output beside the default stream's, unless counted above
    c.gathered -= float8.fsdp2_gathered_saving(a, tr, t, held + (1 if d > 1 and held != 2 else 0), compute_bytes)


def _fsdp2_held_blocks(g: _Given, c: _Count) -> int:
    """FSDP2's gathered blocks and gradient buffers under pipeline stages or one stage; returns the blocks held
    gathered in the default stream."""
    a, tr, layer, output = g.a, g.tr, g.layer, g.output
    compute_bytes, reduce_bytes = g.compute_bytes, c.reduce_bytes
    if g.pp > 1:
        # FSDP2 under pipeline stages, as torchtitan applies it (torchtitan/distributed/fsdp.py, apply_fsdp;
        # parallelize_llama.py in 2024): "For PP, do not reshard after forward to avoid per-microbatch
        # all-gathers" (reshard_after_forward = not pp_enabled), so every layer of the stage stays gathered
        # in 16-bit from its first forward to the step. The schedule runs each micro-batch's backward with
        # set_requires_gradient_sync(False) and set_reshard_after_backward(False) until the last one
        # (torch/distributed/pipelining/stage.py, backward_maybe_with_nosync), and FSDP2 keeps those
        # unsharded gradients, cast to the reduce dtype (fp32 with fp32 masters) and accumulated
        # (_fsdp_param.py, to_accumulated_grad_if_needed / accumulate_unsharded_grad_if_needed), for
        # every parameter of the stage until the last micro-batch's reduce-scatter.
        stage_layers = heaviest_stage_layers(a.num_layers, g.pp)
        held = 2 if tr.reshard_after_forward else stage_layers  # "always" reshards under PP too
        c.gathered = held * layer * compute_bytes + output * compute_bytes
        c.buckets = (stage_layers * layer + output) * reduce_bytes + layer * compute_bytes
    else:
        # reshardAfterForward false (fully_shard(reshard_after_forward=False); torchtitan's
        # fsdp_reshard_after_forward "never", torchtune's and accelerate's fsdp_reshard_after_forward): each
        # block stays gathered from its forward until its backward (FSDPParamGroup.post_forward skips the
        # reshard; post_backward reshards, reshard_after_backward=True), so the backward starts with every
        # block's 16-bit copy on the GPU, not two
        # jointGraph without checkpointing keeps them too (framework_activations.joint_graph_keeps_gathered)
        held = 2 if tr.reshard_after_forward is not False and not joint_graph_keeps_gathered(tr) \
            else a.num_layers
        c.gathered = held * layer * compute_bytes + output * compute_bytes
        c.buckets = layer * (compute_bytes + reduce_bytes) + output * compute_bytes
    return held


def _fsdp_lora(g: _Given, c: _Count) -> None:
    """LoRA/QLoRA under FSDP1 or FSDP2: the frozen base sharded beside the adapters, gathered as stored."""
    # LoRA/QLoRA under FSDP2 (torchtune's lora_finetune_distributed, torchtune/training/_distributed.py
    # shard_model: fully_shard per decoder layer, then the root): the frozen base and the adapters
    # are parameters of the same layer, so both are sharded over `data`; the base gets no gradient,
    # no master and no optimizer state (the optimizer is built over the adapters only). The base is
    # all-gathered in the dtype it is stored in: 16-bit for LoRA; for QLoRA, torchao's NF4Tensor
    # (torchao/dtypes/nf4tensor.py, fsdp_pre_all_gather/fsdp_post_all_gather) gathers its 4-bit data
    # and scales, and LinearNF4 dequantizes one matrix at a time (`weight.to(input.dtype)`, freed
    # after the matmul, again in the backward). Embeddings and the output stay 16-bit in the root.
    a, p, tr, t, d = g.a, g.p, g.tr, g.t, g.d
    n, compute_bytes, state_bytes, frozen_weight_bytes = g.n, g.compute_bytes, g.state_bytes, g.frozen_weight_bytes
    # a bitsandbytes base's quantization states stay whole on every rank (fsdp.bnb_quant_state_bytes); the
    # all-gathers carry the packed 4-bit data only
    c.quant_states = bnb_quant_state_bytes(p, tr, g.precision, t)
    c.weights = (frozen_weight_bytes - c.quant_states) // d + c.quant_states + n * state_bytes // d
    c.grads = n * state_bytes // d
    c.optimizer //= d
    stored_layer = frozen_layer_bytes(a, p, frozen_weight_bytes - c.quant_states, t)
    # FSDP1 (peft + accelerate's FSDP plugin) keeps its root unit, embeddings and output, unsharded from the
    # forward to the end of the backward (_runtime_utils._post_forward_reshard: not for the root), as for a
    # full fine-tune. So does FSDP2 under torchtune: shard_model (torchtune/training/_distributed.py) applies
    # fully_shard to each decoder layer and then to the whole model, which holds the embeddings, final norm
    # and output, and the root is not resharded after the forward (torch's _fsdp_state.py `_lazy_init`: "For
    # the root, do not reshard after forward", post_forward_mesh_info = None; torchtune sets the root's
    # reshard_after_forward=False itself since 2025); its custom_sharded_layers (PR 2072, commented out in the
    # 70B configs) is not modelled. Tied embeddings are one matrix (lm_head 0).
    root = (p.embedding + p.lm_head) // t
    c.gathered = 2 * stored_layer + root * compute_bytes
    if tr.fsdp == 1:
        c.load, c.load_cached = fsdp1_wrap_peak(c.weights, stored_layer, root * compute_bytes)
        c.unshard_pool = c.gathered  # root + two layer units, in _unshard_stream's pool (fsdp1_reserved_union)
    elif whole_quantized_load(tr, g.precision, d):
        # the whole quantized model with its adapters beside this rank's shards (whole_quantized_load)
        c.load = frozen_weight_bytes + n * state_bytes + c.weights - c.quant_states   # the states once
    # QLoRA dequantizes one NF4 matrix at a time to 16 bits for its matmul (torchtune.nf4_largest_matrix)
    nf4_largest = torchtune.nf4_largest_matrix(a, tr, largest_matrix(a))
    if tr.method == "qlora":
        c.gathered += nf4_largest // t * compute_bytes
    _lora_recipe_gathered(g, c, root, stored_layer, nf4_largest)


def _lora_recipe_gathered(g: _Given, c: _Count, root: int, stored_layer: int, nf4_largest: int) -> None:
    """What torchtune's LoRA recipes and accelerate's sharded FSDP2 LoRA hold gathered, in place of the count of
    _fsdp_lora (`root`: the root group's parameters, `stored_layer`: a layer's stored bytes, `nf4_largest`: the
    elements of the largest matrix QLoRA dequantizes)."""
    a, tr, layout, t, compute_bytes = g.a, g.tr, g.layout, g.t, g.compute_bytes
    if torchtune.distributed_recipe(tr, layout) or hf_fsdp2_sharded_lora(tr, g.d, g.pp):
        # torchtune's lora_finetune_distributed and accelerate's FSDP2 (the same groups, hf_fsdp2.sharded_lora):
        # no layer gathered at the loss's backward, one at a layer's backward with the next prefetched, and
        # the copy-in stream's root + layer (torchtune.distributed_gathered)
        dequant = nf4_largest // t * compute_bytes if tr.method == "qlora" else 0
        c.lora_gathered = torchtune.distributed_gathered(root * compute_bytes, stored_layer, dequant)
        c.gathered = c.lora_gathered[1]
    if torchtune.single_device_recipe(tr, layout):
        # torchtune's lora_finetune_single_device does not shard: no gathered copies, no root group, only
        # QLoRA's one dequantized matrix (torchtune.single_device_gathered)
        c.gathered = torchtune.single_device_gathered(tr, nf4_largest, compute_bytes)
        # under torchao before 0.2 the NF4 base's load can be the larger (torchtune.nf4_whole_tensor_load); only the
        # NF4 matrices go through to_nf4 (torchtune before 0.3: the adapted ones, nf4_largest_matrix)
        c.load, c.load_cached = torchtune.nf4_whole_tensor_load(
            tr, layout, c.weights, nf4_largest, a.hidden_size * attention_dims(a)[0])


def _deepspeed_states(g: _Given, c: _Count) -> None:
    """deepspeed: ZeRO's partitioned states, its IPG buckets and ZeRO-3's gathered parameters."""
    tr = g.tr
    # DeepSpeed builds its ZeRO optimizer for any zero stage above 0 whatever the world size (engine.py,
    # _do_optimizer_sanity_check returns ZERO_OPTIMIZATION): ZeRO on one GPU runs its stage, over one partition
    c.zero = tr.zero_stage
    c.overlap = zero_overlap_comm(c.zero, tr.overlap_comm)   # zero_optimization.overlap_comm, or its default by stage
    c.trainable_here = g.n
    if g.full:
        _zero_full_states(g, c)
    else:
        _zero_lora_states(g, c)
    whole = c.weights
    if c.zero >= 3:
        c.weights //= g.d
    if c.zero == 3 and tr.zero_init is False:
        # a model built outside deepspeed.zero.Init (accelerate's zero3_init_flag false): DeepSpeed 0.14's
        # engine.py _configure_distributed_model moves the whole module to the GPU (`self.module.to(self.device)`,
        # skipped only when a parameter has ds_id) before stage3.py partitions it parameter by parameter
        c.load = whole
    c.reduce_bucket = tr.reduce_bucket_size or ZERO_REDUCE_BUCKET
    _zero_buckets(g, c)
    if c.zero == 3:
        _zero3_gathered(g, c)
    # stages 1-2: the updated partitions' all-gather after the step allocates nothing (zero12_step)


def _zero_full_states(g: _Given, c: _Count) -> None:
    """ZeRO, a full fine-tune: the 16-bit module whole (ZeRO-3 partitions it after), the partitioned fp32 masters,
    optimizer states and gradients, and the step's fp32 copy of the gradient partition."""
    n, d, zero = g.n, g.d, c.zero
    # bf16 module (engine.py casts it) + fp32 master partition in the optimizer
    # (runtime/zero/stage_1_and_2.py single_partition_of_fp32_groups; stage3.py fp32_partitioned_groups_flat)
    c.weights = n * g.compute_bytes
    c.grads = n * g.compute_bytes
    master = g.masters if g.mixed else 0
    if zero == 0 and g.mixed and g.precision == "fp16":
        # without ZeRO, fp16 runs DeepSpeed's FP16_Optimizer (engine.py _configure_fp16_optimizer; runtime/fp16/
        # fused_optimizer.py, read at edaa722): the backward leaves fp16 gradients in each p.grad; step()
        # builds `_flatten_dense_tensors([p.grad.to(fp32) for p in group])` (every gradient's fp32 copy, then
        # their flat concatenation, beside the fp16 ones), sets `p.grad = None`, steps the fp32 flat master and
        # sets `group.grad = None`: no gradient is kept between steps
        c.optimizer += master
        c.step_extra = n * 4 + n * 4
        c.fp16_optimizer = True
    elif zero == 0:  # bf16_optimizer.py: fp32 gradient accumulation beside the masters
        c.grads = n * 4 if g.mixed else c.grads
        c.optimizer += master
    else:
        c.optimizer = (c.optimizer + master) // d
        c.trainable_here = n // d
        # the step upcasts the gradient partition to fp32 (stage_1_and_2.py: .float() of the
        # flat partition; stage3.py: one sub_group_size at a time); refined by zero12_step / zero3_step
        part = n // d
        c.step_extra = min(part, ZERO_SUB_GROUP) * 4 if zero == 3 else part * 4
    if zero >= 2 or (zero == 1 and c.overlap):
        # stage 1 under overlap_comm reduces in the backward's hooks as stage 2 does: the partition's
        # gradients are copied into grads_in_partition, the others left as views of the IPG bucket
        # (stage_1_and_2.py process_gradients, reduce_ipg_grads "zero stage 1"; contiguous_gradients)
        c.grads //= g.d


def _zero_lora_states(g: _Given, c: _Count) -> None:
    """ZeRO, LoRA/QLoRA: the frozen base and the adapters whole (ZeRO-3 partitions them after), the adapters'
    optimizer states partitioned from stage 1 and their gradients from stage 2."""
    c.weights = g.frozen_weight_bytes + g.n * g.state_bytes
    c.grads = g.n * g.state_bytes
    if c.zero >= 1:
        c.optimizer //= g.d
    if c.zero >= 2:
        c.grads //= g.d


def _zero_buckets(g: _Given, c: _Count) -> None:
    """ZeRO's IPG buckets beside one layer's unpartitioned gradients."""
    if c.zero == 3:
        # stage3.py (DeepSpeedZeroOptimizer_Stage3.__init__): with contiguous_gradients (DeepSpeed's default) one
        # IPG bucket of reduce_bucket_size elements per communication dtype (the model's 16-bit dtype unless
        # communication_data_type says otherwise, engine.py) is allocated with torch.empty when the optimizer is
        # built and kept for the run: the gradients are copied into it and reduce-scattered from it. Kept
        # between steps, whatever the model's size; beside it one layer's unpartitioned gradients as autograd
        # makes them.
        ipg = c.reduce_bucket * g.compute_bytes
        c.grads += ipg
        c.buckets = g.layer * g.compute_bytes
    elif c.zero >= 1:
        # the IPG bucket(s) of reduce_bucket_size 16-bit elements, two under overlap_comm (zero.zero12_ipg_buffers),
        # beside one layer's unpartitioned gradients as autograd makes them
        c.buckets = zero12_ipg_buffers(c.reduce_bucket, c.overlap, g.compute_bytes) + g.layer * g.compute_bytes


def _zero3_gathered(g: _Given, c: _Count) -> None:
    """ZeRO-3's gathered parameters: the live-parameter and prefetch bounds, as stored, and every layer's until
    its backward where torch's linear keeps them."""
    if not zero3_gathers(g.d, bool(g.tr.offload_parameters)):
        # one GPU, partitions on it: `param.data` points at the partition itself, nothing is gathered
        # (zero.zero3_gathers)
        c.gathered = 0
        return
    # gathered parameters: at most stage3_max_live_parameters live, plus the prefetch bucket (parameters
    # fetched ahead of their module), and never more than the whole model's 16-bit weights; the output
    # projection is fetched whole beyond that bound (zero.zero3_gathered_elements)
    c.gathered = zero3_gathered_elements(g.p.total, g.output) * g.compute_bytes
    if not g.full:
        # ...as they are stored: partition_parameters.py `_all_gather` gathers `param.ds_numel` elements of
        # `param.dtype`, so a QLoRA base (bitsandbytes Params4bit packed into bnb_4bit_quant_storage, as
        # ZeRO-3 needs it) is gathered packed, 4 bits a weight: never more than the whole stored base and its
        # adapters (the bound, in elements of that storage, is the same bytes), which hold the 16-bit output
        # projection whole (bitsandbytes leaves lm_head unquantized)
        c.gathered = min(c.gathered, g.frozen_weight_bytes + g.n * g.state_bytes)
    if g.tr.activation_checkpointing != "full":
        # torch's linear saves `weight.t()` for its backward, a view that keeps the gathered storage
        # after ZeRO-3 frees the parameter (param.data = empty): every layer's 16-bit weights stay
        # until their backward. DeepSpeed's LinearFunctionForZeroStage3 (runtime/zero/linear.py),
        # which saves the parameter itself (setup_context: ctx.save_for_backward(input, weight, bias)),
        # replaces F.linear when a zero.Init context is entered (runtime/zero/partition_parameters.py,
        # patch_init_and_builtins: `torch.nn.functional.linear = zero3_linear_wrap` under
        # mem_efficient_linear, Init's default, 0.9.0 to 0.19.1; it then persists), so a model built under
        # zero.Init (zeroInit, its default true) releases each layer after its module as with
        # checkpointing; a model built outside it and handed to deepspeed.initialize (zeroInit false) keeps
        # torch's linear: the upper bound. A checkpointed layer saves nothing but its input. LoRA/QLoRA
        # under ZeRO-3 is PEFT's path, whose base is always built under zero.Init: transformers'
        # from_pretrained enters deepspeed.zero.Init when is_deepspeed_zero3_enabled() (modeling_utils.py;
        # HF Trainer's HfTrainerDeepSpeedConfig and accelerate's zero3_init_flag, which PEFT's DeepSpeed
        # guide sets), so its linears save the parameter and the frozen base is released as usual.
        if g.full and g.tr.zero_init is False:
            c.gathered = max(c.gathered, g.p.total // (g.t * g.pp) * g.compute_bytes)


def _megatron_states(g: _Given, c: _Count) -> None:
    """megatron: the 16-bit parameter and gradient buffers, the distributed optimizer's shards, and the buffers
    and workspaces Megatron-Core and Transformer Engine keep."""
    a, tr, layout, pp, t, compute_bytes = g.a, g.tr, g.layout, g.pp, g.t, g.compute_bytes
    # Megatron-Core DDP (megatron/core/distributed/param_and_grad_buffer.py): bf16 parameters in one
    # buffer, gradients in an fp32 buffer (--accumulate-allreduce-grads-in-fp32 is set with --bf16,
    # megatron/training/arguments.py); the distributed optimizer
    # (megatron/core/optimizer/distrib_optimizer.py) shards fp32 main parameters and Adam states over data.
    # --fp16 leaves accumulate_allreduce_grads_in_fp32 False (arguments.py forces it for bf16 only; Megatron-LM
    # issue 525's log prints it False), so the gradient buffer is fp16 (the main_grad dtype is params_dtype).
    # Without --use-distributed-optimizer (training.distributedOptimizer false, Megatron-LM's own default:
    # megatron/core/optimizer/optimizer_config.py use_distributed_optimizer False), get_megatron_optimizer
    # (megatron/core/optimizer/__init__.py) wraps the optimizer in Float16OptimizerWithFloat16Params, which
    # clones every parameter of the rank to fp32 (optimizer.py, `param.detach().clone().float()`), and the
    # optimizer keeps moments for all of them: nothing is sharded over data (Megatron-LM d98e8a6).
    # training.gradReduceInFp32 false (Megatron-Core DistributedDataParallelConfig.grad_reduce_in_fp32, which
    # Megatron-Bridge's performance recipes turn off; Megatron-LM's --grad-reduce-in-bf16) keeps the buffer in the
    # 16-bit dtype (distributed_data_parallel.py group_params_for_buffers, Megatron-LM d98e8a6).
    shards = g.d if tr.distributed_optimizer is not False else 1
    fp32_grads = g.mixed and (g.precision != "fp16" if tr.grad_reduce_in_fp32 is None else tr.grad_reduce_in_fp32)
    grad_bytes = 4 if fp32_grads else compute_bytes
    c.weights = g.n * compute_bytes
    c.grads = g.n * grad_bytes
    c.optimizer = _megatron_optimizer_bytes(g, g.n) // shards
    c.trainable_here = g.n // shards
    # Transformer Engine's fp8 weight workspaces or fp8 parameters (float8.te_weight_bytes), the stage's layers
    fp8_weights = float8.te_weight_bytes(a, tr, heaviest_stage_layers(a.num_layers, pp), t, compute_bytes)
    # ... and, in a MoE, the MLP linears block_linear_params leaves out (torchao's are 16-bit there; TE's are not)
    fp8_weights += float8.te_cached_bytes(tr, _megatron_moe_mlp_linear(g), compute_bytes)
    if g.full and a.is_moe and layout.expert > 1:
        _megatron_expert_states(g, c, shards, grad_bytes)
    if g.mixed and not fp32_grads and not tr.precision_aware_optimizer:
        # the step's fp32 copy of the rank's 16-bit gradients: `shard_main_param.grad = shard_model_grad.float()`
        # (distrib_optimizer.py DistributedOptimizer._copy_model_grads_to_main_grads; `main_grad.float()` in
        # optimizer.py Float16OptimizerWithFloat16Params without the distributed optimizer), held until the next
        # step's zero_grad; an fp32 buffer's .float() is the buffer itself (Megatron-LM d98e8a6)
        c.step_extra = c.trainable_here * 4
        # ... and still allocated when Megatron logs its memory after the step: train_step calls
        # optimizer.zero_grad() (set_to_none, which frees the fp32 main parameters' .grad: optimizer.py
        # Float16OptimizerWithFloat16Params.zero_grad, distrib_optimizer.py DistributedOptimizer.zero_grad) at its
        # start, before the forward, and training_log reads the memory after it returns (report_memory's
        # "(after N iterations)" line and "mem-allocated-bytes": megatron/training.py at 992da75 and core_r0.5.0,
        # megatron/training/training.py at 21924d8 and d98e8a6)
        c.after_step = c.step_extra
    c.weights += fp8_weights
    # Megatron-Core's GlobalMemoryBuffer, allocated once and kept (megatron_buffers.py: the unfused attention's
    # scores, sequence parallel's all-gathered input; megatron/core/utils.py GlobalMemoryBuffer) and Transformer
    # Engine's cuBLAS workspace (megatron_buffers.te_workspace_bytes), sized by the GPU's architecture
    c.weights += (megatron_global_buffer_bytes(a, tr, layout, compute_bytes, g.stage)
                  + te_workspace_bytes(tr, g.architecture))
    # torch's cuBLAS workspaces (two threads) and TE's grouped-GEMM ones (megatron_buffers.megatron_workspace_bytes)
    c.weights += megatron_workspace_bytes(a, tr, g.architecture)


def _megatron_optimizer_bytes(g: _Given, n: int) -> int:
    """Megatron's optimizer tensors for `n` trained parameters, unsharded: Adam's two moments and the fp32 main
    parameters (mixed precision). Under training.precisionAwareOptimizer (Megatron-Core 24bad8e6 and d98e8a6:
    megatron/core/optimizer/__init__.py hands Transformer Engine's FusedAdam `master_weights=True`,
    `use_decoupled_grad=True`, `exp_avg_dtype`, `exp_avg_sq_dtype` and `store_param_remainders`, True by default in
    optimizer_config.py; distrib_optimizer.py builds no fp32 shard, `shard_main_param = None`, "main params are held
    by FusedAdam") the moments are training.adamMomentsDtype wide (transformer_engine/pytorch/optimizers/fused_adam.py
    _initialize_state, `torch.empty_like(param, dtype=dtype)`) and, for bf16 parameters, the main parameters are
    their 16-bit remainders (`torch.zeros_like(param, dtype=torch.int16)`; the step rebuilds the fp32 value from the
    bf16 parameter and the remainder, multi_tensor_adam_param_remainder); fp16 parameters keep a 4-byte copy."""
    tr = g.tr
    if not (tr.precision_aware_optimizer and g.mixed):
        return optimizer_state_bytes(tr, n, g.state_bytes, g.a) + (n * 4 if g.mixed else 0)
    moment_bytes = 2 if tr.adam_moments_dtype == "bf16" else 4
    master_bytes = 2 if g.precision == "bf16" else 4
    return optimizer_state_bytes(tr, n, moment_bytes, g.a) + n * master_bytes


def _megatron_moe_mlp_linear(g: _Given) -> int:
    """MLP weight elements of a Megatron MoE rank that Transformer Engine runs in fp8 under --fp8-format and caches
    in fp8 (float8.te_cached_bytes): the routed experts of the rank (TEGroupedMLP's GroupedLinear, or SequentialMLP's
    TE linears, one an expert; the MTP layers' on the last stage), over expert and expert-tensor parallel
    (megatron_expert_split), and the stage's share of the shared experts and of the dense layers' MLPs over tensor.
    Megatron's TEGroupedLinear.forward passes `is_first_microbatch` unless --disable-parameter-transpose-cache
    (megatron/core/extensions/transformer_engine.py at adc69dba2d and d98e8a6), and GroupedLinear then keeps each
    expert's quantised weight in `_fp8_workspaces` under cache_name "weight{i}" (transformer_engine/pytorch/module/
    grouped_linear.py `get_weight_workspace`, v2.8 to v2.18), kept between steps as a dense linear's. 0 for a dense
    model (block_linear_params counts its MLPs) or without Megatron's float8."""
    a, tr, p, pp = g.a, g.tr, g.p, g.pp
    if not (a.is_moe and float8.active(tr) and tr.framework == "megatron"):
        return 0
    routed = megatron_expert_split(a, p, tr, g.layout)[1]
    other = p.shared + p.dense_mlp
    if pp > 1:
        other = other * heaviest_stage_layers(a.num_layers, pp) // max(a.num_layers, 1)
    return routed + other // g.t


def _megatron_expert_states(g: _Given, c: _Count, shards: int, grad_bytes: int) -> None:
    """Megatron's MoE under expert parallel: the rank's dense and routed-expert parameters recounted, their
    optimizer states sharded over the data-parallel and the expert data-parallel group (megatron_expert_split)."""
    a, tr = g.a, g.tr
    dense_n, expert_n, edp = megatron_expert_split(a, g.p, tr, g.layout)
    c.n = dense_n + expert_n
    c.weights = c.n * g.compute_bytes
    c.grads = c.n * grad_bytes
    eshards = edp if shards > 1 else 1
    c.optimizer = _megatron_optimizer_bytes(g, dense_n) // shards + _megatron_optimizer_bytes(g, expert_n) // eshards
    c.trainable_here = dense_n // shards + expert_n // eshards


def _step_temporaries(g: _Given, c: _Count) -> None:
    """The optimizer step's temporaries, and ZeRO's step against the blocks the loss's backward left cached."""
    a, tr, t, pp = g.a, g.tr, g.t, g.pp
    # the largest tensor the step holds: as sharded as the trained parameters here
    c.largest = largest_parameter(a, tr, t * pp) * c.trainable_here // max(c.n, 1)
    c.temp = step_temporary_bytes(tr, c.trainable_here, g.state_bytes, c.largest)
    c.kept_grads = 0 if c.fp16_optimizer else c.grads
    if tr.framework != "deepspeed" or not g.full:
        return
    # the blocks the loss's backward left cached, which ZeRO's step may reuse (zero.loss_freed_blocks)
    freed = loss_freed_blocks(tr.micro_batch_size * tr.sequence_length * a.vocab_size // t, g.act.loss_backward,
                              g.compute_bytes)
    if c.zero in (1, 2):
        _zero12_step(g, c, freed)
    elif c.zero == 3:
        _zero3_step(g, c, freed)


def _zero12_step(g: _Given, c: _Count, freed: list[int]) -> None:
    """ZeRO-1/2's step: the pre-step copies, the step's blocks, and what it reserves beside its peak."""
    a, tr, part, compute_bytes = g.a, g.tr, c.n // g.d, g.compute_bytes
    c.step_cached = zero12_step_cached(part, compute_bytes, c.temp, accumulation_steps(tr))
    # the overflow check's and the norm's copies of the largest gradient before it (zero.zero12_prestep), on the
    # rank whose partition holds that tensor
    pre_peak, pre_segments = zero12_prestep(
        min(largest_parameter(a, tr, g.t * g.pp), part), part, compute_bytes, c.temp,
        g.precision == "fp16" or tr.deepspeed_overflow_check_every_dtype, tr.deepspeed_device_overflow_check, freed)
    c.step_extra, c.temp = zero12_step(part, compute_bytes, c.temp)
    # reserved at the step: its own blocks and the pre-step ones it cannot reuse; allocated: the larger moment
    reserved = c.step_extra + c.temp + c.step_cached + pre_segments
    c.step_cached = reserved - max(c.step_extra + c.temp, pre_peak)
    c.step_extra = reserved - c.temp   # reserved beside the step's peak (zero.zero12_step_cached, zero12_prestep)
    # the step frees every 16-bit gradient (zero12_step) and the next backward allocates them again
    # (stage_1_and_2.py: grads_in_partition re-created on the first gradient): none is kept between steps
    c.kept_grads = 0


def _zero3_step(g: _Given, c: _Count, freed: list[int]) -> None:
    """ZeRO-3's step, one sub-group at a time, after the norm's fp64 copy, against the backward's freed blocks."""
    sub = min(c.n // g.d, ZERO_SUB_GROUP)
    sub_temp = step_temporary_bytes(g.tr, sub, g.state_bytes, min(c.largest, sub))
    c.step_extra, c.temp = zero3_step(sub, g.compute_bytes, sub_temp)
    # the norm's fp64 copy of the largest gradient partition before the sub-groups (zero.zero3_norm_copy)
    norm_copy = zero3_norm_copy(largest_parameter(g.a, g.tr, g.t * g.pp), g.d)
    c.step_extra = max(c.step_extra, norm_copy - c.temp)
    # the step's blocks against those the loss's backward freed (zero.zero3_step_segments)
    c.step_segments = zero3_step_segments(sub, g.compute_bytes, sub_temp, freed, norm_copy)


def _grads_held(g: _Given, c: _Count) -> None:
    """The gradients that hold GPU memory at the loss's backward (`held`) and of those the cached (`cached`):
    grads_at_loss_backward, gradient accumulation and ZeRO's reduction copies."""
    a, tr, layout, t, d, full = g.a, g.tr, g.layout, g.t, g.d, g.full
    deepspeed = tr.framework == "deepspeed"
    # the gradients not yet made when the loss's backward runs hold nothing then (grads_at_loss_backward); the
    # backward's end, every gradient made and the activations freed, holds them all: its peak is the larger of the two
    c.held, c.cached = grads_at_loss_backward(tr, layout, c.grads, g.output * g.state_bytes if full else 0)
    logits_block = tr.micro_batch_size * tr.sequence_length * a.vocab_size // t * g.compute_bytes
    if deepspeed and full and c.zero == 2 and not zero12_partition_held(c.grads, c.overlap, logits_block):
        # grads_in_partition served by the 16-bit logits' freed block (zero.zero12_partition_held)
        c.held = c.cached = 0
    # gradient accumulation: micro-batches 2..N find the earlier ones' gradients (accumulation.py)
    c.held, c.cached = runtime_accumulated_grads(tr, layout, c.grads, c.held, c.cached,
                                                 c.n * g.compute_bytes if full else 0)
    if deepspeed and full and c.zero in (1, 2) and d > 1 and c.overlap:
        copy = zero12_reduce_copy(c.reduce_bucket, c.n, g.compute_bytes)   # the reduction stream's cached flat copy
        c.held, c.cached = c.held + copy, c.cached + copy
    if deepspeed and c.zero == 3 and c.overlap:
        # reduce_and_partition_stream's flat copy of a bucket, reserved in that stream's pool, one rank included
        # (zero.zero3_reduce_copy)
        copy = zero3_reduce_copy(c.reduce_bucket, c.n, largest_parameter(a, tr, t * g.pp), d, g.compute_bytes)
        c.held, c.cached = c.held + copy, c.cached + copy
        if tr.deepspeed_zero3_flat_overflow_check and not tr.offload_optimizer and (
                g.precision == "fp16" or tr.deepspeed_overflow_check_every_dtype):
            # has_overflow's abs copy and bool mask of the whole gradient partition, in the same stream's pool
            # beside the reduce copy (zero.zero3_overflow_cached)
            extra = zero3_overflow_cached(-(-c.n // d), g.compute_bytes, copy)
            c.held, c.cached = c.held + extra, c.cached + extra


def _offload(g: _Given, c: _Count) -> None:
    """training.offloadOptimizer / offloadParameters under fsdp or ZeRO 1-3: what leaves the GPU for the host."""
    tr, fw = g.tr, g.tr.framework
    if not (offloads(tr) and (fw == "fsdp" or (fw == "deepspeed" and c.zero >= 1))):
        return
    # CPU offload (offload.py): the offloaded states leave the GPU, the step runs on the host
    if fw == "fsdp":
        # the shards go to the host (offload.py), FSDP1's wrap's too; a 4-bit base's quantization states stay
        o = fsdp_offloaded(c.weights - c.quant_states, c.grads, c.optimizer)
        c.load = max(c.load - c.weights + c.quant_states, 0) if c.load else 0
    else:
        zero, overlap, d, compute_bytes = c.zero, c.overlap, g.d, g.compute_bytes
        copy = zero12_reduce_copy(c.reduce_bucket, c.n, compute_bytes) if zero in (1, 2) and d > 1 and overlap else 0
        o = zero_offloaded(zero, overlap, bool(tr.offload_parameters), c.n, d, g.full, compute_bytes, c.weights,
                           c.grads, c.optimizer, c.kept_grads, c.held, c.cached,
                           c.reduce_bucket * compute_bytes if zero == 3 else 0, copy,
                           largest_parameter(g.a, tr, g.t * g.pp), tr.deepspeed_device_overflow_check)
    c.weights, c.grads, c.optimizer, c.kept_grads = o.weights + c.quant_states, o.grads, o.optimizer, o.kept_grads
    c.step_cached = 0
    c.step_segments = -1
    c.step_extra, c.temp, c.held, c.cached, c.host = o.step_extra, o.temp, o.held, o.cached, o.host
    # accelerate's no_sync keeps the unsharded 16-bit gradients on the GPU under offload too
    # (accumulation.no_sync_unsharded: offloaded only at the eventual sync)
    c.held += no_sync_unsharded(tr, g.layout, c.n * g.compute_bytes if g.full else 0) if fw == "fsdp" else 0
    c.buckets_extra = o.buckets_extra


@dataclass
class _Backward:
    """The backward's count beyond the states: where the loss's backward `start`s, its peak `transient`, what is
    gathered at FSDP1's loss moment, the gathered bytes that strand no slack, and FSDP2's or torchtune's moment."""

    loss: int
    cached_logits: int
    start: int
    transient: int
    loss_gathered: int | None = None   # FSDP1 full, the loss's moment the peak: what is gathered then (no gradient yet)
    reused: int = 0
    moment: BackwardMoment | None = None


def _fsdp2_over_data(g: _Given) -> bool:
    """FSDP2, a full fine-tune, over `data` > 1 on one stage: its backward is counted moment by moment."""
    return g.tr.framework == "fsdp" and g.full and g.tr.fsdp != 1 and g.pp == 1 and g.d > 1


def _backward(g: _Given, c: _Count) -> _Backward:
    """The backward's peak beyond the states: the loss's backward or a layer's, FSDP1's loss moment, FSDP2's and
    torchtune's moments."""
    a, tr, act, t, pp = g.a, g.tr, g.act, g.t, g.pp
    loss = max(act.loss_backward, act.loss_forward)
    # before transformers 4.46 the 16-bit logits' block freed at the model's upcast stays cached beside the loss's
    # fp32 buffers (activations.freed_16bit_logits_bytes): reserved, not allocated, while the loss dominates
    vocab_split = t if tr.framework != "fsdp" or loss_parallel(tr, t) else 1
    # a layer's moment, with ZeRO-1/2 offload's reduction transient beside it (offload.reduction_after_loss)
    layer = reduction_after_loss(act.recompute, c.buckets_extra)
    cached_logits = freed_16bit_logits_bytes(a, tr, vocab_split) if loss >= layer and pp == 1 else 0
    start = act.kept + max(loss, layer) + cached_logits - (c.grads - c.held)
    b = _Backward(loss=loss, cached_logits=cached_logits, start=start,
                  transient=max(start, 0) + c.gathered + c.buckets)
    if c.fsdp1_loss_gathered is not None and pp == 1 and start >= 0:
        base = start - max(loss, act.recompute)
        loss_moment, b.loss_gathered = fsdp1_loss_moment(base, act.loss_forward, act.loss_backward,
                                                         *c.fsdp1_loss_gathered)
        layer_moment = base + act.recompute + c.gathered + c.buckets
        if loss_moment >= layer_moment:
            b.transient = loss_moment
        else:
            b.transient, b.loss_gathered = layer_moment, None
    b.reused = fsdp_gathered_reuse(tr, c.gathered if b.loss_gathered is None else b.loss_gathered)
    # FSDP1's no_sync unsharded gradients, allocated once in the first micro-batch and held (accumulation.no_sync_reuse)
    b.reused += no_sync_reuse(tr, g.layout, c.n * g.compute_bytes if g.full else 0, b.transient - b.reused)
    if tr.framework == "deepspeed":
        # ZeRO-2's gradients copied into the contiguous IPG buffer, autograd's blocks freed at the sizes the next
        # layer asks for (zero.zero2_gradient_reuse)
        b.reused += zero2_gradient_reuse(c.zero, c.overlap, c.buckets,
                                         zero12_ipg_buffers(c.reduce_bucket, c.overlap, g.compute_bytes))
    fsdp2 = _fsdp2_over_data(g)
    if fsdp2 or c.lora_gathered is not None:
        b.cached_logits = 0   # the moment-by-moment counts below replace `start`
    if fsdp2:
        _fsdp2_moments(g, c, b)
    elif c.lora_gathered is not None:
        # lora_finetune_distributed's backward moment by moment (torchtune.distributed_moments)
        b.moment = fsdp2_backward_peak(torchtune.distributed_moments(act.kept, loss, act.recompute, c.lora_gathered))
        b.transient, b.reused = b.moment.total, b.moment.gathered   # buckets: 0 for LoRA (no FSDP1 unit)
    return b


def _fsdp2_moments(g: _Given, c: _Count, b: _Backward) -> None:
    """FSDP2 over `data`: its backward's peak moment, with unsplit shared experts and float8 all-gathers."""
    a, p, tr, t, d = g.a, g.p, g.tr, g.t, g.d
    # FSDP2's backward moment by moment (fsdp2_backward_moments) in place of the single count above, which put
    # `buckets` (a block's 16-bit gradients and reduce-scatter input, the output's gradient) at the loss's backward
    # where none exists yet; the sharded gradients are held (cached) at every moment but the end, as above
    moment_inputs = fsdp2_backward_inputs(a, tr, g.layout, g.act, c.gathered, g.layer, g.output,
                                          (p.embedding + p.lm_head) // t, g.compute_bytes, c.reduce_bytes)
    # a block's reduce-scatter input holds `data` padded copies of unsplit shared experts (grouped_shared_params)
    moment_inputs["layer_rs"] += c.shared_pad * (d - 1) * c.reduce_bytes
    if float8.active(tr):   # a freed block gives back its fp8-gathered bytes (float8.fsdp2_block_weight)
        moment_inputs["layer_weight"] = float8.fsdp2_block_weight(a, tr, t, g.layer, g.compute_bytes)
    b.moment = fsdp2_backward_peak(fsdp2_backward_moments(**moment_inputs))
    b.transient, b.reused = b.moment.total, b.moment.gathered
    if hf_fsdp2(tr) and c.held > c.grads:   # accelerate's no_sync: every unsharded gradient held (accumulation.py)
        b.moment = replace(b.moment, buffers=b.moment.buffers + c.held - c.grads)
        b.transient = b.moment.total


@dataclass(frozen=True)
class _Phase:
    """The peak's phase and what is live then (bytes per GPU)."""

    name: str
    activations: int
    weights: int
    gradients: int
    optimizer: int
    transient: int
    cached: int


def _phase(g: _Given, c: _Count, b: _Backward, step_transient: int) -> _Phase:
    """Whichever is larger, the optimizer step or the backward's peak moment, and what is live at it."""
    act = g.act
    if b.transient < step_transient:
        return _Phase("optimizer step", 0, c.weights, c.grads + c.step_extra, c.optimizer + c.temp, step_transient,
                      c.step_cached)
    if b.moment is not None:
        return _Phase(b.moment.name, b.moment.activations, c.weights + b.moment.gathered, c.grads + b.moment.buffers,
                      c.optimizer, b.transient, 0 if b.moment.name == "backward end" else c.cached)
    if b.loss_gathered is not None:   # FSDP1's loss moment: the root (and the prefetched unit) gathered, no gradient
        return _Phase("loss backward", act.kept + b.loss + b.cached_logits, c.weights + b.loss_gathered, c.held,
                      c.optimizer, b.transient, c.cached)
    if b.start >= 0:
        fsdp1_layer = c.fsdp1_loss_gathered is not None and g.pp == 1
        at_layer = b.loss < reduction_after_loss(act.recompute, c.buckets_extra)   # as _backward's layer moment
        phase = "loss backward" if not at_layer and not fsdp1_layer else \
            "layer recompute" if act.recompute else "layer backward"
        live_act = act.kept + (act.recompute if fsdp1_layer or at_layer else b.loss) + b.cached_logits
        extra = c.buckets_extra if at_layer else 0
        return _Phase(phase, live_act, c.weights + c.gathered, c.held + c.buckets + extra, c.optimizer, b.transient,
                      c.cached)
    return _Phase("backward end", 0, c.weights + c.gathered, c.grads + c.buckets + c.buckets_extra, c.optimizer,
                  b.transient, 0)


def _peak(g: _Given, c: _Count) -> RuntimePeak:
    """The step's peak from the running count: the backward's against the optimizer step's."""
    tr, pp = g.tr, g.pp
    b = _backward(g, c)
    step_transient = c.step_extra + c.temp
    # the units gathered in the forward, freed by the loss, stay in their streams' pools (fsdp1_unshard_pool_cached)
    unshard_cached = fsdp1_unshard_pool_cached(c.gathered, b.loss_gathered) if b.loss_gathered is not None else 0
    ph = _phase(g, c, b, step_transient)
    # the 16-bit logits' cached block is in the peak's activations at the loss's backward, and at FSDP1's layer moment
    # after it (`start` counts it there too)
    logits_at_peak = b.cached_logits if ph.name == "loss backward" or (
        ph.name.startswith("layer") and c.fsdp1_loss_gathered is not None and pp == 1) else 0
    step_largest = step_first = freed_block = 0
    if _fsdp2_over_data(g) and not c.host:   # offloaded: the step runs on the host
        step_largest, step_first, freed_block = step_segment_inputs(g.a, tr, g.t, c.largest, g.state_bytes,
                                                                    c.optimizer, g.compute_bytes)
    return RuntimePeak(weights=ph.weights, gradients=ph.gradients, optimizer=ph.optimizer, activations=ph.activations,
                       phase=ph.name, states=c.weights + c.kept_grads + c.optimizer, transient=ph.transient,
                       backward_transient=b.transient, step_transient=step_transient,
                       expandable_segments=expandable_segments(tr), reused=b.reused,
                       load=c.load, load_cached=c.load_cached, load_unshard_pool=c.unshard_pool,
                       cached_gradients=ph.cached, step_largest=step_largest, step_first_states=step_first,
                       freed_block=freed_block, host_offload=c.host, step_cached=c.step_cached,
                       step_segments=c.step_segments, cached_logits=logits_at_peak, unshard_cached=unshard_cached,
                       after_step=c.after_step)


def grads_at_loss_backward(tr: Training, layout: Layout, grads: int, output_grad: int) -> tuple[int, int]:
    """(held, cached): of the `grads` bytes of trained gradients the runtime keeps between its backward and its step,
    those that hold GPU memory while the loss's backward (or the first layer's recompute) runs, and of those the ones
    held only as cached allocator blocks, not allocated. Without gradient accumulation (the spec has no field for it;
    with it every later micro-batch's backward finds the gradients made). Each runtime frees its gradients before the
    next forward: torchtitan's train_step calls optimizers.zero_grad() first (train.py, December 2024 and April 2025;
    set_to_none=False only with CUDA graphs, trainer.py since PR 3559, August 2026), torchtune's recipes
    zero_grad(set_to_none=True) after the step, the HF Trainer model.zero_grad() after it (torch's default set_to_none
    since 2.0). What that frees depends on where the gradients were made:
    - fsdp over `data` > 1: FSDP2 makes each group's sharded gradients as views of the reduce-scatter output, allocated
      in the reduce-scatter stream (foreach_reduce in torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py,
      _composable/fsdp/ before torch 2.6: `with device_handle.stream(reduce_scatter_stream): reduce_output =
      reduce_scatter_input.new_empty(...)`),
      FSDP1 in its post-backward stream (fsdp/_runtime_utils.py _reduce_grad, `new_sharded_grad` "produced in the
      post-backward stream"). The caching allocator hands a freed block only to its own stream
      (c10/cuda/CUDACachingAllocator.cpp get_free_block: `(*it)->stream != p.stream()` -> no), so from the second step
      on the previous step's gradient blocks stay reserved, unusable by the forward and the loss: held, all cached.
    - fsdp on one GPU and one stage: torchtitan applies no FSDP then (dp_shard 1) nor do torchtune's single-device
      recipes, so autograd's AccumulateGrad makes the gradients in the default stream, as they are needed, and the
      next forward reuses the freed blocks: only the output projection's, made by the loss's backward, is held (as the
      transformers path on one GPU counts none). Under pipeline stages (no FSDP either) the micro-batches accumulate
      into them: all held, allocated.
    - megatron: one gradient buffer for the run, zeroed in place (megatron/core/distributed/param_and_grad_buffer.py:
      `grad_data = torch.zeros(...)`, reset() `grad_data.zero_()`): held, allocated.
    - deepspeed ZeRO-3: `grad_partitions_flat_buffer` is allocated by the optimizer's constructor and kept
      (runtime/zero/stage3.py, since DeepSpeed PR 1453), ZeRO-0's bf16 optimizer its fp32 gradient buffers: held,
      allocated. ZeRO-1/2: `grads_in_partition` is created by the first copy of each backward and dropped by its
      epilogue (stage_1_and_2.py copy_grads_in_partition, _release_ipg_buffers), the flat `averaged_gradients` after
      the step: none allocated. Held, all cached: under overlap_comm they are made in the reduction stream, and
      without it one allocation made after the loss's backward takes a new segment in the first step
      (zero.zero12_partition_held; runtime_peak drops them where the freed logits' block serves it)."""
    if tr.framework == "fsdp":
        if layout.data == 1:
            return (min(output_grad, grads) if layout.pipeline == 1 else grads), 0
        return grads, grads
    if tr.framework == "deepspeed" and tr.zero_stage in (1, 2):
        return grads, grads
    return grads, 0


def runtime_notes(tr: Training, layout: Layout, precision: str) -> list[str]:
    """What the estimate assumed about the runtime that the spec does not say. `precision`: the spec's."""
    if tr.framework == "fsdp" and tr.fsdp == 1:
        # accelerate's MixedPrecision only where mixed precision is asked (masterWeights fp32: the fp32 shards cast
        # to the 16-bit param dtype, _fsdp1_full); pure 16-bit runs have no policy
        mixed = (f"{precision} MixedPrecision over fp32 shards" if tr.master_weights == "fp32" else
                 f"no MixedPrecision ({precision} parameters, gradients and optimizer states)")
        notes = ["fsdp (FSDP1) is modelled as accelerate's FSDP plugin runs it: FullyShardedDataParallel with "
                 f"transformer-layer wrapping, limit_all_gathers, BACKWARD_PRE prefetch, {mixed}, "
                 "transformers' model code and reentrant checkpointing"
                 + ("" if tr.expandable_segments else ", PyTorch's default allocator")]
        if tr.hf_fsdp1_without_rate_limiter:
            # Without the rate limiter FSDP1 frees a gathered unit only once the compute stream has passed it
            # (torch 2.0 flat_param.py `_free_unsharded_flat_param`: record_stream, then free) and nothing else stops
            # the CPU (`_unshard` waits on a free event only under limit_all_gathers); the Trainer's one sync a
            # micro-batch (`torch.isnan(tr_loss_step)`, logging_nan_inf_filter) bounds the lead at every unit of a
            # micro-batch. How many are alive at once depends on GPU timing: not counted (docs/accuracy.md, "The third
            # pass's wrong training facts").
            notes.append(f"transformersVersion {tr.transformers_version}: the HF Trainer of that release runs FSDP1 "
                         "with limit_all_gathers False unless its fsdp_config sets it; the units the CPU gathers "
                         "ahead of the GPU are then not counted beyond two, and the estimate may be under")
        return notes
    notes = []
    if hf_fsdp2(tr):
        notes.append("fsdp with modelCode transformers is modelled as accelerate's FSDP2 runs transformers' models: "
                     "fully_shard per decoder layer and one root group (embeddings, final norm, lm_head), eager "
                     "RMSNorm with its fp32 upcast, transformers' causal-LM loss"
                     + (", tp_plan's whole-sequence norms and whole logits" if layout.tensor > 1 else ""))
    if tr.framework == "fsdp" and layout.tensor > 1:
        t = layout.tensor
        sp = "sequence parallel norms" if sequence_parallel(tr, t) else "no sequence parallel (whole-sequence norms " \
            "and block inputs on every rank)"
        lp = "loss parallel" if loss_parallel(tr, t) else "the logits gathered to the whole vocabulary on every rank"
        plan = "torchtitan's plan" if sequence_parallel(tr, t) and loss_parallel(tr, t) else "its tensor-parallel plan"
        notes.append(f"fsdp with tensor parallel is modelled as {plan}: {sp}, all-gathered norm outputs, {lp}")
        if torchtune_eager_chunked_loss(tr, t) and tr.torchtune_loss != "chunkedOutput":
            notes.append("lossChunks under tensor parallel is modelled as torchtune's LinearCrossEntropyLoss: eager "
                         "(it skips compile under tensor parallel), every chunk's fp32 log-softmax kept until the "
                         "backward")
    if tr.framework == "fsdp" and tr.expandable_segments is None:
        if tr.activation_checkpointing == "selective" and not hf_fsdp2(tr):
            return notes + ["fsdp with selective checkpointing is modelled as torchtitan: per-op SAC, expandable "
                            "segments, foreach AdamW"]
        return notes + ["fsdp is modelled with PyTorch's default allocator and foreach AdamW (torchtune, accelerate "
                        "with FSDP2; set fsdpVersion: 1 for accelerate's default FSDP1); torchtitan exports expandable "
                        "segments (set training.expandableSegments: true), as torchtune's main does since June "
                        "2025, which needs less"]
    if notes:
        return notes
    if tr.framework == "deepspeed" and tr.zero_stage == 3 and layout.data > 1 \
            and tr.activation_checkpointing != "full" and tr.method == "full":
        return ["ZeRO-3 without full checkpointing: every layer's gathered weights are counted until their backward "
                "(a model built outside deepspeed.zero.Init); HF from_pretrained under zero.Init needs less"]
    if tr.framework == "megatron":
        sp = "sequence parallel" if tr.sequence_parallel else "no sequence parallel (sequenceParallel: false)"
        opt = "the distributed optimizer" if tr.distributed_optimizer is not False else \
            "the optimizer unsharded (distributedOptimizer: false)"
        notes = [f"megatron is modelled with {opt}, flash attention, hidden dropout and {sp}"]
        if layout.expert > 1:
            etp = (f"expertTensorParallel {tr.expert_tensor_parallel}" if tr.expert_tensor_parallel else
                   "Megatron's default --expert-tensor-parallel-size, the tensor-parallel size")
            notes.append(f"megatron's routed experts are split over expert parallel x expert tensor parallel ({etp}), "
                         "their optimizer states over the expert data-parallel group")
        return notes
    return []
