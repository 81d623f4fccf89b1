"""T190-T194 (issue 22, acc-h8): transformers + PEFT single-GPU fit/no-fit facts. No mechanism was added with
them; these tests pin what the rows rest on, computed by hand from peft's formula (LoRA's A is r x in, B is out x r,
peft/tuners/lora/layer.py `update_layer`) and checked against the trainable-parameter counts PEFT's MetaMathQA
results log (`num_trainable_params`)."""

from __future__ import annotations

from pathlib import Path

import yaml

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


def test_rows_t190_t194_are_facts_with_a_source():
    cases = {c["id"]: c for c in yaml.safe_load(CASES.read_text())["cases"]}
    for cid in ("T190", "T191", "T192", "T193", "T194"):
        case = cases[cid]
        assert case["source"] and case["setup"] and case["facts"]
        assert all("capacityGib" in f and "fits" in f for f in case["facts"])
