"""training.mixedPrecision (issue 22, T1185, T1186, T1189): the HF Trainer's --bf16 / --fp16 flag under a 4-bit
QLoRA. peft's prepare_model_for_kbit_training upcasts the parameters a bitsandbytes 4-bit base keeps in 16 bits (the
input embedding, the head and the norms) to fp32; TRL's SFTTrainer casts the embedding and head back to bf16 only
when `args.bf16` is set (trl/trainer/sft_trainer.py of 0.9.6: `if args is not None and args.bf16 and
getattr(model, "is_loaded_in_4bit", False) and not is_sharded_qlora: peft_module_casting_to_bf16(model)`). Under
--fp16 (fms-acceleration's baseline-peft-bnb scenario of July 2024) they stay fp32: 2 bytes a parameter more.
fms-acceleration's reference CSVs show it after training: Mistral-7B QLoRA on one A100 holds 4,831,579,648 bytes at
b6c1455 (--fp16, transformers 4.43.3) and 4,307,044,864 at 4e81c64 (--bf16, 4.44.2): 524,534,784 bytes apart, the
embedding and head of 32000 x 4096 at 2 bytes each (524,288,000) and the norms (65 x 4096 x 2 = 532,480)."""

from __future__ import annotations

import pytest

from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate, training_states
from rackfit.estimator.params import count_params
from rackfit.estimator.peft import kbit_fp32_vocab_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

MISTRAL_V01 = {"preset": "mistral-7b-v0.3", "architecture": {"vocabSize": 32000}}


def _spec(**t):
    base = dict(framework="transformers", method="qlora", loraRank=16, loraTargets=["q", "k", "v", "o"],
                loraDropout=0.1, microBatchSize=4, sequenceLength=4096, activationCheckpointing="full",
                adamwImplementation="foreach", transformersVersion="4.43.3")
    return parse_spec(dict(model=MISTRAL_V01, workload="training", precision="nf4", parallelism={"data": 1},
                           training={**base, **t}))


def test_fp16_keeps_the_embedding_head_and_norms_fp32():
    spec = _spec(mixedPrecision="fp16")
    p = count_params(resolve(spec.model))
    assert p.embedding == p.lm_head == 32000 * 4096
    assert kbit_fp32_vocab_bytes(p, spec.training, spec.precision) == 2 * (2 * 32000 * 4096 + 65 * 4096)
    # neither flag: TRL's `args.bf16` is false too
    assert kbit_fp32_vocab_bytes(p, _spec(mixedPrecision="no").training, "nf4") == 2 * (2 * 32000 * 4096 + 65 * 4096)


@pytest.mark.parametrize("flag", [None, "bf16"])
def test_bf16_or_unset_is_trls_cast_back(flag):
    spec = _spec(mixedPrecision=flag) if flag else _spec()
    assert kbit_fp32_vocab_bytes(count_params(resolve(spec.model)), spec.training, spec.precision) == 0


def test_the_fp32_vocabulary_is_in_the_estimate_and_in_what_training_leaves():
    fp16, bf16 = _spec(mixedPrecision="fp16"), _spec(mixedPrecision="bf16")
    extra = 2 * (2 * 32000 * 4096 + 65 * 4096)
    assert training_states(fp16).weights - training_states(bf16).weights == extra
    assert estimate(fp16).breakdown.weights_bytes - estimate(bf16).breakdown.weights_bytes == extra
    # the CSVs' after-training difference, 524,534,784 bytes, within 0.1%
    assert abs(extra - 524_534_784) / 524_534_784 < 0.001


@pytest.mark.parametrize("t", [dict(method="lora"), dict(framework="fsdp", fsdpVersion=1),
                               dict(framework="deepspeed", zeroStage=2)])
def test_only_with_transformers_qlora(t):
    with pytest.raises(InvalidWorkload, match="training.mixedPrecision"):
        _spec(mixedPrecision="fp16", **({"transformersVersion": None} if t.get("framework") == "fsdp" else {}), **t)
