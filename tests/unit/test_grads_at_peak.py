"""Which gradients exist at the backward's peak (estimator/frameworks.py grads_at_loss_backward, issue 22): FSDP's
sharded gradients are freed by zero_grad but stay reserved in their stream's pool; one GPU without FSDP makes them
as autograd needs them; Megatron's and ZeRO-3's buffers are kept. Expected bytes computed by hand."""

from __future__ import annotations

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.frameworks import grads_at_loss_backward, runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
LAYER = (P.total - 2 * P.embedding) // LLAMA.num_layers   # _largest_layer_params


def _peak(layout: Layout, **training):
    tr = Training(**training)
    return tr, runtime_peak(LLAMA, P, tr, "bf16", layout, 0)


def test_fsdp_sharded_grads_held_but_cached_at_the_loss_backward():
    # torchtitan's T1 setup: FSDP2 over 8, fp32 masters (sharded fp32 gradients), selective AC
    tr, r = _peak(Layout(data=8), framework="fsdp", method="full", master_weights="fp32",
                  micro_batch_size=2, sequence_length=8192, activation_checkpointing="selective")
    grads = P.total * 4 // 8
    assert r.phase == "loss backward"
    assert r.cached_gradients == grads == 4_015_130_624   # 8,030,261,248 parameters x 4 bytes / 8
    # the total still counts them (reserved in the reduce-scatter stream's pool); no unsharded gradient nor
    # reduce-scatter input exists yet at the loss's backward (fsdp.fsdp2_backward_moments)
    assert r.gradients == grads
    assert r.weights + r.gradients + r.optimizer + r.activations == r.states + r.backward_transient
    assert grads_at_loss_backward(tr, Layout(data=8), grads, P.embedding * 4) == (grads, grads)


def test_one_gpu_without_fsdp_holds_only_the_output_gradient_at_the_loss_backward():
    layout = Layout()
    tr, r = _peak(layout, framework="fsdp", method="full", master_weights="fp32", micro_batch_size=4,
                  sequence_length=8192, activation_checkpointing="none")
    act = runtime_activations(LLAMA, tr, layout, "max")
    grads = P.total * 4
    output_grad = P.embedding * 4                     # the untied output projection's fp32 gradient
    assert grads_at_loss_backward(tr, layout, grads, output_grad) == (output_grad, 0)
    gathered = 2 * LAYER * 2 + P.embedding * 2
    buckets = LAYER * (2 + 4) + P.embedding * 2
    start = act.kept + max(act.loss_backward, act.loss_forward, act.recompute) - (grads - output_grad)
    assert start > 0
    assert r.phase in ("loss backward", "layer recompute")
    assert r.backward_transient == start + gathered + buckets
    assert r.gradients == output_grad + buckets
    assert r.cached_gradients == 0
    # 28.4 GiB of gradients less than counting them all
    assert r.states + r.backward_transient == r.weights + r.gradients + r.optimizer + r.activations


def test_one_gpu_peak_moves_to_the_backward_end_when_the_activations_are_smaller_than_the_gradients():
    # 16 tokens: the activations are far below the 32 GB of fp32 gradients; fused AdamW: the step adds nothing
    tr, r = _peak(Layout(), framework="fsdp", method="full", master_weights="fp32", micro_batch_size=1,
                  sequence_length=16, activation_checkpointing="none", adamw_implementation="fused")
    gathered = 2 * LAYER * 2 + P.embedding * 2
    buckets = LAYER * (2 + 4) + P.embedding * 2
    assert r.phase == "backward end"
    assert r.activations == 0
    assert r.gradients == P.total * 4 + buckets       # every gradient made
    assert r.backward_transient == gathered + buckets
    assert r.step_transient == 0
    assert r.weights + r.gradients + r.optimizer == r.states + gathered + buckets


def test_one_gpu_step_still_wins_when_it_is_larger():
    # foreach AdamW (fsdp's default): one fp32 state-sized temporary at the step, more than the backward's end
    _, r = _peak(Layout(), framework="fsdp", method="full", master_weights="fp32", micro_batch_size=1,
                 sequence_length=16, activation_checkpointing="none")
    assert r.phase == "optimizer step"
    assert r.step_transient == P.total * 4
    assert r.gradients == P.total * 4 and r.cached_gradients == 0


def test_pipeline_stages_on_one_data_rank_hold_their_gradients():
    tr = Training(framework="fsdp", method="full", master_weights="fp32")
    assert grads_at_loss_backward(tr, Layout(pipeline=2), 1000, 10) == (1000, 0)


def test_megatron_buffer_is_allocated_through_the_backward():
    tr, r = _peak(Layout(data=2), framework="megatron", method="full", master_weights="fp32",
                  micro_batch_size=2, sequence_length=8192, activation_checkpointing="none")
    assert r.phase in ("loss backward", "layer recompute")
    assert r.cached_gradients == 0
    assert grads_at_loss_backward(tr, Layout(data=2), P.total * 4, 0) == (P.total * 4, 0)
    assert r.gradients >= P.total * 4                 # the fp32 main_grad buffer, kept for the run


def test_deepspeed_zero3_buffer_kept_zero12_partition_not_allocated():
    z3 = Training(framework="deepspeed", zero_stage=3, method="full", master_weights="fp32")
    z2 = Training(framework="deepspeed", zero_stage=2, method="full", master_weights="fp32")
    z0 = Training(framework="deepspeed", zero_stage=0, method="full", master_weights="fp32")
    assert grads_at_loss_backward(z3, Layout(data=4), 500, 0) == (500, 0)
    assert grads_at_loss_backward(z0, Layout(data=4), 500, 0) == (500, 0)
    assert grads_at_loss_backward(z2, Layout(data=4), 500, 0) == (500, 500)


def test_lora_on_one_gpu_holds_no_adapter_gradient_at_the_loss_backward():
    tr = Training(framework="fsdp", method="lora", lora_rank=8)
    assert grads_at_loss_backward(tr, Layout(), 1234, 0) == (0, 0)
