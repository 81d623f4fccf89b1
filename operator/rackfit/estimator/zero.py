"""DeepSpeed ZeRO's defaults and the memory of its optimizer step (deepspeed/runtime/zero, cited where used);
frameworks.runtime_peak calls these. Pure: bytes in, bytes out.
"""

from __future__ import annotations

# --- DeepSpeed ZeRO defaults (deepspeed/runtime/zero/config.py, DeepSpeedZeroConfig) --------------------
ZERO_MAX_LIVE_PARAMETERS = 1_000_000_000   # stage3_max_live_parameters: gathered elements kept at once
ZERO_PREFETCH_BUCKET = 50_000_000          # stage3_prefetch_bucket_size: elements fetched ahead
ZERO_REDUCE_BUCKET = 500_000_000           # reduce_bucket_size: gradient elements per reduce(-scatter)
ZERO_ALLGATHER_BUCKET = 500_000_000        # allgather_bucket_size (stages 1-2): all-gathers in place (zero12_step)
ZERO_SUB_GROUP = 1_000_000_000             # sub_group_size: stage-3 step upcasts one sub-group's grads at a time


def zero12_step(part: int, compute_bytes: int, temp: int) -> tuple[int, int]:
    """(gradient side, optimizer side) of what ZeRO-1/2's step (deepspeed/runtime/zero/stage_1_and_2.py,
    DeepSpeedZeroOptimizer.step, read at DeepSpeed edaa722, August 2026; the same since 0.9) holds beyond the states
    kept between steps, for a rank's partition of `part` elements (its 16-bit gradients are among the states), `temp`
    the optimizer's own temporary (training.step_temporary_bytes).
    Without offload, per parameter group: `free_grad_in_param_list(self.params_not_in_partition[i])` frees the
    gradients outside the partition; `flat_grad_partition = self.flatten(self.averaged_gradients[i])` makes a 16-bit
    copy of the partition's gradients (torch.cat) and `.to(self.single_partition_of_fp32_groups[i].dtype)` its fp32
    upcast, with the 16-bit gradients still alive (moment A: 16-bit partition, its flat copy and the fp32 copy); then
    `del flat_grad_partition`, `free_grad_in_param_list(self.params_in_partition[i])` and `self.averaged_gradients[i] =
    None` free every 16-bit gradient before `self._optimizer_step(i)` (moment B: the fp32 gradient partition and the
    optimizer's temporary, no 16-bit gradient). After the step, `all_gather_dp_groups` (runtime/utils.py) all-gathers
    the updated partitions in place into the flat 16-bit buffer (`all_gather_into_tensor` into `bit16_groups_flat`,
    or narrowed views of it on torch without it): no allocation. The larger moment is returned. Under stage 1 the
    gradients outside the partition, freed first, are still counted live at the step (the upper bound): what the step
    allocates is the same as under stage 2, and without expandable segments it takes new segments."""
    flat = part * compute_bytes
    upcast = 0 if compute_bytes == 4 else part * 4   # an fp32 module's `.to(fp32)` returns the flat copy itself
    a = flat + upcast
    b = max(flat, part * 4) - flat
    return (a, 0) if a >= b + temp else (b, temp)


def zero3_step(sub: int, compute_bytes: int, temp: int) -> tuple[int, int]:
    """(gradient side, optimizer side) of what ZeRO-3's step holds beyond the states for one sub-group of `sub`
    elements (deepspeed/runtime/zero/stage3.py, DeepSpeed edaa722): `step` runs `_prepare_sub_group`, `_optimizer_step`
    and the release one sub-group (at most sub_group_size elements) at a time. `_prepare_fp32_grad_for_sub_group`
    makes `self.flatten(self.averaged_gradients[sub_group_id]).to(fp32)`: a flat 16-bit copy of the sub-group's
    gradients (torch.cat) and its fp32 upcast, the copy freed when the statement ends; the 16-bit gradients are views
    of the partitioned-gradient buffer kept between steps (among the states). `_optimizer_step` then points the
    optimizer's param group at the sub-group's fp32 partition alone (`self.optimizer.param_groups[param_group_id]
    ['params'] = [fp32_param]`) and steps it, so a client torch AdamW's temporary (`temp`) is one sub-group's, beside
    the fp32 gradients. The larger moment is returned."""
    flat = sub * compute_bytes
    if compute_bytes == 4:  # an fp32 module: `.to(fp32)` returns the flat copy itself
        return (flat, temp)
    return (sub * 4 + flat, 0) if flat >= temp else (sub * 4, temp)


def zero3_gathered_elements(total: int, output: int) -> int:
    """Elements ZeRO-3 holds gathered at once at most (16-bit), for a model of `total` parameters whose output
    projection has `output`. deepspeed/runtime/zero/partitioned_param_coordinator.py (`fetch_sub_module`, v0.13.5 and
    v0.16.4): the current module's parameters are always fetched, and only the prefetch is capped,
    `max_params_to_prefetch = min(self.__max_n_available_params - self.__n_available_params,
    self.__prefetch_bucket_sz)`: stage3_max_live_parameters plus the prefetch bucket bound what is gathered beside a
    module, not the module itself. The output projection (lm_head) is one module whose forward is followed at once by
    the loss and its own backward, so `__params_to_release` keeps it gathered from its forward through the loss's
    backward (its reuse distance is 0, within stage3_max_reuse_distance). Where that one matrix exceeds the bound
    (Qwen-72B: 152,064 x 8,192 = 1.25e9 elements), it is what is gathered at the loss's backward, with no prefetch
    beside it (the cap is then negative)."""
    return max(min(ZERO_MAX_LIVE_PARAMETERS + ZERO_PREFETCH_BUCKET, total), output)


def zero3_gathers(d: int, offload_parameters: bool) -> bool:
    """Whether ZeRO-3 allocates a gathered copy of a parameter when it fetches it, over `d` data-parallel ranks (the
    partitions' count). Read in deepspeed/runtime/zero/partition_parameters.py and partitioned_param_coordinator.py at
    v0.9.0, v0.10.0, v0.11.0, v0.12.3, v0.13.5, v0.14.2, v0.15.4 and v0.16.4: the coordinator's
    `__all_gather_params_` calls `all_gather_coalesced`, which on one partition (`if self.num_partitions == 1`,
    `self.world_size == 1` in 0.9.0) returns `_no_gather_coalesced(params)`: NoGatherHandle / NoGatherCoalescedHandle
    set `param.data = param.ds_tensor.data.to(device=current_device_name(), non_blocking=True).view(param.ds_shape)`.
    With the partition on the GPU (no offload_param) `.to` of a tensor already on that device returns it and `.view`
    is a view: `param.data` points at the partition itself (`_partition_param`: `partition_size = tensor_size //
    self.num_partitions`, the whole parameter; stage3.py's defragment moves the partitions into
    fp16_partitioned_groups_flat, counted among the weights). `free_param` then points `param.data` at an empty
    tensor, freeing nothing. So on one GPU nothing is gathered: not the live-parameter and prefetch bound
    (zero3_gathered_elements), not the output projection, and not the weights torch's linear saves for its backward
    without zero.Init (`weight.t()`, a view of the same flat partition buffer). With offload_param the partition is on
    the host and `.to(device)` copies it to the GPU: gathered as over several ranks."""
    return d > 1 or offload_parameters


def zero_overlap_comm(stage: int, overlap_comm: bool | None) -> bool:
    """Whether ZeRO overlaps the gradients' reduction with the backward: zero_optimization.overlap_comm as the job
    sets it, else DeepSpeed's default, True for stage 3 and False for stages 1 and 2 (deepspeed/runtime/zero/config.py,
    DeepSpeedZeroConfig.overlap_comm None, validator `overlap_comm_valid`: `self.stage == ZeroStageEnum.weights`;
    DeepSpeed edaa722, the same since 0.6)."""
    return (stage == 3) if overlap_comm is None else overlap_comm


def zero12_ipg_buffers(reduce_bucket: int, overlap: bool, compute_bytes: int) -> int:
    """Bytes of ZeRO-1/2's IPG gradient buckets during the backward (deepspeed/runtime/zero/stage_1_and_2.py, DeepSpeed
    edaa722; with contiguous_gradients, DeepSpeed's default): `torch.empty(int(self.reduce_bucket_size), dtype=
    self.dtype)` (the module's 16-bit dtype), whatever the model's size, and with overlap_comm a second one ("Use double
    buffers to avoid data access conflict when overlap_comm is enabled": `buf_1`; the reduction of one bucket runs on
    `reduction_stream` while the next fills the other, `bucket.index = 1 - bucket.index` in
    reduce_independent_p_g_buckets_and_remove_grads). Allocated in DeepSpeedZeroOptimizer.backward before
    `loss.backward()` up to 0.18.2, at the first gradient hook (`setup_buckets`, PR 7665) from 0.18.3; freed by the
    epilogue (`_release_ipg_buffers`). Stage 3 keeps one bucket whatever overlap_comm (stage3.py `bucket.buffer =
    torch.empty(self.reduce_bucket_size)` in __init__; overlap_comm only picks its reduce_and_partition_stream)."""
    return (2 if overlap else 1) * reduce_bucket * compute_bytes


def zero2_gradient_reuse(stage: int, overlap: bool, buckets: int, ipg: int) -> int:
    """Bytes of ZeRO-2's backward transient (frameworks.runtime_peak's `reused`) on which the caching allocator strands
    no slack, as fsdp.fsdp_gathered_reuse for FSDP's gathered parameters: of `buckets` (the IPG buffers, `ipg` bytes,
    zero12_ipg_buffers, and one layer's unpartitioned gradients beside them), the layer's gradients. Read in
    deepspeed/runtime/zero/stage_1_and_2.py and config.py at v0.9.0, v0.12.4, v0.14.2 and v0.16.4 (the same):
    contiguous_gradients (config.py: default True, "Copies the gradients to a contiguous buffer as they are produced.
    Avoids memory fragmentation during backward pass"; forced on by offload_optimizer, `contiguous_gradients or
    self.cpu_offload`) makes each gradient hook (`reduce_independent_p_g_buckets_and_remove_grads`) copy the gradient
    autograd made into the IPG buffer and point `param.grad` at it (`grad_reduc.data = new_grad_tensor.data.view_as(
    grad_reduc)`, "keeping the gradients contiguous to prevent memory fragmentation"): autograd's block is freed on the
    default stream at once, and the next layer's gradients, the same shapes, take those blocks back. The IPG buffers
    themselves (allocated whole in `backward` before `loss.backward()`, freed by the epilogue) stay counted: which
    block serves them each step depends on the forward before it. Stage 1 under overlap_comm (`overlap`) runs the same
    hooks (`if self.partition_gradients or self.overlap_comm: self.create_reduce_and_remove_grad_hooks()`, reducing at
    the accumulation boundary), as stage 2; without overlap_comm it adds no hook and keeps its gradients: 0. ZeRO-3 is
    left as it was (docs/accuracy.md, "DeepSpeed's own memory handling and the allocator slack"): its gathered
    parameters are allocated in the all-gather stream's pool but freed with `record_stream` on the compute stream
    (partition_parameters.py free_param) while the prefetch runs ahead, and its gradients are copied on
    reduce_and_partition_stream with `param.grad.record_stream(...)` (stage3.py __add_grad_to_ipg_bucket), so neither
    is re-requested into a block known free."""
    return max(buckets - ipg, 0) if stage == 2 or (stage == 1 and overlap) else 0


def zero12_partition_held(partition_bytes: int, overlap: bool, freed_block: int) -> bool:
    """Whether ZeRO-2's 16-bit gradient partition holds GPU memory (reserved, not allocated) at the loss's backward.
    copy_grads_in_partition (stage_1_and_2.py, DeepSpeed edaa722; the same since 0.9) allocates `grads_in_partition`,
    the whole partition in one `torch.empty`, at the first bucket's reduction, after the loss's backward, and the step
    frees it. Under overlap_comm reduce_ipg_grads runs that copy in `with stream(self.reduction_stream)`: the block
    belongs to that stream's pool, which the caching allocator never hands to the default stream's forward
    (CUDACachingAllocator.cpp get_free_block): held from the second step on. Without overlap_comm it is made in the
    default stream, from a cached free block at least as large or else a new segment (`malloc`, `alloc_block`); the
    largest block the loss's backward frees before it is the micro-batch's 16-bit logits (`freed_block`, as
    fsdp.step_segment_inputs counts it). Larger than that, the first step reserves a segment for it beside what the
    loss's backward reserved: held all the same. Not larger, it reuses the logits' block: not held."""
    return overlap or partition_bytes > freed_block


def zero12_reduce_copy(reduce_bucket: int, params: int, compute_bytes: int) -> int:
    """Bytes of the flat copy each ZeRO-1/2 bucket reduction makes over data parallel > 1 (stage_1_and_2.py, DeepSpeed
    0.12.4 on, PR 4695; edaa722): average_tensor splits the bucket into one slice per destination rank and, with
    use_multi_rank_bucket_allreduce (default True), allreduce_and_scatter -> allreduce_bucket runs
    `tensor = self.flatten(bucket)`: torch's flatten_dense_tensors, a `cat` of the slices (a new tensor the bucket's
    size) whenever the bucket spans two ranks' partitions, all-reduced and copied back. Under overlap_comm it is made
    in `reduction_stream` and stays in that stream's pool between reductions and steps, so from the second step it is
    reserved at the loss's backward beside the gradient partition. Before 0.12.4 average_tensor reduced the slices in
    place (`dist.reduce(grad_slice, ...)`): no copy."""
    return min(reduce_bucket, params) * compute_bytes


def zero3_reduce_copy(reduce_bucket: int, trainable: int, largest: int, d: int, compute_bytes: int) -> int:
    """Bytes the reduce_and_partition_stream's pool keeps reserved under ZeRO-3 with overlap_comm over data parallel
    `d` (one rank included): the flat copy reduce_scatter_coalesced makes of a bucket, for `trainable` trained
    elements on this rank (before partitioning), `largest` the largest trained tensor's elements. Read in
    deepspeed/runtime/zero/stage3.py and runtime/comm/coalesced_collectives.py at v0.13.5 and v0.16.4 (the same):
    - `__reduce_and_partition_ipg_grads` runs in `with get_accelerator().stream(self.reduce_and_partition_stream)`,
      its own `Stream()` under overlap_comm (the default stream without it). With `reduce_scatter` True (the
      default) it always takes `__avg_scatter_grads`, which calls `reduce_scatter_coalesced([p.grad ...])`.
    - reduce_scatter_coalesced reduces a lone tensor in place when its elements divide by the world size
      (`tensors[0].view(-1)`). Otherwise, several tensors or padding, it interleaves the ranks' chunks with
      `torch.cat`: a new tensor of the bucket's padded size, made in that stream.
    - `__add_grad_to_ipg_bucket` groups gradients up to reduce_bucket_size elements
      (`elements_in_ipg_bucket + param.ds_numel > reduce_bucket_size` closes a bucket), and a tensor over it goes
      alone. So the copy is at most min(reduce_bucket_size, trainable) elements, or a lone tensor that does not
      divide by the world size, padded up.
    The block is freed once partition_grads has copied the partitions into grad_partitions_flat_buffer (no
    allocation: the accumulation dtype is the 16-bit model dtype under ZeRO, engine.py get_data_types, so
    `.to(gradient_accumulation_dtype)` returns the partition itself). Freed in a side stream's pool, it is not
    handed to the default stream's allocations (CUDACachingAllocator.cpp get_free_block: a block of another stream is
    skipped): from the second micro-batch on it is reserved, not allocated, at the loss's backward. Without
    overlap_comm it is made in the default stream and reused. The bucket bound is an upper bound: with HF's "auto"
    bucket (hidden^2) most reductions are one matrix reduced in place.
    On one rank (`d` 1; the same releases, and v0.9.0, v0.12.3 and v0.14.2) nothing skips this: stage3.py's gradient
    hooks and `__reduce_and_partition_ipg_grads` run whatever the world size, and reduce_scatter_coalesced's in-place
    path is still `len(tensors) == 1 and tensors[0].numel() % world_sz == 0`: a bucket of several gradients is
    concatenated by `torch.cat` (no padding, the chunk is the whole tensor). With DeepSpeed's default 5e8-element
    bucket and a model smaller than that (Qwen1.5-0.5B's 464M), every gradient waits in the bucket until
    `independent_gradient_partition_epilogue` and the copy is all of them."""
    lone = -(-largest // d) * d if largest > reduce_bucket and largest % d else 0
    return max(min(reduce_bucket, trainable), lone) * compute_bytes


def zero3_overflow_cached(part: int, compute_bytes: int, reduce_copy: int) -> int:
    """Bytes ZeRO-3's overflow check leaves reserved in reduce_and_partition_stream's pool beyond the reduce copy
    (`reduce_copy`, zero3_reduce_copy, the block already cached there), for a rank's gradient partition of `part`
    elements in the module's `compute_bytes` dtype. Read in deepspeed/runtime/zero/stage3.py at v0.9.4, v0.10.0,
    v0.11.0, v0.11.2, v0.12.3, v0.13.0, v0.14.2, v0.15.0 and v0.16.4 (the same) and torch's TensorCompare.cpp:
    - `has_overflow(partition_gradients=True)` runs `torch.isinf(self.grad_partitions_flat_buffer).any()` and then
      `torch.isnan(...)` inside `with get_accelerator().stream(self.reduce_and_partition_stream)`: the rank's whole
      flat gradient partition, not a bucket. torch's `isinf` is `self.abs() == infinity`: a copy in the gradient's
      dtype and a bool mask (1 byte an element) live together; `isnan` (`self != self`) then makes one mask, which
      the freed blocks serve.
    - Made in that stream (its own `Stream()` under overlap_comm) and freed there, the blocks stay in its pool: the
      default stream's allocations skip them (CUDACachingAllocator get_free_block), so from the first step on they
      are reserved, not allocated. The pool already holds the reduce copy's freed block, which serves the `abs` copy
      (and the mask too when large enough): a block is split, never joined across segments.
    - `_overflow_check_and_loss_scale_update` calls check_overflow `if self.dtype == torch.float16` from 0.11.2
      (before it, every dtype: Training.deepspeed_overflow_check_every_dtype); before 0.9.4 partition_grads checked
      each parameter's partition in turn (small, not counted). With offload_optimizer the buffer is in pinned host
      memory and the check runs on the host: 0 then (not called)."""
    copy, mask = part * compute_bytes, part
    if reduce_copy >= copy + mask:
        return 0
    if reduce_copy >= copy:
        return mask
    if reduce_copy >= mask:
        return copy
    return copy + mask


def zero12_step_cached(part: int, compute_bytes: int, temp: int, accumulation: int) -> int:
    """Bytes ZeRO-1/2's step (zero12_step) leaves reserved but not allocated at its peak, beside what zero12_step
    counts, for a rank's partition of `part` elements, `temp` the optimizer's own temporary (before zero12_step), on
    the caching allocator without expandable segments. Read in deepspeed/runtime/zero/stage_1_and_2.py at v0.13.5
    (March 2024) and edaa722 (August 2026), the same:
    - gradient accumulation (`accumulation` > 1): `independent_gradient_partition_epilogue` sets
      `self.averaged_gradients[i] = self.get_flat_partition(..., return_tensor_list=True)` after the first
      micro-batch: views of that micro-batch's `grads_in_partition`. `_release_ipg_buffers` then sets
      `self.grads_in_partition = None`, so the next micro-batch's `copy_grads_in_partition` allocates a new partition
      (`torch.empty(total_size)`) and points `p.grad` at it, and its epilogue adds it into `averaged_gradients`
      (`accumulated_grad.add_(new_avg_grad)`): from the second micro-batch on two 16-bit partitions are live, the first
      kept to the step. Counted here beside the one zero12_step counts.
    - the step's blocks: `self.flatten(self.averaged_gradients[i]).to(fp32)` makes the flat 16-bit copy (one partition,
      a new block while the gradient partitions are live) and the fp32 partition; `free_grad_in_param_list` and
      `self.averaged_gradients[i] = None` then free the 16-bit blocks before `_optimizer_step`. The optimizer's
      temporary (torch AdamW foreach's `exp_avg_sq_sqrt`, the fp32 partition's size) is larger than any freed 16-bit
      block, and blocks of separate segments do not merge (CUDACachingAllocator: a block is split, never joined across
      segments), so it takes a segment of its own: nvidia-smi shows the flat copy, the fp32 gradients and the
      temporary together, where zero12_step's larger moment (allocated) has two of them. A temporary no larger than
      one freed 16-bit block reuses it. 0 for an fp32 module (its `.to(fp32)` is the flat copy itself) and without
      a temporary."""
    if compute_bytes == 4:
        return 0
    flat = part * compute_bytes
    kept = flat if accumulation > 1 else 0          # averaged_gradients: the first micro-batch's partition
    union = flat + flat + part * 4 + (temp if temp > flat else 0)   # partition, flat copy, fp32, temporary
    moment = max(flat + flat + part * 4, part * 4 + temp)          # zero12_step's larger moment, with the partition
    return kept + max(union - moment, 0)



def step_events(elements: int, compute_bytes: int, temp: int) -> list[tuple[str, int, int]]:
    """A ZeRO step over `elements` gradient elements as allocator events (allocator_new_segments), the same in
    stage_1_and_2.py and stage3.py (one sub-group): the flat 16-bit copy, its fp32 gradients (`.to(fp32)`), the copy
    freed, the optimizer's `temp` made and freed, the fp32 gradients freed. An fp32 module's `.to(fp32)` returns the
    flat copy itself."""
    if compute_bytes == 4:
        return [("alloc", 1, elements * 4), ("alloc", 2, temp), ("free", 2, 0), ("free", 1, 0)]
    return [("alloc", 0, elements * compute_bytes), ("alloc", 1, elements * 4), ("free", 0, 0), ("alloc", 2, temp),
            ("free", 2, 0), ("free", 1, 0)]


def zero12_prestep(largest: int, part: int, compute_bytes: int, temp: int, overflow_check: bool,
                   device_overflow_check: bool, freed_blocks: list[int]) -> tuple[int, int]:
    """(allocated peak, new segments) of what ZeRO-1/2's step makes before zero12_step's blocks, beyond what those
    reserve without it, for the largest gradient tensor of the rank's partition (`largest` elements; its
    `averaged_gradients` entries are one view per parameter) and a partition of `part` elements, `temp` the
    optimizer's own temporary. deepspeed/runtime/zero/stage_1_and_2.py `step`, read at v0.9.0, v0.13.5 and 38327e07f
    (February 2025):
    - `check_overflow()` (for every dtype before 0.11.2; only `if self.dtype == torch.float16` from 0.11.2, PR 4512)
      runs `_has_inf_or_nan` on each gradient view in turn (has_overflow_partitioned_grads_serial). Before 0.13.3 it
      is `float(x.float().sum())`: an fp32 copy of the gradient (`overflow_check`); from 0.13.3 (PR 5115,
      `device_overflow_check`) `float_x = x.float()`, `float_x.isnan()`, `float_x.isinf()`, `nan.logical_or(inf)` and
      `inf_or_nan.float()` are live together: 4 + 1 + 1 + 1 + 4 bytes an element. An fp32 module's `.float()` returns
      the gradient itself.
    - then `scaled_global_norm()` -> `get_grad_norm_direct` takes each view's norm over `g.data.double()`: an fp64
      copy (8 bytes an element), the norm kept, the copy freed (every release read).
    The largest tensor sets both; each is freed before the next, and their blocks stay cached (CUDACachingAllocator
    frees to the pool) where zero12_step's flat copy, fp32 gradients and temporary may or may not fit
    (allocator_new_segments). `freed_blocks`: the blocks the loss's backward left cached (loss_freed_blocks), which
    may serve them. Only the rank whose partition holds the largest tensor (the embedding or the head) makes these
    large copies: the busiest GPU."""
    if largest <= 0:
        return 0, 0
    pre: list[tuple[str, int, int]] = []
    peak = 0
    if overflow_check and device_overflow_check:
        sizes = [largest * 4 if compute_bytes < 4 else 0, largest, largest, largest, largest * 4]
        pre += [("alloc", 10 + i, b) for i, b in enumerate(sizes)] + [("free", 10 + i, 0) for i in range(len(sizes))]
        peak = sum(sizes)
    elif overflow_check and compute_bytes < 4:
        pre += [("alloc", 10, largest * 4), ("free", 10, 0)]
        peak = largest * 4
    pre += [("alloc", 20, largest * 8), ("free", 20, 0)]
    peak = max(peak, largest * 8)
    step = step_events(part, compute_bytes, temp)
    extra = allocator_new_segments(freed_blocks, pre + step) - allocator_new_segments(freed_blocks, step)
    return peak, max(extra, 0)


def allocator_new_segments(free_blocks: list[int], events: list[tuple[str, int, int]]) -> int:
    """Bytes of new segments the caching allocator (c10/cuda/CUDACachingAllocator.cpp, one stream's large pool, no
    expandable segments) reserves for `events`, ("alloc", key, bytes) / ("free", key, 0) in program order, given the
    free blocks the pool already caches (`free_blocks`, one segment each). As `malloc` does: `get_free_block` takes the
    smallest cached free block at least as large as the request (`lower_bound` in the size-ordered pool); `should_split`
    leaves the remainder a free block of the same segment (large pool: remainder over 1 MiB; max_split_size unlimited
    by default); `free_block` merges a freed block with its free neighbours in the same segment (`try_merge_blocks`),
    never across segments; no fitting block: `alloc_block` cudaMallocs a new segment of the request. Rounding (512
    bytes, 2 MiB segments) is below what the estimator resolves and is left out."""
    segments = [[[size, None]] for size in free_blocks if size > 0]
    new = 0
    for op, key, size in events:
        if op == "alloc":
            if size <= 0:
                continue
            best = None
            for seg in segments:
                for i, (piece, owner) in enumerate(seg):
                    if owner is None and piece >= size and (best is None or piece < best[0][best[1]][0]):
                        best = (seg, i)
            if best is None:
                segments.append([[size, key]])
                new += size
                continue
            seg, i = best
            rest = seg[i][0] - size
            seg[i] = [size, key]
            if rest > 0:
                seg.insert(i + 1, [rest, None])
        else:
            for seg in segments:
                for piece in seg:
                    if piece[1] == key:
                        piece[1] = None
                merged: list = []
                for piece in seg:
                    if merged and merged[-1][1] is None and piece[1] is None:
                        merged[-1][0] += piece[0]
                    else:
                        merged.append(list(piece))
                seg[:] = merged
    return new


def zero3_step_segments(sub: int, compute_bytes: int, temp: int, freed_blocks: list[int], norm_copy: int = 0) -> int:
    """Bytes of new segments ZeRO-3's optimizer step reserves beyond the blocks the backward left cached, without
    expandable segments (deepspeed/runtime/zero/stage3.py, DeepSpeedZeroOptimizer_Stage3.step, DeepSpeed edaa722;
    the same since 0.9): one sub-group at a time, `_prepare_fp32_grad_for_sub_group` runs
    `self.flatten(self.averaged_gradients[sub_group_id]).to(fp32)`: the flat 16-bit copy (torch.cat, `sub` x
    `compute_bytes`) and then its fp32 upcast (`sub` x 4) while the copy is live; the copy is freed when the statement
    ends; `_optimizer_step` steps the sub-group's fp32 partition alone, a client torch AdamW foreach making
    `exp_avg_sq_sqrt` (`temp`) beside the fp32 gradients; `_release_sub_group` drops the fp32 gradients. The first
    sub-group (sub_group_size elements, zero.ZERO_SUB_GROUP) is the largest; each later one's requests are no larger
    and are served by the blocks the first freed. `freed_blocks`: the blocks the backward freed in the default stream
    that the step can reuse (the loss's buffers, frameworks.runtime_peak). A temporary twice the flat copy does not
    fit the copy's freed block, and segments never merge: the copy's block stays reserved beside it (as for ZeRO-1/2,
    zero12_step_cached). An fp32 module's `.to(fp32)` returns the flat copy itself.
    Before the sub-groups, `step` takes `_get_norm_groups()` -> `get_grad_norm_direct(self.averaged_gradients[i],
    ...)`, which appends `g.to(device).double().norm(2)` for each gradient partition in turn (stage3.py, the same at
    v0.9.0, v0.13.5, v0.16.4 and 38327e07f, February 2025): an fp64 copy of each, freed once its norm is taken, the
    largest a rank's partition of the largest parameter (`norm_copy` bytes, zero3_norm_copy). Its block stays cached
    where the sub-group's copy and fp32 gradients may or may not fit."""
    pre = [("alloc", 20, norm_copy), ("free", 20, 0)] if norm_copy > 0 else []
    return allocator_new_segments(freed_blocks, pre + step_events(sub, compute_bytes, temp))


def zero3_norm_copy(largest: int, d: int) -> int:
    """Bytes of the fp64 copy ZeRO-3's gradient norm makes of a rank's partition of the largest trained parameter of
    `largest` elements over `d` data-parallel ranks (stage3.py `get_grad_norm_direct`: `g.double()` of each entry of
    `averaged_gradients`, views of the partitioned-gradient buffer one parameter each; partition_parameters.py
    `_partition_param`: every rank holds `ceil(numel / world_size)` elements of every parameter, so every rank makes
    it). 8 bytes an element."""
    return -(-largest // max(d, 1)) * 8


def loss_freed_blocks(logits: int, loss_backward: int, compute_bytes: int) -> list[int]:
    """The blocks the loss's backward frees before ZeRO's step, for a micro-batch of `logits` logits on this rank: the
    16-bit logits (one allocation, as fsdp.step_segment_inputs and zero12_partition_held count it) and the fp32
    buffers of one logit each that the unchunked eager cross-entropy holds at its backward (torch's
    `cross_entropy(logits.float())`: the saved log-softmax, nll's gradient and log-softmax's gradient, the estimator's
    `loss_backward`, framework_activations), each its own allocation of `logits` x 4 bytes, all freed when the loss's
    backward ends and cached, whole, at the step (blocks split by the layers' backward merge back when freed)."""
    fp32 = logits * 4
    return [logits * compute_bytes] + [fp32] * (loss_backward // fp32 if fp32 else 0)
