"""The estimator: every precision, training method, optimizer, ZeRO stage and sharding; MoE; the
rough parameter-count mode; DeepSpeed's anchor; and a pin to the measured H200 data."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from bench_modules import bench

from rackfit.estimator import Layout, estimate
from rackfit.estimator.params import count_params
from rackfit.estimator.training import model_states
from rackfit.estimator.weights import BYTES_PER_PARAM
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec
from rackfit.units import GiB

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "bench" / "cases" / "h200"  # the H200 calibration rows, kept in the repository


def infer(preset="llama-3.1-8b", precision="bf16", layout=None, **inference):
    """The transformers engine (the model these tests pin); tests/unit/test_engines.py has the others."""
    spec = parse_spec(dict(model=dict(preset=preset), workload="inference", precision=precision,
                           inference={"engine": "transformers", **inference}))
    return estimate(spec, layout)


def train(preset="llama-3.1-8b", precision="bf16", layout=None, **training):
    spec = parse_spec(dict(model=dict(preset=preset), workload="training", precision=precision,
                           training=training))
    return estimate(spec, layout)


PRECISIONS = ["fp32", "bf16", "fp16", "fp8", "int8", "int4", "nf4", "mxfp4", "nvfp4"]


def test_bytes_per_param_table():
    assert BYTES_PER_PARAM["fp32"] == 4 and BYTES_PER_PARAM["bf16"] == BYTES_PER_PARAM["fp16"] == 2
    assert 1 < BYTES_PER_PARAM["fp8"] < 1.01 and 1 < BYTES_PER_PARAM["int8"] < 1.01
    assert BYTES_PER_PARAM["int4"] * 8 == pytest.approx(4.156, abs=0.01)   # 4 + 20/128 bits
    assert BYTES_PER_PARAM["nf4"] * 8 == pytest.approx(4.127, abs=0.01)    # QLoRA with double quant
    assert BYTES_PER_PARAM["mxfp4"] * 8 == pytest.approx(4.25)
    assert BYTES_PER_PARAM["nvfp4"] * 8 == pytest.approx(4.5)


def test_every_precision_weights_ordered():
    w = {p: infer("llama-3.1-70b", p).breakdown.weights_bytes for p in PRECISIONS}
    assert w["fp32"] == 2 * w["bf16"]
    assert w["bf16"] == w["fp16"]
    assert w["bf16"] > w["int8"] >= w["fp8"] > w["nvfp4"] > w["int4"] > w["nf4"]
    # mxfp4 compresses only routed experts: a dense model stays 16-bit
    assert w["mxfp4"] == w["bf16"]


@pytest.mark.parametrize("precision", ["fp8", "int8", "int4", "nf4", "nvfp4"])
def test_quantised_keeps_16bit_embeddings(precision):
    a = resolve(ModelSource(preset="llama-3.1-70b"))
    p = count_params(a)
    w = infer("llama-3.1-70b", precision).breakdown.weights_bytes
    expected = p.linear * BYTES_PER_PARAM[precision] + (p.embedding + p.lm_head + p.norms) * 2
    assert w == pytest.approx(expected, rel=1e-6)
    # the 16-bit embedding and lm_head alone
    assert w > (p.embedding + p.lm_head) * 2


def test_int4_llama_70b_bits_per_param():
    e = infer("llama-3.1-70b", "int4")
    bits = e.breakdown.weights_bytes * 8 / e.parameters
    assert 4.16 * 0.98 <= bits <= 4.5 * 1.03


def test_fp32_keeps_embeddings_fp32():
    e = infer("llama-3.1-8b", "fp32")
    assert e.breakdown.weights_bytes == pytest.approx(4 * e.parameters, rel=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_estimates(precision):
    e = infer("llama-3.1-8b", precision)
    b = e.breakdown
    assert 0 < b.weights_bytes <= 4 * e.parameters  # no format stores more than fp32
    assert b.kv_cache_bytes > 0 and b.activations_bytes > 0 and b.overhead_bytes > 0
    assert e.peak_phase == "prefill"


# --- training -----------------------------------------------------------------------------------------

def test_full_mixed_precision_states():
    e = train(method="full", masterWeights="fp32", optimizer="adamw")
    n = e.parameters
    b = e.breakdown
    assert b.weights_bytes == 4 * n
    assert b.optimizer_states_bytes == 8 * n
    assert b.gradients_bytes in (0, 4 * n)  # a lone GPU frees gradients after the step


def test_full_pure_bf16_states():
    e = train(method="full", masterWeights="none", optimizer="adamw")
    n = e.parameters
    assert e.breakdown.weights_bytes == 2 * n
    assert e.breakdown.optimizer_states_bytes == 4 * n


def test_mixed_needs_more_than_pure():
    assert train(masterWeights="fp32").total_bytes > train(masterWeights="none").total_bytes


@pytest.mark.parametrize("training,elems", [
    (dict(optimizer="adamw"), 2),
    (dict(optimizer="sgd", sgdMomentum=True), 1),
    (dict(optimizer="sgd"), 0),  # torch.optim.SGD's momentum=0 (HF Trainer's optim="sgd")
    (dict(optimizer="sgd", framework="megatron"), 1),  # --sgd-momentum 0.9
])
def test_optimizer_states_per_param(training, elems):
    a = resolve(ModelSource(preset="llama-3.1-8b"))
    p = count_params(a)
    s = model_states(a, p, Training(**training), "bf16", Layout(), 0)
    assert s.optimizer == elems * 4 * p.total


def test_sgd_without_momentum_keeps_no_state_and_splits_no_block():
    """torch.optim.SGD creates a momentum buffer only when momentum != 0: with none, a checkpointed full
    fine-tune holds weights, gradients and activations, and its first step allocates no state into the
    freed activation blocks (no SLACK_STATE_SPLIT)."""
    kw = dict(optimizer="sgd", masterWeights="none", microBatchSize=4, sequenceLength=2048,
              activationCheckpointing="full")
    plain, momentum = train("llama-3.2-1b", **kw), train("llama-3.2-1b", sgdMomentum=True, **kw)
    assert plain.breakdown.optimizer_states_bytes == 0
    assert momentum.breakdown.optimizer_states_bytes == 2 * momentum.parameters
    assert plain.peak_phase == momentum.peak_phase == "loss backward"
    # the momentum, and the split share of the transient on top of it
    assert momentum.total_bytes - plain.total_bytes > 2 * momentum.parameters


def test_sgd_momentum_only_with_sgd():
    with pytest.raises(ValueError, match="sgdMomentum is only allowed with optimizer sgd"):
        Training(optimizer="adamw", sgdMomentum=True)


def test_fused_adamw_step_allocates_nothing():
    """transformers' Trainer runs fused AdamW: a step peak holds the states and gradients, no temporaries."""
    e = train(optimizer="adamw", masterWeights="fp32", sequenceLength=512, activationCheckpointing="full")
    assert e.peak_phase == "optimizer step"
    assert e.breakdown.optimizer_states_bytes == 8 * e.parameters


def test_sgd_step_copies_the_gradients_only_where_the_framework_sets_a_weight_decay():
    """torch.optim.SGD (foreach) with weight decay builds a new gradient list: one fp32 copy per parameter
    beside the momentum, at the optimizer step. HF Trainer's default weight decay is 0: no copy there."""
    e = train(optimizer="sgd", sgdMomentum=True, masterWeights="fp32", sequenceLength=512,
              activationCheckpointing="full")
    assert e.peak_phase == "optimizer step"
    assert e.breakdown.optimizer_states_bytes == 4 * e.parameters  # the momentum only
    fsdp = train(optimizer="sgd", sgdMomentum=True, masterWeights="fp32", sequenceLength=512,
                 activationCheckpointing="full", framework="fsdp")
    assert fsdp.breakdown.optimizer_states_bytes > 4 * fsdp.parameters  # momentum + the decayed gradient copy


def test_adafactor_step_holds_fp32_temporaries_of_the_largest_parameter():
    """transformers' Adafactor loops over parameters: four fp32 tensors of one parameter's size for
    16-bit parameters (copies of gradient and parameter, the update and its replacement), two for fp32
    ones; the largest of Llama 3.1 8B's is its embedding (vocab x hidden)."""
    embedding = 128256 * 4096
    for master, size in (("fp32", 2 * 4), ("none", 4 * 4)):
        e = train(optimizer="adafactor", masterWeights=master, sequenceLength=512, activationCheckpointing="full")
        assert e.peak_phase == "optimizer step"
        states = train(optimizer="adafactor", masterWeights=master, microBatchSize=64).breakdown.optimizer_states_bytes
        assert e.breakdown.optimizer_states_bytes - states == size * embedding


def test_adamw8bit_is_two_bytes_and_noted():
    e = train(optimizer="adamw8bit")
    assert e.breakdown.optimizer_states_bytes == 2 * e.parameters
    assert any("8-bit" in n for n in e.notes)


def test_adafactor_is_small():
    e = train(optimizer="adafactor", microBatchSize=8)  # a backward peak: the step's temporaries are freed
    assert 0 < e.breakdown.optimizer_states_bytes < 0.01 * e.parameters


def test_optimizer_ordering():
    a = resolve(ModelSource(preset="llama-3.1-8b"))
    p = count_params(a)
    o = {opt: model_states(a, p, Training(optimizer=opt, sgdMomentum=True if opt == "sgd" else None), "bf16",
                           Layout(), 0).optimizer
         for opt in ("adamw", "adamw8bit", "sgd", "adafactor")}
    assert o["adamw"] > o["sgd"] > o["adamw8bit"] > o["adafactor"] > 0


def test_lora_freezes_base():
    full, lora = train(method="full"), train(method="lora", loraRank=16)
    n = lora.parameters
    b = lora.breakdown
    adapters = b.weights_bytes - 2 * n
    assert adapters == 41_943_040 * 4  # r=16 on q,k,v,o,gate,up,down of 32 layers, fp32, on the bf16 base
    assert b.optimizer_states_bytes == 2 * adapters  # two fp32 Adam states per fp32 adapter parameter
    assert lora.total_bytes < full.total_bytes


def test_lora_rank_scales_adapters():
    r16, r64 = train(method="lora", loraRank=16), train(method="lora", loraRank=64)
    assert r64.breakdown.optimizer_states_bytes == pytest.approx(4 * r16.breakdown.optimizer_states_bytes, rel=1e-6)


def test_qlora_nf4_base():
    q = train("llama-3.1-70b", precision="nf4", method="qlora")
    lora = train("llama-3.1-70b", precision="bf16", method="lora")
    assert q.breakdown.weights_bytes < 0.35 * lora.breakdown.weights_bytes
    assert q.total_bytes < lora.total_bytes
    # QLoRA paper: a 65B model fine-tunes on one 48 GB GPU at short sequences
    small = train("llama-3.1-70b", precision="nf4", method="qlora", sequenceLength=512,
                  activationCheckpointing="full")
    assert small.total_bytes < 48e9 * 1.05


@pytest.mark.parametrize("method,precision", [("full", "bf16"), ("full", "fp32"), ("full", "fp16"),
                                              ("lora", "bf16"), ("lora", "fp8"), ("qlora", "nf4"),
                                              ("qlora", "int4")])
@pytest.mark.parametrize("optimizer", ["adamw", "adamw8bit", "sgd", "adafactor"])
def test_every_method_and_optimizer(method, precision, optimizer):
    momentum = dict(sgdMomentum=True) if optimizer == "sgd" else {}
    e = train(precision=precision, method=method, optimizer=optimizer, **momentum)
    states = e.breakdown.optimizer_states_bytes
    assert states > 0
    if method != "full":  # the optimizer holds states for the adapters only
        full = train(method="full", optimizer=optimizer, **momentum)
        assert states < 0.01 * full.breakdown.optimizer_states_bytes
    assert e.breakdown.activations_bytes > 0 or e.peak_phase == "optimizer step"


@pytest.mark.parametrize("ckpt", ["selective", "full"])
def test_checkpointing_reduces_activations(ckpt):
    none = train(activationCheckpointing="none", microBatchSize=4)
    assert train(activationCheckpointing=ckpt, microBatchSize=4).breakdown.activations_bytes < \
        none.breakdown.activations_bytes


# --- ZeRO ---------------------------------------------------------------------------------------------

def zero(stage, data=8, **kw):
    return train(layout=Layout(data=data), zeroStage=stage, **kw).breakdown


def test_zero1_shards_optimizer_only():
    z0, z1 = zero(0), zero(1)
    assert z1.optimizer_states_bytes == z0.optimizer_states_bytes // 8
    assert (z1.gradients_bytes, z1.weights_bytes) == (z0.gradients_bytes, z0.weights_bytes)


def test_zero2_shards_gradients():
    z1, z2 = zero(1), zero(2)
    assert z2.gradients_bytes == z1.gradients_bytes // 8
    assert (z2.optimizer_states_bytes, z2.weights_bytes) == (z1.optimizer_states_bytes, z1.weights_bytes)


def test_zero3_shards_weights():
    z2, z3 = zero(2), zero(3)
    assert z3.weights_bytes == z2.weights_bytes // 8
    assert (z3.optimizer_states_bytes, z3.gradients_bytes) == (z2.optimizer_states_bytes, z2.gradients_bytes)


def test_zero_totals_decrease():
    totals = [sum(zero(s).model_dump().values()) for s in range(4)]
    assert totals[0] > totals[1] > totals[2] > totals[3]


def test_zero_on_one_replica_shards_nothing():
    assert train(zeroStage=3).breakdown == train(zeroStage=0).breakdown


def test_zero_on_lora_adapters():
    z0, z3 = zero(0, method="lora"), zero(3, method="lora")
    assert z3.optimizer_states_bytes == z0.optimizer_states_bytes // 8
    assert z3.weights_bytes < z0.weights_bytes


def test_deepspeed_zero3_anchor():
    """DeepSpeed memory.rst: t5-3b (2851M params) on 8 GPUs, ZeRO-3: 18P/N + largest layer = 6.10 GB
    (GiB). t5 is encoder-decoder, so only the model states map: a 2851M-parameter stand-in, mixed
    precision AdamW, must hold 18 B/param over 8 GPUs (weights, grads, Adam, autocast copies)."""
    a = resolve(ModelSource(parameters=2_851_000_000))
    p = count_params(a)
    s = model_states(a, p, Training(zero_stage=3), "bf16", Layout(data=8), 0)
    states = s.weights + s.gradients + s.optimizer + s.autocast_cache
    assert states == pytest.approx(18 * 2_851e6 / 8, rel=1e-3)
    largest_layer = 4 * 32128 * 1024  # t5-3b's shared embedding, fp32
    assert (states + largest_layer) / GiB == pytest.approx(6.10, abs=0.02)


# DeepSpeed's ZeRO-2 anchor (4P + 16P/N = 15.93 GB for t5-3b) is not pinned: it assumes fp16 params and
# grads beside an fp32 master partition, while rackfit models PyTorch AMP (fp32 params, bf16 autocast copies).


# --- tensor / pipeline --------------------------------------------------------------------------------

@pytest.mark.parametrize("tensor", [2, 4, 8])
def test_tensor_shards_weights(tensor):
    one = infer("llama-3.1-70b").breakdown.weights_bytes
    norms = count_params(resolve(ModelSource(preset="llama-3.1-70b"))).norms * 2  # replicated on every rank
    assert infer("llama-3.1-70b", layout=Layout(tensor=tensor)).breakdown.weights_bytes == \
        pytest.approx((one - norms) / tensor + norms, rel=1e-6)


@pytest.mark.parametrize("pipeline", [2, 4, 8])
def test_pipeline_shards_weights(pipeline):
    one = infer("llama-3.1-70b").breakdown.weights_bytes
    w = infer("llama-3.1-70b", layout=Layout(pipeline=pipeline)).breakdown.weights_bytes
    emb = 128256 * 8192 * 2
    assert w < one
    # layers split evenly; the heaviest stage holds one vocab matrix
    assert w == pytest.approx((one - 2 * emb) / pipeline + emb, rel=1e-3)


def test_tensor_and_pipeline_training_shrink_states():
    one = train("llama-3.1-70b").breakdown
    tp = train("llama-3.1-70b", layout=Layout(tensor=8)).breakdown
    pp = train("llama-3.1-70b", layout=Layout(pipeline=4)).breakdown
    assert tp.weights_bytes == pytest.approx(one.weights_bytes / 8, rel=1e-3)
    assert tp.optimizer_states_bytes == pytest.approx(one.optimizer_states_bytes / 8, rel=1e-3)
    assert pp.optimizer_states_bytes == pytest.approx(one.optimizer_states_bytes / 4, rel=1e-3)


def test_multi_gpu_adds_nccl_overhead():
    one = infer().breakdown.overhead_bytes
    assert infer(layout=Layout(tensor=2)).breakdown.overhead_bytes > one


def test_spec_parallelism_is_default_layout():
    spec = parse_spec(dict(model=dict(preset="llama-3.1-70b"), workload="inference",
                           parallelism=dict(tensor=4)))
    assert estimate(spec).layout == Layout(tensor=4)
    assert estimate(spec) == estimate(spec, Layout(tensor=4))


# --- MoE ----------------------------------------------------------------------------------------------

def test_mixtral_weights_hold_all_experts():
    e = infer("mixtral-8x7b")
    assert e.parameters == pytest.approx(46.70e9, rel=1e-3)
    assert e.active_parameters == pytest.approx(12.88e9, rel=1e-3)
    assert e.breakdown.weights_bytes == pytest.approx(2 * e.parameters, rel=1e-6)


def test_mixtral_expert_parallel_shards_experts():
    one = infer("mixtral-8x7b", layout=Layout(tensor=1)).breakdown.weights_bytes
    ep = infer("mixtral-8x7b", layout=Layout(data=8, expert=8)).breakdown.weights_bytes
    p = count_params(resolve(ModelSource(preset="mixtral-8x7b")))
    assert ep == pytest.approx(one - 2 * p.experts * 7 / 8, rel=1e-6)


def test_deepseek_v3_fp8_on_eight_h200():
    e = infer("deepseek-v3", "fp8", layout=Layout(tensor=8), contextLength=8192, concurrency=8)
    assert e.parameters == pytest.approx(671e9, rel=1e-3)
    assert e.active_parameters == pytest.approx(37e9, rel=0.02)
    assert 671e9 / 8 < e.breakdown.weights_bytes < 1.05 * 671e9 / 8
    assert e.total_bytes < 141e9  # fits an 8xH200 node, as served in practice


def test_gpt_oss_mxfp4_fits_one_80gb_gpu():
    e = infer("gpt-oss-120b", "mxfp4", contextLength=8192)
    w = e.breakdown.weights_bytes
    # vLLM loads gpt-oss-120b's weights in 64-66 GiB (docs/reference/memory-model.md §2.3)
    assert w / GiB == pytest.approx(64, rel=0.10)
    assert w < infer("gpt-oss-120b", "bf16").breakdown.weights_bytes / 3
    assert e.total_bytes < 80e9


def test_gpt_oss_mxfp4_keeps_attention_16bit():
    p = count_params(resolve(ModelSource(preset="gpt-oss-120b")))
    w = infer("gpt-oss-120b", "mxfp4").breakdown.weights_bytes
    assert w == pytest.approx(p.experts * 4.25 / 8 + (p.total - p.experts) * 2, rel=1e-6)


def test_moe_training():
    layout = Layout(tensor=8, data=4)
    z0, z1 = train("mixtral-8x7b", layout=layout), train("mixtral-8x7b", layout=layout, zeroStage=1)
    assert z1.breakdown.optimizer_states_bytes == pytest.approx(z0.breakdown.optimizer_states_bytes / 4, rel=1e-6)
    # ZeRO-1 shards the states only; DDP (z0) holds param.grad beside its buckets at its peak (test_ddp_buckets.py)
    assert z1.breakdown.gradients_bytes == z0.breakdown.gradients_bytes // 2 > 0


# --- rough mode ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", ["70B", 70e9, "70e9", 70_000_000_000])
def test_rough_mode(count):
    e = estimate(parse_spec(dict(model=dict(parameters=count), workload="inference")))
    assert e.parameters == pytest.approx(70e9, rel=1e-6)
    assert e.breakdown.weights_bytes == pytest.approx(2 * 70e9, rel=1e-6)
    assert any("parameter count" in n for n in e.notes)


def test_preset_has_no_rough_note():
    assert not any("parameter count" in n for n in infer().notes)


# --- measured data ------------------------------------------------------------------------------------

def test_measured_data_within_targets():
    paths = sorted(DATA.glob("*.jsonl"))
    assert paths, f"no measurements at {DATA}"
    acc = bench("accuracy")
    results = acc.measure(paths)
    assert len(results) >= 20
    errors = {acc.describe(r["row"]): acc.err(r["est"].total_bytes, r["measured"]) for r in results}
    outside = {k: round(v, 1) for k, v in errors.items() if abs(v) > 10}
    assert not outside, f"rows beyond +-10%: {outside}"
    under = {k: round(v, 1) for k, v in errors.items() if v < -5}
    assert not under, f"rows underestimated beyond -5%: {under}"
    assert statistics.median(abs(v) for v in errors.values()) <= 5
