"""Megatron-Core MoE (issue 22): the cuBLAS workspaces a rank keeps (torch's per thread, Transformer Engine's grouped
GEMM streams) and what an MoE layer saves beyond the dense count (the permuted expert input, GELU experts' weighted
copy), against bytes computed by hand from Megatron-LM d98e8a6, PyTorch's CublasHandlePool.cpp and TE's base.py."""

from __future__ import annotations

import pytest

from rackfit.estimator.framework_activations import megatron_layer_bytes, megatron_moe_saved_bytes
from rackfit.estimator.megatron_buffers import megatron_workspace_bytes
from rackfit.models import ModelArch
from rackfit.spec import Training

# T260's model: 12 x 512, 8 heads, GELU experts of 1024, 8 experts top-2, vocab 50304 tied
MOE = ModelArch(name="gpt-moe", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                num_key_value_heads=8, head_dim=64, vocab_size=50304, tie_word_embeddings=True, gated_mlp=False,
                num_experts=8, num_experts_per_token=2, moe_intermediate_size=1024)
DENSE = ModelArch(name="gpt-dense", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                  num_key_value_heads=8, head_dim=64, vocab_size=50304, tie_word_embeddings=True, gated_mlp=False)
BASE = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=4,
            sequenceLength=1024, activationCheckpointing="none")


def tr(**kw) -> Training:
    return Training(**{**BASE, **kw})


def test_torch_cublas_workspaces_one_a_thread():
    """CUBLAS_WORKSPACE_CONFIG :4096:8 = 4096 KiB x 8 = 33,554,432 B, for the forward's and autograd's threads."""
    assert megatron_workspace_bytes(DENSE, tr()) == 2 * 33_554_432
    assert megatron_workspace_bytes(MOE, tr()) == 2 * 33_554_432
    assert megatron_workspace_bytes(DENSE, Training(framework="fsdp", method="full")) == 0


def test_grouped_gemm_adds_four_te_workspaces():
    """get_multi_stream_cublas_workspace: 4 streams x (32 MiB + 1,024 B) on Hopper; only for an MoE under TE."""
    assert megatron_workspace_bytes(MOE, tr(moeGroupedGemm=True)) == 2 * 33_554_432 + 4 * (33_554_432 + 1024)
    assert megatron_workspace_bytes(DENSE, tr(moeGroupedGemm=True)) == 2 * 33_554_432
    # Megatron's own layers (flashAttention false = --transformer-impl local): no TE grouped GEMM
    assert megatron_workspace_bytes(MOE, tr(moeGroupedGemm=True, flashAttention=False)) == 2 * 33_554_432


def test_moe_grouped_gemm_is_megatron_only():
    with pytest.raises(ValueError):
        Training(framework="fsdp", method="full", moeGroupedGemm=True)


def test_moe_layer_saves_the_permuted_tokens_and_the_weighted_copy():
    """T260 (t 1): permuted input 2 (top-k) x 512 x 2 B = 2,048 B a token, the GELU experts' weighted bf16 copy
    2 x 1024 x 2 B = 4,096 B: 6,144 B a token, 4 x 1024 tokens x 12 layers = 288 MiB. T261's (top-1, experts of
    2048, TP 2): 1 x 512 x 2 + 1 x 2048 x 2 / 2 = 3,072 B a token."""
    assert megatron_moe_saved_bytes(MOE, 1) == 6144
    assert megatron_moe_saved_bytes(MOE, 1) * 4 * 1024 * 12 == 288 * 1024 * 1024
    t261 = ModelArch(name="t261", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                     num_key_value_heads=8, head_dim=64, vocab_size=50432, tie_word_embeddings=True,
                     gated_mlp=False, num_experts=8, num_experts_per_token=1, moe_intermediate_size=2048)
    assert megatron_moe_saved_bytes(t261, 2) == 3072
    assert megatron_moe_saved_bytes(DENSE, 1) == 0
    # gated experts (fused weighted SwiGLU): only the permuted input, 2 x 512 x 2
    gated = ModelArch(name="gated", num_layers=12, hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                      num_key_value_heads=8, head_dim=64, vocab_size=50304, tie_word_embeddings=True, gated_mlp=True,
                      num_experts=8, num_experts_per_token=2, moe_intermediate_size=1024)
    assert megatron_moe_saved_bytes(gated, 1) == 2048


def test_layer_count_carries_the_moe_term():
    dense_like = megatron_layer_bytes(MOE, tr(), 1, False)[0] - megatron_moe_saved_bytes(MOE, 1)
    assert megatron_layer_bytes(MOE, tr(), 1, False)[0] == pytest.approx(dense_like + 6144)



def _states(data: int, expert: int, **kw) -> int:
    """The states a Megatron rank holds (training_peak(...).states): bf16 weights, fp32 gradient buffer, fp32 main
    copies and Adam moments, plus the buffers Megatron keeps for the run."""
    from rackfit.estimator import training_peak
    from rackfit.spec import parse_spec
    arch = dict(numLayers=12, hiddenSize=512, intermediateSize=2048, numAttentionHeads=8, numKeyValueHeads=8,
                headDim=64, vocabSize=50304, tieWordEmbeddings=True, gatedMlp=False)
    if expert > 1:
        arch.update(numExperts=8, numExpertsPerToken=2, moeIntermediateSize=1024)
    spec = parse_spec({"model": {"architecture": arch}, "workload": "training", "precision": "bf16",
                       "training": {**BASE, **kw}, "parallelism": {"data": data, "expert": expert}})
    return training_peak(spec, spec.parallelism).states


# 12 x (4 x 512^2 + 2 x 512 x 2048) + 50304 x 512, the dense model's parameters (norms aside)
DENSE_N = 12 * (4 * 512 ** 2 + 2 * 512 * 2048) + 50304 * 512


def test_without_distributed_optimizer_the_fp32_copies_and_moments_are_whole():
    """Float16OptimizerWithFloat16Params (megatron/core/optimizer/optimizer.py): every parameter's fp32 main copy and
    both Adam moments on every data-parallel rank, 12 bytes a parameter; the distributed optimizer shards them over
    the 8 data-parallel ranks (12 / 8 bytes a parameter)."""
    grown = _states(8, 1, distributedOptimizer=False) - _states(8, 1)
    assert abs(grown - (12 - 12 / 8) * DENSE_N) < 0.01 * DENSE_N
    # on one data-parallel rank there is nothing to shard
    assert _states(1, 1, distributedOptimizer=False) == _states(1, 1)


def test_without_distributed_optimizer_the_experts_states_stay_whole_too():
    """EP 8 over 8 GPUs: the experts' expert data-parallel group is 1, so only the dense part's states grow."""
    assert _states(8, 8, distributedOptimizer=False) > _states(8, 8)


def test_distributed_optimizer_is_megatron_only():
    with pytest.raises(ValueError, match="distributedOptimizer"):
        Training(framework="fsdp", method="full", distributedOptimizer=False)


def _moe_split(tensor: int, data: int, expert: int, **kw):
    from rackfit.estimator.frameworks import megatron_expert_split
    from rackfit.estimator.params import count_params
    from rackfit.estimator.result import Layout
    return megatron_expert_split(MOE, count_params(MOE), tr(**kw), Layout(tensor=tensor, data=data, expert=expert))


def test_expert_tensor_parallel_one_keeps_each_expert_whole():
    """T555's layout (TP 2, EP 4, DP 4 on 8 GPUs): --expert-tensor-parallel-size 1 puts 8 / 4 = 2 whole experts on a
    rank (twice the routed parameters of ETP = TP 2) and the expert data-parallel group is 8 / (4 x 1) = 2."""
    _, default_experts, default_edp = _moe_split(2, 4, 4)
    dense, experts, edp = _moe_split(2, 4, 4, expertTensorParallel=1)
    assert (experts, edp) == (2 * default_experts, 2)
    assert default_edp == 1
    assert experts == 12 * 2 * (2 * 512 * 1024)   # 12 layers x 2 experts x fc1 + fc2
    assert dense == _moe_split(2, 4, 4)[0]


def test_expert_tensor_parallel_one_keeps_the_expert_outputs_split_over_tp():
    """A rank routes its s / t tokens (sequence parallel), the dispatcher gathers them over the expert-tensor x EP
    group: at ETP 1 under TP 2 half the rows of ETP 2 reach the rank's whole experts, so the fc1 and activation
    outputs and the GELU weighted copy are the same bytes as at ETP = TP; only the permuted input (2 x 512 x 2 B a
    token at ETP 2) halves."""
    with_tp, _ = megatron_layer_bytes(MOE, tr(), 2, True)
    etp1, _ = megatron_layer_bytes(MOE, tr(expertTensorParallel=1), 2, True)
    assert with_tp - etp1 == pytest.approx(2 * 2 * 512 / 2)
    assert megatron_layer_bytes(MOE, tr(expertTensorParallel=2), 2, True)[0] == with_tp
    # permuted 2 x 512 x 2 B x 1 / 2 = 1,024, the weighted copy 2 x 1024 x 2 B / 2 = 2,048
    assert megatron_moe_saved_bytes(MOE, 2, 1) == 3072
    assert megatron_moe_saved_bytes(MOE, 2) == megatron_moe_saved_bytes(MOE, 2, 2) == 4096


def test_allgather_buffer_gathers_over_the_expert_tensor_group():
    """MoEAllGatherTokenDispatcher gathers [(s / t) b, h] over tp_ep_group (ETP x EP) into the global buffer: TP 2,
    EP 4, 4 x 1,024 tokens of 512: [4096 / 2 x 1 x 4, 512] x 2 B at ETP 1, twice that at ETP 2 (= TP)."""
    from rackfit.estimator.megatron_buffers import megatron_global_buffer_bytes
    from rackfit.estimator.result import Layout
    layout = Layout(tensor=2, data=4, expert=4)
    assert megatron_global_buffer_bytes(MOE, tr(sequenceParallel=True, expertTensorParallel=1), layout, 2) == \
        4 * 1024 // 2 * 4 * 512 * 2
    assert megatron_global_buffer_bytes(MOE, tr(sequenceParallel=True), layout, 2) == 4 * 1024 * 4 * 512 * 2


def test_expert_tensor_parallel_is_megatron_only():
    with pytest.raises(ValueError, match="expertTensorParallel"):
        Training(framework="fsdp", method="full", expertTensorParallel=1)


def test_unfused_attention_without_attention_dropout_keeps_the_softmax_output_only():
    """--attention-dropout 0: 2 bytes a score (the softmax output) instead of 5 (plus the mask and the dropped-out
    copy), 8 heads over t 2 at seq 1024: (5 - 2) x 4 x 1024 bytes a token less."""
    dropped, _ = megatron_layer_bytes(DENSE, tr(flashAttention=False), 2, True)
    kept, core = megatron_layer_bytes(DENSE, tr(flashAttention=False, attentionDropout=0.0), 2, True)
    assert dropped - kept == pytest.approx(3 * 8 * 1024 / 2)
    assert core == 2 * 8 * 1024 / 2
    # flash attention keeps no scores: the dropout setting changes nothing
    assert megatron_layer_bytes(DENSE, tr(attentionDropout=0.0), 2, True) == megatron_layer_bytes(DENSE, tr(), 2, True)
    with pytest.raises(ValueError, match="attentionDropout"):
        Training(framework="fsdp", method="full", attentionDropout=0.0)


@pytest.mark.parametrize("layout,ok", [(dict(tensor=2, data=4, expert=4), True),
                                       (dict(tensor=2, data=4, expert=8), False),
                                       (None, False)])
def test_expert_tensor_parallel_must_fit_the_layout(layout, ok):
    """Megatron's initialize_model_parallel: the world size a multiple of expert tensor x expert x pipeline; a
    refusal names the field and what is allowed."""
    from rackfit.errors import InvalidWorkload
    from rackfit.spec import parse_spec
    spec = dict(model=dict(preset="mixtral-8x7b"), workload="training",
                training=dict(framework="megatron", expertTensorParallel=2))
    if layout:
        spec["parallelism"] = layout
    if ok:
        assert parse_spec(spec).training.expert_tensor_parallel == 2
    else:
        with pytest.raises(InvalidWorkload, match="spec.training.expertTensorParallel: .* dividing parallelism"):
            parse_spec(spec)
