"""torchtitan's MoE training memory against its source (estimator/moe_training.py; torchtitan 8ec37d2 / 5fb7cc2,
torchtitan/models/moe.py MoE.forward, torchtitan/distributed/expert_parallel.py, the DeepSeek-V3 per-op SAC in
torchtitan/distributed/activation_checkpoint.py and models/deepseek_v3/infra/parallelize.py), on the DeepSeek-V3 "16B"
shapes of T262/T263 (27 layers x 2048, the first dense with MLP 10944, then 64 routed experts of 1408, top-6, 2 shared;
MLA, 16 heads, qk 128 + 64, v 128, kv_lora_rank 512). Expected bytes computed by hand."""

from __future__ import annotations

import pytest

from rackfit.estimator import moe_training
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Training

DSV3_16B = ModelArch(name="dsv3-16b", num_layers=27, hidden_size=2048, intermediate_size=10944, num_attention_heads=16,
                     num_key_value_heads=16, head_dim=128, vocab_size=102400, num_experts=64,
                     num_experts_per_token=6, moe_intermediate_size=1408, num_shared_experts=2, first_dense_layers=1,
                     kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128)
TOKENS = 8 * 4096


def _tr(ckpt: str, compile_model: bool) -> Training:
    extra = {} if compile_model else {"compileLoss": True}
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=8,
                    sequenceLength=4096, activationCheckpointing=ckpt, compile=compile_model,
                    torchtitanVersion="0.2", **extra)


def test_compile_loss_alone_compiles_the_loss_not_the_model():
    tr = _tr("selective", compile_model=False)
    assert tr.loss_compiled and not tr.compile
    with pytest.raises(ValueError):
        Training(framework="fsdp", method="full", microBatchSize=1, sequenceLength=8, compileLoss=False)


def test_routing_keeps_the_fp32_scores_indices_and_the_fp32_scoring_copy():
    # softmax output 4 B x 64 experts; three int64 index tensors of the 6 copies; routed_output.to(float32) saved
    # by the scoring multiply: 4 B x 6 x 2048 (2 B under compile: the 16-bit routed output)
    assert moe_training.routing_bytes(DSV3_16B, _tr("none", False)) == 256 + 3 * 8 * 6 + 4 * 6 * 2048 == 49552
    assert moe_training.routing_bytes(DSV3_16B, _tr("none", True)) == 256 + 144 + 2 * 6 * 2048 == 24976


def test_padded_token_groups():
    # padded_max_len = round_up(T*k + local_experts * 8, 8): 8 rows an expert, each kept as a routed copy
    eager = _tr("none", False)
    assert moe_training.padding_bytes(DSV3_16B, eager, Layout(data=8)) == 64 * 8 * (2048 + 4 * 1408) * 2 == 7864320
    assert moe_training.padding_bytes(DSV3_16B, eager, Layout(data=8, expert=8)) == 8 * 8 * 7680 * 2
    assert moe_training.padding_bytes(DSV3_16B, _tr("none", True), Layout(data=8)) == 512 * (2048 + 3 * 1408) * 2


def test_flex_sac_keeps_norms_router_logits_shared_w3_and_the_all_to_all_outputs():
    tr = _tr("selective", False)
    norms = 2 * (2 * 2 * 2048 + 4)                    # two fused norms: 16-bit input and output, fp32 rstd
    moe = norms + 2 * (64 + 2 * 1408)                 # router.gate (1st mm), shared w3 (3rd mm)
    dense = norms + 2 * (10944 + 2048)                # w1 (1st), w2 (3rd)
    no_ep = moe_training.sac_layer_bytes(DSV3_16B, tr, Layout(data=8))
    assert no_ep == pytest.approx((26 * moe + dense) / 27)
    ep = moe_training.sac_layer_bytes(DSV3_16B, tr, Layout(data=8, expert=8))
    assert ep - no_ep == pytest.approx(26 * 2 * 2 * 6 * 2048 / 27)   # dispatch + combine, [T*k, dim] bf16 each
    assert moe_training.sac_layer_bytes(DSV3_16B, tr, Layout(data=8, expert=8), all_to_all=False) == no_ep


def test_compiled_model_sac_wraps_the_attention_too():
    # wq (3072, saved), wkv_a (576), wkv_b (16 x 256, saved), wo; flex output 16 x 128; lse 4 B a head
    attention = 2 * (3072 + 4096 + 2048) + 4 * 16
    diff = moe_training.sac_layer_bytes(DSV3_16B, _tr("selective", True), Layout(data=8)) - \
        moe_training.sac_layer_bytes(DSV3_16B, _tr("selective", False), Layout(data=8))
    assert diff == pytest.approx(attention)


def test_expert_parallel_moves_the_sac_estimate_by_the_cached_all_to_all_outputs():
    tr = _tr("selective", False)
    one = runtime_activations(DSV3_16B, tr, Layout(data=8))
    ep = runtime_activations(DSV3_16B, tr, Layout(data=8, expert=8))
    cached = 26 * 2 * 2 * 6 * 2048 * TOKENS
    assert ep.kept - one.kept == pytest.approx(cached, abs=64)
    # the recompute does not lose the cached all-to-all outputs (the eager count never held them); it differs only
    # by the padded rows (64 local experts x 8 rows against 8 x 8)
    assert one.recompute - ep.recompute == pytest.approx((64 - 8) * 8 * 7680 * 2 * 26 / 27, abs=64)


def test_eager_extra_is_added_without_checkpointing_and_not_for_dense_models():
    tr = _tr("none", True)
    extra = moe_training.eager_extra_bytes(DSV3_16B, tr, Layout(data=8), TOKENS)
    assert extra == pytest.approx((24976 + 6422528 / TOKENS) * 26 / 27)
    assert not moe_training.applies(DSV3_16B, True, 2)  # expert tensor parallel layouts not modelled
    dense = ModelArch(name="dense", num_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                      num_key_value_heads=4, head_dim=16, vocab_size=100)
    assert not moe_training.applies(dense, True, 1)


def test_pr_1672_policy_difference_is_the_all_to_all_cache_of_4096_tokens():
    # torchtitan c4e229115 (PR 1672) logged 70.02 GiB without all_to_all_single in the save list and 74.53 GiB with
    # it (EP 4, step 10); its tps and tflops say 4,096 tokens a rank (local batch 8, seq 512: T436). The modelled
    # cache at 4,096 tokens is within 10% of that difference; at the toml's seq 4096 it would be 8 x larger.
    tr = Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=8,
                  sequenceLength=512, activationCheckpointing="selective", compileLoss=True, torchtitanVersion="0.2")
    layout = Layout(data=4, expert=4)
    per_token = moe_training.sac_layer_bytes(DSV3_16B, tr, layout) - \
        moe_training.sac_layer_bytes(DSV3_16B, tr, layout, all_to_all=False)
    cached_gib = per_token * 27 * 8 * 512 / 2**30
    assert cached_gib == pytest.approx(26 * 4096 * 2 * 6 * 2048 * 2 / 2**30)   # 4.875 GiB
    assert cached_gib == pytest.approx(74.53 - 70.02, rel=0.1)
    assert cached_gib * 8 > 74.53 - 70.02 + 30                                  # seq 4096: 39 GiB, not what it logged


def _pr_1513(version: str, optimizer: str = "sgd"):
    """T522's spec (torchtitan b109f7d71: DeepSeek-V3 16B with vocab 129280, FSDP over 8, full AC)."""
    from rackfit.spec import parse_spec
    arch = {"numLayers": 27, "hiddenSize": 2048, "intermediateSize": 10944, "numAttentionHeads": 16,
            "numKeyValueHeads": 16, "headDim": 128, "vocabSize": 129280, "tieWordEmbeddings": False,
            "numExperts": 64, "numExpertsPerToken": 6, "moeIntermediateSize": 1408, "numSharedExperts": 2,
            "firstDenseLayers": 1, "kvLoraRank": 512, "qkRopeHeadDim": 64, "qkNopeHeadDim": 128, "vHeadDim": 128}
    training = {"framework": "fsdp", "method": "full", "masterWeights": "fp32", "optimizer": optimizer,
                "microBatchSize": 8, "sequenceLength": 2048, "activationCheckpointing": "full",
                "expandableSegments": True, "torchtitanVersion": version}
    if optimizer == "sgd":
        training["sgdMomentum"] = False
    return parse_spec({"model": {"architecture": arch}, "workload": "training", "precision": "bf16",
                       "training": training, "parallelism": {"data": 8}})


def test_shared_experts_are_unsplit_only_before_0_2_under_fsdp():
    # GroupedExperts(num_experts=1): w1, w2, w3 of [1, 2048, 2 x 1408] - FSDP2 pads dim 0's one row to a whole chunk
    def tr(version: str) -> Training:
        return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=8,
                        sequenceLength=2048, activationCheckpointing="full", torchtitanVersion=version)
    assert moe_training.grouped_shared_params(DSV3_16B, True, tr("0.1"), Layout(data=8)) == 3 * 2048 * 2816
    assert moe_training.grouped_shared_params(DSV3_16B, True, tr("0.2"), Layout(data=8)) == 0   # PR 1561's FFN
    assert moe_training.grouped_shared_params(DSV3_16B, True, tr("0.1"), Layout(data=1)) == 0   # nothing sharded
    assert moe_training.grouped_shared_params(DSV3_16B, False, tr("0.1"), Layout(data=8)) == 0  # not torchtitan's


def test_pr_1513_model_memory_line_is_the_sharded_masters_plus_the_unsplit_shared_experts():
    # b109f7d71's run logged "CUDA memory usage for model: 8.84GiB" before step 1: the fp32 masters of its
    # "15,816,584,704 total parameters" over 8 ranks are 7.37 GiB; the 26 MoE layers' shared experts
    # (3 x 2048 x 2816 each) held whole instead of an eighth add 26 x 17,301,504 x 7/8 x 4 B = 1.47 GiB
    from rackfit.estimator import training_peak
    gib = 2**30
    step1 = training_peak(_pr_1513("0.1"))            # no optimizer state: masters + fp32 gradients, equal
    assert step1.states / 2 / gib == pytest.approx(8.84, abs=0.02)
    assert training_peak(_pr_1513("0.2")).states / 2 / gib == pytest.approx(15_816_584_704 * 4 / 8 / gib, abs=0.01)
    # rank 0's DTensor shard is the whole weight, so AdamW's two states are whole there too: states = 2 x masters
    adamw = training_peak(_pr_1513("0.1", "adamw"))
    assert adamw.states - step1.states == step1.states


def test_hybridep_non_blocking_buffer_rows():
    # torchtitan/distributed/deepep/hybridep.py _num_permuted_tokens_for_non_blocking: num_tokens x ep x
    # min(local experts, top_k) x capacity factor rows; T744: 16,384 tokens, EP 4 (16 local experts), top-6, 1.0
    # -> 393,216 rows against the 98,304 routed copies, each row kept as a routed copy (eager: 2048 + 4 x 1408)
    worst = Training(framework="fsdp", method="full", microBatchSize=4, sequenceLength=4096,
                     activationCheckpointing="full", hybridepCapacityFactor=1.0)
    ep4 = Layout(data=4, expert=4)
    assert moe_training.hybridep_buffer_bytes(DSV3_16B, worst, ep4, 16384) == (393216 - 98304) * 7680 * 2
    # half the capacity: 196,608 rows; a factor that sizes no more than the routed copies adds nothing
    half = worst.model_copy(update={"hybridep_capacity_factor": 0.5})
    assert moe_training.hybridep_buffer_bytes(DSV3_16B, half, ep4, 16384) == (196608 - 98304) * 7680 * 2
    quarter = worst.model_copy(update={"hybridep_capacity_factor": 0.25})
    assert moe_training.hybridep_buffer_bytes(DSV3_16B, quarter, ep4, 16384) == 0
    # no expert parallel, or the blocking dispatch (unset): the exact routed copies
    assert moe_training.hybridep_buffer_bytes(DSV3_16B, worst, Layout(data=4), 16384) == 0
    plain = worst.model_copy(update={"hybridep_capacity_factor": None})
    assert moe_training.hybridep_buffer_bytes(DSV3_16B, plain, ep4, 16384) == 0
    # full AC: the recomputed layer holds the buffer's rows; the all-to-all's scoring backward
    # (scoring_backward_bytes) is HybridEP's kernel's, not torch's multiply
    grown = runtime_activations(DSV3_16B, worst, ep4).recompute - runtime_activations(DSV3_16B, plain, ep4).recompute
    scoring = moe_training.scoring_backward_bytes(DSV3_16B, plain, ep4) * 16384
    assert grown == pytest.approx((393216 - 98304) * 7680 * 2 * 26 / 27 - scoring, rel=1e-6)


@pytest.mark.parametrize("framework", ["deepspeed", "megatron"])
def test_hybridep_is_torchtitans(framework):
    with pytest.raises(ValueError, match="hybridepCapacityFactor"):
        Training(framework=framework, method="full", microBatchSize=1, sequenceLength=8, hybridepCapacityFactor=1.0)


def _tp_ep(version: str | None, compile_model: bool = False) -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=2,
                    sequenceLength=4096, activationCheckpointing="none", compile=compile_model,
                    torchtitanVersion=version)


def test_sequence_parallel_routing_keeps_the_whole_sequence_scoring_copy_at_0_2_1_to_0_2_2():
    # T742's layout: tensor 2 borrowed for expert parallel 2 (apply_moe_ep_tp's ReordererSequenceParallel). At 0.2.2
    # MoE.forward's bmm saves routed_output_unsorted.float(), [bs*slen*top_k, dim] of the whole sequence on every
    # tensor rank: 4 B x 6 x 2048 a token; the router's fp32 sigmoid scores (64) and top-k index (6 x int64) of every
    # token; the reorderer's two int64 indices of this rank's half of the copies; 32 local experts x 8 padded rows
    layout = Layout(data=4, tensor=2, expert=2)
    tokens = 2 * 4096
    assert moe_training.sequence_parallel_routing(DSV3_16B, True, layout)
    assert not moe_training.sequence_parallel_routing(DSV3_16B, True, Layout(data=4, tensor=2))
    padded = 32 * 8 * (2048 + 4 * 1408) * 2 / tokens
    per_moe = 4 * 6 * 2048 + 4 * 64 + 8 * 6 + 2 * 8 * 6 / 2 + padded
    got = moe_training.sequence_parallel_routing_bytes(DSV3_16B, _tp_ep("0.2.2"), layout, tokens)
    assert got == pytest.approx(per_moe * 26 / 27)
    # the scatter-add form (0.2.0, or a current main): this rank's half of the copies
    half = moe_training.sequence_parallel_routing_bytes(DSV3_16B, _tp_ep("0.2.0"), layout, tokens)
    assert got - half == pytest.approx(4 * 6 * 2048 / 2 * 26 / 27)
    assert moe_training.sequence_parallel_routing_bytes(DSV3_16B, _tp_ep(None), layout, tokens) == half
    # compiled: the 16-bit routed outputs (the upcast recomputed), padded rows without silu's output
    compiled = moe_training.sequence_parallel_routing_bytes(DSV3_16B, _tp_ep("0.2.2", True), layout, tokens)
    padded_compiled = 32 * 8 * (2048 + 3 * 1408) * 2 / tokens
    assert compiled == pytest.approx((2 * 6 * 2048 + 4 * 64 + 8 * 6 + 8 * 6 + padded_compiled) * 26 / 27)
    # in the layer count: runtime_activations adds it under tensor and expert parallel
    kept = runtime_activations(DSV3_16B, _tp_ep("0.2.2"), layout).kept - \
        runtime_activations(DSV3_16B, _tp_ep("0.2.0"), layout).kept
    assert kept == pytest.approx((got - half) * tokens * 27, rel=1e-6)


def _full_ac(version: str | None, compile_model: bool = False, **extra) -> Training:
    return Training(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=16,
                    sequenceLength=4096, activationCheckpointing="full", compile=compile_model,
                    torchtitanVersion=version, **extra)


def test_eager_scoring_backward_holds_three_fp32_routed_buffers_beyond_the_saved_tensors():
    # T1420's layer (torchtitan 8ea2b961b, token_dispatcher.py combine): MulBackward0 of
    # routed_output.to(float32) * scores holds the incoming fp32 gradient, grad * scores and grad * routed (before
    # its sum to [N, 1]): 3 x 4 B x 6 copies x 2048; the shared experts' backward ran first (their gate, up, silu
    # output and product of 2 x 1408 freed, their input's 16-bit gradient held)
    layout = Layout(data=8, expert=4)
    per = moe_training.scoring_backward_bytes(DSV3_16B, _full_ac(None), layout)
    assert per == 3 * 4 * 6 * 2048 + 2 * 2048 - 2 * 4 * 1408 * 2 == 129024
    # 7.875 GiB at 65,536 tokens a rank
    assert per * 16 * 4096 == 7.875 * 2 ** 30
    # 0.2.1-0.2.2's bmm: one fp32 [T, k, dim] gradient, the shared experts not yet run backward
    assert moe_training.scoring_backward_bytes(DSV3_16B, _full_ac("0.2.2"), layout) == 4 * 6 * 2048
    assert moe_training.scoring_backward_bytes(DSV3_16B, _full_ac("0.2"), layout) == per
    # compiled (Inductor fuses the product's backward) and HybridEP (its combine kernel scores): nothing
    assert moe_training.scoring_backward_bytes(DSV3_16B, _full_ac(None, True), layout) == 0
    hybridep = _full_ac(None, hybridepCapacityFactor=1.0)
    assert moe_training.scoring_backward_bytes(DSV3_16B, hybridep, layout) == 0
    # in the recomputed layer's working set, not in what the layers keep (a current main against 0.2.2's bmm,
    # which differ in nothing else at tensor 1)
    main = runtime_activations(DSV3_16B, _full_ac(None), layout)
    bmm = runtime_activations(DSV3_16B, _full_ac("0.2.2"), layout)
    assert main.kept == bmm.kept
    assert main.recompute - bmm.recompute == pytest.approx((per - 4 * 6 * 2048) * 16 * 4096, abs=16)
