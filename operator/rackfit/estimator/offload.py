"""CPU offload in training: what DeepSpeed ZeRO-Offload / ZeRO-Infinity (training.offloadOptimizer,
offloadParameters) and FSDP's CPU offload (offloadParameters) leave on the GPU, and how much host memory they take.
frameworks.runtime_peak calls `offloaded_states` on the model states it counted without offload; the estimate's notes
say the host memory (`offload_notes`). Pure: bytes in, bytes out. Sources read: DeepSpeed edaa722 (v0.19.5+, August
2026; the same mechanisms since 0.10), torch's FSDP2 (torch/distributed/fsdp/_fully_shard, torch 2.6 on) and FSDP1
(torch/distributed/fsdp/_flat_param.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from rackfit.spec import Training

GB = 10**9


def offloads(tr: Training) -> bool:
    """Whether the job offloads anything to the CPU (unset fields keep every estimate as it was)."""
    return bool(tr.offload_optimizer) or bool(tr.offload_parameters)


@dataclass(frozen=True)
class Offloaded:
    """runtime_peak's terms after offload (bytes per GPU), and the host memory the offload takes per GPU."""

    weights: int         # 16-bit (or sharded master) parameters kept on the GPU between steps
    grads: int           # gradients and gradient buffers kept on the GPU between steps
    optimizer: int       # optimizer states and fp32 masters on the GPU
    kept_grads: int      # of `grads`, what runtime_peak's `states` counts
    step_extra: int      # the step's gradient-side temporaries on the GPU
    temp: int            # the step's optimizer-side temporaries on the GPU
    held: int            # gradients holding GPU memory at the loss's backward
    cached: int          # of `held`, cached blocks, not allocated
    buckets_extra: int   # added to the backward's buckets
    host: int            # host memory per GPU


def reduction_after_loss(recompute: int, extra: int) -> int:
    """The layer moment of a ZeRO-1/2 backward under offload_optimizer: a layer's recompute (or backward) beside
    `extra`, the largest transient of a bucket's reduction (zero_offloaded's `buckets_extra`: the fp64 norm, the
    overflow check's copies and the fp32 upcast of a gradient slice).
    deepspeed/runtime/zero/stage_1_and_2.py (v0.14.2, the same structure from v0.10 to edaa722): a bucket is reduced,
    and `copy_grads_in_partition` run on each of its gradients, only from a gradient hook
    (`reduce_independent_p_g_buckets_and_remove_grads`: `if self.elements_in_ipg_bucket + param.numel() >
    self.reduce_bucket_size: self.reduce_ipg_grads()`) or from the backward's epilogue
    (`independent_gradient_partition_epilogue`). The first hook of the backward is the output projection's
    AccumulateGrad, which autograd runs after the projection's MmBackward has returned: the loss's fp32 and 16-bit
    logits gradients are freed by then, and that first hook reduces nothing yet (an empty bucket, or the projection
    kept as `extra_large_param_to_reduce` for the next hook). So a reduction's transients meet a layer's backward
    (its recomputed activations and the earlier layers' checkpoints) or the end of the backward, never the loss's
    moment, which is counted without them. A model whose every gradient fits one bucket reduces only in the epilogue,
    after the activations are freed; the layer moment is then an upper bound."""
    return recompute + extra


def zero_offloaded(zero: int, overlap: bool, offload_param: bool, n: int, d: int, full: bool, compute_bytes: int,
                   weights: int, grads: int, optimizer: int, kept_grads: int, held: int, cached: int,
                   ipg: int, reduce_copy: int, largest: int, device_overflow_check: bool = True) -> Offloaded:
    """DeepSpeed ZeRO with offload_optimizer (and, ZeRO-3, offload_param) device cpu.
    ZeRO-1/2 (deepspeed/runtime/zero/stage_1_and_2.py, DeepSpeedZeroOptimizer with `cpu_offload`):
    `self.device = 'cpu'`, so `single_partition_of_fp32_groups` (the fp32 master partition, pinned with pin_memory)
    and the optimizer's states (DeepSpeedCPUAdam, `_enforce_cpu_offload`) are host memory, with a 16-bit host copy of
    the partition (`param_buffer_of_bit16_for_cpu_offload_groups`); the 16-bit flat parameters stay on the GPU.
    `contiguous_gradients` is forced on; `copy_grads_in_partition` returns before `grads_in_partition` is allocated:
    `async_inplace_copy_grad_to_fp32_buffer_from_gpu` copies each reduced gradient's slice of the partition (upcast
    on the GPU, `src_tensor.to(fp32)`, one parameter's slice at a time) into the pinned fp32 `.grad` of the master
    partition and frees the 16-bit gradient, so no gradient partition is kept on the GPU; the IPG bucket(s) and, under
    overlap_comm, the reduction's flat copy stay. The constructor keeps `temp_grad_buffer_for_gpu_offload`, a 16-bit
    GPU buffer of the largest parameter's elements, for the whole run. `step` runs `_optimizer_step` on the host and
    copies the host 16-bit buffer into the GPU partition in place (`.copy_(..., non_blocking=True)`): nothing
    allocated on the GPU (zero.zero12_step's flat copy and fp32 upcast are gone). Before that copy,
    `copy_grads_in_partition` (every release read, v0.10.0 to v0.19.5) runs on each reduced gradient of the partition
    `set_norm_for_param_grad_in_gpu` (`accumulated_grad.data.double().norm(2)` over the partition's slice: an fp64
    copy, 8 bytes an element) and `update_overflow_tracker_for_param_grad` / `update_offload_overflow_tracker` (named
    so from 0.16) - `_has_inf_or_nan` over the whole gradient for every dtype (the offload path has no fp16 gate,
    unlike the step's check_overflow): before 0.13.3 `x.float().sum()` (an fp32 copy), from 0.13.3 `float_x`,
    `isnan`, `isinf`, `logical_or` and `.float()` live together (11 bytes an element; zero.zero12_prestep) - each
    freed before the next: the largest of the three is the backward's transient (`buckets_extra`), beside a layer's
    backward or the epilogue but never the loss's (reduction_after_loss). Stage 1 without
    overlap_comm still holds every 16-bit gradient (p.grad) to the end of the backward, reduced afterwards
    (reduce_gradients): kept.
    ZeRO-3 (stage3.py, DeepSpeedZeroOptimizer_Stage3): with offload_optimizer `self.device` is cpu, so
    `grad_partitions_flat_buffer` (the partitioned gradients, `torch.zeros(..., device=self.device)`, pinned) and
    `fp32_partitioned_groups_flat` (subgroup_to_device 'cpu' for every sub-group at offload_optimizer.ratio 1.0, the
    default) are host memory: `partition_grads` copies each reduce-scattered partition there; the IPG bucket of
    reduce_bucket_size stays on the GPU (`bucket.buffer`), and zero.zero3_step's fp32 sub-group is made on the host.
    With offload_param (`_create_param_groups_fp16_flat_cpu_memory`, "partitioned params offloaded to CPU when not in
    use") the 16-bit partition is host memory and each module's parameters are fetched and all-gathered as without
    offload (the live parameters and prefetch bucket, counted in `gathered` by runtime_peak).
    Host memory per GPU: the fp32 master partition, the optimizer states, the fp32 gradient partition (4 bytes), the
    16-bit host buffer (ZeRO-1/2) or gradient partition (ZeRO-3) (2), with offload_param the 16-bit parameters (2):
    DeepSpeed's own estimate_zero3_model_states_mem_needs counts 16 and 18 bytes a parameter without its buffers."""
    part = n // d if zero >= 1 else n
    host = optimizer + part * 4 + part * compute_bytes
    partition_kept = zero >= 2 or overlap
    if zero == 3:
        gpu_grads = ipg                                 # grad_partitions_flat_buffer moved to the host
        if offload_param:
            host += weights
            weights = 0
        return Offloaded(weights=weights, grads=gpu_grads, optimizer=0, kept_grads=gpu_grads, step_extra=0, temp=0,
                         held=gpu_grads, cached=0, buckets_extra=0, host=host)
    gpu_buffer = largest * compute_bytes if full else 0  # temp_grad_buffer_for_gpu_offload
    piece = min(largest, part)
    slice_upcast = piece * 4 if compute_bytes != 4 else 0
    norm64 = piece * 8                                   # set_norm_for_param_grad_in_gpu's .double()
    if device_overflow_check:                            # _has_inf_or_nan from 0.13.3 (zero.zero12_prestep)
        overflow = (largest * 4 if compute_bytes < 4 else 0) + largest * 3 + largest * 4
    else:                                                # float(x.float().sum())
        overflow = largest * 4 if compute_bytes < 4 else 0
    transient = max(slice_upcast, norm64, overflow)
    if partition_kept:
        grads, held, cached = gpu_buffer, gpu_buffer + reduce_copy, reduce_copy
    else:
        grads, held = grads + gpu_buffer, held + gpu_buffer
    return Offloaded(weights=weights, grads=grads, optimizer=0, kept_grads=gpu_buffer, step_extra=0, temp=0,
                     held=held, cached=cached, buckets_extra=transient, host=host)


def fsdp_offloaded(weights: int, grads: int, optimizer: int) -> Offloaded:
    """FSDP's CPU offload. FSDP2 (torch/distributed/fsdp/_fully_shard/_fsdp_param.py, FSDPParam with
    `offload_to_cpu` from CPUOffloadPolicy): `_init_sharded_param` moves the sharded parameter to the CPU (pinned
    with pin_memory), `all_gather_inputs` copies the shard to the GPU (`sharded_param_data.to(self.device,
    non_blocking=True)`) for each all-gather, so the gathered blocks and the copy-in pool stay as counted;
    `foreach_reduce` (_fsdp_collectives.py) reduce-scatters each group's gradients on the GPU and moves the sharded
    gradient to the CPU (`new_sharded_grad.to(torch.device("cpu"), non_blocking=...)`), and the optimizer, built over
    CPU parameters, steps on the CPU: no sharded parameter, gradient, optimizer state or step temporary is on the GPU.
    FSDP1 (torch/distributed/fsdp/_flat_param.py, CPUOffload(offload_params=True)): the sharded FlatParameter lives
    on the CPU, `_mp_shard`/`_full_param_padded` are allocated on the GPU per unshard, `_cpu_grad` receives each
    reduce-scattered shard (`_offload_grad` in _runtime_utils.py) and the optimizer steps on the CPU: the same.
    Host memory per GPU: the sharded parameters, gradients and optimizer states as the GPU would have held them."""
    return Offloaded(weights=0, grads=0, optimizer=0, kept_grads=0, step_extra=0, temp=0, held=0, cached=0,
                     buckets_extra=0, host=weights + grads + optimizer)


def offload_notes(tr: Training, host: int, gpus: int, host_memory_gb: float) -> list[str]:
    """What the estimate assumed about the offload, and the host memory it needs."""
    if not offloads(tr):
        return []
    if tr.framework == "fsdp":
        what = "the sharded parameters, gradients and optimizer states (FSDP CPU offload)"
    elif tr.offload_parameters:
        what = "the fp32 master partition, optimizer states, gradient partition and 16-bit parameter partition " \
               "(ZeRO-Offload with offload_param)"
    else:
        what = "the fp32 master partition, optimizer states and gradient partition (ZeRO-Offload)"
    note = (f"offload: {what} are in host memory, not on the GPU: about {host / GB:.1f} GB of (pinned) host memory "
            f"per GPU ({host * gpus / GB:.1f} GB over the job's {gpus} GPUs), beside the processes' own; the "
            "optimizer step runs on the CPU")
    if host_memory_gb:
        fits = "fits in" if host <= host_memory_gb * GB else "exceeds"
        note += f"; it {fits} the {host_memory_gb:g} GB of host memory each GPU reaches over NVLink-C2C"
    return [note]
