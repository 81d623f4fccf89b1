"""The 16-bit copy autocast makes of a frozen fp32 LM head (issue 22, T1740): peft's prepare_model_for_kbit_training
leaves a 4-bit base's head fp32 under --fp16; autocast caches casts only of weights that require grad
(aten/src/ATen/autocast_mode.cpp cached_cast), so the frozen head is cast in every forward and the linear saves the
copy for its input's gradient, alive through the loss."""

from __future__ import annotations

from rackfit.estimator import estimate
from rackfit.estimator.params import count_params
from rackfit.estimator.peft import kbit_fp32_head_cast_bytes
from rackfit.models import resolve
from rackfit.spec import Training, parse_spec

TINYLLAMA = dict(numLayers=22, hiddenSize=2048, intermediateSize=5632, numAttentionHeads=32, numKeyValueHeads=4,
                 headDim=64, vocabSize=32000, tieWordEmbeddings=False)


def _spec(**t):
    base = dict(framework="transformers", method="qlora", loraRank=64, optimizer="adamw", pagedOptimizer=True,
                microBatchSize=4, sequenceLength=512, activationCheckpointing="full", mixedPrecision="fp16",
                kbitNormsFp32=True, transformersVersion="4.57.6")
    return parse_spec(dict(model=dict(architecture=TINYLLAMA), workload="training", precision="nf4",
                           training={**base, **t}))


def test_the_copy_is_the_head_in_16_bits_where_the_head_stays_fp32_under_autocast():
    s = _spec()
    a = resolve(s.model)
    p = count_params(a)
    assert kbit_fp32_head_cast_bytes(a, p, s.training, "nf4") == 2 * 32000 * 2048
    # --bf16 on a current TRL casts the head back to bf16 (no fp32 head); no autocast under "no"; the cast back
    for t in (dict(mixedPrecision="bf16"), dict(mixedPrecision="no"), dict(kbitNormsFp32=False)):
        s = _spec(**t)
        assert kbit_fp32_head_cast_bytes(a, p, s.training, "nf4") == 0
    assert kbit_fp32_head_cast_bytes(a, p, Training(framework="transformers", method="lora"), "bf16") == 0


def test_the_loss_peak_carries_it():
    fp16, bf16 = estimate(_spec()), estimate(_spec(mixedPrecision="bf16"))
    # the fp16 run also keeps the fp32 embeddings, head and norms (2 bytes a parameter more): both together
    assert fp16.total_bytes - bf16.total_bytes >= 2 * 32000 * 2048 + 2 * 2 * 32000 * 2048
