"""FSDP2's backward moment by moment (estimator/frameworks.py fsdp2_backward_moments, issue 22): the loss's backward
holds no block gradient nor reduce-scatter input yet; the output's and each block's appear later, the reduce-scatter
input kept until the next group's post_backward (torch's _fsdp_param_group.py / _fsdp_collectives.py). Expected
bytes computed by hand."""

from __future__ import annotations

from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp2_backward_moments, fsdp2_backward_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
LAYER = (P.total - 2 * P.embedding) // LLAMA.num_layers   # 218,112,128 parameters a block
EMB = P.embedding                                          # 525,336,576: the output projection, untied

TERMS = dict(kept=100, kept_block=10, loss=50, output_backward=20, output_reduce_act=0, output_grad_made=8,
             recompute=30, gathered=40, output_weight=8, layer_weight=4, layer_grad=4, layer_rs=8, output_grad=8,
             output_rs=16, end_weight=0, end_grad=8, end_rs=16, root_group=False)


def _totals(**over):
    return [(m.name, m.total) for m in fsdp2_backward_moments(**{**TERMS, **over})]


def test_split_groups_moments_in_autograd_order():
    assert _totals() == [
        ("loss backward", 100 + 50 + 40),                          # no gradient made yet
        ("output backward", 100 + 20 + 40 + 8),                    # the output's 16-bit gradient made
        ("output reduce-scatter", 100 + (40 - 8) + 8 + 16),        # output resharded, its gradient + fp32 input
        ("layer recompute", 130 + (40 - 8) + 16 + 4),              # the output's input kept until this block's reduce
        ("layer reduce-scatter", 90 + (40 - 8 - 4) + 4 + 8),
        ("next layer recompute", 90 + 30 + (40 - 8) + 8 + 4),       # the last block's input kept instead
        ("backward end", 0 + (40 - 8 - 4) + 8 + 16),
    ]
    assert fsdp2_backward_peak(fsdp2_backward_moments(**TERMS)).name == "loss backward"
    peak = fsdp2_backward_peak(fsdp2_backward_moments(**{**TERMS, "loss": 10}))
    assert (peak.name, peak.total, peak.activations, peak.gathered, peak.buffers) == \
        ("layer recompute", 182, 130, 32, 20)


def test_root_group_keeps_the_output_gradient_to_the_end():
    # torchtitan before 0.2: one root group (embeddings, norm, output), reduced only by the final callback
    assert _totals(root_group=True, end_weight=16, end_grad=16, end_rs=32) == [
        ("loss backward", 190),
        ("output backward", 168),
        ("layer recompute", 130 + 40 + 8 + 4),                     # output gradient held, no reduce-scatter input yet
        ("layer reduce-scatter", 90 + (40 - 4) + 8 + 4 + 8),
        ("next layer recompute", 120 + 40 + 8 + 8 + 4),
        ("backward end", 0 + (40 - 4 - 16) + 16 + 32),
    ]
    assert _totals(recompute=0)[3][0] == "layer backward"


def _peak(layout: Layout, **training):
    tr = Training(framework="fsdp", method="full", master_weights="fp32", **training)
    return tr, runtime_peak(LLAMA, P, tr, "bf16", layout, 0)


def test_t1_setup_peaks_at_the_loss_backward_without_buckets():
    # torchtitan's T1 setup at the current release (split groups): FSDP2 over 8, fp32 masters, per-op SAC
    layout = Layout(data=8)
    tr, r = _peak(layout, micro_batch_size=2, sequence_length=8192, activation_checkpointing="selective")
    act = runtime_activations(LLAMA, tr, layout, "max")
    # one block + the output gathered in the default stream, the copy-in pool's vocabulary matrix + block
    gathered = LAYER * 2 + EMB * 2 + (EMB + LAYER) * 2
    assert r.phase == "loss backward"
    assert r.backward_transient == act.kept + max(act.loss_backward, act.loss_forward) + gathered
    assert r.gradients == P.total * 4 // 8 == r.cached_gradients
    assert r.reused == gathered
    # 2.2 GiB less than counting a block's 16-bit gradients, its fp32 input and the output's gradient there
    assert LAYER * (2 + 4) + EMB * 2 == 2_359_345_920


def test_short_sequence_peaks_at_the_output_reduce_scatter():
    # 512 tokens, compiled loss, full AC: the loss is small; the output's fp32 reduce-scatter input is not
    layout = Layout(data=8)
    tr, r = _peak(layout, micro_batch_size=1, sequence_length=512, activation_checkpointing="full", compile=True)
    act = runtime_activations(LLAMA, tr, layout, "max")
    gathered = LAYER * 2 + EMB * 2 + (EMB + LAYER) * 2
    assert r.phase == "output reduce-scatter"
    # the output resharded (- EMB x 2), its 16-bit gradient (EMB x 2) and fp32 reduce-scatter input (EMB x 4)
    assert r.backward_transient == act.kept + gathered + EMB * 4
    assert r.activations == act.kept
    assert r.gradients == P.total * 4 // 8 + EMB * 2 + EMB * 4
    assert r.weights + r.gradients + r.optimizer + r.activations == r.states + r.backward_transient


def test_one_gpu_and_pipeline_stages_keep_the_single_count():
    # no FSDP on one GPU (torchtitan's dp_shard 1), and pipeline stages accumulate unsharded gradients: unchanged
    _, one = _peak(Layout(), micro_batch_size=4, sequence_length=8192, activation_checkpointing="none")
    assert one.phase in ("loss backward", "layer recompute")
    _, pp = _peak(Layout(data=2, pipeline=2), micro_batch_size=1, sequence_length=8192,
                  activation_checkpointing="full")
    assert pp.phase in ("loss backward", "layer recompute", "optimizer step")
