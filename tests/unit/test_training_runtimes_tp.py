"""Issue 22, training side: torchtitan's tensor-parallel plan under FSDP2, its per-op SAC per tensor rank, the
compiled loss, FSDP1 (fsdpVersion: 1) and pipeline stages outside Megatron. Each test checks the mechanism the
runtime's source gives (estimator/frameworks.py cites it), not a fitted number."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate
from rackfit.estimator.activations import ACT_BYTES, FUSED_NORM_BYTES_PER_H
from rackfit.estimator.framework_activations import (
    LOSS_PARALLEL_BACKWARD_BYTES,
    LOSS_PARALLEL_FORWARD_BYTES,
    NORM_OUTPUT_BYTES_PER_H,
    SDPA_LSE_BYTES,
    compiled_layer_bytes,
    eager_layer_bytes,
    pipelining_held,
    runtime_activations,
    torchtitan_sac_bytes,
)
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp1_loss_moment
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
H = LLAMA.hidden_size


def spec(framework: str = "fsdp", layout: dict | None = None, **training):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                           training=dict(framework=framework, **training), parallelism=layout))


def tr(**training) -> Training:
    return Training(framework=training.pop("framework", "fsdp"), **training)


# --- torchtitan's tensor parallel (apply_tp: sequence parallel, gathered norm outputs, loss parallel) ------

def test_gathered_norm_outputs_are_not_split_by_tensor():
    """Per token, a layer keeps the split part over t plus both norms' whole-sequence outputs."""
    t1, t4 = eager_layer_bytes(LLAMA, tr(), 1), eager_layer_bytes(LLAMA, tr(), 4)
    replicated = NORM_OUTPUT_BYTES_PER_H * H
    assert t4 - replicated == pytest.approx((t1 - replicated) / 4)


def test_compiled_norm_outputs_are_saved_whole_under_tensor_parallel_and_split_without():
    """Under compile the partitioner saves each norm's output (the matmuls' weight gradients need it); under
    torchtitan's tensor parallel that is the gathered whole sequence on every rank, the rest split over t."""
    t1, t4 = compiled_layer_bytes(LLAMA, tr(), 1), compiled_layer_bytes(LLAMA, tr(), 4)
    replicated = NORM_OUTPUT_BYTES_PER_H * H
    assert t4 - replicated == pytest.approx((t1 - replicated) / 4)


def test_tensor_parallel_activations_shrink_less_than_one_over_t():
    one = runtime_activations(LLAMA, tr(microBatchSize=2, sequenceLength=4096), Layout(data=8))
    four = runtime_activations(LLAMA, tr(microBatchSize=2, sequenceLength=4096), Layout(data=2, tensor=4))
    assert one.kept / 4 < four.kept < one.kept / 2


def test_sac_under_tensor_parallel_keeps_w2s_partial_sum_and_the_reduce_scatters():
    """w2 is the 7th mm (saved): its rowwise output is the whole sequence's partial sum; the reduce-scatter
    outputs of wo and w2 are saved split over the sequence."""
    t1, t2 = torchtitan_sac_bytes(LLAMA, tr(), 1), torchtitan_sac_bytes(LLAMA, tr(), 2)
    whole = ACT_BYTES * H                      # w2's saved partial sum, on every tensor rank
    assert t2 == pytest.approx((t1 - whole) / 2 + whole + 2 * ACT_BYTES * H / 2)
    # SDPA's fp32 log-sum-exp: one a head (split over t), not a head_dim
    lse = SDPA_LSE_BYTES * LLAMA.num_attention_heads
    assert t1 == ACT_BYTES * 31_744 + lse


def test_full_checkpointing_under_tensor_parallel_keeps_the_sequence_split_input():
    a = runtime_activations(LLAMA, tr(activationCheckpointing="full", sequenceLength=4096), Layout(tensor=4))
    assert a.kept == LLAMA.num_layers * ACT_BYTES * H * 4096 // 4


def test_loss_parallel_splits_the_logits_over_tensor_with_dtensors_buffers():
    """Loss parallel splits the logits over t, and DTensor's decomposed log-softmax and fused nll/log-softmax
    backward (torch/distributed/tensor/parallel/loss.py) hold 14 and 16 bytes a logit where the fused kernels at
    tensor 1 hold 10 and 12; the final norm's output, saved by the output projection, is the whole sequence."""
    n, final = 4096 * LLAMA.vocab_size, 4096 * H * ACT_BYTES
    one = runtime_activations(LLAMA, tr(sequenceLength=4096), Layout())
    four = runtime_activations(LLAMA, tr(sequenceLength=4096), Layout(tensor=4))
    assert (one.loss_forward, one.loss_backward) == (10 * n + final, 12 * n + final)
    assert four.loss_forward == pytest.approx(LOSS_PARALLEL_FORWARD_BYTES * n / 4 + final, rel=1e-9)
    assert four.loss_backward == pytest.approx(LOSS_PARALLEL_BACKWARD_BYTES * n / 4 + final, rel=1e-9)
    assert (LOSS_PARALLEL_FORWARD_BYTES, LOSS_PARALLEL_BACKWARD_BYTES) == (14, 16)


def test_without_sequence_parallel_norms_and_block_inputs_are_whole_on_every_rank():
    """sequenceParallel: false (transformers' tp_plan as accelerate applies it): the norms' inputs and the
    checkpointed block inputs are the whole sequence on every tensor rank; the colwise/rowwise parts still split."""
    sp, whole = tr(), tr(sequenceParallel=False)
    assert eager_layer_bytes(LLAMA, whole, 4) - eager_layer_bytes(LLAMA, sp, 4) == pytest.approx(
        FUSED_NORM_BYTES_PER_H * H * (1 - 1 / 4))
    assert compiled_layer_bytes(LLAMA, whole, 4) - compiled_layer_bytes(LLAMA, sp, 4) == pytest.approx(
        FUSED_NORM_BYTES_PER_H * H * (1 - 1 / 4))
    assert eager_layer_bytes(LLAMA, whole, 1) == eager_layer_bytes(LLAMA, sp, 1)
    full = runtime_activations(LLAMA, tr(activationCheckpointing="full", sequenceLength=4096, sequenceParallel=False),
                               Layout(tensor=4))
    assert full.kept == LLAMA.num_layers * ACT_BYTES * H * 4096
    # per-op SAC: the whole block input, and no reduce-scatter outputs (the rowwise outputs are all-reduced)
    assert torchtitan_sac_bytes(LLAMA, whole, 4) - torchtitan_sac_bytes(LLAMA, sp, 4) == pytest.approx(
        ACT_BYTES * H * (1 - 1 / 4) - 2 * ACT_BYTES * H / 4)


def test_without_loss_parallel_every_rank_holds_the_whole_vocabulary():
    """lossParallel: false (torchtune's plan: output ColwiseParallel(output_layouts=Replicate()); transformers'
    lm_head colwise_rep): the logits are gathered whole and torch's cross-entropy runs on them on every rank."""
    n, final = 4096 * LLAMA.vocab_size, 4096 * H * ACT_BYTES
    gathered = runtime_activations(LLAMA, tr(sequenceLength=4096, lossParallel=False), Layout(tensor=4))
    one = runtime_activations(LLAMA, tr(sequenceLength=4096), Layout())
    assert (gathered.loss_forward, gathered.loss_backward) == (one.loss_forward, one.loss_backward)
    assert (gathered.loss_forward, gathered.loss_backward) == (10 * n + final, 12 * n + final)
    compiled = runtime_activations(LLAMA, tr(compile=True, sequenceLength=4096, lossParallel=False), Layout(tensor=4))
    assert compiled.loss_backward == 4 * n + final
    t = tr(sequenceLength=4096, lossParallel=False, activationCheckpointing="full")
    held = pipelining_held(LLAMA, t, Layout(tensor=4, pipeline=2))
    assert held[1] == 2 * 4096 * H * ACT_BYTES // 4 + 2 * n * ACT_BYTES


def test_tensor_parallel_plan_fields_only_with_fsdp():
    for framework, training in (("megatron", dict(lossParallel=True)), ("deepspeed", dict(sequenceParallel=True))):
        with pytest.raises(InvalidWorkload):
            spec(framework, **training)
    assert spec(sequenceParallel=True, lossParallel=False).training.loss_parallel is False
    notes = estimate(spec(layout=dict(data=2, tensor=4), sequenceParallel=False, lossParallel=False)).notes
    assert any("no sequence parallel" in n and "whole vocabulary" in n for n in notes)


def test_compiled_sac_does_not_keep_what_the_backward_never_reads():
    """Eager, SAC's cache keeps every MUST_SAVE output; compiled, AOTAutograd's partitioner saves only what the
    backward reads: w2's output (and its reduce-scatter under sequence parallel) feeds only the residual add."""
    for t in (1, 2):
        eager, compiled = torchtitan_sac_bytes(LLAMA, tr(), t), torchtitan_sac_bytes(LLAMA, tr(compile=True), t)
        dropped = ACT_BYTES * H + (ACT_BYTES * H / t if t > 1 else 0)
        assert eager - compiled == pytest.approx(dropped)


def test_reshard_after_forward_false_keeps_every_block_gathered():
    """fully_shard(reshard_after_forward=False) (torchtitan's fsdp_reshard_after_forward never): each block's 16-bit
    copy stays from its forward to its backward, so every block is gathered when the backward starts, not two."""
    layer = (P.total - 2 * P.embedding) // LLAMA.num_layers
    t = dict(sequenceLength=4096, activationCheckpointing="full")
    default = runtime_peak(LLAMA, P, tr(**t), "bf16", Layout(data=8), 0)
    never = runtime_peak(LLAMA, P, tr(reshardAfterForward=False, **t), "bf16", Layout(data=8), 0)
    # and the copy-in stream's pool (fsdp2_copy_in_pool), whose block is the second one in flight when blocks reshard
    assert never.weights - default.weights == (LLAMA.num_layers - 1) * layer * 2
    assert runtime_peak(LLAMA, P, tr(reshardAfterForward=True, **t), "bf16", Layout(data=8), 0) == default
    staged = runtime_peak(LLAMA, P, tr(**t), "bf16", Layout(data=8, pipeline=4), 0)
    always = runtime_peak(LLAMA, P, tr(reshardAfterForward=True, **t), "bf16", Layout(data=8, pipeline=4), 0)
    assert staged.weights - always.weights == (LLAMA.num_layers // 4 - 1) * layer * 2
    for framework, training in (("deepspeed", dict(reshardAfterForward=False)),
                                ("fsdp", dict(reshardAfterForward=False, method="lora")),
                                ("fsdp", dict(reshardAfterForward=False, fsdpVersion=1))):
        with pytest.raises(InvalidWorkload) as e:
            spec(framework, **training)
        assert [path for path, _ in e.value.errors] == ["spec.training.reshardAfterForward"]


def test_tensor_parallel_estimate_says_it_is_torchtitans_plan():
    notes = estimate(spec(layout=dict(data=2, tensor=4))).notes
    assert any("torchtitan's plan" in n for n in notes)


# --- the compiled loss (torchtitan since April 2025, torchtune) --------------------------------------------

def test_compiled_loss_keeps_16_bit_logits_and_gradient():
    n, final = 4096 * LLAMA.vocab_size, 4096 * H * ACT_BYTES   # final: the output projection's saved input
    compiled = runtime_activations(LLAMA, tr(compile=True, sequenceLength=4096), Layout())
    assert (compiled.loss_forward, compiled.loss_backward) == (2 * n + final, 4 * n + final)
    eager_loss = runtime_activations(LLAMA, tr(compile=True, compileLoss=False, sequenceLength=4096), Layout())
    assert eager_loss.loss_backward == 12 * n + final


def test_compile_loss_only_with_fsdp_and_compile():
    # fsdp with compileLoss true and compile false is the loss compiled alone (torchtitan's compile.components
    # ["loss"]); compileLoss false without compile says nothing
    for framework, training in (("fsdp", dict(compileLoss=False)), ("deepspeed", dict(compile=True, compileLoss=True))):
        with pytest.raises(InvalidWorkload) as e:
            spec(framework, **training)
        assert [path for path, _ in e.value.errors] == ["spec.training.compileLoss"]


# --- FSDP1 (fsdpVersion: 1) ---------------------------------------------------------------------------------

def test_fsdp_version_only_with_fsdp():
    with pytest.raises(InvalidWorkload) as e:
        spec("deepspeed", fsdpVersion=1)
    assert [path for path, _ in e.value.errors] == ["spec.training.fsdpVersion"]
    assert spec(fsdpVersion=1).training.fsdp == 1
    assert spec().training.fsdp == 2


def test_fsdp1_keeps_the_root_unit_gathered():
    """The root (embeddings and output) is not resharded after the forward: both stay gathered in 16-bit. At the
    loss's backward the root's pre-backward hook has prefetched the last decoder layer (fsdp.fsdp1_loss_moment), and
    no unsharded gradient exists yet: the peak holds the sharded states, the root, that one unit with its 16-bit
    shard, and no layer or output gradient."""
    two = runtime_peak(LLAMA, P, tr(fsdpVersion=2), "bf16", Layout(data=8), 0)
    one = runtime_peak(LLAMA, P, tr(fsdpVersion=1), "bf16", Layout(data=8), 0)
    layer = (P.total - 2 * P.embedding) // LLAMA.num_layers
    shards = 4 * P.total // 8
    assert one.phase == "loss backward"
    assert one.weights - shards == P.embedding * 2 * 2 + layer * 2 + layer * 2 // 8
    assert one.gradients == shards   # the fp32 gradient shards (held), no unsharded gradient or reduce shard
    # FSDP2's own count without its copy-in stream pool (fsdp2_copy_in_pool: a vocabulary matrix beyond two blocks)
    assert two.weights - P.embedding * 2 == shards + 2 * layer * 2 + P.embedding * 2


def test_fsdp1_layer_moment_reports_the_cached_logits_block():
    """Where FSDP1's last layer moment outweighs the loss's (a short sequence), the 16-bit logits' block transformers
    before 4.46 freed at its upcast is still among the peak's activations, and is reported as cached, not allocated."""
    old = runtime_peak(LLAMA, P, tr(fsdpVersion=1, sequenceLength=512, transformersVersion="4.40.0"), "bf16",
                       Layout(data=8), 0)
    new = runtime_peak(LLAMA, P, tr(fsdpVersion=1, sequenceLength=512, transformersVersion="4.46.0"), "bf16",
                       Layout(data=8), 0)
    assert old.phase == new.phase == "layer backward"
    assert old.cached_logits == 512 * LLAMA.vocab_size * 2
    assert old.activations - old.cached_logits == new.activations


def test_fsdp1_loss_moment_forward_holds_the_root_alone():
    """At the loss's forward only the root is gathered (every other unit resharded after its forward); the loss's
    backward adds the prefetched unit, so the larger of the two moments is taken with what it gathers."""
    assert fsdp1_loss_moment(10, 14, 12, 3, 5) == (27, 3)    # 10 + 14 + 3 against 10 + 12 + 5
    assert fsdp1_loss_moment(10, 14, 12, 3, 7) == (29, 7)    # a larger prefetched unit: the backward's moment


def test_fsdp1_runs_transformers_model_code():
    """accelerate and llama-recipes run transformers' LlamaForCausalLM: its eager RMSNorm keeps fp32 upcasts,
    more than torchtitan's fused nn.RMSNorm."""
    one = runtime_activations(LLAMA, tr(fsdpVersion=1, sequenceLength=4096), Layout(data=8))
    two = runtime_activations(LLAMA, tr(sequenceLength=4096), Layout(data=8))
    assert one.kept > two.kept


def test_fsdp1_selective_is_not_torchtitans_per_op_sac():
    assert estimate(spec(fsdpVersion=1, activationCheckpointing="selective")).notes[0].startswith("fsdp (FSDP1)")
    assert not runtime_peak(LLAMA, P, tr(fsdpVersion=1, activationCheckpointing="selective"), "bf16",
                            Layout(data=8), 0).expandable_segments


# --- pipeline stages outside Megatron (DeepSpeed PipelineModule, torchtitan PP) ------------------------------

@pytest.mark.parametrize("framework", ["deepspeed", "fsdp"])
def test_pipeline_stages_hold_their_layers_and_the_loss_only_last(framework):
    t = tr(framework=framework, sequenceLength=4096, activationCheckpointing="full")
    whole = runtime_activations(LLAMA, t, Layout(data=2))
    first = runtime_activations(LLAMA, t, Layout(data=2, pipeline=4), stage="first")
    last = runtime_activations(LLAMA, t, Layout(data=2, pipeline=4), stage="last")
    # torch.distributed.pipelining's receive buffers and output chunks (fsdp: torchtitan's pipeline parallel)
    held = pipelining_held(LLAMA, t, Layout(data=2, pipeline=4)) if framework == "fsdp" else (0, 0)
    assert first.loss_backward == 0 and last.loss_backward == whole.loss_backward
    assert last.kept - held[1] == whole.kept // 4
    assert first.kept - held[0] == 4 * (last.kept - held[1])  # 1F1B: the first stage holds `pipeline` micro-batches
    worst = runtime_activations(LLAMA, t, Layout(data=2, pipeline=4))
    assert worst.kept + max(worst.loss_forward, worst.loss_backward, worst.recompute) == max(
        first.kept + first.recompute, last.kept + max(last.loss_forward, last.loss_backward, last.recompute))


def test_fsdp2_pipeline_stages_keep_their_layers_gathered_and_their_gradients_unsharded():
    """torchtitan's FSDP2 under pipeline stages: reshard_after_forward False for every layer (apply_fsdp), and the
    schedule's no-sync backwards keep every parameter's unsharded gradient, in the fp32 reduce dtype, to the last
    micro-batch (pipelining/stage.py backward_maybe_with_nosync; _fsdp_param.py to_accumulated_grad_if_needed)."""
    t = tr(sequenceLength=4096, activationCheckpointing="full")
    layer = (P.total - 2 * P.embedding) // LLAMA.num_layers
    flat = runtime_peak(LLAMA, P, t, "bf16", Layout(data=8), 0)
    staged = runtime_peak(LLAMA, P, t, "bf16", Layout(data=8, pipeline=4), 0)
    stage_layers = LLAMA.num_layers // 4
    # the fp32 masters of this stage, over data: its layers and the embeddings (the first) or output (the last)
    stage = stage_layers * (P.total - 2 * P.embedding) // LLAMA.num_layers + P.embedding
    sharded = 4 * stage // 8
    # with the copy-in stream's pool (fsdp2_copy_in_pool): the end stage's vocabulary matrix and a block, all extra
    # under PP (every block stays gathered), one matrix beyond the two blocks in flight without PP
    assert staged.weights - sharded == stage_layers * layer * 2 + P.embedding * 2 + (P.embedding + layer) * 2
    assert flat.weights - 4 * P.total // 8 == 2 * layer * 2 + P.embedding * 2 + P.embedding * 2
    unsharded_grads = staged.gradients - 4 * stage // 8
    assert unsharded_grads == (stage_layers * layer + P.embedding) * 4 + layer * 2
    pure = runtime_peak(LLAMA, P, tr(sequenceLength=4096, activationCheckpointing="full", masterWeights="none"),
                        "bf16", Layout(data=8, pipeline=4), 0)
    assert pure.gradients - 2 * stage // 8 == (stage_layers * layer + P.embedding) * 2 + layer * 2
