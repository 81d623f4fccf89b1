"""Megatron-LM at tensor and pipeline parallel (issue 22, rows T50-T52): the step's temporary when Megatron-Core runs
torch's AdamW, and the model states of a pipeline end stage, each against bytes computed by hand from the source."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout
from rackfit.estimator.frameworks import runtime_peak, stage_params
from rackfit.estimator.megatron_buffers import TE_CUBLAS_WORKSPACE_HOPPER_BYTES
from rackfit.estimator.params import count_params
from rackfit.estimator.training import adamw_foreach
from rackfit.models import ModelArch
from rackfit.spec import Training, parse_spec

# T52: the GPT "70B" of gnosia93/slurm-on-aws lesson 9 (80 x 8192, 64 heads, GELU 4h, vocab 32256, tied)
GPT70 = ModelArch(name="gpt-70b", num_layers=80, hidden_size=8192, intermediate_size=32768, num_attention_heads=64,
                  num_key_value_heads=64, head_dim=128, vocab_size=32256, tie_word_embeddings=True, gated_mlp=False)
T52 = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
           sequenceLength=4096, activationCheckpointing="full", sequenceParallel=False, flashAttention=False)


def test_megatron_adamw_is_fused_unless_torch_runs_it():
    """megatron/core/optimizer/__init__.py: TE's FusedAdam, else Apex's, else torch.optim.AdamW (foreach on CUDA)."""
    assert not adamw_foreach(Training(**T52))
    assert not adamw_foreach(Training(**T52, adamwImplementation="fused"))
    assert adamw_foreach(Training(**T52, adamwImplementation="foreach"))


def test_torch_adamw_under_megatron_makes_one_fp32_temporary_of_the_rank_s_parameters():
    """T52's first stage (TP 4 x PP 8, no distributed optimizer, DP 1): 10 of the 80 layers and the word embeddings,
    a fourth of each on the rank; torch's _multi_tensor_adam makes exp_avg_sq_sqrt = _foreach_sqrt(exp_avg_sqs), one
    fp32 tensor per main parameter. By hand: a layer is 4 h^2 (attention) + 2 h x 4h (MLP) + 2 h (norms) =
    805,322,752; the stage an eighth of the 80 layers and the final norm (8192), + 32256 x 8192 = 8,317,469,696;
    the rank a fourth, 2,079,367,424; the temporary 4 bytes each, 8,317,469,696 bytes (7.75 GiB), and the middle
    stages log 7,675 MiB above their states."""
    p = count_params(GPT70)
    layer = 4 * 8192 ** 2 + 2 * 8192 * 32768 + 2 * 8192
    assert layer == 805_322_752
    stage = (80 * layer + 8192) // 8 + 32256 * 8192
    assert stage_params(GPT70, p, Training(**T52), 8) == stage == 8_317_469_696
    lay = Layout(tensor=4, pipeline=8)
    fused = runtime_peak(GPT70, p, Training(**T52), "bf16", lay, 0, stage="first")
    torch_adamw = runtime_peak(GPT70, p, Training(**T52, adamwImplementation="foreach"), "bf16", lay, 0,
                               stage="first")
    assert fused.step_transient == 0
    assert torch_adamw.step_transient == stage // 4 * 4
    assert torch_adamw.phase == "optimizer step"
    # the states, 18 bytes a parameter without the distributed optimizer over one data rank: bf16 weights, fp32
    # gradient buffer, fp32 main weights and two Adam moments; and Megatron-Core's GlobalMemoryBuffer, which the
    # unfused attention's scores size (b x 64 / 4 heads x 4096 x 4096 x 2 bytes: megatron_buffers.py)
    assert torch_adamw.states == fused.states == stage // 4 * (2 + 4 + 12) + 16 * 4096 * 4096 * 2 + 2 * 33_554_432
    # the first stage logged 38,921.15 MiB allocated and 47,104.31 MiB max, 8,183 MiB between them; the learned
    # position embeddings (4096 x 8192 on every tensor rank, 128 MiB more in fp32) are not counted
    assert torch_adamw.step_transient / 2**20 == pytest.approx(8183, rel=0.04)


def test_the_distributed_optimizer_steps_torch_adamw_on_its_shard():
    """With --use-distributed-optimizer the torch optimizer's parameters are the fp32 shard of the data rank, so the
    temporary is a data-th of it (distrib_optimizer.py: shard_fp32_from_float16_groups)."""
    p = count_params(GPT70)
    lay = Layout(tensor=4, pipeline=8, data=4)
    r = runtime_peak(GPT70, p, Training(**T52, adamwImplementation="foreach"), "bf16", lay, 0, stage="first")
    assert r.step_transient == 8_317_469_696 // 4 // 4 * 4


def test_the_spec_takes_adamw_implementation_under_megatron_for_adamw_only():
    base = dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16")
    assert parse_spec(dict(base, training=dict(framework="megatron", adamwImplementation="foreach"))) \
        .training.adamw_implementation == "foreach"
    with pytest.raises(InvalidWorkload, match="spec.training.adamwImplementation"):
        parse_spec(dict(base, training=dict(framework="megatron", optimizer="sgd", adamwImplementation="foreach")))


def test_megatron_splits_routed_experts_over_expert_parallel():
    """Mixtral 8x7B at TP 2, PP 4, DP 8, EP 8 (--expert-tensor-parallel-size defaulting to TP 2): a stage holds 8 of
    the 32 layers; its routed experts (8 x 3 x 4096 x 14336 a layer) are split over EP x ETP = 16 ranks, the rest of
    the stage (attention, routers, norms, one vocabulary matrix) over TP 2. The fp32 main copies and moments of the
    dense part are sharded over DP 8, the experts' over the expert data-parallel group, 2 x 8 / (8 x 2) = 1 rank."""
    from rackfit.estimator.frameworks import megatron_expert_split
    from rackfit.models import resolve
    from rackfit.spec import ModelSource

    a = resolve(ModelSource(preset="mixtral-8x7b"))
    p = count_params(a)
    tr = Training(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw",
                  sequenceLength=4096, sequenceParallel=True)
    lay = Layout(tensor=2, pipeline=4, data=8, expert=8)
    assert p.experts == 32 * 8 * 3 * 4096 * 14336
    stage_experts = p.experts * 8 // 32
    dense, experts, edp = megatron_expert_split(a, p, tr, lay)
    assert experts == stage_experts // 16
    assert dense == (stage_params(a, p, tr, 4) - stage_experts) // 2
    assert edp == 1
    r = runtime_peak(a, p, tr, "bf16", lay, 0)
    # beside Megatron-Core's GlobalMemoryBuffer (the allgather token dispatcher's [4096 x EP 8, 4096] bf16 tokens) and
    # Transformer Engine's cuBLAS workspace (megatron_buffers.py)
    assert r.states == (dense + experts) * (2 + 4) + dense * 12 // 8 + experts * 12 // 1 + 4096 * 8 * 4096 * 2 + \
        TE_CUBLAS_WORKSPACE_HOPPER_BYTES + 2 * 33_554_432  # and torch's two cuBLAS workspaces
    # without expert parallelism every rank keeps the stage's experts (split over TP only)
    flat = runtime_peak(a, p, tr, "bf16", Layout(tensor=2, pipeline=4, data=8), 0)
    assert flat.states == stage_params(a, p, tr, 4) // 2 * (2 + 4) + stage_params(a, p, tr, 4) // 2 * 12 // 8 + \
        4096 * 4096 * 2 + TE_CUBLAS_WORKSPACE_HOPPER_BYTES + 2 * 33_554_432


def test_hidden_dropout_zero_keeps_no_masks():
    """--hidden-dropout 0.0 (Megatron-Bridge's providers, T50-T51): no 1-byte mask after the attention projection or
    the MLP. Llama-3.2-1B at TP 2: 2 x 2048 bytes a token and layer without sequence parallel, a TP-th of it with."""
    from rackfit.estimator.framework_activations import megatron_dropout_masks, megatron_layer_bytes
    from rackfit.models import resolve
    from rackfit.spec import ModelSource

    a = resolve(ModelSource(preset="llama-3.2-1b"))
    base = dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw", sequenceLength=1024)
    default, off = Training(**base), Training(**base, hiddenDropout=0.0)
    assert megatron_dropout_masks(default) == 2 and megatron_dropout_masks(off) == 0
    assert megatron_dropout_masks(Training(**base, hiddenDropout=0.1)) == 2
    assert megatron_layer_bytes(a, default, 2, False)[0] - megatron_layer_bytes(a, off, 2, False)[0] == 2 * 2048
    assert megatron_layer_bytes(a, default, 2, True)[0] - megatron_layer_bytes(a, off, 2, True)[0] == 2 * 2048 / 2
    with pytest.raises(InvalidWorkload, match="spec.training.hiddenDropout"):
        parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16",
                        training=dict(framework="fsdp", hiddenDropout=0.0)))
