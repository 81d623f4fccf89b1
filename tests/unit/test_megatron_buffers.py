"""Megatron-Core's persistent buffers outside the model states (issue 22): the GlobalMemoryBuffer
(megatron/core/utils.py, one tensor a (name, dtype) of the largest request, never freed) and Transformer Engine's cuBLAS
workspace (transformer_engine/pytorch/module/base.py get_workspace), each against bytes computed by hand."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.megatron_buffers import (
    TE_CUBLAS_WORKSPACE_HOPPER_BYTES,
    TE_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES,
    megatron_global_buffer_bytes,
    megatron_local_layers,
    megatron_workspace_bytes,
    te_workspace_bytes,
)
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch
from rackfit.spec import Training

# T52's GPT "70B" (80 x 8192, 64 heads, GELU 4h, vocab 32256, tied)
GPT70 = ModelArch(name="gpt-70b", num_layers=80, hidden_size=8192, intermediate_size=32768, num_attention_heads=64,
                  num_key_value_heads=64, head_dim=128, vocab_size=32256, tie_word_embeddings=True, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
            sequenceLength=4096, activationCheckpointing="full")


def tr(**kw) -> Training:
    return Training(**{**BASE, **kw})


def test_the_unfused_attention_s_scores_live_in_the_global_buffer():
    """DotProductAttention.forward: get_tensor((b * np, sq, sk), query.dtype, "mpu") for baddbmm. T52 (TP 4, local,
    no flash): 1 x 64 / 4 heads x 4096 x 4096 x 2 bytes = 536,870,912 (512 MiB) on every stage."""
    t = tr(flashAttention=False, sequenceParallel=False)
    for stage in ("first", "last", "max"):
        assert megatron_global_buffer_bytes(GPT70, t, Layout(tensor=4, pipeline=8), 2, stage) == 536_870_912
    # micro-batch 2 at sequence 2048: 2 x 16 x 2048^2 x 2
    t2 = tr(flashAttention=False, microBatchSize=2, sequenceLength=2048)
    assert megatron_global_buffer_bytes(GPT70, t2, Layout(tensor=4), 2) == 2 * 16 * 2048 * 2048 * 2
    # fp16 (T25: 20 heads, micro-batch 4, 1,024 tokens, one GPU): 4 x 20 x 1024^2 x 2 = 160 MiB
    gpt2 = ModelArch(name="gpt-774m", num_layers=36, hidden_size=1280, intermediate_size=3392,
                     num_attention_heads=20, num_key_value_heads=20, head_dim=64, vocab_size=50304,
                     tie_word_embeddings=True)
    t25 = tr(flashAttention=False, microBatchSize=4, sequenceLength=1024, activationCheckpointing="none")
    assert megatron_global_buffer_bytes(gpt2, t25, Layout(), 2) == 160 * 2**20


def test_sequence_parallel_gathers_into_the_same_buffer_on_the_output_stage_under_te():
    """LinearWithGradAccumulationAndAsyncCommunication: the [s x t, b, h] all-gather of a column-parallel linear's
    input. Under Transformer Engine only the GPT model's output_layer (tensor_parallel.ColumnParallelLinear) uses it:
    the last stage; 4096 x 1 x 8192 x 2 = 64 MiB."""
    t = tr(sequenceParallel=True)
    lay = Layout(tensor=4, pipeline=8)
    assert megatron_global_buffer_bytes(GPT70, t, lay, 2, "last") == 4096 * 8192 * 2
    assert megatron_global_buffer_bytes(GPT70, t, lay, 2, "max") == 4096 * 8192 * 2
    assert megatron_global_buffer_bytes(GPT70, t, lay, 2, "first") == 0
    assert megatron_global_buffer_bytes(GPT70, t, Layout(tensor=4), 2, "first") == 4096 * 8192 * 2
    # no sequence parallel, or TP 1 (sequence parallel is then off, layers.py): nothing gathered
    assert megatron_global_buffer_bytes(GPT70, tr(sequenceParallel=False), Layout(tensor=4), 2) == 0
    assert megatron_global_buffer_bytes(GPT70, tr(sequenceParallel=True), Layout(), 2) == 0


def test_one_buffer_holds_the_larger_request_not_the_sum():
    """Both requests are ("mpu", bf16): one tensor of the larger. Local layers at TP 8 with sequence parallel,
    micro-batch 1 x 512: scores 8 x 512^2 = 2,097,152 elements against the gather's 512 x 8192 = 4,194,304."""
    t = tr(flashAttention=False, sequenceParallel=True, sequenceLength=512)
    assert megatron_global_buffer_bytes(GPT70, t, Layout(tensor=8, pipeline=8), 2, "first") == 512 * 8192 * 2
    t = tr(flashAttention=False, sequenceParallel=True, sequenceLength=4096)
    assert megatron_global_buffer_bytes(GPT70, t, Layout(tensor=8), 2) == 8 * 4096 * 4096 * 2


def test_te_workspace_by_compute_capability():
    """get_cublas_workspace_size_bytes: 32 MiB + 1,024 B at major >= 9 (Hopper, Blackwell), 4 MiB before (the GPU's
    architecture; none given: Hopper's); none under local layers."""
    assert TE_CUBLAS_WORKSPACE_HOPPER_BYTES == 33_555_456
    assert te_workspace_bytes(tr()) == 33_555_456
    assert te_workspace_bytes(tr(), "hopper") == te_workspace_bytes(tr(), "blackwell") == 33_555_456
    for pre in ("volta", "turing", "ampere", "ada"):
        assert te_workspace_bytes(tr(), pre) == TE_CUBLAS_WORKSPACE_PRE_HOPPER_BYTES == 4 * 2**20
    assert te_workspace_bytes(tr(flashAttention=False)) == 0
    assert te_workspace_bytes(tr(framework="fsdp")) == 0


def test_tp_comm_overlap_adds_the_userbuffers_gemms_three_stream_workspace():
    """--tp-comm-overlap: TE's get_cublas_workspace(device, ub=True) is one more tensor of 3 x (32 MiB + 1 KiB) beside
    the plain one (cpp_extensions/gemm.py, _NUM_MAX_UB_STREAMS 3); 3 x 4 MiB more before Hopper; none under local
    layers, which run no userbuffers GEMM."""
    on = tr(sequenceParallel=True, tpCommOverlap=True)
    assert te_workspace_bytes(on) == 4 * 33_555_456
    assert te_workspace_bytes(on) - te_workspace_bytes(tr(sequenceParallel=True)) == 3 * 33_555_456
    assert te_workspace_bytes(on, "ampere") == 4 * 4 * 2**20
    assert te_workspace_bytes(tr(sequenceParallel=True, tpCommOverlap=True, flashAttention=False)) == 0
    # a rank's kept states grow by exactly that (T554's last stage, TP 2 x PP 2)
    lay = Layout(tensor=2, pipeline=2)
    p = count_params(GPT70)
    base = runtime_peak(GPT70, p, tr(sequenceParallel=True), "bf16", lay, 0, stage="last").states
    assert runtime_peak(GPT70, p, on, "bf16", lay, 0, stage="last").states - base == 3 * 33_555_456


def test_te_s_unfused_attention_keeps_te_s_workspaces_and_no_scores_in_the_buffer():
    """--transformer-impl transformer_engine with --attention-backend unfused (flashAttention false): TE's
    UnfusedDotProductAttention torch.empty's its scores each call, so the "mpu" buffer holds only the output layer's
    sequence-parallel gather, and TE's workspace (and grouped GEMM's four on an MoE) are kept as with flash attention.
    Unset, flashAttention false stays Megatron's own layers."""
    local = tr(flashAttention=False, sequenceParallel=True, sequenceLength=4096)
    te = tr(flashAttention=False, sequenceParallel=True, sequenceLength=4096, transformerImpl="transformer_engine")
    assert megatron_local_layers(local) and not megatron_local_layers(te)
    assert megatron_local_layers(tr(flashAttention=False, transformerImpl="local"))
    assert not megatron_local_layers(tr())
    lay = Layout(tensor=8)
    assert megatron_global_buffer_bytes(GPT70, local, lay, 2) == 8 * 4096 * 4096 * 2
    assert megatron_global_buffer_bytes(GPT70, te, lay, 2) == 4096 * 8192 * 2   # the output layer's gather only
    assert te_workspace_bytes(te) == 33_555_456 and te_workspace_bytes(local) == 0
    moe = ModelArch(name="moe", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                    num_key_value_heads=8, head_dim=64, vocab_size=50304, num_experts=8, num_experts_per_token=2,
                    moe_intermediate_size=1024)
    grouped = dict(flashAttention=False, moeGroupedGemm=True)
    assert megatron_workspace_bytes(moe, tr(**grouped, transformerImpl="transformer_engine")) \
        - megatron_workspace_bytes(moe, tr(**grouped)) == 4 * 33_555_456


def test_transformer_impl_local_needs_flash_attention_false():
    with pytest.raises(ValueError, match="transformerImpl local"):
        tr(transformerImpl="local")
    with pytest.raises(ValueError, match="transformerImpl is Megatron's --transformer-impl"):
        Training(framework="fsdp", method="full", transformerImpl="transformer_engine")


def test_tp_comm_overlap_needs_sequence_parallel_and_megatron():
    """megatron/training/arguments.py asserts sequence parallel under --tp-comm-overlap; the field is Megatron's."""
    with pytest.raises(ValueError, match="tpCommOverlap.*sequenceParallel"):
        tr(tpCommOverlap=True)
    with pytest.raises(ValueError, match="tpCommOverlap is Megatron's --tp-comm-overlap"):
        Training(framework="fsdp", method="full", tpCommOverlap=True)
    assert tr(tpCommOverlap=False).tp_comm_overlap is False


def test_the_buffers_are_in_the_states_megatron_reports_between_steps():
    """report_memory's `allocated` after the step: T52's first stage, 18 bytes a parameter (no distributed optimizer,
    DP 1) plus the 512 MiB score buffer, no TE workspace (local layers)."""
    p = count_params(GPT70)
    stage = (80 * (4 * 8192 ** 2 + 2 * 8192 * 32768 + 2 * 8192) + 8192) // 8 + 32256 * 8192
    r = runtime_peak(GPT70, p, tr(flashAttention=False, sequenceParallel=False), "bf16",
                     Layout(tensor=4, pipeline=8), 0, stage="first")
    assert r.states == stage // 4 * 18 + 536_870_912 + 2 * 33_554_432  # and torch's two cuBLAS workspaces
    # the same model under TE with flash attention and sequence parallel, first stage: the workspace only
    r = runtime_peak(GPT70, p, tr(sequenceParallel=True), "bf16", Layout(tensor=4, pipeline=8), 0, stage="first")
    assert r.states == stage // 4 * 18 + 33_555_456 + 2 * 33_554_432
    # fsdp counts neither
    assert megatron_global_buffer_bytes(GPT70, tr(framework="fsdp", flashAttention=False), Layout(tensor=4), 2) == 0


def test_the_moe_allgather_dispatcher_gathers_tokens_over_tensor_x_expert_into_the_buffer():
    """MoEAllGatherTokenDispatcher.token_dispatch: [(S/TP)*B, H] -> [S*B*EP, H] into the "mpu" buffer. Mixtral 8x7B
    (hidden 4096) at TP 2, EP 8, micro-batch 1 x 4096 with sequence parallel: 4096 x 8 x 4096 x 2 bytes = 256 MiB,
    larger than the output layer's 4096 x 4096 x 2 gather, so the buffer is that."""
    from rackfit.models import resolve
    from rackfit.spec import ModelSource
    a = resolve(ModelSource(preset="mixtral-8x7b"))
    t = tr(sequenceParallel=True)
    assert megatron_global_buffer_bytes(a, t, Layout(tensor=2, pipeline=4, data=8, expert=8), 2) == 256 * 2**20
    # no expert parallel: TP 2 gathers [S*B, H], the size of the output layer's gather
    assert megatron_global_buffer_bytes(a, t, Layout(tensor=2, data=8), 2) == 4096 * 4096 * 2
    # EP 8 alone (TP 1, no sequence parallel): still gathered over the expert group
    assert megatron_global_buffer_bytes(a, tr(), Layout(data=8, expert=8), 2) == 4096 * 8 * 4096 * 2
    # a dense model at TP 1: nothing
    assert megatron_global_buffer_bytes(GPT70, tr(), Layout(data=8), 2) == 0
