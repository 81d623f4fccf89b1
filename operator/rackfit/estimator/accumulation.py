"""Gradient accumulation (`training.gradientAccumulationSteps`): what each runtime holds at a micro-batch's peak from
the second micro-batch of a step on, beyond what one micro-batch step holds. Every micro-batch's forward and backward
run alone (activations, loss and gathered weights are those of one micro-batch); what changes is which gradients
exist then. Read from the runtimes' sources (docs/accuracy.md, "Gradient accumulation"):

- HF Trainer (transformers, accelerate): `model.zero_grad()` runs only after `optimizer.step()`, once per
  accumulation window (transformers trainer.py `_inner_training_loop`), so every trained parameter's `param.grad`,
  made by autograd's AccumulateGrad in the first micro-batch's backward, is allocated through the later micro-batches'
  forward and backward. Under DDP the Trainer runs every micro-batch but the last under `accelerator.no_sync`
  (trainer.py since 4.46: `functools.partial(self.accelerator.no_sync, model=model) if i != len(batch_samples) - 1
  and distributed_type != DEEPSPEED`; `accelerator.accumulate` before, accelerate's `sync_each_batch` False by default),
  which is DDP's `no_sync` (accelerate/accelerator.py `no_sync`: `getattr(model, "no_sync", ...)`): the Reducer's
  autograd hook returns early (`expect_autograd_hooks_` false, torch reducer.cpp `autograd_hook`), so `param.grad`
  accumulates beside the buckets, which stay allocated: both copies held.
- accelerate's FSDP1 (`fsdpVersion: 1`): the same `no_sync` is FSDP1's, whose post-backward hook returns before the
  reduce-scatter (`if not state._sync_gradients: ... return`, torch/distributed/fsdp/_runtime_utils.py
  `_post_backward_hook`) and whose final callback keeps "`.grad` ... the unsharded gradient from prior `no_sync()`
  iterations" (`_finalize_params`): every unit's unsharded flat gradient, in the 16-bit param dtype autograd made it
  in, made in the default stream and held from the first micro-batch's backward to the last one's reduce-scatter.
- FSDP2 as torchtitan and torchtune run it: no `set_requires_gradient_sync(False)` (torchtitan trainer.py
  `train_step` loops `forward_backward_step` over the accumulation steps after one `optimizers.zero_grad()`;
  torchtune's recipes step every `gradient_accumulation_steps` batches), so every micro-batch reduce-scatters and
  FSDP2 adds the new shard into the sharded gradient (`_fsdp_collectives.py` `foreach_reduce`: `sharded_param.grad`
  accumulated when it exists): the sharded gradients are allocated, not cached blocks, from the second micro-batch on.
  accelerate's FSDP2 `no_sync` (`set_requires_gradient_sync(False)`, unsharded gradients kept in the reduce dtype by
  `_fsdp_param.py` `to_accumulated_grad_if_needed`; bf16, accelerate's reduce dtype) is counted as FSDP1's where the
  spec says `modelCode: transformers` (estimator/hf_fsdp2.py).
- DeepSpeed ZeRO-1/2: the partition's gradients persist across micro-batches (stage_1_and_2.py
  `independent_gradient_partition_epilogue`: `all_grad_tensors` / `averaged_gradients` accumulated with `add_` until
  `is_gradient_accumulation_boundary()`): allocated, not cached. ZeRO-3's `grad_partitions_flat_buffer` and Megatron's
  `main_grad` buffer are kept for the run anyway (accumulated into: stage3.py `__partition_grads`, `micro_step_id >
  0`; megatron/core/distributed/param_and_grad_buffer.py, `no_sync` between micro-batches): no change.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from rackfit.estimator.hf_fsdp2 import hf_fsdp2
from rackfit.estimator.result import Layout
from rackfit.spec import Training
from rackfit.spec.base import older
from rackfit.spec.releases import ACCELERATE_FSDP2_NO_SYNC


def accumulation_steps(tr: Training) -> int:
    """Micro-batches a step: training.gradientAccumulationSteps, 1 when unset."""
    return tr.gradient_accumulation_steps or 1


def transformers_accumulated_grads(tr: Training, layout: Layout, gradients: int) -> int:
    """transformers path (estimator._training): the `param.grad` bytes held at micro-batches 2..N's loss backward
    beyond one micro-batch step, `gradients` the trained parameters' gradients (ModelStates.gradients). One GPU and
    DDP: every `param.grad` (on one GPU nothing is held otherwise; under DDP's `no_sync` beside the buckets, which are
    counted already). ZeRO over `data` > 1 (DeepSpeed's own accumulation, no `no_sync`): its gradients are counted as
    held already. 0 without accumulation."""
    if accumulation_steps(tr) == 1 or (tr.zero_stage and layout.data > 1):
        return 0
    return gradients


def no_sync_unsharded(tr: Training, layout: Layout, unsharded: int) -> int:
    """The unsharded 16-bit gradients accelerate's `no_sync` keeps on every rank from the first micro-batch's backward
    to the last one's reduce-scatter (FSDP1, and FSDP2 under accelerate), `unsharded` every trained parameter's 16-bit
    bytes on this rank; 0 otherwise. CPU offload does not move them: FSDP1 offloads a gradient only in its
    post-backward reduce-scatter, which `no_sync` skips ("When used with CPU offloading, the gradients will not be
    offloaded to CPU when inside the context manager. Instead, they will only be offloaded right after the eventual
    sync", torch/distributed/fsdp/fully_sharded_data_parallel.py `no_sync`, read at pytorch 005df1d67, of the torch 2.0
    line; _runtime_utils.py `_post_backward_hook`, read at 00ae0bc91, returns when not `_sync_gradients` before the
    reduce-scatter and the copy into `flat_param._cpu_grad`, and `_finalize_params` keeps `.grad` unsharded), and
    FSDP2 moves the sharded gradient to the CPU in `foreach_reduce`, which does not run while gradient sync is off."""
    if accumulation_steps(tr) > 1 and tr.framework == "fsdp" and (tr.fsdp == 1 or accelerate_fsdp2_no_sync(tr)) \
            and layout.data > 1:
        return unsharded
    return 0


def accelerate_fsdp2_no_sync(tr: Training) -> bool:
    """accelerate's FSDP2 (hf_fsdp2) whose `no_sync` turns FSDP2's gradient sync off: accelerate 1.11.0 on
    (`if self.is_fsdp2: model.set_requires_gradient_sync(False)`, src/accelerate/accelerator.py). Before it
    `Accelerator.no_sync` was `context = getattr(model, "no_sync", contextlib.nullcontext)` (read at 9359a0194, July
    30, 2025), and torch's FSDPModule has no `no_sync`: a null context, every micro-batch reduce-scatters, as
    torchtitan and torchtune run FSDP2 (training.accelerateVersion; unset is a current release)."""
    return hf_fsdp2(tr) and not older(tr.accelerate_version, ACCELERATE_FSDP2_NO_SYNC)


def no_sync_reuse(tr: Training, layout: Layout, unsharded: int, transient: int) -> int:
    """Of a backward's transient bytes (`transient`, frameworks.runtime_peak's backward_transient), those FSDP1's
    `no_sync` unsharded gradients hold (no_sync_unsharded of `unsharded`), on which the caching allocator strands no
    slack: each is allocated once and stays allocated to the sync micro-batch's post-backward hook, so no block of
    theirs is freed and re-requested between the first micro-batch's backward and the peak. Read in the torch 2.x
    FSDP1 source (T1441's and T463's torch 2.1 has the same no_sync branch): in the first micro-batch autograd's
    gradient of each unit's flat parameter is
    made once, in the default stream, and AccumulateGrad keeps it as `flat_param.grad` (no `.grad` before it);
    `_post_backward_hook` (_runtime_utils.py) reshards the parameter and, `if not state._sync_gradients`, returns
    with `.grad` kept (`_use_unsharded_grad_views` with use_orig_params); `_post_backward_final_callback` /
    `_finalize_params` keep it ("`.grad` remains the unsharded gradient from prior `no_sync()` iterations");
    the next micro-batch's `prepare_gradient_for_backward` (_flat_param.py) sets `.grad` to None only when its size is
    not the unpadded unsharded size, which under no_sync it is, so AccumulateGrad adds the next micro-batch's gradient
    into it in place; the sync micro-batch's hook takes `flat_param.grad.data`, reduce-scatters it in the post-backward
    stream and drops it only then. The slack shares (estimator/__init__.py) are set on transients freed and
    re-requested layer by layer; these bytes are held, as the sharded gradients are (not in the transient). The
    micro-batch's own new gradient of each unit (added in and freed, the same size unit after unit) stays counted
    as before. FSDP1 only: accelerate's FSDP2 keeps `unsharded_param.grad` the same way (_fsdp_param.py
    `to_accumulated_grad_if_needed`), not modelled here (no measured row)."""
    if tr.fsdp != 1:
        return 0
    return min(no_sync_unsharded(tr, layout, unsharded), max(transient, 0))


def runtime_accumulated_grads(tr: Training, layout: Layout, grads: int, held: int, cached: int,
                              unsharded: int) -> tuple[int, int]:
    """runtime_peak (fsdp, deepspeed, megatron): (held, cached) at micro-batches 2..N's loss backward in place of one
    micro-batch step's (frameworks.grads_at_loss_backward), `grads` the runtime's kept gradients and `unsharded` the
    16-bit bytes of every trained parameter on this rank (FSDP1's unsharded flat gradients under `no_sync`).
    - fsdp FSDP2 (torchtitan, torchtune), one GPU or `data` > 1, and deepspeed ZeRO-1/2: every kept gradient,
      allocated (none is a cached block any more);
    - fsdp FSDP1 over `data` > 1 (accelerate's `no_sync`): the sharded gradients as before (the last step's blocks in
      the post-backward stream) and the unsharded ones beside them, allocated;
    - megatron, ZeRO-0 and ZeRO-3: unchanged (their gradient buffers are held anyway)."""
    if accumulation_steps(tr) == 1:
        return held, cached
    if no_sync_unsharded(tr, layout, 1):
        # FSDP2 under accelerate (`modelCode: transformers`): HF Trainer's no_sync is accelerate's
        # `model.set_requires_gradient_sync(False)` (accelerator.py no_sync, `if self.is_fsdp2`), and FSDP2's
        # post_backward then reshards and keeps each parameter's unsharded gradient
        # (_fsdp_param_group.py, `if not self.reduce_grads`; _fsdp_param.py to_accumulated_grad_if_needed leaves it in
        # the param dtype where the reduce dtype equals it, accelerate's bf16 MixedPrecisionPolicy): 16-bit, every
        # parameter, held from the first micro-batch's backward to the last one's reduce-scatter, as FSDP1's
        return held + unsharded, cached
    if tr.framework == "fsdp" or (tr.framework == "deepspeed" and tr.zero_stage in (1, 2)):
        return grads, 0
    return held, cached


def accumulation_notes(tr: Training, layout: Layout) -> list[str]:
    """What the estimate assumed about accumulation that the spec does not say (none without accumulation)."""
    if accumulation_steps(tr) == 1 or layout.data == 1:
        return []
    if hf_fsdp2(tr) and not accelerate_fsdp2_no_sync(tr):
        return ["gradient accumulation under accelerate's FSDP2 before 1.11.0: its no_sync is a null context for an "
                "FSDP2 module, so every micro-batch reduce-scatters (sharded gradients, as torchtitan runs it)"]
    if tr.framework == "fsdp" and tr.fsdp == 2 and not hf_fsdp2(tr):
        return ["gradient accumulation under fsdp is modelled as torchtitan and torchtune run it (a reduce-scatter "
                "every micro-batch, sharded gradients); accelerate's FSDP2 without sync_each_batch keeps every "
                "unsharded gradient in the reduce dtype between micro-batches, which needs more"]
    if tr.framework == "fsdp" or (tr.framework == "transformers" and not tr.zero_stage):
        return ["gradient accumulation is modelled as the HF Trainer runs it: every micro-batch but the last under "
                "no_sync (accelerate's default, sync_each_batch false); sync_each_batch true needs less"]
    return []
