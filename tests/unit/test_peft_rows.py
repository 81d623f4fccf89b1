"""T190-T194 (issue 22): transformers + PEFT single-GPU fit/no-fit facts. No mechanism was added with
them; these tests pin what the rows rest on, computed by hand from peft's formula (LoRA's A is r x in, B is out x r,
peft/tuners/lora/layer.py `update_layer`) and checked against the trainable-parameter counts PEFT's MetaMathQA
results log (`num_trainable_params`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from rackfit.estimator import estimate
from rackfit.estimator.params import count_params
from rackfit.estimator.peft import largest_layer_block, unfit_step_temporaries
from rackfit.estimator.result import Layout
from rackfit.estimator.training import ADAPTER_BYTES, lora_params, optimizer_state_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

CASES = Path(__file__).resolve().parents[2] / "bench" / "cases" / "public" / "training.yaml"


def _training(**t):
    base = dict(framework="transformers", method="lora", microBatchSize=4, sequenceLength=768)
    spec = parse_spec(dict(model=dict(preset="llama-3.2-3b"), workload="training", training={**base, **t}))
    return spec, resolve(spec.model)


def test_lora_r32_q_v_matches_peft_s_logged_trainable_count():
    # Llama-3.2-3B: 28 layers, hidden 3072, 8 KV heads of 128 (v_proj 3072 -> 1024); r32 on q_proj and v_proj:
    # 28 x 32 x ((3072 + 3072) + (3072 + 1024)) = 9,175,040, lora--llama-3.2-3B-rank32.json's num_trainable_params
    spec, arch = _training(loraRank=32, loraTargets=["q", "v"])
    assert lora_params(arch, spec.training) == 28 * 32 * (6144 + 4096) == 9_175_040


def test_lora_r10_mlp_matches_peft_s_logged_trainable_count():
    # r10 on gate_proj, up_proj (3072 -> 8192) and down_proj (8192 -> 3072): 28 x 10 x 3 x 11264 = 9,461,760,
    # lora--llama-3.2-3B-rank10-target-mlp.json's num_trainable_params
    spec, arch = _training(loraRank=10, loraTargets=["gate", "up", "down"])
    assert lora_params(arch, spec.training) == 9_461_760


def test_peft_s_fp32_adapters_cost_sixteen_bytes_a_parameter_under_adamw():
    # autocast_adapter_dtype=True keeps the adapters fp32: the weight, its gradient and AdamW's exp_avg and
    # exp_avg_sq, 4 bytes each
    spec, arch = _training(loraRank=32, loraTargets=["q", "v"], optimizer="adamw")
    n = lora_params(arch, spec.training)
    assert ADAPTER_BYTES == 4
    assert optimizer_state_bytes(spec.training, n, ADAPTER_BYTES, arch) == 9_175_040 * 8


def test_blog_rows_adapters_are_small_beside_a_t4():
    # T190's assumed LoraConfig (r16 on q_proj and v_proj of LLaMA-1 7B): 32 x 16 x (8192 + 8192) = 8,388,608
    # parameters, 16 bytes each under AdamW = 0.125 GiB: the unknown rank cannot decide a fact on 14.75 GiB
    spec = parse_spec(dict(
        model=dict(architecture=dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32,
                                     numKeyValueHeads=32, headDim=128, vocabSize=32000, tieWordEmbeddings=False)),
        workload="training", precision="nf4",
        training=dict(framework="transformers", method="qlora", loraRank=16, loraTargets=["q", "v"])))
    n = lora_params(resolve(spec.model), spec.training)
    assert n == 8_388_608
    assert n * 16 / 2**30 == 0.125


def test_rows_t190_t202_have_a_source_and_facts_or_readings():
    cases = {c["id"]: c for c in yaml.safe_load(CASES.read_text())["cases"]}
    withdrawn = {"T195", "T196", "T197", "T198"}  # repeats of T15-T17's lines, withdrawn (training.yaml says so)
    assert withdrawn.isdisjoint(cases)
    for cid in [f"T{i}" for i in range(190, 203) if f"T{i}" not in withdrawn]:
        case = cases[cid]
        assert case["source"] and case["setup"] and (case.get("facts") or case.get("measured"))
        assert all("capacityGib" in f and "fits" in f for f in case.get("facts", []))


# --- foreach AdamW's step temporaries against the backward's cached blocks (estimator/peft.py) ---

ONE_GPU = Layout(data=1, tensor=1, pipeline=1)
MLP_TEMP = 3072 * 8192 * 2            # one bf16 MLP matrix's sqrt temporary: 50,331,648 B
EMBED_TEMP = 128256 * 3072 * 2        # the tied embedding's: 788,004,864 B


def _full(seq: int, implementation: str = "foreach", **t):
    return _training(method="full", masterWeights="none", optimizer="adamw", adamwImplementation=implementation,
                     sequenceLength=seq, activationCheckpointing="none", **t)


def test_largest_block_is_the_mlp_activation_of_the_micro_batch():
    spec, arch = _full(640)
    assert largest_layer_block(arch, spec.training) == 4 * 640 * 8192 * 2 == 41_943_040


def test_below_hidden_size_tokens_the_mlp_and_embedding_temporaries_do_not_fit():
    # 4 x 640 = 2,560 tokens < hidden 3,072: each MLP matrix's 50.3 MB temporary exceeds the 41.9 MB MLP block;
    # q/o (18.9 MB) and k/v (6.3 MB) fit; 28 layers x 3 MLP matrices + the tied embedding once
    spec, arch = _full(640)
    assert unfit_step_temporaries(arch, spec.training, ONE_GPU, 2) == 28 * 3 * MLP_TEMP + EMBED_TEMP == 5_015_863_296


def test_at_hidden_size_tokens_the_mlp_temporaries_fit_exactly():
    spec, arch = _full(768)   # 4 x 768 = 3,072 tokens: the MLP block is 50,331,648 B, the MLP temporary's size
    assert unfit_step_temporaries(arch, spec.training, ONE_GPU, 2) == EMBED_TEMP


def test_fused_adamw_and_lora_adapters_leave_nothing_unfit():
    spec, arch = _full(640, implementation="fused")
    assert unfit_step_temporaries(arch, spec.training, ONE_GPU, 2) == 0
    spec, arch = _training(loraRank=32, loraTargets=["q", "v"], optimizer="adamw", adamwImplementation="foreach",
                           sequenceLength=640, activationCheckpointing="none")
    assert unfit_step_temporaries(arch, spec.training, ONE_GPU, 4) == 0   # A: 32 x 3072 x 4 B, 0.4 MB


def test_the_step_reserves_the_backward_plus_the_unfit_temporaries():
    # fused AdamW peaks in the loss's backward; foreach's step reserves that backward and its slack, plus the
    # temporaries that take new segments: the totals differ by exactly those bytes
    foreach, fused = (estimate(_full(640, implementation=i)[0]) for i in ("foreach", "fused"))
    assert fused.peak_phase == "loss backward" and foreach.peak_phase == "optimizer step"
    assert foreach.total_bytes - fused.total_bytes == 5_015_863_296


def test_t195_pure_bf16_foreach_step_is_ten_bytes_a_parameter():
    # fms-acceleration's Mistral-7B-v0.1 full fine-tune (pure bf16, torch AdamW foreach): the step holds the bf16
    # weights, gradients, both AdamW states and the _foreach_sqrt temporary, 2 + 2 + 4 + 2 bytes a parameter;
    # 7,241,732,096 x 10 = 67.44 GiB against the logged peak allocated 67.46 GiB. At 4 x 4096 tokens every
    # temporary fits the backward's blocks (MLP block 16,384 x 14,336 x 2 B > the 4096 x 14,336 x 2 B matrix)
    spec = parse_spec(dict(
        model=dict(preset="mistral-7b-v0.3", architecture=dict(vocabSize=32000)), workload="training",
        training=dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw",
                      adamwImplementation="foreach", microBatchSize=4, sequenceLength=4096,
                      activationCheckpointing="full")))
    arch = resolve(spec.model)
    assert count_params(arch).total == 7_241_732_096
    assert unfit_step_temporaries(arch, spec.training, ONE_GPU, 2) == 0
    b = estimate(spec).breakdown
    assert b.weights_bytes + b.gradients_bytes + b.optimizer_states_bytes == 7_241_732_096 * 10
