"""T190-T193 (issue 22): the 4-bit blog's T4 table. The mechanisms the facts rest on, each computed by hand
from the runtimes' source:
- transformers 4.30's eager LlamaAttention (the rows' flashAttention false): 8 bytes a score a layer kept without
  checkpointing;
- peft's prepare (0.3.0 `prepare_model_for_int8_training`, main's `prepare_model_for_kbit_training`) keeps the
  embeddings, head and norms fp32 before TRL 0.7.5 cast them back: 2 bytes a parameter more;
- bitsandbytes 0.39.0's backward dequantizes the whole frozen matrix for the input's gradient: MatMul4Bit in the
  16-bit dtype it was quantized from, MatMul8bitLt an int8 row-major copy beside the matrix in the input's dtype."""

from __future__ import annotations

from pathlib import Path

import yaml

from rackfit.estimator import estimate
from rackfit.estimator.params import count_params
from rackfit.estimator.peft import bnb_backward_dequant_bytes, kbit_fp32_vocab_bytes
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import parse_spec

CASES = Path(__file__).resolve().parents[2] / "bench" / "cases" / "public" / "training.yaml"
GiB = 2**30

LLAMA_7B = dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32, numKeyValueHeads=32,
                headDim=128, vocabSize=32000, tieWordEmbeddings=False)
LLAMA_13B = dict(numLayers=40, hiddenSize=5120, intermediateSize=13824, numAttentionHeads=40, numKeyValueHeads=40,
                 headDim=128, vocabSize=32000, tieWordEmbeddings=False)


def _spec(arch: dict, precision: str, **t):
    base = dict(framework="transformers", method="qlora" if precision == "nf4" else "lora", loraRank=16,
                loraTargets=["q", "v"], microBatchSize=1, sequenceLength=512, activationCheckpointing="full")
    spec = parse_spec(dict(model=dict(architecture=arch), workload="training", precision=precision,
                           training={**base, **t}))
    return spec, resolve(spec.model)


def test_peft_prepare_keeps_llama_7b_embeddings_head_and_norms_fp32_before_trl_0_7_5():
    # embed_tokens and lm_head 32000 x 4096 each, 65 RMSNorm weights of 4096 (two a layer and the final one): the
    # fp32 cast of `prepare_model_for_*_training` adds 2 bytes to each 16-bit parameter
    spec, arch = _spec(LLAMA_7B, "int8", transformersVersion="4.30.0")
    p = count_params(arch)
    assert p.embedding == p.lm_head == 32000 * 4096
    assert kbit_fp32_vocab_bytes(p, spec.training, spec.precision) == 2 * (2 * 32000 * 4096 + 65 * 4096)


def test_no_fp32_vocab_where_trl_casts_it_back_or_nothing_prepares():
    # a 4-bit base from transformers 4.36 on (TRL 0.7.5's peft_module_casting_to_bf16 under --bf16) or no release
    # named: as today
    for version in ("4.36.0", None):
        spec, arch = _spec(LLAMA_7B, "nf4", transformersVersion=version)
        assert kbit_fp32_vocab_bytes(count_params(arch), spec.training, spec.precision) == 0
    # TRL casts only a 4-bit base back: an 8-bit one keeps them fp32 in every release
    spec, arch = _spec(LLAMA_7B, "int8")
    fp32_cast = 2 * (2 * 32000 * 4096 + 65 * 4096)
    assert kbit_fp32_vocab_bytes(count_params(arch), spec.training, spec.precision) == fp32_cast
    # a LoRA over a 16-bit base is not a bitsandbytes model: peft's prepare does not run
    spec, arch = _spec(LLAMA_7B, "bf16", transformersVersion="4.30.0")
    assert kbit_fp32_vocab_bytes(count_params(arch), spec.training, spec.precision) == 0


def test_matmul8bitlt_backward_dequantizes_13b_down_proj_in_fp32_beside_its_int8_copy():
    # undo_layout(state.CxB) is 5120 x 13824 int8 (1 byte), `.to(ctx.dtype_A)` the fp32 input's dtype (4 bytes)
    spec, arch = _spec(LLAMA_13B, "int8")
    assert bnb_backward_dequant_bytes(arch, spec.training, spec.precision, Layout()) == 5120 * 13824 * 5


def test_matmul4bit_backward_dequantizes_7b_mlp_matrix_in_16_bits():
    # F.dequantize_4bit(B, state) returns 4096 x 11008 in the quantized-from fp16 (2 bytes)
    spec, arch = _spec(LLAMA_7B, "nf4")
    assert bnb_backward_dequant_bytes(arch, spec.training, spec.precision, Layout()) == 4096 * 11008 * 2


def test_no_dequantized_matrix_without_a_bitsandbytes_base_or_off_transformers():
    spec, arch = _spec(LLAMA_7B, "bf16")
    assert bnb_backward_dequant_bytes(arch, spec.training, spec.precision, Layout()) == 0
    spec, arch = _spec(LLAMA_7B, "nf4", framework="fsdp")
    assert bnb_backward_dequant_bytes(arch, spec.training, spec.precision, Layout(data=2)) == 0


def test_eager_attention_keeps_every_score_of_7b_at_1024_without_checkpointing():
    # 8 bytes a score (masked 16-bit scores, fp32 softmax, its 16-bit copy) x 32 heads x 1024^2 x 32 layers = 8 GiB
    eager, _ = _spec(LLAMA_7B, "nf4", sequenceLength=1024, activationCheckpointing="none", flashAttention=False)
    fused, _ = _spec(LLAMA_7B, "nf4", sequenceLength=1024, activationCheckpointing="none")
    scores = 8 * 32 * 1024 * 1024 * 32
    assert estimate(eager).breakdown.activations_bytes - estimate(fused).breakdown.activations_bytes == scores


def _facts():
    cases = {c["id"]: c for c in yaml.safe_load(CASES.read_text())["cases"]}
    for cid in ("T190", "T191", "T192", "T193"):
        case = cases[cid]
        for f in case["facts"]:
            spec = {**case["spec"], "training": {**case["spec"]["training"], **f.get("training", {})}}
            yield cid, f, estimate(parse_spec(spec)).total_bytes


def test_the_blog_rows_say_eager_attention():
    cases = {c["id"]: c for c in yaml.safe_load(CASES.read_text())["cases"]}
    assert all(cases[c]["spec"]["training"]["flashAttention"] is False for c in ("T190", "T191", "T192", "T193"))


def test_t190_no_checkpointing_at_1024_and_t193_int8_13b_are_refused():
    said = {(cid, f["variant"]): total <= f["capacityGib"] * GiB for cid, f, total in _facts()}
    assert not said[("T190", "NF4, bf16 CD, no GC, 1024: OOM")]
    assert not said[("T190", "FP4, bf16 CD, no GC, 1024: OOM")]
    assert not said[("T193", "LLM.int8 + GC, 512: OOM")]
    # every run that trained is still admitted
    for cid, f, total in _facts():
        if f["fits"]:
            assert total <= f["capacityGib"] * GiB, (cid, f["variant"], total / GiB)
