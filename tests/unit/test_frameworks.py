"""The training runtimes (estimator/frameworks.py): each mechanism moves the estimate the way the
runtime's source says it should, transformers stays the H200-calibrated model, and the spec refuses
combinations a runtime cannot run."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from bench_modules import bench

from rackfit.errors import InvalidWorkload
from rackfit.estimator import CUDA_CONTEXT_BYTES, Layout, estimate
from rackfit.estimator.comms import COMM_NVLINK, training_nccl_bytes  # a D2 job's one communicator (the default group)
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.megatron_buffers import TE_CUBLAS_WORKSPACE_HOPPER_BYTES, torch_workspace_bytes
from rackfit.estimator.params import count_params
from rackfit.estimator.zero import ZERO_MAX_LIVE_PARAMETERS, ZERO_PREFETCH_BUCKET
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

REPO = Path(__file__).resolve().parents[2]
LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
TORCH_WS = torch_workspace_bytes(Training(framework="fsdp"))   # torch's cuBLAS workspaces, in the overhead


def spec(framework: str, layout: dict | None = None, **training):
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                           training=dict(framework=framework, **training), parallelism=layout))


def peak(framework: str, layout: Layout, **training):
    return runtime_peak(LLAMA, P, Training(framework=framework, **training), "bf16", layout, 0)


def acts(framework: str, layout: Layout | None = None, stage: str = "max", **training):
    return runtime_activations(LLAMA, Training(framework=framework, **training), layout or Layout(), stage)


# --- transformers is the calibrated model ---------------------------------------------------------------

def test_transformers_is_the_default_and_unchanged():
    default = estimate(parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training",
                                       training=dict(microBatchSize=2))))
    assert estimate(spec("transformers", microBatchSize=2)) == default


# --- FSDP -------------------------------------------------------------------------------------------------

def test_fsdp_states_shrink_as_one_over_data():
    """FSDP2 shards fp32 masters, fp32 gradients and Adam states: 16 B/param over `data`."""
    s8, s16 = peak("fsdp", Layout(data=8)).states, peak("fsdp", Layout(data=16)).states
    assert s8 == pytest.approx(16 * P.total / 8, rel=1e-6)
    assert s8 / s16 == pytest.approx(2, rel=1e-6)


def test_fsdp_gathers_two_layers_and_the_output_in_16_bit():
    """The transient gathered weights do not shrink with `data`: each GPU holds whole bf16 layers."""
    small, large = peak("fsdp", Layout(data=8), microBatchSize=2), peak("fsdp", Layout(data=128), microBatchSize=2)
    gathered_small = small.weights - 4 * P.total // 8
    gathered_large = large.weights - 4 * P.total // 128
    assert gathered_small == gathered_large
    layer = (P.total - 2 * P.embedding) // LLAMA.num_layers
    # and the all-gather copy-in stream's pool: a vocabulary matrix beside the second block (fsdp2_copy_in_pool)
    assert gathered_small == 2 * layer * 2 + P.embedding * 2 + P.embedding * 2


def test_fsdp_selective_saves_between_full_and_none():
    """torchtitan's per-op SAC keeps every second matmul and the attention output: more than full
    checkpointing (the layer input), less than none."""
    none, sel, full = (acts("fsdp", activationCheckpointing=c).kept for c in ("none", "selective", "full"))
    assert full < sel < none
    # Llama 3 8B: wq, wv, w1, w2 outputs + SDPA output + block input = 31,744 bf16 values per token per layer, and
    # SDPA's fp32 log-sum-exp, one a head (32)
    assert sel == 32 * (31_744 * 2 + 32 * 4) * 4096


def test_compile_reduces_activations():
    eager, compiled = acts("fsdp", microBatchSize=2), acts("fsdp", microBatchSize=2, compile=True)
    assert compiled.kept < eager.kept
    # fully recomputed layers: the recompute working set shrinks too
    assert acts("fsdp", activationCheckpointing="full", compile=True).recompute < \
        acts("fsdp", activationCheckpointing="full").recompute


@pytest.mark.parametrize("framework", ["transformers", "fsdp", "deepspeed", "megatron"])
def test_checkpointing_never_costs_memory(framework):
    """selective <= none and full <= selective, on the whole estimate (slack included)."""
    layout = dict(data=8) if framework != "megatron" else dict(tensor=4, pipeline=2, data=2)
    totals = [estimate(spec(framework, layout, microBatchSize=2, sequenceLength=8192,
                            activationCheckpointing=c)).total_bytes for c in ("none", "selective", "full")]
    assert totals[0] >= totals[1] >= totals[2]


def test_compile_keeps_what_the_backward_matmuls_need():
    """Inductor's partitioner never recomputes a tensor a matmul's weight gradient needs (is_materialized_backwards):
    each norm keeps its 16-bit input and output (8 bytes a hidden element for two norms, against the eager fp32
    count), SwiGLU keeps gate, up and product and recomputes only act(gate)."""
    from rackfit.estimator.activations import NORM_BYTES_PER_H, training_activations

    tokens = 2 * 2048
    eager, compiled = (training_activations(LLAMA, Training(microBatchSize=2, sequenceLength=2048, compile=c),
                                            Layout(), mixed=False) for c in (False, True))
    per_layer = (NORM_BYTES_PER_H - 8) * LLAMA.hidden_size + 2 * LLAMA.intermediate_size
    assert eager.layers - compiled.layers == pytest.approx(tokens * LLAMA.num_layers * per_layer, abs=64)


def test_compile_reduces_transformers_activations_too():
    eager = estimate(spec("transformers", microBatchSize=2, sequenceLength=2048))
    compiled = estimate(spec("transformers", microBatchSize=2, sequenceLength=2048, compile=True))
    assert compiled.breakdown.activations_bytes < eager.breakdown.activations_bytes


def test_step_temporaries_take_new_segments_without_expandable_segments():
    """The default allocator keeps the backward's per-layer blocks cached; the step's foreach lists are
    larger, so the reservation is the backward's plus the step's. torchtitan (fsdp + per-op SAC) sets
    expandable segments: the step reuses the freed pages."""
    from rackfit.estimator import CUDA_CONTEXT_BYTES, SLACK_RECOMPUTE, SLACK_TRAINING
    for ckpt, layout in (("full", Layout(data=2)), ("selective", Layout(data=2))):
        e = estimate(spec("fsdp", dict(data=2), activationCheckpointing=ckpt, sequenceLength=1024))
        r = peak("fsdp", layout, activationCheckpointing=ckpt, sequenceLength=1024)
        slack = e.breakdown.overhead_bytes - CUDA_CONTEXT_BYTES - COMM_NVLINK - TORCH_WS
        if ckpt == "full":
            assert not r.expandable_segments
            assert slack == int(r.backward_transient + SLACK_RECOMPUTE * (r.backward_transient - r.reused)
                                + r.step_transient) - r.transient
        else:
            reused = r.reused if r.transient == r.backward_transient else 0
            assert r.expandable_segments and slack == int(SLACK_TRAINING * (r.transient - reused))


def test_compiled_per_op_sac_does_not_keep_the_down_projection_output():
    """Eager, torchtitan's per-op SAC stores every MUST_SAVE output (wq, wv, w1, w2 by the every-second-mm count,
    the attention output, the block input); compiled, the partitioner keeps only what the backward needs, and w2's
    output feeds only the residual add: one hidden-sized tensor a token a layer less (and, under tensor parallel, w2's
    whole-sequence partial sum and its reduce-scatter output)."""
    from rackfit.estimator.framework_activations import torchtitan_sac_bytes
    h = LLAMA.hidden_size
    eager = torchtitan_sac_bytes(LLAMA, Training(framework="fsdp", activationCheckpointing="selective"), 1)
    compiled = torchtitan_sac_bytes(LLAMA, Training(framework="fsdp", activationCheckpointing="selective",
                                                    compile=True), 1)
    assert eager - compiled == 2 * h
    eager_tp = torchtitan_sac_bytes(LLAMA, Training(framework="fsdp", activationCheckpointing="selective"), 4)
    compiled_tp = torchtitan_sac_bytes(LLAMA, Training(framework="fsdp", activationCheckpointing="selective",
                                                       compile=True), 4)
    assert eager_tp - compiled_tp == 2 * (h + h / 4)
    tokens = 2 * 4096
    kept_eager = acts("fsdp", activationCheckpointing="selective", microBatchSize=2, sequenceLength=4096).kept
    kept_comp = acts("fsdp", activationCheckpointing="selective", microBatchSize=2, sequenceLength=4096,
                     compile=True).kept
    assert kept_eager - kept_comp == pytest.approx(LLAMA.num_layers * tokens * 2 * h, abs=64)


def test_activation_offloading_keeps_five_checkpointed_inputs():
    """torchtune's OffloadActivations keeps its forward stash (max_fwd_stash_size 5) of checkpointed layer inputs on
    the GPU, the rest on CPU: the kept activations are 5 layers' inputs, not one per layer, under fsdp and under the
    transformers model; nothing else moves."""
    from rackfit.estimator.activations import OFFLOAD_FWD_STASH, training_activations
    lora = dict(method="lora", masterWeights="none", activationCheckpointing="full", microBatchSize=2,
                sequenceLength=4096)
    layer_input = 2 * 4096 * LLAMA.hidden_size * 2
    base = acts("fsdp", Layout(data=8), **lora)
    off = acts("fsdp", Layout(data=8), activationOffloading=True, **lora)
    assert base.kept == LLAMA.num_layers * layer_input and off.kept == OFFLOAD_FWD_STASH * layer_input
    assert (off.recompute, off.loss_forward, off.loss_backward) == \
        (base.recompute, base.loss_forward, base.loss_backward)
    tr = Training(framework="transformers", **lora)
    t_base = training_activations(LLAMA, tr, Layout(), mixed=False)
    t_off = training_activations(LLAMA, tr.model_copy(update={"activation_offloading": True}), Layout(), mixed=False)
    assert t_base.layers == LLAMA.num_layers * layer_input and t_off.layers == OFFLOAD_FWD_STASH * layer_input
    e_base = estimate(spec("fsdp", dict(data=8), **lora))
    e_off = estimate(spec("fsdp", dict(data=8), activationOffloading=True, **lora))
    assert e_off.total_bytes < e_base.total_bytes


def test_chunked_ce_loss_with_per_chunk_backward():
    """torchtitan's ChunkedCELoss (lossChunkBackward): one chunk's logits at a time, beside a 16-bit copy of the hidden
    states and their fp32 gradient accumulator, and for a full fine-tune the output's unsharded fp32 gradient kept
    across chunks; far less than keeping every chunk's 16-bit logits once the vocabulary outgrows the hidden size."""
    from rackfit.estimator.framework_activations import chunk_backward_loss
    base = dict(compile=True, lossChunks=8, microBatchSize=2, sequenceLength=8192, activationCheckpointing="full")
    kept = acts("fsdp", Layout(data=8), **base)
    per_chunk = acts("fsdp", Layout(data=8), lossChunkBackward=True, **base)
    tokens, h, v = 2 * 8192, LLAMA.hidden_size, LLAMA.vocab_size
    final = tokens * h * 2  # the final norm's output, counted either way
    during = tokens * h * 6 + tokens * v / 8 * 4 + tokens * h * 2 / 8 + v * h * 4
    assert per_chunk.loss_forward - final == pytest.approx(during, abs=8)
    assert per_chunk.loss_backward - final == tokens * h * 2
    assert per_chunk.loss_forward < kept.loss_backward
    lora = chunk_backward_loss(LLAMA, Training(framework="fsdp", method="lora", **base, lossChunkBackward=True), 1)
    assert lora[0] == pytest.approx(during - v * h * 4, abs=8)  # a frozen output keeps no gradient
    with pytest.raises(InvalidWorkload):
        spec("fsdp", lossChunkBackward=True)  # needs lossChunks above 1


def test_fsdp_gathered_parameters_strand_no_slack():
    """FSDP frees and re-requests each layer's unsharded storage at the same sizes (FSDPParam.alloc_storage /
    free_storage; FSDP1's _full_param_padded), so the allocator's slack share applies to the backward's transient
    memory less the gathered parameters; DeepSpeed ZeRO-3's per-parameter gathers get no such reuse."""
    from rackfit.estimator import SLACK_RECOMPUTE
    from rackfit.estimator.fsdp import fsdp_gathered_reuse
    lora = dict(method="lora", masterWeights="none", activationCheckpointing="full", microBatchSize=2,
                sequenceLength=2048)
    r = peak("fsdp", Layout(data=8), **lora)
    assert r.phase != "optimizer step" and r.reused > 0
    assert r.reused == r.weights - (r.states - r.gradients - r.optimizer)  # the gathered part of the live weights
    e = estimate(spec("fsdp", dict(data=8), **lora))
    stranded = e.breakdown.overhead_bytes - CUDA_CONTEXT_BYTES - training_nccl_bytes(Training(framework="fsdp"),
                                                                                     Layout(data=8)) - TORCH_WS
    assert stranded == int(r.backward_transient + SLACK_RECOMPUTE * (r.backward_transient - r.reused)
                           + r.step_transient) - r.transient
    assert stranded < SLACK_RECOMPUTE * r.backward_transient
    assert fsdp_gathered_reuse(Training(framework="deepspeed", zeroStage=3), 1 << 30) == 0
    assert fsdp_gathered_reuse(Training(framework="fsdp", fsdpVersion=1), 1 << 30) == 1 << 30


def test_expandable_segments_as_the_spec_says():
    """training.expandableSegments overrides the default (torchtitan's per-op SAC sets it, the rest not);
    with it the full-checkpointing reservation is the larger phase plus SLACK_TRAINING of it, less than
    the default allocator's backward-plus-step; the transformers model takes it too
    (test_transformers_expandable.py)."""
    from rackfit.estimator import CUDA_CONTEXT_BYTES, SLACK_TRAINING
    kw = dict(activationCheckpointing="full", sequenceLength=1024)
    default = estimate(spec("fsdp", dict(data=2), **kw))
    expandable = estimate(spec("fsdp", dict(data=2), expandableSegments=True, **kw))
    r = peak("fsdp", Layout(data=2), expandableSegments=True, **kw)
    assert r.expandable_segments
    assert expandable.breakdown.overhead_bytes - CUDA_CONTEXT_BYTES - COMM_NVLINK - TORCH_WS == \
        int(SLACK_TRAINING * r.transient)
    assert expandable.total_bytes < default.total_bytes
    assert not any("expandable" in n for n in expandable.notes)
    assert not peak("fsdp", Layout(data=2), expandableSegments=False, activationCheckpointing="selective",
                    sequenceLength=1024).expandable_segments
    assert spec("transformers", expandableSegments=True).training.expandable_segments


def test_adamw_implementation_says_whether_the_step_makes_a_temporary():
    """torch's foreach AdamW (_multi_tensor_adam: _foreach_sqrt of the second moments) makes one state-sized
    temporary, the fused kernel none: HF Trainer's adamw_torch before torch 2.8 is the foreach one."""
    one = dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16")
    short = dict(method="full", masterWeights="none", sequenceLength=1024, activationCheckpointing="full")
    fused = estimate(parse_spec(dict(one, training=short)))
    foreach = estimate(parse_spec(dict(one, training=dict(short, adamwImplementation="foreach"))))
    assert foreach.peak_phase == "optimizer step"
    assert foreach.breakdown.optimizer_states_bytes - fused.breakdown.optimizer_states_bytes == P.total * 2
    assert peak("fsdp", Layout(data=8), adamwImplementation="fused").step_transient == 0
    assert peak("fsdp", Layout(data=8)).step_transient == peak("fsdp", Layout(data=8),
                                                               adamwImplementation="foreach").step_transient > 0


def test_a_client_torch_adamw_under_zero_steps_on_the_whole_fp32_partition():
    """HF Trainer hands DeepSpeed its torch AdamW when the config names no optimizer; ZeRO points its param groups at
    the flat fp32 partition, so the step's temporary is the partition's size (LlamaFactory issue 1221: 3.14 GiB for
    LLaMA-7B over 8 GPUs). DeepSpeed's FusedAdam (the default) makes none. The step's flat 16-bit gradient copy is a
    moment of its own (test_deepspeed_hf_rows.py): under ZeRO-3 the client's temporary (one sub-group's fp32, 4 bytes)
    replaces that copy (2 bytes) as the larger moment."""
    for zero in (3,):
        fused = peak("deepspeed", Layout(data=8), zeroStage=zero, masterWeights="fp32")
        client = peak("deepspeed", Layout(data=8), zeroStage=zero, masterWeights="fp32",
                      adamwImplementation="foreach")
        assert client.step_transient - fused.step_transient == min(P.total // 8, 1_000_000_000) * (4 - 2)
    with pytest.raises(InvalidWorkload, match="spec.training.adamwImplementation"):
        spec("deepspeed", zeroStage=2, optimizer="sgd", adamwImplementation="foreach")


def test_qlora_under_transformers_keeps_an_fp32_residual_stream():
    """peft's prepare_model_for_kbit_training leaves the norms fp32, bitsandbytes' Linear4bit returns its input's
    dtype, so the residual (each checkpointed layer's input) is fp32: 2 bytes more a hidden element than LoRA's."""
    training = dict(microBatchSize=4, sequenceLength=4096, activationCheckpointing="full")
    one = dict(model=dict(preset="llama-3.1-8b"), workload="training")
    qlora = estimate(parse_spec(dict(one, precision="nf4", training=dict(training, method="qlora"))))
    lora = estimate(parse_spec(dict(one, precision="bf16", training=dict(training, method="lora"))))
    assert qlora.peak_phase == lora.peak_phase
    kept = LLAMA.num_layers * 4 * 4096 * LLAMA.hidden_size
    assert qlora.breakdown.activations_bytes - lora.breakdown.activations_bytes == pytest.approx(2 * kept, rel=1e-6)


def test_fsdp_foreach_adamw_step_temporary():
    """torch.optim.AdamW's foreach step makes one state-sized sqrt per parameter (the peak of a short
    sequence, after the backward)."""
    r = peak("fsdp", Layout(data=2), sequenceLength=256, activationCheckpointing="full")
    assert r.phase == "optimizer step"
    assert r.optimizer == (8 + 4) * P.total // 2


# --- Megatron ---------------------------------------------------------------------------------------------

def test_megatron_sequence_parallel_activations_shrink_with_tensor():
    """Korthikanti et al.: with sequence parallel every stored activation is split over t."""
    t2, t4 = (acts("megatron", Layout(tensor=t), sequenceParallel=True).kept for t in (2, 4))
    assert t2 / t4 == pytest.approx(2, rel=1e-3)
    # without it, norms, dropout masks and the linear inputs (10sbh) stay whole on every rank
    n2, n4 = (acts("megatron", Layout(tensor=t)).kept for t in (2, 4))
    assert n4 > t4 and 1 < n2 / n4 < 2


def test_megatron_layer_matches_korthikanti_for_gpt():
    """A GPT layer (MHA, GELU 4h) with flash attention keeps sbh(10 + 24/t) bytes, sbh(34)/t with SP."""
    gpt = resolve(ModelSource(architecture=dict(numLayers=1, hiddenSize=4096, intermediateSize=16384,
                                                numAttentionHeads=32, numKeyValueHeads=32, headDim=128,
                                                vocabSize=32000, gatedMlp=False)))
    tr = Training(framework="megatron", sequenceLength=1024)
    sbh = 1024 * 4096
    lse = 1024 * 4 * 32 / 4  # flash attention's fp32 softmax statistics, per head
    assert runtime_activations(gpt, tr, Layout(tensor=4)).kept == pytest.approx(sbh * (10 + 24 / 4) + lse)
    sp = tr.model_copy(update={"sequence_parallel": True})
    assert runtime_activations(gpt, sp, Layout(tensor=4)).kept == pytest.approx(sbh * 34 / 4 + lse)


def test_megatron_selective_recomputes_core_attention_only():
    """With flash attention, recomputing core attention frees only its softmax statistics (fp32 per
    head): q, k, v stay as the checkpoint's inputs, the output as the projection's input."""
    none = acts("megatron", Layout(tensor=2))
    sel = acts("megatron", Layout(tensor=2), activationCheckpointing="selective")
    assert none.kept - sel.kept == pytest.approx(32 * 4096 * 4 * 32 / 2, rel=1e-6)


def test_megatron_first_stage_holds_pipeline_micro_batches():
    """1F1B: the first of `pipeline` stages runs `pipeline` forwards before its first backward, so its
    L/p layers hold p micro-batches: as much as the whole model's activations of one micro-batch."""
    one = acts("megatron", Layout(tensor=1))
    for pp in (2, 4):
        staged = acts("megatron", Layout(pipeline=pp))
        assert staged.kept == one.kept
        assert staged.loss_backward == 0  # the logits live on the last stage, which holds less


def test_torch_pipelining_keeps_every_micro_batchs_buffers_and_outputs():
    """torch.distributed.pipelining (torchtitan's pipeline parallel) allocates a gradient receive buffer for every
    micro-batch's output (all stages but the last) and an input receive buffer for every micro-batch (all but the
    first), and keeps every micro-batch's output in output_chunks until the step ends: the first stage holds
    2 x pipeline 16-bit stage outputs beside its activations, the last pipeline input buffers and pipeline
    micro-batches' 16-bit logits."""
    tr = dict(microBatchSize=2, sequenceLength=4096, activationCheckpointing="full")
    first = acts("fsdp", Layout(pipeline=4), stage="first", **tr)
    last = acts("fsdp", Layout(pipeline=4), stage="last", **tr)
    tokens = 2 * 4096
    stage_layers = LLAMA.num_layers // 4
    output = tokens * LLAMA.hidden_size * 2
    assert first.kept == 4 * stage_layers * output + 2 * 4 * output
    assert last.kept == stage_layers * output + 4 * output + 4 * tokens * LLAMA.vocab_size * 2
    # Megatron's schedule is its own: no such buffers
    assert acts("megatron", Layout(pipeline=4), stage="first", **tr).kept == 4 * stage_layers * output


def test_the_most_loaded_pipeline_stage_is_compared_at_each_stages_peak():
    """The first stage peaks in a layer's recompute on top of its micro-batches' inputs, the last in its loss: the
    most loaded stage is the larger of the two sums (T13's first stage, torchtitan's 405B at TP 8 x PP 8)."""
    big = resolve(ModelSource(preset="llama-3.1-405b"))
    t = Training(framework="fsdp", microBatchSize=4, sequenceLength=8192, activationCheckpointing="full",
                 compile=True, compileLoss=False)
    layout = Layout(data=8, tensor=8, pipeline=8)
    first, last = (runtime_activations(big, t, layout, s) for s in ("first", "last"))
    assert first.kept + first.recompute > last.kept + max(last.loss_backward, last.loss_forward, last.recompute)
    assert runtime_activations(big, t, layout).kept == first.kept


def test_megatron_last_stage_holds_one_micro_batch_and_the_loss():
    first = acts("megatron", Layout(pipeline=4), stage="first")
    last = acts("megatron", Layout(pipeline=4), stage="last")
    assert last.kept * 4 == first.kept and last.loss_backward > 0 == first.loss_backward


def test_megatron_interleaved_stages_hold_their_warmup_chunks():
    """Megatron's interleaved schedule (schedules.py get_pp_rank_microbatches): 2 (p - rank - 1) + (v - 1) p warmup
    forwards of one model chunk (L / (p v) layers) each, plus one: with 8 chunks on 4 stages the last stage holds
    29 one-layer chunks where 1F1B holds 8 layers of one micro-batch, the first 35."""
    plain = acts("megatron", Layout(pipeline=4), stage="last").kept
    last = acts("megatron", Layout(pipeline=4), stage="last", virtualStages=8).kept
    first = acts("megatron", Layout(pipeline=4), stage="first", virtualStages=8).kept
    assert last == pytest.approx(plain * 29 / 8, rel=1e-6)
    assert first == pytest.approx(plain * 35 / 8, rel=1e-6)
    assert acts("megatron", Layout(pipeline=1), virtualStages=8).kept == acts("megatron").kept


def test_megatron_stages_hold_no_more_micro_batches_than_the_step_has():
    """schedules.py caps 1F1B's warmup at num_microbatches (min(p - rank - 1, m), the steady forward only when some
    remain) and the interleaved one at m x v chunk forwards: a step of fewer micro-batches than stages (T847, PP 2 with
    one micro-batch a step) holds only those on the first stage. Unsaid, the upper bound stays."""
    one = acts("megatron", Layout(pipeline=4), stage="last").kept
    assert acts("megatron", Layout(pipeline=4), stage="first", gradientAccumulationSteps=2).kept == 2 * one
    assert acts("megatron", Layout(pipeline=4), stage="first", gradientAccumulationSteps=8).kept == 4 * one
    assert acts("megatron", Layout(pipeline=4), stage="first").kept == 4 * one
    assert acts("megatron", Layout(pipeline=4), stage="last", gradientAccumulationSteps=1).kept == one
    # interleaved, 8 one-layer chunks a stage: one micro-batch runs all 8 chunks (instead of 35 and 29 held)
    for stage in ("first", "last"):
        held = acts("megatron", Layout(pipeline=4), stage=stage, virtualStages=8, gradientAccumulationSteps=1).kept
        assert held == pytest.approx(one, rel=1e-6)
    # the most loaded stage is then the last, which also holds the loss
    capped = acts("megatron", Layout(pipeline=2), gradientAccumulationSteps=1)
    assert capped.loss_backward > 0


def test_megatron_end_stages_hold_their_layers_and_a_vocabulary_matrix():
    """gpt_model.py builds the embedding on the first stage and the output layer on the last: each end stage
    holds its L/p layers and one vocabulary matrix, more than a p-th of the model."""
    layers = P.total - P.embedding - P.lm_head
    stage = 8 * layers // 32 + P.embedding
    # and Transformer Engine's cuBLAS workspace (megatron_buffers.te_workspace_bytes)
    # and torch's two cuBLAS workspaces (megatron_buffers.megatron_workspace_bytes)
    assert peak("megatron", Layout(pipeline=4)).states - TE_CUBLAS_WORKSPACE_HOPPER_BYTES - 2 * 33_554_432 == \
        pytest.approx(18 * stage, rel=1e-6)
    assert stage > P.total / 4


def test_megatron_loss_is_in_place():
    """Megatron's vocab-parallel cross-entropy reuses its fp32 softmax as the gradient: 6 bytes per
    logit, against torch's 12 (fp32 log-softmax, nll's gradient, log-softmax's gradient), as deepspeed
    counts it (fsdp adds the final norm's output that torchtitan's output projection saves)."""
    assert acts("megatron").loss_backward * 2 == acts("deepspeed").loss_backward


def test_megatron_distributed_optimizer_shards_states_over_data():
    """bf16 params and fp32 grads on every data rank; fp32 masters and Adam states (12 B) sharded."""
    one, four = (peak("megatron", Layout(data=d)).states - TE_CUBLAS_WORKSPACE_HOPPER_BYTES - 2 * 33_554_432
                 for d in (1, 4))
    assert one == pytest.approx(18 * P.total, rel=1e-6)
    assert four == pytest.approx((6 + 12 / 4) * P.total, rel=1e-6)


# --- DeepSpeed --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_stages_shard_more(stage):
    # the backward's live gradients too: ZeRO-1 and ZeRO-2 keep the same between steps (no 16-bit gradient,
    # test_deepspeed_hf_rows.py) and differ while the backward holds them
    def held(r):
        return r.states + r.gradients

    lower = held(peak("deepspeed", Layout(data=8), zeroStage=stage - 1))
    assert held(peak("deepspeed", Layout(data=8), zeroStage=stage)) < lower


def test_zero3_live_parameters_are_bounded():
    """stage3_max_live_parameters (1e9) plus the prefetch bucket (5e7) gathered in 16 bit, whatever the model."""
    r = peak("deepspeed", Layout(data=8), zeroStage=3, activationCheckpointing="full")
    assert r.weights - 2 * P.total // 8 == (ZERO_MAX_LIVE_PARAMETERS + ZERO_PREFETCH_BUCKET) * 2


def test_zero3_gathers_at_most_the_whole_model():
    """A model smaller than stage3_max_live_parameters plus the prefetch bucket is gathered whole once, not
    whole plus a prefetch bucket more."""
    small = resolve(ModelSource(architecture=dict(numLayers=12, hiddenSize=1024, intermediateSize=4096,
                                                  numAttentionHeads=16, numKeyValueHeads=16, headDim=64,
                                                  vocabSize=50000, tieWordEmbeddings=False, gatedMlp=False)))
    ps = count_params(small)
    r = runtime_peak(small, ps, Training(framework="deepspeed", zero_stage=3, activation_checkpointing="full"),
                     "bf16", Layout(data=8), 0)
    assert ps.total < ZERO_MAX_LIVE_PARAMETERS + ZERO_PREFETCH_BUCKET
    assert r.weights - 2 * ps.total // 8 == 2 * ps.total


def test_zero3_without_checkpointing_keeps_every_layers_weights_only_outside_zero_init():
    """torch's linear saves weight.t(), a view of the gathered storage: a model built outside zero.Init keeps every
    layer's bf16 weights until the backward; zero.Init swaps in DeepSpeed's memory-efficient linear, which saves the
    parameter itself, so without checkpointing the gathered weights are as bounded as with it (T1050)."""
    outside = peak("deepspeed", Layout(data=8), zeroStage=3, zeroInit=False)
    inside, unset = (peak("deepspeed", Layout(data=8), zeroStage=3, zeroInit=v) for v in (True, None))
    full = peak("deepspeed", Layout(data=8), zeroStage=3, activationCheckpointing="full")
    assert outside.weights - 2 * P.total // 8 == 2 * P.total
    assert inside.weights == unset.weights == full.weights
    assert full.weights - 2 * P.total // 8 == (ZERO_MAX_LIVE_PARAMETERS + ZERO_PREFETCH_BUCKET) * 2


def test_zero3_keeps_its_reduce_bucket_between_steps():
    """stage3.py allocates one IPG bucket of reduce_bucket_size 16-bit elements at init (contiguous_gradients) and
    keeps it: it is part of what stays allocated between steps, sized by the config, not by the model."""
    default = peak("deepspeed", Layout(data=8), zeroStage=3)
    small = peak("deepspeed", Layout(data=8), zeroStage=3, reduceBucketSize=50_000_000)
    assert default.states - small.states == (500_000_000 - 50_000_000) * 2
    assert small.states == pytest.approx(16 * P.total / 8 + 50_000_000 * 2, rel=1e-6)


def test_zero_runs_its_stage_on_one_gpu_too():
    """DeepSpeed picks its ZeRO optimizer for any zero stage above 0 whatever the world size (engine.py,
    _do_optimizer_sanity_check): ZeRO-3 on one GPU keeps 16-bit gradient partitions (16 bytes a parameter with
    fp32 masters and Adam), not the bf16 optimizer's fp32 gradients (18)."""
    one = peak("deepspeed", Layout(data=1), zeroStage=3, reduceBucketSize=1)
    assert one.states == pytest.approx(16 * P.total + 2, rel=1e-6)


def test_eager_chunked_loss_keeps_every_chunks_log_softmax():
    """torchtune's eager chunked cross-entropy (fsdp, lossChunks, loss not compiled): each chunk's fp32 log-softmax is
    saved until the one backward (4 bytes a logit, all chunks), the other buffers of torch's cross-entropy (the
    16-bit logits and fp32 copy forward, 4 + 4 bytes backward) exist one chunk at a time."""
    n = 4096 * LLAMA.vocab_size
    whole, chunked = acts("fsdp"), acts("fsdp", lossChunks=8)
    assert whole.loss_backward - chunked.loss_backward == pytest.approx(n * (12 - (4 + 8 / 8)), abs=2)
    assert whole.loss_forward - chunked.loss_forward == pytest.approx(n * (10 - (4 + 6 / 8)), abs=2)


def test_a_compiled_chunked_loss_frees_each_chunks_logits_in_the_backward():
    """torchtune's chunked output and compiled CEWithChunkedOutputLoss: a chunk's 16-bit logits are freed once its
    gradient is written, so the backward holds the whole 16-bit gradient and one chunk more, not both whole."""
    n = 2 * 2048 * LLAMA.vocab_size
    whole = acts("fsdp", compile=True, microBatchSize=2, sequenceLength=2048)
    chunked = acts("fsdp", compile=True, microBatchSize=2, sequenceLength=2048, lossChunks=8)
    assert whole.loss_backward - chunked.loss_backward == pytest.approx(2 * n * (1 - 1 / 8), abs=2)
    assert chunked.loss_forward == whole.loss_forward


def test_transformers_before_4_49_copies_the_shifted_fp32_logits():
    """ForCausalLMLoss before transformers 4.49 (`logits[..., :-1, :].contiguous()` of the fp32 upcast): 4 bytes a logit
    more at the end of the forward, under FSDP1 over transformers models and under transformers; not from 4.49, not
    unset (current releases), and the backward is unchanged."""
    from rackfit.estimator.activations import training_activations

    n = 2 * 4096 * LLAMA.vocab_size
    fsdp1 = dict(fsdpVersion=1, microBatchSize=2, sequenceLength=4096)
    old, new, unset = (acts("fsdp", transformersVersion=v, **fsdp1) for v in ("4.48.1", "4.49.0", None))
    assert old.loss_forward - unset.loss_forward == pytest.approx(4 * n, abs=2)
    assert new.loss_forward == unset.loss_forward and old.loss_backward == unset.loss_backward
    hf = [training_activations(LLAMA, Training(microBatchSize=2, sequenceLength=4096, **v), Layout(), mixed=False)
          for v in (dict(transformersVersion="4.48.1"), {})]
    assert hf[0].loss_forward - hf[1].loss_forward == pytest.approx(4 * n, abs=2)


def test_deepspeed_runs_the_transformers_release_loss():
    """The HF Trainer's DeepSpeed integration runs the release's PreTrainedModel under ZeRO, so transformers 4.46.1's
    ForCausalLMLoss (loss/loss_utils.py: the fp32 upcast, its shifted .contiguous() copy and the log-softmax) is what a
    ZeRO-3 LoRA job of that release holds at the loss (T665): 4 bytes a logit more than 4.49 or unset at the forward's
    end, which becomes the job's peak."""
    n = 15000 * LLAMA.vocab_size
    ds = dict(zeroStage=3, method="lora", microBatchSize=1, sequenceLength=15000, activationCheckpointing="full")
    old, new, unset = (acts("deepspeed", Layout(data=4), transformersVersion=v, **ds)
                       for v in ("4.46.1", "4.49.0", None))
    assert old.loss_forward - unset.loss_forward == pytest.approx(4 * n, abs=2)
    assert new.loss_forward == unset.loss_forward and old.loss_backward == unset.loss_backward
    est = [estimate(spec("deepspeed", dict(data=4), transformersVersion=v, **ds)).total_bytes for v in ("4.46.1", None)]
    assert est[0] > est[1]


def test_zero3_without_zero_init_holds_the_whole_model_at_start():
    """accelerate's zero3_init_flag false: DeepSpeed's engine moves the whole 16-bit model to each GPU before ZeRO-3
    partitions it (engine.py _configure_distributed_model), so a LoRA job whose step fits a 24 GB card can die at start
    (T666, a 14B model on two 4090s); unset keeps the partitioned load, and the step's own peak is unchanged."""
    lora = dict(zeroStage=3, method="lora", loraTargets=["q", "v"], microBatchSize=1, sequenceLength=1024,
                activationCheckpointing="full")
    outside, inside = (estimate(spec("deepspeed", dict(data=2), zeroInit=v, **lora)) for v in (False, None))
    whole = P.total * 2
    assert outside.peak_phase == "load" and outside.breakdown.weights_bytes >= whole
    assert inside.peak_phase != "load" and inside.total_bytes < outside.total_bytes
    assert any("zero.Init" in n for n in outside.notes)
    step = [peak("deepspeed", Layout(data=2), zeroInit=v, **lora) for v in (False, None)]
    assert step[0].weights == step[1].weights and step[0].load > 0 and step[1].load == 0


def test_the_estimate_says_what_it_assumed_of_the_runtime():
    assert any("torchtitan" in n for n in estimate(spec("fsdp", activationCheckpointing="selective")).notes)
    assert any("default allocator" in n for n in estimate(spec("fsdp")).notes)
    assert any("distributed optimizer" in n for n in estimate(spec("megatron")).notes)
    assert not estimate(spec("transformers")).notes


# --- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework,training,field", [
    ("fsdp", dict(zeroStage=3), "spec.training.zeroStage"),
    ("megatron", dict(zeroStage=1), "spec.training.zeroStage"),
    ("megatron", dict(method="lora"), "spec.training.method"),
    ("megatron", dict(optimizer="adafactor"), "spec.training.optimizer"),
    ("megatron", dict(compile=True), "spec.training.compile"),
    ("deepspeed", dict(sequenceParallel=True), "spec.training.sequenceParallel"),
    ("megatron", dict(lossParallel=False), "spec.training.lossParallel"),
    ("deepspeed", dict(virtualStages=2), "spec.training.virtualStages"),
    ("megatron", dict(optimizer="sgd", adamwImplementation="fused"), "spec.training.adamwImplementation"),
    ("transformers", dict(optimizer="sgd", adamwImplementation="foreach"), "spec.training.adamwImplementation"),
    ("fsdp", dict(transformersVersion="4.48.1"), "spec.training.transformersVersion"),
    ("megatron", dict(transformersVersion="4.48.1"), "spec.training.transformersVersion"),
    ("deepspeed", dict(zeroStage=2, zeroInit=False), "spec.training.zeroInit"),
    ("fsdp", dict(zeroInit=False), "spec.training.zeroInit"),
    ("fsdp", dict(reduceBucketSize=50_000_000), "spec.training.reduceBucketSize"),
    ("fsdp", dict(activationOffloading=True, activationCheckpointing="selective"),
     "spec.training.activationOffloading"),
    ("deepspeed", dict(activationOffloading=True, activationCheckpointing="full"),
     "spec.training.activationOffloading"),
])
def test_meaningless_combinations_are_refused(framework, training, field):
    with pytest.raises(InvalidWorkload) as e:
        spec(framework, **training)
    assert [path for path, _ in e.value.errors] == [field]


@pytest.mark.parametrize("framework", ["transformers", "deepspeed"])
def test_zero_stage_with_deepspeed_runtimes(framework):
    assert spec(framework, dict(data=4), zeroStage=2).training.zero_stage == 2


# --- the public measurements (bench/public_training.py) -----------------------------------------------

def test_public_training_rows_stay_within_the_issue_targets():
    """A regression guard on the public rows (the held-back ones judge the estimator): median |error|
    at most 10%."""
    mod = bench("public_training")
    errors = [mod.err(r["rackfit"], r["measured"]) for r in mod.measure()]
    assert len(errors) >= 16
    assert statistics.median(abs(e) for e in errors) <= 10


def _lora_fsdp(precision: str, method: str, data: int = 8, **training):
    arch = resolve(ModelSource(preset="llama-3.1-70b"))
    p = count_params(arch)
    from rackfit.estimator.weights import weight_bytes
    layout = Layout(data=data)
    frozen = weight_bytes(p, precision, layout, arch.num_layers, arch)
    tr = Training(framework="fsdp", method=method, microBatchSize=2, sequenceLength=2048,
                  activationCheckpointing="full", **training)
    return runtime_peak(arch, p, tr, precision, layout, frozen), frozen


def test_lora_under_fsdp_shards_the_adapters_and_keeps_no_base_states():
    """torchtune's FSDP2 LoRA: base and adapters sharded per layer, states for the adapters only."""
    r8, frozen = _lora_fsdp("bf16", "lora", masterWeights="none")
    r1, _ = _lora_fsdp("bf16", "lora", data=1, masterWeights="none")
    assert r8.optimizer * 8 == pytest.approx(r1.optimizer, rel=0.01)
    assert r8.optimizer < 0.01 * frozen * 8   # adapters' AdamW states only: no base states, no masters


def test_16bit_adapters_need_less_than_peft_fp32_adapters():
    bf16, _ = _lora_fsdp("bf16", "lora", masterWeights="none")
    fp32, _ = _lora_fsdp("bf16", "lora", masterWeights="fp32")
    assert bf16.optimizer * 2 == pytest.approx(fp32.optimizer, rel=0.01)
    assert bf16.activations <= fp32.activations   # no fp32 copy of the adapted inputs


def test_lora_under_fsdp1_keeps_the_root_unit_gathered():
    """peft + accelerate's FSDP1: the root unit (embeddings, output) is not resharded after the forward
    (_runtime_utils._post_forward_reshard), so the embeddings stay gathered beside the output; torchtune's FSDP2 root
    is not resharded after the forward either (test_torchtune_rows.py). FSDP1 holds the root and two layer units at its
    peak (a layer's recompute); torchtune's FSDP2 at the loss's backward the root, no layer, and its copy-in stream's
    root + one layer (torchtune.distributed_gathered): one root more and one layer less, on Llama 3.1 70B
    4,202,692,608 - 1,711,309,004 bytes (tests/unit/test_fsdp2_lora_gathers.py)."""
    two, _ = _lora_fsdp("bf16", "lora")
    one, _ = _lora_fsdp("bf16", "lora", fsdpVersion=1)
    assert (one.phase, two.phase) == ("layer recompute", "loss backward")
    assert two.weights - one.weights == 4_202_692_608 - 1_711_309_004


def test_frozen_fsdp1_units_keep_every_later_layers_input_gradient_under_reentrant_checkpointing():
    """FSDP1's reshard-only hook on a frozen unit's detached checkpoint inputs (register_multi_grad_hook keeps their
    grad accumulators, which keep the inputs and the .grad written into them) is removed only at the end of the
    backward: at layer 0's recompute, L - 1 16-bit input gradients beside the checkpointed inputs. Not for FSDP2, not
    for a full fine-tune under FSDP1 (the hook is on the trainable flat parameter), not without checkpointing."""
    arch = resolve(ModelSource(preset="llama-3.1-70b"))
    half = arch.model_copy(update={"num_layers": arch.num_layers // 2})   # one layer's recompute is the same
    layout = Layout(data=2)

    def grown(**training):
        """How much one layer's backward working set grows from 40 layers to 80."""
        tr = Training(**{"framework": "fsdp", "method": "qlora", "microBatchSize": 2, "sequenceLength": 4096,
                         "activationCheckpointing": "full", **training})
        return runtime_activations(arch, tr, layout).recompute - runtime_activations(half, tr, layout).recompute

    grads = arch.num_layers // 2 * 2 * 4096 * arch.hidden_size * 2   # 40 more 16-bit input gradients
    assert grown(fsdpVersion=1) == grads
    assert grown(fsdpVersion=1, method="lora") == grads
    assert grown(fsdpVersion=2) == 0
    assert grown(fsdpVersion=1, method="full") == 0
    assert grown(fsdpVersion=1, activationCheckpointing="none") == 0


def test_qlora_gathers_the_base_in_4_bit():
    """The decoder layers are gathered as stored (NF4 data and scalers, under 0.3 of 16 bits); the root (embeddings,
    output) in 16 bits, held in the default stream and in the copy-in pool (torchtune.distributed_gathered)."""
    from rackfit.estimator.frameworks import frozen_layer_bytes
    lora, f16 = _lora_fsdp("bf16", "lora", masterWeights="none")
    qlora, f4 = _lora_fsdp("nf4", "qlora", masterWeights="none")
    arch = resolve(ModelSource(preset="llama-3.1-70b"))
    p = count_params(arch)
    root = 2 * 128256 * 8192 * 2
    l16, l4 = frozen_layer_bytes(arch, p, f16, 1), frozen_layer_bytes(arch, p, f4, 1)
    assert l4 < 0.3 * l16
    assert (lora.phase, qlora.phase) == ("loss backward", "loss backward")
    assert lora.reused == 2 * root + l16 and qlora.reused == 2 * root + l4
    assert qlora.weights < 0.55 * lora.weights


def test_megatron_unfused_attention_keeps_five_bytes_a_score():
    """flashAttention false (--transformer-impl local without --use-flash-attn): the softmax output, the dropout mask
    and the dropped-out probabilities, 5 bytes per score (Korthikanti's 5as^2b) a layer, split over tensor; selective
    recompute (core_attn) drops them; the default (flash) keeps an fp32 statistic per head only."""
    b, s = 2, 2048
    flash = acts("megatron", Layout(tensor=2), microBatchSize=b, sequenceLength=s)
    eager = acts("megatron", Layout(tensor=2), microBatchSize=b, sequenceLength=s, flashAttention=False)
    scores = 5 * LLAMA.num_attention_heads * s * s * b // 2 * LLAMA.num_layers
    assert abs((eager.kept - flash.kept) - (scores - 4 * LLAMA.num_attention_heads * b * s // 2 * LLAMA.num_layers)) \
        < LLAMA.num_layers
    selective = acts("megatron", Layout(tensor=2), microBatchSize=b, sequenceLength=s, flashAttention=False,
                     activationCheckpointing="selective")
    assert selective.kept == acts("megatron", Layout(tensor=2), microBatchSize=b, sequenceLength=s,
                                  activationCheckpointing="selective").kept


def test_megatron_fp16_keeps_16_bit_gradients():
    """--fp16 leaves accumulate_allreduce_grads_in_fp32 False (Megatron forces it for --bf16 only): the gradient
    buffer is fp16, half of bf16's fp32 buffer."""
    bf16 = runtime_peak(LLAMA, P, Training(framework="megatron"), "bf16", Layout(data=8), 0)
    fp16 = runtime_peak(LLAMA, P, Training(framework="megatron"), "fp16", Layout(data=8), 0)
    assert bf16.states - fp16.states == P.total * 2


def test_eager_attention_keeps_eight_bytes_a_score():
    """flashAttention false outside Megatron: Hugging Face models' eager attention (transformers 4.28 LlamaAttention)
    keeps the masked 16-bit scores, the fp32 softmax and its 16-bit copy, 8 bytes a score a layer; checkpointing
    keeps only the layers' inputs either way."""
    b, s = 1, 512
    sdpa = acts("fsdp", Layout(data=4), fsdpVersion=1, microBatchSize=b, sequenceLength=s)
    eager = acts("fsdp", Layout(data=4), fsdpVersion=1, microBatchSize=b, sequenceLength=s, flashAttention=False)
    assert eager.kept - sdpa.kept == pytest.approx(8 * LLAMA.num_attention_heads * s * s * b * LLAMA.num_layers,
                                                   abs=LLAMA.num_layers)
    full = dict(microBatchSize=b, sequenceLength=s, activationCheckpointing="full")
    assert acts("fsdp", Layout(data=4), fsdpVersion=1, flashAttention=False, **full).kept == \
        acts("fsdp", Layout(data=4), fsdpVersion=1, **full).kept


def test_hf_trainer_fsdp1_before_4_33_is_noted_without_the_rate_limiter():
    # transformers 4.27-4.32's Trainer builds FSDP1 with limit_all_gathers False unless fsdp_config sets it
    # (trainer.py, 4.28.1: `self.limit_all_gathers = False`; 4.30.0: `fsdp_config.get("limit_all_gathers", False)`);
    # from 4.33 it takes accelerate's plugin default. Noted, not counted: the estimate stays the same.
    def notes(version):
        extra = {"transformersVersion": version} if version else {}
        est = estimate(spec("fsdp", {"data": 4}, fsdpVersion=1, **extra))
        return est, [n for n in est.notes if "limit_all_gathers False" in n]
    old, flagged = notes("4.28.1")
    assert len(flagged) == 1 and "4.28.1" in flagged[0] and "may be under" in flagged[0]
    assert notes("4.32.1")[1]
    assert not notes("4.33.0")[1] and not notes("4.35.0")[1] and not notes(None)[1]
    # the version moves nothing else here (4.28 and 4.33 both copy the shifted logits)
    assert old.total_bytes == notes("4.33.0")[0].total_bytes
    assert not Training(framework="fsdp", model_code="transformers",
                        transformers_version="4.28.1").hf_fsdp1_without_rate_limiter   # FSDP2: accelerate's fully_shard
