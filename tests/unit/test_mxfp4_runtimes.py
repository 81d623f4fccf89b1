"""MXFP4 checkpoints (gpt-oss) outside vLLM: what SGLang and transformers hold for the routed experts
(estimator/weights.py `mxfp4_align`, `mxfp4_sglang_expert_factor`, `mxfp4_dequantized`; models/quantization.py
`dequantized_experts`)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.params import count_params
from rackfit.estimator.weights import mxfp4_align, mxfp4_dequantized, mxfp4_expert_padding
from rackfit.models import resolve
from rackfit.models.quantization import dequantized_experts
from rackfit.spec import ModelSource, parse_spec

GiB = 1 << 30
GPT_OSS_20B = {"preset": "gpt-oss-120b-mxfp4",
               "architecture": {"numLayers": 24, "numExperts": 32, "slidingWindowLayers": 12}}


def _gpu(arch: str) -> GPU:
    return GPU(model="g", product="g", memoryGB=200, memoryMiB=190000, architecture=arch)


def _sglang_weights(arch: str, tensor: int = 1, expert: int = 1, model=None, release: str | None = None) -> int:
    inference = {"engine": "sglang", "contextLength": 8192} | ({"engineVersion": release} if release else {})
    spec = parse_spec(dict(model=model or {"preset": "gpt-oss-120b-mxfp4"}, workload="inference", precision="mxfp4",
                           parallelism={"tensor": tensor, "expert": expert}, inference=inference))
    return estimate(spec, gpu=_gpu(arch)).breakdown.weights_bytes


def test_sglang_mxfp4_weights_follow_its_moe_runner():
    """SGLang's stored experts by runner (its paddings by release: test_sglang_mxfp4.py); transformers and the training
    frameworks keep the checkpoint's shapes (a 64 alignment under tensor parallel)."""
    a = resolve(ModelSource(preset="gpt-oss-120b-mxfp4"))
    assert mxfp4_align("transformers", "hopper") == mxfp4_align("fsdp", None) == (64, 1)
    # tensor 2: 1440 is 45 blocks of 32, unpadded (a 64 alignment would store 1472); tensor 8: 360 -> 384
    assert mxfp4_expert_padding(a, a.quantization, 2, 2, (32, 1)) == 1.0
    assert mxfp4_expert_padding(a, a.quantization, 8, 8, (32, 1)) == 384 / 360
    # S90: gpt-oss-20b on a B200 under 0.5.3 logged "mem usage=14.53 GB"; unpadded it would be 12.8 GiB
    assert 14.0 * GiB < _sglang_weights("blackwell", model=GPT_OSS_20B, release="0.5.3") < 14.6 * GiB
    # from 0.5.17 (a current SGLang, unset) the width is padded to 128, not 256
    assert 12.8 * GiB < _sglang_weights("blackwell", model=GPT_OSS_20B) < 14.0 * GiB
    # Hopper's triton_kernel keeps the scales twice (+0.58 GiB) and fp32 biases: test_sglang_mxfp4.py
    assert _sglang_weights("hopper", model=GPT_OSS_20B) < 13.5 * GiB


def test_when_experts_are_dequantized():
    """Training always (transformers' MXFP4 quantizer is not trainable: Mxfp4Config(dequantize=True)); SGLang with
    expert parallelism off Blackwell (no triton_kernel runner there: upcast_from_mxfp); nothing else."""
    assert mxfp4_dequantized("transformers", "hopper", 1, training=True)
    assert mxfp4_dequantized("fsdp", None, 1, training=True)
    assert mxfp4_dequantized("sglang", "hopper", 4, training=False)
    assert mxfp4_dequantized("sglang", "ampere", 2, training=False)
    assert not mxfp4_dequantized("sglang", "blackwell", 4, training=False)
    assert not mxfp4_dequantized("sglang", "hopper", 1, training=False)
    assert not mxfp4_dequantized("vllm", "hopper", 4, training=False)
    assert not mxfp4_dequantized("transformers", "hopper", 1, training=False)


def test_dequantized_experts_keep_the_rest():
    a = resolve(ModelSource(preset="gpt-oss-120b-mxfp4"))
    q = a.quantization
    d = dequantized_experts(q, "dequantized")
    assert all(lb.experts == q.dtype_bytes == 2.0 for lb in d.layers)
    assert [lb._replace(experts=0) for lb in d.layers] == [lb._replace(experts=0) for lb in q.layers]
    assert d.runs and d.runs[0][1].experts == 2.0
    assert d.summary.endswith("; dequantized") and d.checkpoint


def test_sglang_expert_parallel_holds_bf16_experts():
    """gpt-oss-120b at tensor 4 x expert 4 on Hopper: a quarter of the experts each, in bf16, about 4x their MXFP4
    bytes; on Blackwell flashinfer_mxfp4 keeps them MXFP4."""
    a = resolve(ModelSource(preset="gpt-oss-120b-mxfp4"))
    experts_bf16 = count_params(a).experts * 2 / 4
    hopper, blackwell = _sglang_weights("hopper", 4, 4), _sglang_weights("blackwell", 4, 4)
    assert hopper > experts_bf16 > 50 * GiB
    assert blackwell < 18 * GiB
    assert hopper > 3 * blackwell


def test_training_on_an_mxfp4_checkpoint_dequantizes_the_experts():
    """A LoRA run on gpt-oss-20b holds bf16 experts (T23, Axolotl with Mxfp4Config(dequantize=True): ~44 GiB
    reserved); MXFP4 experts would put the weights near 12.8 GiB."""
    spec = parse_spec(dict(model=GPT_OSS_20B, workload="training", precision="bf16",
                           training={"framework": "transformers", "method": "lora", "microBatchSize": 1,
                                     "sequenceLength": 1024}))
    e = estimate(spec)
    p = count_params(resolve(spec.model))
    assert e.breakdown.weights_bytes == pytest.approx(p.total * 2, rel=0.02)
    assert any("dequantized to bf16" in n for n in e.notes)
    # serving the same checkpoint under transformers keeps the MXFP4 experts
    serve = parse_spec(dict(model=GPT_OSS_20B, workload="inference", precision="mxfp4",
                            inference={"engine": "transformers", "contextLength": 1024}))
    assert estimate(serve).breakdown.weights_bytes < 13 * GiB
